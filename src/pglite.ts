/**
 * `eventsync/pglite`: the embedded database, PostgreSQL in WASM, in process
 * (`@electric-sql/pglite`, an optional peer dependency, loaded only from here).
 *
 * ```ts
 * const db = await pgliteDatabase({ dataDir: './data' }); // or {} for in memory
 * ```
 */
import type { PGlite } from '@electric-sql/pglite';
import { createSqlDatabase, type SqlDatabase } from './backends/sql/database.js';
import { lockDataDir } from './backends/sql/drivers/data-dir-lock.js';
import { openPglite, pgliteDriver } from './backends/sql/drivers/pglite.js';
import type { FeedOptions } from './backends/sql/feed.js';

export { createSqlDatabase, type SqlDatabase, type SqlDatabaseOptions } from './backends/sql/database.js';
export type { SqlDriver, SqlQueryable } from './backends/sql/driver.js';
export { openPglite, pgliteDriver } from './backends/sql/drivers/pglite.js';
export type { FeedOptions } from './backends/sql/feed.js';

export interface PgliteDatabaseOptions {
  /**
   * Directory of the data (created on first use), used by one process at a time: opening one that
   * another open database holds throws, naming the process. Omitted: in memory, gone on close.
   */
  dataDir?: string;
  /** Use this PGlite instead (not closed by `close()`). */
  db?: PGlite;
  /** NOTIFY on every write so `subscribe`/`watch` work. Default true. */
  notify?: boolean;
  /** How the event feed waits for writers in flight (one connection: it never has to). */
  feed?: FeedOptions;
}

/** Opens (and migrates) a PGlite database. */
export async function pgliteDatabase(options: PgliteDatabaseOptions = {}): Promise<SqlDatabase> {
  // One process at a time on a data directory (see lockDataDir): taken before PGlite touches it.
  const lock =
    options.db === undefined && options.dataDir !== undefined ? lockDataDir(options.dataDir) : undefined;
  let db: PGlite;
  try {
    db = options.db ?? (await openPglite(options.dataDir));
  } catch (error) {
    lock?.release();
    throw error;
  }
  const driver = pgliteDriver(db, {
    closeDb: options.db === undefined,
    ...(lock ? { onClose: lock.release } : {}),
  });
  try {
    return await createSqlDatabase(driver, {
      ...(options.notify === undefined ? {} : { notify: options.notify }),
      ...(options.feed === undefined ? {} : { feed: options.feed }),
    });
  } catch (error) {
    await driver.close().catch(() => {});
    throw error;
  }
}
