/**
 * PGlite driver: PostgreSQL compiled to WASM, in process, one connection. PGlite serialises
 * everything itself: `query` and `transaction` share one mutex, so a transaction holds the whole
 * database until it commits (other queries queue behind it), which is what a single connection means.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { NOTIFY_SQL, type SqlDriver, type SqlQueryable } from '../driver.js';

export interface PgliteDriverOptions {
  /** Close `db` when the driver closes. Default false: whoever created it closes it. */
  closeDb?: boolean;
  /** Runs after the driver closed (and closed `db`, with `closeDb`): e.g. gives back the data directory's lock. */
  onClose?: () => void;
}

/**
 * The PGlites whose transaction the current async context runs in. A query on one of them from
 * outside the transaction's own queryable would wait for that transaction, which waits for the
 * query: it fails instead of hanging.
 */
const inTransaction = new AsyncLocalStorage<ReadonlySet<PGlite>>();

export function pgliteDriver(db: PGlite, options: PgliteDriverOptions = {}): SqlDriver {
  const query = async <R>(text: string, params?: readonly unknown[]): Promise<R[]> => {
    if (inTransaction.getStore()?.has(db)) {
      throw new Error(
        'PGlite runs one transaction at a time: inside transaction(fn), use the backend or queryable fn ' +
          'received, not the database (this query would wait for the transaction forever)',
      );
    }
    return (await db.query<R>(text, params as unknown[] | undefined)).rows;
  };
  return {
    kind: 'pglite',
    query,
    transaction: (fn) => {
      if (inTransaction.getStore()?.has(db)) {
        return Promise.reject(new Error('PGlite cannot nest transactions: use savepoints on the queryable'));
      }
      return db.transaction((tx) => {
        const q: SqlQueryable = {
          query: async <R>(text: string, params?: readonly unknown[]) =>
            (await tx.query<R>(text, params as unknown[] | undefined)).rows,
        };
        return inTransaction.run(new Set([...(inTransaction.getStore() ?? []), db]), () => fn(q));
      });
    },
    async listen(channel, onPayload) {
      const unlisten = await db.listen(channel, onPayload);
      return async () => {
        if (!db.closed) await unlisten();
      };
    },
    async notify(channel, payloads) {
      await query(NOTIFY_SQL, [channel, JSON.stringify(payloads)]);
    },
    async close() {
      try {
        if (options.closeDb && !db.closed) await db.close();
      } finally {
        options.onClose?.();
      }
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
