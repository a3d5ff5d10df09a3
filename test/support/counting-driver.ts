/**
 * A database over another one's driver that counts the statements it sends: how the tests check
 * what a feature costs the database (statements per acknowledgement, per feed read). It shares
 * the driver (pool or PGlite) with the database it came from and leaves it open on close.
 */
import { createSqlDatabase, type SqlDatabase } from '../../src/backends/sql/database.js';
import type { SqlDriver, SqlQueryable } from '../../src/backends/sql/driver.js';

export interface CountedDatabase {
  db: SqlDatabase;
  /** Every statement sent so far (text only), transactions' statements included. */
  readonly statements: string[];
  /** Statements sent while `fn` ran. */
  during<R>(fn: () => Promise<R>): Promise<{ result: R; statements: string[] }>;
}

export async function countingDatabase(of: SqlDatabase): Promise<CountedDatabase> {
  const statements: string[] = [];
  const inner = of.driver;
  const counted = (q: SqlQueryable): SqlQueryable => ({
    query: (text, params) => {
      statements.push(text);
      return q.query(text, params);
    },
  });
  const driver: SqlDriver = {
    kind: inner.kind,
    ...counted(inner),
    transaction: (fn) => inner.transaction((q) => fn(counted(q))),
    listen: (channel, onPayload) => inner.listen(channel, onPayload),
    notify: (channel, payloads) => inner.notify(channel, payloads),
    close: async () => {},
  };
  const db = await createSqlDatabase(driver);
  return {
    db,
    statements,
    async during(fn) {
      const start = statements.length;
      const result = await fn();
      return { result, statements: statements.slice(start) };
    },
  };
}
