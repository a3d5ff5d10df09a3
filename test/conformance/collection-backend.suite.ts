/**
 * The `CollectionBackend` contract (src/core/collection-backend.ts), run unchanged on every backend:
 * the primitives straight, no storage on top. What only SQL has (tokens, migrations, statements,
 * NOTIFY) is in test/backends/sql-primitives.ts.
 */
import { Query } from 'mingo';
import { describe, expect, it } from 'vitest';
import type { CollectionBackend } from '../../src/core/collection-backend.js';
import { EventSyncError } from '../../src/core/errors.js';
import { MutationRecordMoved } from '../../src/core/event-backend.js';
import type { JsonObject } from '../../src/core/json.js';
import { uniqueCollection } from '../support/databases.js';
import {
  type BackendTarget,
  diff,
  doc,
  watchChanges,
  withDatabase,
  withoutToken,
} from './backend-fixtures.js';
import { filterCorpus, filterDocuments } from './filter-corpus.js';

export function collectionBackendSuite(target: BackendTarget): void {
  describe(`${target.name}: collection backend contract`, () => {
    const withDb = (fn: Parameters<typeof withDatabase>[1]) => withDatabase(() => target.open(), fn);

    it('inserts, gets, and never overwrites on insert', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        expect(withoutToken(await c.insert(doc('a', 1, { n: 1 })))).toEqual({
          incarnation: expect.any(String),
        });
        expect(await c.insert(doc('a', 5, { n: 2 }))).toBeUndefined();
        const got = await c.get('a');
        expect(withoutToken(got)).toEqual({ ...doc('a', 1, { n: 1 }), incarnation: expect.any(String) });
        expect(typeof got?.version).toBe('number');
        expect(await c.get('missing')).toBeUndefined();
      }));

    it('keeps collections apart', () =>
      withDb(async (db) => {
        const a = await db.collection(uniqueCollection());
        const b = await db.collection(uniqueCollection());
        await a.insert(doc('x', 1, { in: 'a' }));
        expect(await b.insert(doc('x', 1, { in: 'b' }))).toBeDefined();
        expect((await a.get('x'))?.data.in).toBe('a');
        expect((await b.find({})).map((d) => d.in)).toEqual(['b']);
      }));

    it('replaces only at the expected version', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.insert(doc('a', 1, { n: 1 }));
        expect(withoutToken(await c.replace(doc('a', 2, { n: 2 }), 1, diff(2)))).toEqual({});
        expect(await c.replace(doc('a', 3, { n: 3 }), 1, diff(3))).toBeUndefined();
        expect(withoutToken(await c.get('a'))).toEqual({
          ...doc('a', 2, { n: 2 }),
          incarnation: expect.any(String),
        });
        expect(await c.replace(doc('missing', 2), 1, diff(2))).toBeUndefined();
        expect(await c.get('missing')).toBeUndefined();
      }));

    it('keeps the incarnation through updates, gives another on re-create; writes naming one happen only in it', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const first = (await c.insert(doc('a', 1, { s: {} })))!.incarnation!;
        await c.replace(doc('a', 2, { s: {} }), 1, diff(2));
        await c.replaceSection({
          id: 'a',
          path: ['s'],
          expectedSectionVersion: 0,
          section: { version: 1 },
          versionField: 'version',
          diff: (v) => diff(v),
        });
        expect((await c.get('a'))?.incarnation).toBe(first);
        await c.delete('a');
        const second = (await c.insert(doc('a', 1)))!.incarnation!;
        expect(second).not.toBe(first);
        expect((await c.get('a'))?.incarnation).toBe(second);
        // The same id and version, another incarnation: refused.
        expect(await c.replace({ ...doc('a', 2), incarnation: first }, 1, diff(2))).toBeUndefined();
        expect(await c.delete('a', undefined, { incarnation: first })).toBeUndefined();
        expect(await c.delete('a', undefined, { version: 2 })).toBeUndefined();
        expect(await c.replace({ ...doc('a', 2), incarnation: second }, 1, diff(2))).toBeDefined();
        expect(await c.delete('a', undefined, { version: 2, incarnation: second })).toEqual(doc('a', 2));
      }));

    it('replaces a section by its own version and bumps the document version', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        await c.insert(doc('a', 1, { inv: { gold: 1, version: 1 }, other: { x: 1 }, nest: { deep: {} } }));
        const write = (path: string[], expected: number | undefined, section: Record<string, unknown>) => ({
          id: 'a',
          path,
          expectedSectionVersion: expected,
          section: section as never,
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
        // Another section, absent so far: expected undefined creates it…
        const r2 = await c.replaceSection(write(['bag'], undefined, { items: [], version: 1 }));
        expect(r2?.version).toBe(3);
        expect(r2?.data.bag).toEqual({ items: [], version: 1 });
        // …but only while it is absent.
        expect(await c.replaceSection(write(['bag'], undefined, { items: [1], version: 1 }))).toBeUndefined();
        // A section without a version field is at version 0 (as the storage reads it): not absent.
        expect(await c.replaceSection(write(['other'], undefined, { x: 2, version: 1 }))).toBeUndefined();
        expect(await c.replaceSection(write(['other'], 1, { x: 2, version: 1 }))).toBeUndefined();
        const r3 = await c.replaceSection(write(['other'], 0, { x: 2, version: 1 }));
        expect(r3?.data.other).toEqual({ x: 2, version: 1 });
        // Nested path whose parent exists; and one whose parent doesn't (refused, nothing written).
        const r4 = await c.replaceSection(write(['nest', 'deep', 's'], undefined, { version: 1 }));
        expect(r4?.data.nest).toEqual({ deep: { s: { version: 1 } } });
        expect(await c.replaceSection(write(['nope', 's'], undefined, { version: 1 }))).toBeUndefined();
        // Keys that need quoting (in a PostgreSQL array literal, for one).
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

    it('finds exactly what mingo matches, for the whole filter corpus', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection('corpus'));
        for (const d of filterDocuments) await c.insert({ id: d._id as string, version: 1, data: d });
        for (const { name, filter } of filterCorpus) {
          const query = new Query(filter);
          const expected = filterDocuments.filter((d) => query.test(d)).map((d) => d._id);
          const found = (await c.find(filter)).map((d) => d._id);
          expect([...found].sort(), name).toEqual([...expected].sort());
        }
      }));

    transactionTests(withDb);
    mutationRecordTests(target, withDb);
    notificationTests(target, withDb);

    it('refuses work once closed, with code closed', async () => {
      const db = await target.open();
      const c = await db.collection(uniqueCollection());
      await db.close();
      const closed = (e: unknown) => EventSyncError.is(e, 'closed');
      await expect(c.get('a')).rejects.toSatisfy(closed);
      await expect(c.find({})).rejects.toSatisfy(closed);
      await expect(c.insert(doc('a', 1))).rejects.toSatisfy(closed);
      await expect(c.transaction(async () => {})).rejects.toSatisfy(closed);
      await expect(db.collection('x')).rejects.toSatisfy(closed);
      await db.close();
    });
  });
}

type WithDb = (fn: Parameters<typeof withDatabase>[1]) => Promise<void>;

function transactionTests(withDb: WithDb): void {
  it('commits a transaction together and rolls it back on throw', () =>
    withDb(async (db) => {
      const c = await db.collection(uniqueCollection());
      await c.transaction(async (tx) => {
        await tx.insert(doc('a', 1));
        await tx.insert(doc('b', 1));
        expect((await tx.get('a'))?.version).toBe(1);
        expect((await tx.find({})).length).toBe(2);
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

  it('rolls back a nested transaction alone (a savepoint), and refuses a transaction used after it ended', () =>
    withDb(async (db) => {
      const c = await db.collection(uniqueCollection());
      await c.insert(doc('kept', 1));
      let escaped: CollectionBackend | undefined;
      await c.transaction(async (tx) => {
        escaped = tx;
        await tx.insert(doc('outer', 1));
        await expect(
          tx.transaction(async (inner) => {
            await inner.insert(doc('inner', 1));
            await inner.replace(doc('outer', 2), 1, diff(2));
            await inner.delete('kept');
            throw new Error('inner fails');
          }),
        ).rejects.toThrow('inner fails');
        expect((await tx.get('outer'))?.version).toBe(1);
        expect(await tx.get('kept')).toBeDefined();
        await tx.transaction(async (inner) => {
          await inner.insert(doc('inner2', 1));
        });
      });
      expect((await c.find({})).map((d) => d._id).sort()).toEqual(['inner2', 'kept', 'outer']);
      // A transaction's backend is dead once the transaction ended.
      const closed = (e: unknown) => EventSyncError.is(e, 'closed');
      await expect(escaped!.get('outer')).rejects.toSatisfy(closed);
      await expect(escaped!.insert(doc('late', 1))).rejects.toSatisfy(closed);
      await expect(escaped!.transaction(async () => {})).rejects.toSatisfy(closed);
      expect(await c.get('late')).toBeUndefined();
    }));
}

const record = (clientId: string, lastMid: number, outcome: JsonObject = { mid: lastMid }) => ({
  clientId,
  lastMid,
  outcome,
  updatedAt: 1_700_000_000_000 + lastMid,
});

/** `CollectionBackend.lockMutationRecord`/`putMutationRecord` and `EventBackend.mutationRecord`. */
function mutationRecordTests(target: BackendTarget, withDb: WithDb): void {
  describe('mutation records', () => {
    it('are kept on their own only while at the mid before, in one step', () =>
      withDb(async (db) => {
        const events = await db.events();
        const client = uniqueCollection('client');
        expect(await events.keepMutationRecord(record(client, 2))).toBe(false);
        expect(await events.mutationRecord(client)).toBeUndefined();
        expect(await events.keepMutationRecord(record(client, 1))).toBe(true);
        expect(await events.keepMutationRecord(record(client, 1))).toBe(false);
        expect(await events.keepMutationRecord(record(client, 3))).toBe(false);
        const outcome = { type: 'mutation_error', mid: 2, result: { n: [1] } };
        expect(await events.keepMutationRecord(record(client, 2, outcome))).toBe(true);
        expect(await events.mutationRecord(client)).toEqual(record(client, 2, outcome));
        await events.unregisterClient(client);
        expect(await events.mutationRecord(client)).toBeUndefined();
        expect(await events.keepMutationRecord(record(client, 3))).toBe(false);
      }));

    it('commit or roll back with a transaction’s writes and events, a nested one’s alone', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const events = await db.events();
        const client = uniqueCollection('client');
        const keeping = (mid: number) => ({
          clientId: client,
          mutation: { clientId: client, mid, outcome: () => ({ mid }), updatedAt: 1 },
        });
        await expect(
          c.transaction(async (tx) => {
            await tx.insert(doc('a', 1), keeping(1));
            throw new Error('roll back');
          }),
        ).rejects.toThrow('roll back');
        expect(await events.mutationRecord(client)).toBeUndefined();
        expect(await c.get('a')).toBeUndefined();
        expect(await events.head(c.collection, 'a')).toBeUndefined();
        await c.transaction(async (tx) => {
          await tx.insert(doc('a', 1), keeping(1));
          await tx
            .transaction(async (inner) => {
              await inner.replace(doc('a', 2), 1, diff(2), keeping(2));
              throw new Error('inner');
            })
            .catch(() => {});
        });
        expect(await events.mutationRecord(client)).toMatchObject({
          lastMid: 1,
          outcome: { mid: 1, seq: 1 },
        });
        expect((await c.get('a'))?.version).toBe(1);
      }));

    it('prunes the records of a prefix written before a time, and no other', () =>
      withDb(async (db) => {
        const events = await db.events();
        const prefix = `${uniqueCollection('rest')}:`;
        const old = { ...record(`${prefix}old`, 1), updatedAt: 1000 };
        const fresh = { ...record(`${prefix}fresh`, 1), updatedAt: 5000 };
        const other = { ...record(`${uniqueCollection('other')}`, 1), updatedAt: 1000 };
        for (const r of [old, fresh, other]) expect(await events.keepMutationRecord(r)).toBe(true);
        expect(await events.pruneMutationRecords(prefix, 2000)).toBe(1);
        expect(await events.mutationRecord(old.clientId)).toBeUndefined();
        expect(await events.mutationRecord(fresh.clientId)).toEqual(fresh);
        expect(await events.mutationRecord(other.clientId)).toEqual(other);
      }));

    it('keeps a mutation’s record with its write and event, only while the record is at mid - 1', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const events = await db.events();
        const client = uniqueCollection('client');
        const keeping = (mid: number, result?: JsonObject) => ({
          clientId: client,
          mutation: {
            clientId: client,
            mid,
            outcome: () => ({ type: 'mutated', mid, ...(result ? { result } : {}) }),
            updatedAt: 1_700_000_000_000 + mid,
          },
        });
        const moved = (e: unknown) => e instanceof MutationRecordMoved && e.clientId === client;
        const stored = async () => [
          (await c.get('a'))?.version,
          (await events.head(c.collection, 'a'))?.lastSeq,
        ];

        // A first mid finds no record; each write adds its event's seq and version to the outcome.
        expect((await c.insert(doc('a', 1), keeping(1, { n: [1] })))?.event?.seq).toBe(1);
        expect(await events.mutationRecord(client)).toEqual({
          ...record(client, 1, { type: 'mutated', mid: 1, result: { n: [1] }, seq: 1, version: 1 }),
        });
        await c.replace(doc('a', 2), 1, diff(2), keeping(2));
        expect((await events.mutationRecord(client))?.outcome).toEqual({
          type: 'mutated',
          mid: 2,
          seq: 2,
          version: 2,
        });
        // Not at mid - 1 (a mid again, one skipped, a first one): nothing of the write happens.
        await expect(c.replace(doc('a', 3), 2, diff(3), keeping(2))).rejects.toSatisfy(moved);
        await expect(c.replace(doc('a', 3), 2, diff(3), keeping(4))).rejects.toSatisfy(moved);
        await expect(c.insert(doc('b', 1), keeping(1))).rejects.toSatisfy(moved);
        expect(await stored()).toEqual([2, 2]);
        expect(await c.get('b')).toBeUndefined();
        expect((await events.mutationRecord(client))?.lastMid).toBe(2);
        // A write whose own condition fails writes nothing and keeps nothing.
        expect(await c.replace(doc('a', 3), 1, diff(3), keeping(3))).toBeUndefined();
        expect((await events.mutationRecord(client))?.lastMid).toBe(2);
        // A section update and a delete keep it too (the delete's version: the deleted document's).
        const section = { id: 'a', path: ['s'], expectedSectionVersion: undefined, section: { version: 1 } };
        await c.replaceSection(
          { ...section, versionField: 'version', diff: (v: number) => diff(v) },
          keeping(3),
        );
        expect((await events.mutationRecord(client))?.outcome).toEqual({
          type: 'mutated',
          mid: 3,
          seq: 3,
          version: 3,
        });
        await c.delete('a', keeping(4));
        expect((await events.mutationRecord(client))?.outcome).toEqual({
          type: 'mutated',
          mid: 4,
          seq: 4,
          version: 3,
        });
      }));

    it('makes a write or keep of a record wait for a transaction whose write keeps it, then check it', async () => {
      const [one, two] = await target.openPeers();
      try {
        const client = uniqueCollection('client');
        const [a, b] = await Promise.all([
          one.collection(uniqueCollection()),
          two.collection(uniqueCollection()),
        ]);
        const events = await two.events();
        const mutation = { clientId: client, mid: 1, outcome: () => ({ by: 'tx' }), updatedAt: 1 };
        // Started from outside the transaction's context (PGlite refuses a query from inside it).
        let start!: () => void;
        const started = new Promise<void>((resolve) => {
          start = resolve;
        });
        const write = started.then(() => b.insert(doc('x', 1), { clientId: client, mutation }));
        const kept = started.then(() => events.keepMutationRecord(record(client, 1)));
        await a.transaction(async (tx) => {
          await tx.insert(doc('y', 1), { clientId: client, mutation });
          start();
          // Round trips, so that the others reach the record while this transaction holds it.
          for (let i = 0; i < 5; i++) await tx.get('anything');
        });
        await expect(write).rejects.toBeInstanceOf(MutationRecordMoved);
        expect(await kept).toBe(false);
        expect(await b.get('x')).toBeUndefined();
        expect(await events.mutationRecord(client)).toMatchObject({ lastMid: 1, outcome: { by: 'tx' } });
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    });

    it('keeps each mid once when instances race for it', async () => {
      const [one, two] = await target.openPeers();
      try {
        const client = uniqueCollection('client');
        const logs = await Promise.all([one.events(), two.events()]);
        // Each reads lastMid and keeps lastMid + 1, again when refused: an unconditional write
        // would let two of them keep the same mid, and the count would fall short.
        const increments = Array.from({ length: 12 }, async (_, i) => {
          const log = logs[i % 2]!;
          for (;;) {
            const lastMid = (await log.mutationRecord(client))?.lastMid ?? 0;
            if (await log.keepMutationRecord(record(client, lastMid + 1))) return;
          }
        });
        await Promise.all(increments);
        expect((await logs[0].mutationRecord(client))?.lastMid).toBe(12);
      } finally {
        await Promise.all([one.close(), two.close()]);
      }
    });
  });
}

function notificationTests(target: BackendTarget, withDb: WithDb): void {
  describe('change notifications', () => {
    it('announces creates, updates, section updates and deletes, with data and diff', () =>
      withDb(async (db) => {
        const name = uniqueCollection();
        const c = await db.collection(name);
        const w = await watchChanges(c);
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
      const [writer, reader] = await target.openPeers();
      try {
        const name = uniqueCollection();
        const w = await watchChanges(await reader.collection(name));
        const wOther = await watchChanges(await reader.collection(uniqueCollection()));
        const c = await writer.collection(name);
        await c.insert(doc('a', 1));
        expect(await w.next()).toMatchObject({ collection: name, id: 'a', operation: 'create', version: 1 });
        expect(await wOther.pending()).toBe(0);
        await w.stop();
        await c.replace(doc('a', 2), 1, diff(2));
        expect(await w.pending()).toBe(0);
        await wOther.stop();
      } finally {
        await Promise.all([writer.close(), reader.close()]);
      }
    });

    it('delivers a transaction’s changes at commit, none on rollback, none of a nested one that threw', () =>
      withDb(async (db) => {
        const c = await db.collection(uniqueCollection());
        const w = await watchChanges(c);
        await c.transaction(async (tx) => {
          await tx.insert(doc('a', 1));
          await tx.replace(doc('a', 2), 1, diff(2));
          await tx
            .transaction(async (inner) => {
              await inner.replace(doc('a', 3), 2, diff(3));
              throw new Error('no');
            })
            .catch(() => {});
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
  });
}
