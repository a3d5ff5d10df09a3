/**
 * Tests of the SQL backend's primitives (CollectionBackend straight, no storage on top), run by
 * pglite.int.test.ts and pg.int.test.ts against their driver.
 */
import { Query } from 'mingo';
import { describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import { EventSyncError } from '../../src/protocol/errors.js';
import type { CollectionBackend, CommittedChange, StoredDocument } from '../../src/storage/backend.js';
import { findInMemory } from '../../src/storage/mongo.js';
import type { Diff, JsonObject } from '../../src/storage/types.js';
import { filterCorpus, filterDocuments } from '../conformance/filter-corpus.js';
import { uniqueCollection } from '../support/databases.js';

export interface SqlPrimitivesTarget {
  name: string;
  /** A database instance; two calls are two instances on the same data (like two server processes). */
  open(options?: { notify?: boolean }): Promise<SqlDatabase>;
}

const diff = (version: number, patch: JsonObject = {}): Diff => ({
  hasChanges: true,
  version,
  jsonPatch: [],
  mergePatch: patch,
  mongoUpdate: { $set: patch },
});

const doc = (id: string, version: number, fields: JsonObject = {}): StoredDocument => ({
  id,
  version,
  data: { _id: id, version, ...fields },
});

/** Collects a collection's changes; `next()` waits for the next one not yet taken. */
async function watch(backend: CollectionBackend) {
  const changes: CommittedChange[] = [];
  let taken = 0;
  const stop = await backend.subscribe((c) => changes.push(c));
  return {
    changes,
    stop,
    async next(timeoutMs = 5000): Promise<CommittedChange> {
      const deadline = Date.now() + timeoutMs;
      while (changes.length <= taken) {
        if (Date.now() > deadline) throw new Error(`no change within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return changes[taken++]!;
    },
    /** Lets in-flight notifications arrive, then returns how many came since the last `next()`. */
    async pending(): Promise<number> {
      await new Promise((r) => setTimeout(r, 100));
      return changes.length - taken;
    },
  };
}

export function sqlPrimitivesSuite(target: SqlPrimitivesTarget): void {
  describe(`${target.name}: SQL backend primitives`, () => {
    const withDb = async (fn: (db: SqlDatabase) => Promise<void>, options?: { notify?: boolean }) => {
      const db = await target.open(options);
      try {
        await fn(db);
      } finally {
        await db.close();
      }
    };

    it('inserts, gets, and never overwrites on insert', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        expect(await c.insert(doc('a', 1, { n: 1 }))).toEqual({
          token: expect.any(String),
          incarnation: expect.stringMatching(/^\d+$/),
        });
        expect(await c.insert(doc('a', 5, { n: 2 }))).toBeUndefined();
        const got = await c.get('a');
        expect(got).toEqual({
          ...doc('a', 1, { n: 1 }),
          token: expect.any(String),
          incarnation: expect.any(String),
        });
        expect(typeof got?.version).toBe('number');
        expect(await c.get('missing')).toBeUndefined();
      }));

    it('keeps collections apart', () =>
      withDb(async (db) => {
        const a = await db.collection(uniqueCollection());
        const b = await db.collection(uniqueCollection());
        await a.insert(doc('x', 1, { in: 'a' }));
        expect(await b.insert(doc('x', 1, { in: 'b' }))).toEqual({
          token: expect.any(String),
          incarnation: expect.any(String),
        });
        expect((await a.get('x'))?.data.in).toBe('a');
        expect((await b.find({})).map((d) => d.in)).toEqual(['b']);
      }));

    it('replaces only at the expected version', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.insert(doc('a', 1, { n: 1 }));
        expect(await c.replace(doc('a', 2, { n: 2 }), 1, diff(2))).toEqual({ token: expect.any(String) });
        expect(await c.replace(doc('a', 3, { n: 3 }), 1, diff(3))).toBeUndefined();
        expect(await c.get('a')).toEqual({
          ...doc('a', 2, { n: 2 }),
          token: expect.any(String),
          incarnation: expect.any(String),
        });
        expect(await c.replace(doc('missing', 2), 1, diff(2))).toBeUndefined();
        expect(await c.get('missing')).toBeUndefined();
      }));

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

    it('replaces a section by its own version and bumps the document version', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.insert(doc('a', 1, { inv: { gold: 1, version: 1 }, other: { x: 1 }, nest: { deep: {} } }));
        const write = (path: string[], expected: number | undefined, section: JsonObject) => ({
          id: 'a',
          path,
          expectedSectionVersion: expected,
          section,
          versionField: 'version',
          diff: (v: number) => diff(v),
        });
        // Expected version matches: replaced, document version 1 → 2 (column and data).
        const r1 = await c.replaceSection(write(['inv'], 1, { gold: 2, version: 2 }));
        expect(r1).toEqual(
          doc('a', 2, { inv: { gold: 2, version: 2 }, other: { x: 1 }, nest: { deep: {} } }),
        );
        // Stale section version: nothing written.
        expect(await c.replaceSection(write(['inv'], 1, { gold: 3, version: 2 }))).toBeUndefined();
        // Another section, absent so far: expected undefined creates it.
        const r2 = await c.replaceSection(write(['bag'], undefined, { items: [], version: 1 }));
        expect(r2?.version).toBe(3);
        expect(r2?.data.bag).toEqual({ items: [], version: 1 });
        // …but only while it is absent.
        expect(await c.replaceSection(write(['bag'], undefined, { items: [1], version: 1 }))).toBeUndefined();
        // A section without a version field is at version 0 (as in the memory backend, and as the
        // storage reads it): not absent.
        expect(await c.replaceSection(write(['other'], undefined, { x: 2, version: 1 }))).toBeUndefined();
        expect(await c.replaceSection(write(['other'], 1, { x: 2, version: 1 }))).toBeUndefined();
        const r3 = await c.replaceSection(write(['other'], 0, { x: 2, version: 1 }));
        expect(r3?.data.other).toEqual({ x: 2, version: 1 });
        // Nested path whose parent exists; and one whose parent doesn't (refused, nothing written).
        const r4 = await c.replaceSection(write(['nest', 'deep', 's'], undefined, { version: 1 }));
        expect(r4?.data.nest).toEqual({ deep: { s: { version: 1 } } });
        expect(await c.replaceSection(write(['nope', 's'], undefined, { version: 1 }))).toBeUndefined();
        // Keys that need quoting in a PostgreSQL array literal.
        const odd = 'we"ird, {key} \\ é';
        const r5 = await c.replaceSection(write([odd], undefined, { version: 1 }));
        expect(r5?.data[odd]).toEqual({ version: 1 });
        const stored = await c.get('a');
        expect(stored?.version).toBe(6);
        expect(stored?.data.version).toBe(6);
        expect(
          await c.replaceSection({ ...write(['inv'], 2, { version: 3 }), id: 'missing' }),
        ).toBeUndefined();
      }));

    it('deletes and returns what it deleted', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.insert(doc('a', 3, { n: 1 }));
        expect(await c.delete('a')).toEqual(doc('a', 3, { n: 1 }));
        expect(await c.delete('a')).toBeUndefined();
        expect(await c.get('a')).toBeUndefined();
      }));

    it('commits a transaction together and rolls it back on throw', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.transaction(async (tx) => {
          await tx.insert(doc('a', 1));
          await tx.insert(doc('b', 1));
          expect((await tx.get('a'))?.version).toBe(1);
        });
        expect((await c.find({})).length).toBe(2);
        const boom = new Error('boom');
        await expect(
          c.transaction(async (tx) => {
            await tx.insert(doc('c', 1));
            await tx.replace(doc('a', 2), 1, diff(2));
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(await c.get('c')).toBeUndefined();
        expect((await c.get('a'))?.version).toBe(1);
      }));

    it('rolls back a nested transaction alone', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        let escaped: CollectionBackend | undefined;
        await c.transaction(async (tx) => {
          escaped = tx;
          await tx.insert(doc('outer', 1));
          await expect(
            tx.transaction(async (inner) => {
              await inner.insert(doc('inner', 1));
              throw new Error('inner fails');
            }),
          ).rejects.toThrow('inner fails');
          await tx.transaction(async (inner) => {
            await inner.insert(doc('inner2', 1));
          });
        });
        expect((await c.find({})).map((d) => d._id).sort()).toEqual(['inner2', 'outer']);
        // A transaction's backend is dead once the transaction ended.
        await expect(escaped!.get('outer')).rejects.toSatisfy((e) => EventSyncError.is(e, 'closed'));
      }));

    it('finds a superset of what mingo matches, for the whole filter corpus', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection('corpus'));
        for (const d of filterDocuments) await c.insert({ id: d._id as string, version: 1, data: d });
        let narrowed = 0;
        for (const { name, filter } of filterCorpus) {
          const query = new Query(filter);
          const expected = filterDocuments.filter((d) => query.test(d)).map((d) => d._id);
          const found = (await c.find(filter)).map((d) => d._id);
          expect(found, name).toEqual(expect.arrayContaining(expected));
          if (found.length < filterDocuments.length) narrowed++;
        }
        // Most filters are selective, and the database did narrow them.
        expect(narrowed).toBeGreaterThan(filterCorpus.length / 2);
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

    it('refuses work once closed', async () => {
      const db = await target.open();
      const c = await db.collection(uniqueCollection());
      await db.close();
      await expect(c.get('a')).rejects.toSatisfy((e) => EventSyncError.is(e, 'closed'));
      await expect(db.collection('x')).rejects.toSatisfy((e) => EventSyncError.is(e, 'closed'));
      await db.close();
    });

    it('migrates once: opening the same database again is harmless', async () => {
      const [a, b] = await Promise.all([target.open(), target.open()]);
      const rows = await a.driver.query<{ id: number }>('SELECT id FROM eventsync_migrations ORDER BY id');
      expect(rows.map((r) => Number(r.id))).toEqual([1, 2, 3, 4, 5]);
      await Promise.all([a.close(), b.close()]);
    });

    describe('change notifications', () => {
      it('announces creates, updates, section updates and deletes, with data and diff', () =>
        withDb(async (db) => {
          const name = uniqueCollection();
          const c = await db.collection(name);
          const w = await watch(c);
          await c.insert(doc('a', 1, { n: 1, s: {} }));
          expect(await w.next()).toEqual({
            collection: name,
            id: 'a',
            operation: 'create',
            version: 1,
            data: doc('a', 1, { n: 1, s: {} }).data,
          });
          await c.replace(doc('a', 2, { n: 2, s: {} }), 1, diff(2, { n: 2 }));
          expect(await w.next()).toEqual({
            collection: name,
            id: 'a',
            operation: 'update',
            version: 2,
            data: doc('a', 2, { n: 2, s: {} }).data,
            diff: diff(2, { n: 2 }),
          });
          await c.replaceSection({
            id: 'a',
            path: ['s'],
            expectedSectionVersion: 0,
            section: { k: 1, version: 1 },
            versionField: 'version',
            diff: (v) => diff(v, { 's.k': 1 }),
          });
          const section = await w.next();
          expect(section).toMatchObject({ operation: 'update', version: 3, diff: diff(3, { 's.k': 1 }) });
          expect(section.data).toEqual(doc('a', 3, { n: 2, s: { k: 1, version: 1 } }).data);
          await c.delete('a');
          expect(await w.next()).toEqual({
            collection: name,
            id: 'a',
            operation: 'delete',
            version: 3,
            data: section.data,
          });
          // Failed writes announce nothing.
          await c.insert(doc('b', 1));
          await w.next();
          await c.insert(doc('b', 1));
          await c.replace(doc('b', 9), 7, diff(9));
          await c.delete('nothing');
          expect(await w.pending()).toBe(0);
          await w.stop();
        }));

      it('reaches other instances, only for their collection, until they stop', async () => {
        const [writer, reader] = [await target.open(), await target.open()];
        try {
          const name = uniqueCollection();
          const w = await watch(await reader.collection(name));
          const wOther = await watch(await reader.collection(uniqueCollection()));
          const c = await writer.collection(name);
          await c.insert(doc('a', 1));
          expect(await w.next()).toMatchObject({
            collection: name,
            id: 'a',
            operation: 'create',
            version: 1,
          });
          expect(await wOther.pending()).toBe(0);
          await w.stop();
          await c.replace(doc('a', 2), 1, diff(2));
          expect(await w.pending()).toBe(0);
          await wOther.stop();
        } finally {
          await Promise.all([writer.close(), reader.close()]);
        }
      });

      it('delivers a transaction’s changes at commit, and none on rollback', () =>
        withDb(async (db) => {
          const c = await db.collection(uniqueCollection());
          const w = await watch(c);
          await c.transaction(async (tx) => {
            await tx.insert(doc('a', 1));
            await tx.replace(doc('a', 2), 1, diff(2));
            expect(await w.pending()).toBe(0);
          });
          expect((await w.next()).version).toBe(1);
          expect((await w.next()).version).toBe(2);
          await c
            .transaction(async (tx) => {
              await tx.insert(doc('b', 1));
              throw new Error('no');
            })
            .catch(() => {});
          expect(await w.pending()).toBe(0);
          await w.stop();
        }));

      it('leaves data, then diff, out of payloads over the NOTIFY limit', () =>
        withDb(async (db) => {
          const c = await db.collection(uniqueCollection());
          const w = await watch(c);
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
