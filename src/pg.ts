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

export { createSqlDatabase, type SqlDatabase, type SqlDatabaseOptions } from './backends/sql/database.js';
export type { SqlDriver, SqlQueryable } from './backends/sql/driver.js';
export { type PgDriverOptions, pgDriver } from './backends/sql/drivers/pg.js';

export interface PgDatabaseOptions extends PgDriverOptions {
  /** `postgres://user:password@host:port/database`; or pass `pool`. */
  connectionString?: string;
  /** Use this pool (not closed by `close()`). Else a pool is created and closed with the database. */
  pool?: pg.Pool;
  /** Connections of the created pool. Default 10 (pg's default). */
  max?: number;
  /** NOTIFY on every write so `subscribe`/`watch` work across processes. Default true. */
  notify?: boolean;
}

/** Opens (and migrates) a PostgreSQL database. One LISTEN connection is opened on the first `subscribe`. */
export async function pgDatabase(options: PgDatabaseOptions = {}): Promise<SqlDatabase> {
  const { connectionString, pool, max, notify, ...driverOptions } = options;
  const driver = pgDriver(pool ?? { connectionString, ...(max === undefined ? {} : { max }) }, driverOptions);
  try {
    return await createSqlDatabase(driver, notify === undefined ? {} : { notify });
  } catch (error) {
    await driver.close().catch(() => {});
    throw error;
  }
}
