/**
 * `SyncEngine.create` refuses `authenticate` without `authorize` (issue 15, item 5). On memory
 * only: these are checks of the engine's options, and no test here reads or writes the database.
 */
import { describe, expect, it } from 'vitest';
import { EventSyncError } from '../../src/core/errors.js';
import { memoryDatabase } from '../../src/index.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { Authenticate } from '../../src/sync/types.js';

const byToken: Authenticate = ({ token }) => (token ? { id: token } : undefined);

describe('SyncEngine.create: deny by default', () => {
  it('refuses authenticate without authorize, saying what to pass', async () => {
    const db = memoryDatabase();
    const refused = SyncEngine.create({ db, authenticate: byToken });
    await expect(refused).rejects.toSatisfy((e) => EventSyncError.is(e, 'validation'));
    await expect(refused).rejects.toThrow(/pass authorize, or authorize: 'allow-all'/);
    await db.close();
  });

  it("refuses an authorize that is neither a function nor 'allow-all'", async () => {
    const db = memoryDatabase();
    const typo = { db, authenticate: byToken, authorize: 'allow_all' } as never;
    await expect(SyncEngine.create(typo)).rejects.toThrow(/must be a function or 'allow-all'/);
    await db.close();
  });

  it("lets everyone do everything with authorize: 'allow-all', or without authenticate (all anonymous)", async () => {
    for (const options of [{ authenticate: byToken, authorize: 'allow-all' as const }, {}]) {
      const engine = await SyncEngine.create({ db: memoryDatabase(), ...options });
      expect(await engine.authorize({ id: 'bob' }, 'write', 'games', 'alice-1')).toBe(true);
      await engine.close();
    }
  });

  it('runs the authorize given', async () => {
    const engine = await SyncEngine.create({
      db: memoryDatabase(),
      authenticate: byToken,
      authorize: (principal, _action, _collection, documentId) =>
        documentId?.startsWith(principal.id) === true,
    });
    expect(await engine.authorize({ id: 'alice' }, 'read', 'games', 'alice-1')).toBe(true);
    expect(await engine.authorize({ id: 'bob' }, 'read', 'games', 'alice-1')).toBe(false);
    await engine.close();
  });
});
