/**
 * `eventsync/pg`: PostgreSQL through `pg` (an optional peer dependency, loaded only from here).
 *
 * ```ts
 * const db = await pgDatabase({ connectionString: process.env.DATABASE_URL });
 * ```
 */
import type pg from 'pg';
import { createSqlDatabase, type SqlDatabase } from './backends/sql/database.js';
import { isPgPool, type PgDriverOptions, pgDriver } from './backends/sql/drivers/pg.js';
import type { FeedOptions } from './backends/sql/feed.js';
import { ValidationError } from './core/errors.js';

export { createSqlDatabase, type SqlDatabase, type SqlDatabaseOptions } from './backends/sql/database.js';
export type { SqlDriver, SqlQueryable } from './backends/sql/driver.js';
export { type PgDriverOptions, pgDriver } from './backends/sql/drivers/pg.js';
export type { FeedOptions } from './backends/sql/feed.js';

export interface PgDatabaseOptions extends PgDriverOptions {
  /** `postgres://user:password@host:port/database`; or pass `pool`. */
  connectionString?: string;
  /**
   * Use this pool (not closed by `close()`): a `pg.Pool`, from any copy of `pg` (it is recognised by
   * its `query` and `connect` methods). Else a pool is created and closed with the database.
   */
  pool?: pg.Pool;
  /** Connections of the created pool (not with `pool`: size your own). Default 10 (pg's default). */
  max?: number;
  /** NOTIFY on every write so `subscribe`/`watch` work across processes. Default true. */
  notify?: boolean;
  /** How the event feed waits for writers in flight (`listAfterServerSeq` in backends/sql/feed.ts). */
  feed?: FeedOptions;
}

/** Every option `pgDatabase` takes (a Record, so that a new option that is not listed fails to compile). */
const OPTION_NAMES: Record<keyof PgDatabaseOptions, true> = {
  connectionString: true,
  pool: true,
  max: true,
  notify: true,
  feed: true,
  prepare: true,
  onListenError: true,
};

/**
 * Refuses what pg would otherwise quietly read as "connect to the defaults" (localhost:5432, or the
 * PG* environment variables): no connectionString nor pool (an unset DATABASE_URL), a pool that is
 * really a config, a misspelt key. Any of them could reach another database than the one meant.
 */
function checkOptions(options: PgDatabaseOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('pgDatabase takes an options object: { connectionString } or { pool }');
  }
  const unknown = Object.keys(options).filter((key) => !Object.hasOwn(OPTION_NAMES, key));
  if (unknown.length > 0) {
    throw new ValidationError(
      `pgDatabase has no option ${unknown.map((key) => JSON.stringify(key)).join(', ')}; ` +
        `its options are ${Object.keys(OPTION_NAMES).join(', ')}`,
      `/${unknown[0]}`,
    );
  }
  const { connectionString, pool, max } = options;
  if (pool !== undefined) {
    if (!isPgPool(pool)) {
      throw new ValidationError('pool must be a pg.Pool (an object with query and connect methods)', '/pool');
    }
    if (connectionString !== undefined) {
      throw new ValidationError('pass connectionString or pool, not both: the pool knows where it connects');
    }
    if (max !== undefined) {
      throw new ValidationError(
        'max sizes the pool pgDatabase creates: with your own pool, set max on it',
        '/max',
      );
    }
  } else if (connectionString === undefined) {
    throw new ValidationError(
      'pgDatabase needs connectionString (postgres://user:password@host:port/database) or pool; ' +
        'connectionString is undefined (an unset environment variable, such as DATABASE_URL?)',
      '/connectionString',
    );
  } else if (typeof connectionString !== 'string' || connectionString === '') {
    throw new ValidationError('connectionString must be a postgres:// URL', '/connectionString');
  }
}

/**
 * Opens (and migrates) a PostgreSQL database. One LISTEN connection is opened on the first
 * `subscribe`. Throws `ValidationError` for options it does not know, and without a
 * `connectionString` or a `pool`.
 */
export async function pgDatabase(options: PgDatabaseOptions): Promise<SqlDatabase> {
  checkOptions(options);
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
