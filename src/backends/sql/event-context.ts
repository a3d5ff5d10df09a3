/**
 * What every part of the SQL event log (event-log.ts, feed.ts, snapshots.ts, state-vectors.ts,
 * clients.ts) needs from its database, and how each runs one statement.
 */
import type { SqlDriver } from './driver.js';
import { mapSqlError } from './sqlstate.js';

/** What the event log needs from its database. */
export interface SqlEventContext {
  readonly driver: SqlDriver;
  readonly notify: boolean;
  assertOpen(): void;
  /** Sends a notification once what it announces has committed (see announcer.ts). */
  announce(payload: string): void;
  watchCommits(onCommit: () => void): Promise<() => Promise<void>>;
}

/** A part of the event log (event-log.ts, feed.ts, …): its database, and one statement at a time on it. */
export abstract class SqlEventPart {
  constructor(protected readonly ctx: SqlEventContext) {}

  /**
   * Runs one statement on the database's driver: refused once the database is closed, a driver
   * error mapped to eventsync's codes with `doing` (what was being done) in its message.
   */
  protected async run<R>(doing: string, text: string, params: unknown[]): Promise<R[]> {
    this.ctx.assertOpen();
    try {
      return await this.ctx.driver.query<R>(text, params);
    } catch (error) {
      throw mapSqlError(error, doing);
    }
  }
}

/** A document as error messages name it: `"g1" in "games"`. */
export function describe(collection: string, documentId: string): string {
  return `${JSON.stringify(documentId)} in ${JSON.stringify(collection)}`;
}
