/**
 * The event feed in SQL: every event in serverSeq order, of all collections or one
 * (`listAfterServerSeq`), and how far that order is settled (`latestServerSeq`). PostgreSQL hands
 * out sequence values before commit, so "settled" is the hard part; see `listAfterServerSeq`.
 */
import type { SyncEvent } from '../../core/events.js';
import { sleep } from '../../core/sleep.js';
import { type SqlEventContext, SqlEventPart } from './event-context.js';
import { type EventRow, eventColumns, toEvent } from './event-rows.js';

export interface FeedOptions {
  /** How long `listAfterServerSeq` waits for in-flight writers before returning nothing new. Default 2,000 ms. */
  settleTimeoutMs?: number;
}

/**
 * Settled: every transaction with an xid below the horizon ($1) has ended. xmin >= X implies
 * xmax >= X, so each xid below X is below xmax and not in the running list: it completed.
 */
const settledFast = 'pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8';

/**
 * The slow path, once the fast check has failed: a transaction running in this statement's
 * snapshot with an xid below the horizon (in its running list, or between its xmax and the
 * horizon: assigned, not completed) holds us up only if it may have inserted an event, i.e.
 * unless the lock table shows it alive *and* without any lock on `eventsync_events`. An event
 * writer locks that table (RowExclusiveLock, taken before the INSERT evaluates the serverSeq
 * default) and keeps the lock until it ends; `pg_locks` is read once (MATERIALIZED) and
 * `pg_lock_status` copies the fast-path relation locks before the main lock table (where
 * transaction id locks live), so a writer seen alive by its xid lock was seen with its table
 * lock too. Unrelated long transactions (a batch job writing other tables, the state-vector
 * flushes) then don't stall the feed.
 */
const blockersCte = `l AS MATERIALIZED (
      SELECT locktype, transactionid, virtualtransaction FROM pg_locks
      WHERE granted AND ((locktype = 'transactionid' AND mode = 'ExclusiveLock')
        OR (locktype = 'relation' AND relation = 'eventsync_events'::regclass))
    ),`;
const settledSlow = `NOT EXISTS (
        SELECT 1 FROM (
          SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
          UNION ALL
          SELECT g::text::xid8 FROM generate_series(
            pg_snapshot_xmax(pg_current_snapshot())::text::bigint, $1::text::bigint - 1) AS g
        ) AS running(x)
        WHERE running.x < $1::xid8 AND NOT EXISTS (
          SELECT 1 FROM l AS t
          WHERE t.locktype = 'transactionid' AND t.transactionid = xid(running.x) AND NOT EXISTS (
            SELECT 1 FROM l AS r WHERE r.locktype = 'relation' AND r.virtualtransaction = t.virtualtransaction
          )
        )
      )`;

const feedOfCollection = `(collection, server_seq) > ($5::text, $2::bigint)
        AND (collection, server_seq) <= ($5::text, $4::bigint)
      ORDER BY collection, server_seq`;

const sql = {
  // How far serverSeq has been handed out (not how far it committed).
  feedLimit: `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS l FROM eventsync_server_seq`,
  /**
   * The horizon X: one past the largest xid of the transactions alive now that hold a lock on
   * the events table (0 when none), as an xid8. Not the snapshot's xmax: that is one past the
   * latest *completed* xid, and a writer that took its xid after the last one to complete is
   * above it while still running (measured: snapshot `771:771:` with xid 771 running and
   * holding an uncommitted serverSeq). pg_locks has 32-bit xids: each is widened next to this
   * statement's xmax (live xids are within 2^31 of it).
   */
  feedHorizon: `WITH ${blockersCte} m AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS m)
    SELECT COALESCE(max(m.m + CASE WHEN w.d < 2147483648 THEN w.d ELSE w.d - 4294967296 END) + 1, 0)::text AS x
    FROM m LEFT JOIN LATERAL (
      SELECT ((t.transactionid::text::bigint - m.m % 4294967296) % 4294967296 + 4294967296) % 4294967296 AS d
      FROM l AS t WHERE t.locktype = 'transactionid' AND EXISTS (
        SELECT 1 FROM l AS r WHERE r.locktype = 'relation' AND r.virtualtransaction = t.virtualtransaction
      )
    ) w ON true`,
  /** The all-collections feed's first read: the events after $1 as they are, $2 at most (see `listAfterServerSeq`). */
  feedAsIs: `SELECT ${eventColumns} FROM eventsync_events WHERE server_seq > $1 ORDER BY server_seq LIMIT $2`,
  /**
   * $1 horizon (xid8), $2 after, $3 limit, $4 the feed limit, $5 the collection (when
   * `byCollection`). One row with `settled` false and no event, or `settled` true and the
   * events (a row of NULLs when none). `pg_current_snapshot()` is this statement's own snapshot:
   * the one the events are read with.
   *
   * One collection's range is written as row comparisons on (collection, server_seq): with
   * `collection = $5 AND server_seq > $2`, a generic plan (prepared statements) walks the
   * server_seq index and filters, which reads every other collection's events too (measured:
   * 300 ms instead of 0.06 ms for a rare collection among 600k events).
   */
  feed: (slow: boolean, byCollection: boolean) => `WITH ${slow ? blockersCte : ''} s AS (
      SELECT ${slow ? settledSlow : settledFast} AS settled
    )
    SELECT s.settled, e.* FROM s LEFT JOIN LATERAL (
      SELECT ${eventColumns} FROM eventsync_events
      WHERE s.settled AND ${byCollection ? feedOfCollection : 'server_seq > $2 AND server_seq <= $4 ORDER BY server_seq'}
      LIMIT $3
    ) e ON true`,
  settled: (slow: boolean) => `WITH ${slow ? blockersCte : ''} s AS (
      SELECT ${slow ? settledSlow : settledFast} AS settled
    ) SELECT settled FROM s`,
};

/** The feed's statement (exported for a plan test). */
export const feedSql = (slow: boolean, byCollection: boolean): string => sql.feed(slow, byCollection);

/** `EventBackend`'s feed: `listAfterServerSeq`, `latestServerSeq`, `watchCommits`. */
export class SqlFeed extends SqlEventPart {
  readonly #settleTimeoutMs: number;
  /** The largest serverSeq `latestServerSeq` found settled so far (settled stays settled). */
  #settled = 0;

  constructor(ctx: SqlEventContext, options: FeedOptions = {}) {
    super(ctx);
    this.#settleTimeoutMs = options.settleTimeoutMs ?? 2000;
  }

  /**
   * The feed. PostgreSQL hands out sequence values before commit, so a transaction that commits
   * later can carry a smaller serverSeq than one already committed: reading "everything committed
   * after N" could return N+2 while N+1 is still in flight, and a reader that moves on to N+2
   * would never see N+1.
   *
   * The common case takes one statement: read the events after `after` as they are. When their
   * serverSeqs run after+1, after+2, … without a hole, nothing can still commit among them
   * (a serverSeq is taken once, and the unique index keeps a compaction's merged event from
   * reusing one twice), so they are returned as they are. A hole is a writer still in flight, one
   * that rolled back, or events deleted by compaction; only then, and for one collection's feed
   * (other collections' events are holes to it), is the settled read below used:
   *
   * 1. L = how far the sequence has been handed out (`last_value`; CACHE 1, so every value <= L
   *    was taken by a writer before this read). L <= after: nothing to return.
   * 2. In a later statement, X = one past the xid of every transaction alive then that holds a
   *    lock on the events table (`feedHorizon`).
   * 3. Return the events with after < serverSeq <= L, read in a snapshot in which every xid
   *    below X has ended (`settledFast`, `settledSlow`); while that does not hold, wait a little
   *    and re-check.
   *
   * Why no event with serverSeq <= L can commit after step 3: the column default
   * (`eventsync_next_server_seq()`) makes the writing transaction take its xid *before* its
   * serverSeq, and the INSERT locks the events table before that. A writer holding s <= L took s
   * before step 1, so during step 2 it had either ended (and step 3's later snapshot sees it if
   * it committed) or was alive with its xid and table lock, so its xid is below X and step 3
   * waits for it. Events > L are left for the next call, which repeats the argument.
   *
   * Waiting: an event writer's transaction usually ends within milliseconds; after the first
   * failed check, `settledSlow` also ignores running transactions that never touched the events
   * table. If writers are still in flight after `settleTimeoutMs`, this returns `[]` (nothing
   * past `after` is certain yet): callers poll again, and the writer's commit notifies them.
   * PGlite has one connection, so no other transaction runs during these statements: the first
   * read has a hole only after a rollback or a compaction, and the check always holds there.
   */
  async listAfterServerSeq(
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]> {
    const doing = `read the event feed${collection === undefined ? '' : ` of ${JSON.stringify(collection)}`}`;
    if (limit <= 0) {
      this.ctx.assertOpen();
      return [];
    }
    if (collection === undefined) {
      const rows = await this.run<EventRow>(doing, sql.feedAsIs, [afterServerSeq, limit]);
      if (rows.length === 0) return [];
      if (rows.every((r, i) => Number(r.server_seq) === afterServerSeq + 1 + i)) return rows.map(toEvent);
    }
    return this.#settledRead(doing, collection, afterServerSeq, limit);
  }

  /** Steps 1–3 of `listAfterServerSeq`. */
  async #settledRead(
    doing: string,
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]> {
    const handedOut = await this.#handedOut(doing);
    if (handedOut <= afterServerSeq) return [];
    const params = [await this.#horizon(doing), afterServerSeq, limit, handedOut];
    if (collection !== undefined) params.push(collection);
    const events = await this.#untilSettled(async (slow) => {
      const statement = sql.feed(slow, collection !== undefined);
      const rows = await this.run<EventRow & { settled: boolean }>(doing, statement, params);
      return rows[0]?.settled ? rows.filter((r) => r.id !== null).map(toEvent) : undefined;
    });
    return events ?? [];
  }

  /**
   * A serverSeq at or below which every event has committed or never will (a feed started after
   * it misses nothing that commits later): how far the sequence was handed out, once the
   * writers that may hold a value up to there have ended (steps 1–3 of `listAfterServerSeq`).
   * When they are still running after `settleTimeoutMs`, the last value this backend found
   * settled (0 at first).
   */
  async latestServerSeq(): Promise<number> {
    const doing = 'read the latest settled serverSeq';
    const handedOut = await this.#handedOut(doing);
    if (handedOut <= this.#settled) return this.#settled;
    const horizon = await this.#horizon(doing);
    const settled = await this.#untilSettled(async (slow) => {
      const [row] = await this.run<{ settled: boolean }>(doing, sql.settled(slow), [horizon]);
      return row?.settled || undefined;
    });
    if (settled) this.#settled = Math.max(this.#settled, handedOut);
    return this.#settled;
  }

  watchCommits(onCommit: () => void): Promise<() => Promise<void>> {
    return this.ctx.watchCommits(onCommit);
  }

  /** Step 1: L, how far serverSeq has been handed out. */
  async #handedOut(doing: string): Promise<number> {
    const [{ l } = { l: 0 }] = await this.run<{ l: number | string }>(doing, sql.feedLimit, []);
    return Number(l);
  }

  /** Step 2: X, the horizon (an xid8, as text). */
  async #horizon(doing: string): Promise<string> {
    const [{ x } = { x: '0' }] = await this.run<{ x: string }>(doing, sql.feedHorizon, []);
    return x;
  }

  /**
   * Step 3's wait: runs `check` (the fast test first, then the slow one) until it answers,
   * backing off from 1 ms to 50 ms between tries; undefined once `settleTimeoutMs` has passed.
   */
  async #untilSettled<T>(check: (slow: boolean) => Promise<T | undefined>): Promise<T | undefined> {
    const deadline = Date.now() + this.#settleTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const answer = await check(attempt > 0);
      if (answer !== undefined) return answer;
      if (Date.now() >= deadline) return undefined;
      await sleep(Math.min(2 ** attempt, 50));
    }
  }
}
