/**
 * The little a SQL dialect needs from a PostgreSQL connection. Two drivers implement it: PGlite
 * (in process, one connection) and `pg` (a pool). Everything else (SQL text, error mapping, row
 * shapes) lives once in the dialect beside this file.
 *
 * Drivers pass errors through untouched (the dialect maps SQLSTATEs once, see `sqlstate.ts`).
 * Column types come back as the driver parses them: `jsonb` as objects in both drivers, but
 * `bigint` as a number in PGlite and a string in `pg`; the dialect converts with `Number()`.
 */

/** Runs one statement (bound parameters, no multi-statement text) and returns its rows. */
export interface SqlQueryable {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface SqlDriver extends SqlQueryable {
  readonly kind: 'pglite' | 'pg';
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; ROLLBACK when `fn` throws (the error is
   * rethrown as is). Only `fn`'s queryable runs in the transaction: calling the driver's own
   * `query` from inside `fn` uses another connection in `pg` and waits for the commit in PGlite
   * (one connection), so don't.
   */
  transaction<R>(fn: (q: SqlQueryable) => Promise<R>): Promise<R>;
  /**
   * LISTENs on `channel`; `onPayload` gets each notification's payload, after the notifying
   * transaction committed. Resolves once the LISTEN is in effect; the returned function stops it.
   */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * Sends one notification on `channel` per payload, all in one transaction of their own, on a
   * connection that queries and transactions do not wait for (`pg`: the listen connection;
   * PGlite: its one connection). Writes announce their changes this way *after* they commit,
   * rather than by a NOTIFY inside the write: PostgreSQL serialises every committing transaction
   * that notifies, WAL flush included, which halves write throughput at 8 connections.
   */
  notify(channel: string, payloads: readonly string[]): Promise<void>;
  /** Releases what the driver created (a pool it opened, its listen connection, a PGlite it created). */
  close(): Promise<void>;
}

/**
 * What `SqlDriver.notify` runs: one notification on channel `$1` per string of the JSON array
 * `$2` (`JSON.stringify(payloads)`: native, where `pg`'s text[] encoding escapes each character in JS).
 */
export const NOTIFY_SQL = 'SELECT pg_notify($1, p) FROM json_array_elements_text($2::json) AS p';
