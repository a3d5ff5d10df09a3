/**
 * What only the SQL backend's primitives do (CollectionBackend straight, no storage on top): row
 * tokens, reads paged and sorted in SQL, SQL errors mapped to codes, migrations, NOTIFY payloads.
 * Run by pglite.int.test.ts and pg.int.test.ts against their driver; what every backend must do
 * is in test/conformance/collection-backend.suite.ts.
 */
import { describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import { EventSyncError } from '../../src/core/errors.js';
import { findInMemory } from '../../src/storage/mongo.js';
import { diff, doc, watchChanges, withDatabase } from '../conformance/backend-fixtures.js';
import { uniqueCollection } from '../support/databases.js';

export interface SqlPrimitivesTarget {
  name: string;
  /** A database instance; two calls are two instances on the same data (like two server processes). */
  open(options?: { notify?: boolean }): Promise<SqlDatabase>;
}

export function sqlPrimitivesSuite(target: SqlPrimitivesTarget): void {
  describe(`${target.name}: SQL backend primitives`, () => {
    const withDb = (fn: (db: SqlDatabase) => Promise<void>, options?: { notify?: boolean }) =>
      withDatabase(() => target.open(options), fn);

    it('marks each stored state with a token: a write naming a token happens only on that state, even across delete and re-create', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const created = await c.insert(doc('a', 1, { n: 1 }));
        expect((await c.get('a'))?.token).toBe(created?.token);
        const updated = await c.replace(doc('a', 2, { n: 2 }), 1, diff(2), undefined, created?.token);
        expect(updated?.token).toEqual(expect.any(String));
        expect(updated?.token).not.toBe(created?.token);
        // Deleted and re-created up to the same version: the old token no longer matches.
        await c.delete('a');
        await c.insert(doc('a', 1, { n: 10 }));
        await c.replace(doc('a', 2, { n: 20 }), 1, diff(2));
        expect(await c.replace(doc('a', 3, { n: 3 }), 2, diff(3), undefined, updated?.token)).toBeUndefined();
        expect((await c.get('a'))?.data.n).toBe(20);
        // Without a token, the version alone decides.
        expect(await c.replace(doc('a', 3, { n: 3 }), 2, diff(3))).toBeDefined();
      }));

    it('finds over many pages as mingo does: sort, skip, limit, arrays at the sort path, the buffer cap', () =>
      withDb(async (db) => {
        const name = uniqueCollection('pages');
        const c = await db.collection(name);
        // 2,500 documents: more than one page of candidates and of ids; every 7th has an array
        // score (only mingo can place those), every 5th no score, ties on purpose.
        await db.driver.query(
          `INSERT INTO eventsync_documents (collection, id, version, data)
           SELECT $1, 'p' || lpad(i::text, 5, '0'), 1, jsonb_build_object('_id', 'p' || lpad(i::text, 5, '0'),
             'k', i % 3, 's', CASE WHEN i % 5 = 0 THEN NULL WHEN i % 11 = 0 THEN to_jsonb('x' || i) ELSE to_jsonb(i % 97) END,
             'a', CASE WHEN i % 7 = 0 THEN jsonb_build_array(i % 13, 1) ELSE to_jsonb(i % 13) END)
           FROM generate_series(1, 2500) i`,
          [name],
        );
        const all = await c.find({});
        expect(all).toHaveLength(2500);
        const cases: [
          Record<string, unknown>,
          { sort?: Record<string, 1 | -1>; skip?: number; limit?: number },
        ][] = [
          [{ k: { $ne: 1 } }, { sort: { s: -1 }, skip: 30, limit: 50 }],
          [{ k: { $ne: 1 } }, { skip: 1400, limit: 20 }],
          [{ k: { $ne: 1 } }, { sort: { a: 1, _id: -1 }, limit: 40 }],
          [{ k: 2 }, { sort: { a: -1 }, skip: 5, limit: 10 }],
          [{ k: 2 }, { sort: { s: 1, k: -1 }, skip: 700, limit: 10 }],
          [{}, { sort: { s: -1 }, skip: 2490 }],
        ];
        for (const [filter, options] of cases) {
          const expected = findInMemory(all, filter, options).map((d) => d._id);
          const found = (await c.find(filter, options)).map((d) => d._id);
          expect(found, JSON.stringify([filter, options])).toEqual(expected);
        }
      }));

    it('refuses, with too_large, a sort it cannot run in the database that would hold over 10,000 documents', () =>
      withDb(async (db) => {
        const name = uniqueCollection('cap');
        const c = await db.collection(name);
        await db.driver.query(
          `INSERT INTO eventsync_documents (collection, id, version, data)
           SELECT $1, 'c' || i, 1, jsonb_build_object('_id', 'c' || i, 'n', i, 'tags', jsonb_build_array(i))
           FROM generate_series(1, 10050) i`,
          [name],
        );
        // In the database: any skip.
        expect((await c.find({ n: { $gt: 0 } }, { sort: { n: 1 }, skip: 10040, limit: 5 })).length).toBe(5);
        // In process: the heap would hold skip + limit; arrays at the sort path need every match.
        for (const find of [
          c.find({ n: { $ne: 0 } }, { sort: { n: 1 }, skip: 10040, limit: 5 }),
          c.find({ n: { $gt: 0 } }, { sort: { tags: 1 }, limit: 5 }),
        ]) {
          const error = await find.catch((e: unknown) => e);
          expect(EventSyncError.is(error, 'too_large'), String(error)).toBe(true);
        }
        // No sort: nothing is held, any skip.
        expect((await c.find({ n: { $ne: 0 } }, { skip: 10040, limit: 5 })).length).toBe(5);
      }));

    it('maps errors to codes: a NUL character is a validation error', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const error = await c.insert(doc('a', 1, { s: 'x\u0000y' })).catch((e: unknown) => e);
        expect(EventSyncError.is(error, 'validation')).toBe(true);
        expect((error as Error).cause).toBeDefined();
        expect(await c.get('a')).toBeUndefined();
      }));

    it('migrates once: opening the same database again is harmless', async () => {
      const [a, b] = await Promise.all([target.open(), target.open()]);
      const rows = await a.driver.query<{ id: number }>('SELECT id FROM eventsync_migrations ORDER BY id');
      expect(rows.map((r) => Number(r.id))).toEqual([1, 2, 3, 4, 5, 6]);
      await Promise.all([a.close(), b.close()]);
    });

    describe('change notifications', () => {
      it('leaves data, then diff, out of payloads over the NOTIFY limit', () =>
        withDb(async (db) => {
          const c = await db.collection(uniqueCollection());
          const w = await watchChanges(c);
          const big = 'é'.repeat(4000); // 8,000 bytes
          await c.insert(doc('a', 1, { big }));
          const created = await w.next();
          expect(created).toMatchObject({ id: 'a', operation: 'create', version: 1 });
          expect(created.data).toBeUndefined();
          await c.replace(doc('a', 2, { big: `${big}!` }), 1, diff(2, { big: `${big}!` }));
          const updated = await w.next();
          expect(updated.data).toBeUndefined();
          expect(updated.diff).toBeUndefined();
          await c.replace(doc('a', 3, { big }), 2, diff(3, { small: 1 }));
          expect((await w.next()).diff).toEqual(diff(3, { small: 1 }));
          await c.delete('a');
          const deleted = await w.next();
          expect(deleted).toMatchObject({ operation: 'delete', version: 3 });
          expect(deleted.data).toBeUndefined();
          await w.stop();
        }));

      it('can be switched off: writes still work, subscribe says why it cannot', () =>
        withDb(
          async (db) => {
            const c = await db.collection(uniqueCollection());
            await c.insert(doc('a', 1));
            expect(await c.replace(doc('a', 2), 1, diff(2))).toEqual({ token: expect.any(String) });
            expect((await c.delete('a'))?.version).toBe(2);
            await expect(c.subscribe(() => {})).rejects.toThrow(/notify: false/);
          },
          { notify: false },
        ));
    });
  });
}
