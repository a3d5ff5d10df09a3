/**
 * `eventsync/pg`: PostgreSQL through `pg` (an optional peer dependency, loaded only from here).
 *
 * ```ts
 * const db = await pgDatabase({ connectionString: process.env.DATABASE_URL });
 * ```
 */
import type pg from 'pg';
import { createSqlDatabase, type SqlDatabase } from './backends/sql/database.js';
import { type PgDriverOptions, pgDriver } from './backends/sql/drivers/pg.js';
import type { FeedOptions } from './backends/sql/events.js';

export { createSqlDatabase, type SqlDatabase, type SqlDatabaseOptions } from './backends/sql/database.js';
export type { SqlDriver, SqlQueryable } from './backends/sql/driver.js';
export { type PgDriverOptions, pgDriver } from './backends/sql/drivers/pg.js';
export type { FeedOptions } from './backends/sql/events.js';

export interface PgDatabaseOptions extends PgDriverOptions {
  /** `postgres://user:password@host:port/database`; or pass `pool`. */
  connectionString?: string;
  /** Use this pool (not closed by `close()`). Else a pool is created and closed with the database. */
  pool?: pg.Pool;
  /** Connections of the created pool. Default 10 (pg's default). */
  max?: number;
  /** NOTIFY on every write so `subscribe`/`watch` work across processes. Default true. */
  notify?: boolean;
  /** How the event feed waits for writers in flight (see `SqlEventBackend.listAfterServerSeq`). */
  feed?: FeedOptions;
}

/** Opens (and migrates) a PostgreSQL database. One LISTEN connection is opened on the first `subscribe`. */
export async function pgDatabase(options: PgDatabaseOptions = {}): Promise<SqlDatabase> {
  const { connectionString, pool, max, notify, feed, ...driverOptions } = options;
  const driver = pgDriver(pool ?? { connectionString, ...(max === undefined ? {} : { max }) }, driverOptions);
  try {
    return await createSqlDatabase(driver, {
      ...(notify === undefined ? {} : { notify }),
      ...(feed === undefined ? {} : { feed }),
    });
  } catch (error) {
    await driver.close().catch(() => {});
    throw error;
  }
}
