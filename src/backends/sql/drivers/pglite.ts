/**
 * PGlite driver: PostgreSQL compiled to WASM, in process, one connection. PGlite serialises
 * everything itself: `query` and `transaction` share one mutex, so a transaction holds the whole
 * database until it commits (other queries queue behind it), which is what a single connection means.
 */
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import type { SqlDriver, SqlQueryable } from '../driver.js';

export interface PgliteDriverOptions {
  /** Close `db` when the driver closes. Default false: whoever created it closes it. */
  closeDb?: boolean;
}

export function pgliteDriver(db: PGlite, options: PgliteDriverOptions = {}): SqlDriver {
  const query = async <R>(text: string, params?: readonly unknown[]): Promise<R[]> =>
    (await db.query<R>(text, params as unknown[] | undefined)).rows;
  return {
    kind: 'pglite',
    query,
    transaction: (fn) =>
      db.transaction((tx) => {
        const q: SqlQueryable = {
          query: async <R>(text: string, params?: readonly unknown[]) =>
            (await tx.query<R>(text, params as unknown[] | undefined)).rows,
        };
        return fn(q);
      }),
    async listen(channel, onPayload) {
      const unlisten = await db.listen(channel, onPayload);
      return async () => {
        if (!db.closed) await unlisten();
      };
    },
    async close() {
      if (options.closeDb && !db.closed) await db.close();
    },
  };
}

/** Opens a PGlite: in memory when `dataDir` is omitted, else in that directory (created on first use). */
export async function openPglite(
  dataDir?: string,
  options: Omit<PGliteOptions, 'dataDir'> = {},
): Promise<PGlite> {
  return PGlite.create({ ...options, ...(dataDir === undefined ? {} : { dataDir }) });
}
