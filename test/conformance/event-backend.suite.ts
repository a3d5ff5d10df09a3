/**
 * The `EventBackend` contract (src/events/backend.ts) and the event-recording side of the
 * `CollectionBackend` writes, run unchanged on every backend: the primitives straight, no
 * EventSyncStorage on top (that is events.suite.ts). What only SQL has (notifications off,
 * statement counts) is in test/backends/sql-events.ts.
 */
import { describe, expect, it } from 'vitest';
import type { CollectionBackend, CommittedChange, Database } from '../../src/core/collection-backend.js';
import { creationDiff } from '../../src/core/drafts.js';
import type { EventBackend, EventRecord } from '../../src/core/event-backend.js';
import type { SyncEvent } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';
import { memoryDatabase } from '../../src/index.js';
import { uniqueCollection } from '../support/databases.js';
import { INJECTED_FAULT } from '../support/event-faults.js';
import {
  type BackendTarget,
  diff,
  doc,
  draft,
  sectionWrite,
  until,
  withDatabase,
  withoutToken,
} from './backend-fixtures.js';

/** A new collection of `db`, the event log, and the collection's name. */
export async function openEvents(db: Database): Promise<[CollectionBackend, EventBackend, string]> {
  const name = uniqueCollection('ev');
  return [await db.collection(name), await db.events(), name];
}

const seqs = (list: SyncEvent[]) => list.map((e) => e.seq);

export function eventBackendSuite(target: BackendTarget): void {
  describe(`${target.name}: event backend contract`, () => {
    const withDb = (fn: (db: Database) => Promise<void>) => withDatabase(() => target.open(), fn);

    it('is one event log per database, which its collections share', () =>
      withDb(async (db) => {
        const [c, events] = await openEvents(db);
        expect(await db.events()).toBe(events);
        expect(c.sharesDatabaseWith(events)).toBe(true);
        await withDatabase(
          () => target.open(),
          async (other) => expect(c.sharesDatabaseWith(await other.events())).toBe(false),
        );
        expect(c.sharesDatabaseWith(await memoryDatabase().events())).toBe(false);
      }));

    it('appends events on their own: gapless seq, per-actor clocks, numbers not strings', () =>
      withDb(async (db) => {
        const [, events, name] = await openEvents(db);
        const a1 = await events.append(draft(name, 'a', 'x', 1));
        const a2 = await events.append({ ...draft(name, 'a', 'y', 2), metadata: { m: [1, 'é'] } });
        const b1 = await events.append(draft(name, 'b', 'x'));
        const a3 = await events.append(draft(name, 'a', 'x', 3));
        expect([a1, a2, a3].map((e) => [e.seq, e.vectorClock])).toEqual([
          [1, { x: 1 }],
          [2, { x: 1, y: 1 }],
          [3, { x: 2, y: 1 }],
        ]);
        expect(b1.seq).toBe(1);
        expect(a1.serverSeq).toBeLessThan(a2.serverSeq);
        expect(a2.serverSeq).toBeLessThan(b1.serverSeq);
        expect(b1.serverSeq).toBeLessThan(a3.serverSeq);
        const listed = await events.list(name, 'a');
        // What append returned is what is stored, field for field.
        expect(listed).toStrictEqual([a1, a2, a3]);
        for (const e of listed) {
          for (const field of ['seq', 'serverSeq', 'timestamp', 'version'] as const) {
            expect(typeof e[field]).toBe('number');
          }
          expect(e.id).toMatch(/^[0-9a-f]{24}$/);
        }
        expect(a2).toMatchObject({
          operation: 'update',
          version: 2,
          clientId: 'y',
          metadata: { m: [1, 'é'] },
        });
        expect(await events.head(name, 'a')).toEqual({ lastSeq: 3, vectorClock: { x: 2, y: 1 } });
        expect(await events.head(name, 'none')).toBeUndefined();
      }));

    it('lists by range, by vector clock (unknown actors count 0) and after a version', () =>
      withDb(async (db) => {
        const [, events, name] = await openEvents(db);
        for (const [actor, version] of [
          ['a', 1],
          ['b', 2],
          ['a', 3],
          ['c', 4],
          ['b', 5],
        ] as const)
          await events.append(draft(name, 'd', actor, version));
        expect(seqs(await events.list(name, 'd', { afterSeq: 1, toSeq: 4 }))).toEqual([2, 3, 4]);
        expect(seqs(await events.list(name, 'd', { afterSeq: 1, limit: 2 }))).toEqual([2, 3]);
        expect(seqs(await events.list(name, 'd', { toSeq: 2 }))).toEqual([1, 2]);
        expect(seqs(await events.list(name, 'nothing'))).toEqual([]);
        expect(seqs(await events.listUnseen(name, 'd', {}))).toEqual([1, 2, 3, 4, 5]);
        expect(seqs(await events.listUnseen(name, 'd', { a: 1, b: 1, zz: 7 }))).toEqual([3, 4, 5]);
        expect(seqs(await events.listUnseen(name, 'd', { a: 2, b: 2, c: 1 }))).toEqual([]);
        expect(seqs(await events.listUnseen(name, 'd', { a: 2, b: 2 }))).toEqual([4]);
        // Actor names that need quoting in SQL or JSON.
        const odd = `it's "odd" \\ é`;
        await events.append(draft(name, 'q', odd, 1));
        expect(seqs(await events.listUnseen(name, 'q', { [odd]: 1 }))).toEqual([]);
        expect(seqs(await events.listUnseen(name, 'q', { [`${odd} `]: 1 }))).toEqual([1]);
        expect(seqs(await events.listAfterVersion(name, 'd', 3))).toEqual([4, 5]);
        expect(seqs(await events.listAfterVersion(name, 'd', 0))).toEqual([1, 2, 3, 4, 5]);
      }));

    recordingTests(target, withDb);
    feedTests(withDb);
    storedStateTests(withDb);

    it('refuses work once closed, with code closed', async () => {
      const db = await target.open();
      const events = await db.events();
      await db.close();
      await expect(events.list('c', 'd')).rejects.toMatchObject({ code: 'closed' });
      await expect(events.append(draft('c', 'd', 'x'))).rejects.toMatchObject({ code: 'closed' });
      await expect(events.latestServerSeq()).rejects.toMatchObject({ code: 'closed' });
      await expect(db.events()).rejects.toMatchObject({ code: 'closed' });
    });
  });
}

type WithDb = (fn: (db: Database) => Promise<void>) => Promise<void>;

/** The writes of a `CollectionBackend` given an `EventRecord`: the event commits with the write, or neither. */
function recordingTests(target: BackendTarget, withDb: WithDb): void {
  it('records each write with it, as the event drafts say', () =>
    withDb(async (db) => {
      const [c, events, name] = await openEvents(db);
      const alice: EventRecord = { clientId: 'alice', metadata: { via: 'test' } };
      const created = await c.insert(doc('a', 1, { n: 1, s: { version: 1, k: 0 } }), alice);
      expect(created?.event).toMatchObject({
        collection: name,
        documentId: 'a',
        seq: 1,
        operation: 'create',
        version: 1,
        clientId: 'alice',
        vectorClock: { alice: 1 },
        metadata: { via: 'test' },
        diff: creationDiff(doc('a', 1, { n: 1, s: { version: 1, k: 0 } }).data, 1),
      });
      // An insert that did not happen records nothing.
      expect(await c.insert(doc('a', 1), alice)).toBeUndefined();
      const replaced = await c.replace(doc('a', 2, { n: 2, s: { version: 1, k: 0 } }), 1, diff(2, { n: 2 }), {
        clientId: 'bob',
      });
      expect(replaced?.event).toMatchObject({
        seq: 2,
        operation: 'update',
        version: 2,
        clientId: 'bob',
        vectorClock: { alice: 1, bob: 1 },
        diff: diff(2, { n: 2 }),
      });
      expect(replaced?.event?.metadata).toBeUndefined();
      expect(await c.replace(doc('a', 3), 1, diff(3), { clientId: 'bob' })).toBeUndefined();
      const section = await c.replaceSection(sectionWrite('a', 1, { version: 2, k: 1 }), alice);
      expect(section).toMatchObject({ version: 3, data: { s: { version: 2, k: 1 }, version: 3 } });
      expect(section?.event).toMatchObject({
        seq: 3,
        operation: 'update_section',
        version: 3,
        vectorClock: { alice: 2, bob: 1 },
        diff: diff(3, { s: { version: 2, k: 1 } }),
        metadata: { via: 'test', section: 's' },
      });
      expect(await c.replaceSection(sectionWrite('a', 1, { version: 2 }), alice)).toBeUndefined();
      const before = (await c.get('a'))!.data;
      const deleted = await c.delete('a', { clientId: 'bob', metadata: { why: 'done' } });
      expect(deleted).toMatchObject({ id: 'a', version: 3, data: before });
      expect(deleted?.event).toMatchObject({
        seq: 4,
        operation: 'delete',
        version: 3,
        vectorClock: { alice: 2, bob: 2 },
        metadata: { why: 'done', deletedDocument: before },
      });
      expect(deleted?.event?.diff).toBeUndefined();
      expect(await c.delete('a', { clientId: 'bob' })).toBeUndefined();
      // Re-created: the stream continues.
      const again = await c.insert(doc('a', 1), { clientId: 'carol' });
      expect(again?.event).toMatchObject({ seq: 5, vectorClock: { alice: 2, bob: 2, carol: 1 } });
      // What each write returned is what is stored.
      const stored = await events.list(name, 'a');
      expect(stored).toStrictEqual(
        [created, replaced, section, deleted, again].map((w) => JSON.parse(JSON.stringify(w!.event))),
      );
      expect(await events.head(name, 'a')).toEqual({
        lastSeq: 5,
        vectorClock: { alice: 2, bob: 2, carol: 1 },
      });
      // Writes without a record record nothing.
      expect(withoutToken(await c.replace(doc('a', 2), 1, diff(2)))).toEqual({});
      expect((await events.head(name, 'a'))?.lastSeq).toBe(5);
    }));

  it('commits a transaction’s events with its writes, and takes no seq when it rolls back', () =>
    withDb(async (db) => {
      const [c, events, name] = await openEvents(db);
      const r: EventRecord = { clientId: 't' };
      await c.insert(doc('a', 1, { s: {} }), r);
      await c.transaction(async (tx) => {
        const w = await tx.replace(doc('a', 2, { s: {} }), 1, diff(2), r);
        expect(w?.event?.seq).toBe(2);
        expect((await tx.replaceSection(sectionWrite('a', 0, { version: 1 }), r))?.event?.seq).toBe(3);
        await tx.transaction(async (inner) => {
          expect((await inner.insert(doc('b', 1), r))?.event?.seq).toBe(1);
        });
      });
      expect(seqs(await events.list(name, 'a'))).toEqual([1, 2, 3]);
      expect(seqs(await events.list(name, 'b'))).toEqual([1]);
      await expect(
        c.transaction(async (tx) => {
          await tx.replace(doc('a', 4, { s: { version: 1 } }), 3, diff(4), r);
          await tx.delete('b', r);
          await tx.insert(doc('c', 1), r);
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      expect(await events.head(name, 'a')).toEqual({ lastSeq: 3, vectorClock: { t: 3 } });
      expect(await events.head(name, 'c')).toBeUndefined();
      expect((await events.list(name, 'b')).length).toBe(1);
      expect((await c.replace(doc('a', 4, { s: { version: 1 } }), 3, diff(4), r))?.event?.seq).toBe(4);
      // A nested transaction that fails gives its seqs back, the outer one keeps its own.
      await c.transaction(async (tx) => {
        await tx.replace(doc('a', 5), 4, diff(5), r);
        await tx
          .transaction(async (inner) => {
            await inner.replace(doc('a', 6), 5, diff(6), r);
            throw new Error('inner');
          })
          .catch(() => {});
        await tx.replace(doc('a', 6), 5, diff(6), { clientId: 'u' });
      });
      expect((await events.list(name, 'a')).map((e) => [e.seq, e.version, e.clientId])).toEqual([
        [1, 1, 't'],
        [2, 2, 't'],
        [3, 3, 't'],
        [4, 4, 't'],
        [5, 5, 't'],
        [6, 6, 'u'],
      ]);
      expect(await events.head(name, 'a')).toEqual({ lastSeq: 6, vectorClock: { t: 5, u: 1 } });
    }));

  it('I1: when the event insert fails, the write throws and changes nothing (each write kind, and a transaction)', () =>
    withDb(async (db) => {
      const [c, events, name] = await openEvents(db);
      const r: EventRecord = { clientId: 'f' };
      await c.insert(doc('a', 1, { n: 1, s: { version: 1 } }), r);
      const before = await c.get('a');
      const restore = await target.injectEventFault(db);
      try {
        const fails = async (write: Promise<unknown>) => {
          const error = await write.then(
            () => undefined,
            (e: unknown) => e,
          );
          expect((error as Error | undefined)?.message).toContain(INJECTED_FAULT);
        };
        await fails(c.insert(doc('b', 1), r));
        await fails(c.replace(doc('a', 2, { n: 2, s: { version: 1 } }), 1, diff(2), r));
        await fails(c.replaceSection(sectionWrite('a', 1, { version: 2 }), r));
        await fails(c.delete('a', r));
        await fails(events.append(draft(name, 'a', 'f')));
        await fails(c.transaction((tx) => tx.replace(doc('a', 2), 1, diff(2), r)));
      } finally {
        await restore();
      }
      expect(await c.get('a')).toEqual(before);
      expect(await c.get('b')).toBeUndefined();
      expect(await events.head(name, 'a')).toEqual({ lastSeq: 1, vectorClock: { f: 1 } });
      expect(await events.head(name, 'b')).toBeUndefined();
      expect((await c.replace(doc('a', 2), 1, diff(2), r))?.event).toMatchObject({
        seq: 2,
        vectorClock: { f: 2 },
      });
    }));

  it('announces seq and serverSeq with each recorded change, and wakes commit watchers', () =>
    withDb(async (db) => {
      const [c, events, name] = await openEvents(db);
      const changes: CommittedChange[] = [];
      let commits = 0;
      const stopChanges = await c.subscribe((change) => changes.push(change));
      const stopCommits = await events.watchCommits(() => commits++);
      const r: EventRecord = { clientId: 'n' };
      const w1 = await c.insert(doc('a', 1, { s: {} }), r);
      const w2 = await c.replace(doc('a', 2, { s: {} }), 1, diff(2), r);
      const w3 = await c.replaceSection(sectionWrite('a', 0, { version: 1 }), r);
      const w4 = await c.delete('a', r);
      await c.insert(doc('b', 1)); // no event: a change, but no commit wake-up
      const appended = await events.append(draft(name, 'z', 'n')); // an event, but no change
      await until(() => changes.length === 5 && commits === 5);
      expect(changes.map((ch) => [ch.id, ch.operation, ch.version, ch.seq, ch.serverSeq])).toEqual([
        ['a', 'create', 1, 1, w1!.event!.serverSeq],
        ['a', 'update', 2, 2, w2!.event!.serverSeq],
        ['a', 'update', 3, 3, w3!.event!.serverSeq],
        ['a', 'delete', 3, 4, w4!.event!.serverSeq],
        ['b', 'create', 1, undefined, undefined],
      ]);
      expect(changes[3]!.data).toEqual(w4!.data);
      expect(appended.serverSeq).toBeGreaterThan(w4!.event!.serverSeq);
      // Other collections' events wake commit watchers too (the feed may span collections).
      const other = await db.collection(uniqueCollection('ev'));
      await other.insert(doc('x', 1), r);
      await until(() => commits === 6);
      await stopCommits();
      await stopChanges();
      await c.insert(doc('c', 1), r);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(commits).toBe(6);
      expect(changes.length).toBe(5);
    }));
}

/** The feed across documents and collections, and what compaction does to it. */
function feedTests(withDb: WithDb): void {
  it('feeds events in serverSeq order, per collection or all, in pages; latestServerSeq is settled', () =>
    withDb(async (db) => {
      const [c1, events, n1] = await openEvents(db);
      const [c2, , n2] = await openEvents(db);
      const start = (await events.append(draft(n1, 'start', 'f'))).serverSeq;
      const r: EventRecord = { clientId: 'f' };
      await c1.insert(doc('a', 1), r);
      await c2.insert(doc('b', 1), r);
      await c1.replace(doc('a', 2), 1, diff(2), r);
      await events.append(draft(n2, 'b', 'g', 2));
      await c1.delete('a', r);
      const all = await events.listAfterServerSeq(undefined, start, 1000);
      const ours = all.filter((e) => e.collection === n1 || e.collection === n2);
      expect(ours.map((e) => `${e.collection === n1 ? 1 : 2}/${e.documentId}/${e.seq}`)).toEqual([
        '1/a/1',
        '2/b/1',
        '1/a/2',
        '2/b/2',
        '1/a/3',
      ]);
      const serverSeqs = all.map((e) => e.serverSeq);
      expect(serverSeqs).toEqual([...serverSeqs].sort((x, y) => x - y));
      expect(serverSeqs[0]).toBeGreaterThan(start);
      const only1 = await events.listAfterServerSeq(n1, start, 1000);
      expect(seqs(only1)).toEqual([1, 2, 3]);
      expect(only1).toStrictEqual(ours.filter((e) => e.collection === n1));
      // Paging: limit, then continue after the last one seen.
      const page1 = await events.listAfterServerSeq(n1, 0, 2);
      expect(page1.map((e) => e.documentId)).toEqual(['start', 'a']);
      const page2 = await events.listAfterServerSeq(n1, page1[1]!.serverSeq, 2);
      expect(seqs(page2)).toEqual([2, 3]);
      expect(await events.listAfterServerSeq(n1, page2[1]!.serverSeq, 2)).toEqual([]);
      expect(await events.listAfterServerSeq(n1, 0, 0)).toEqual([]);
      // Everything up to the last one is settled (other tests' events may be past it).
      expect(await events.latestServerSeq()).toBeGreaterThanOrEqual(page2[1]!.serverSeq);
    }));

  it('replaces a range by a merged event that keeps the last one’s serverSeq; deletes through a seq', () =>
    withDb(async (db) => {
      const [, events, name] = await openEvents(db);
      for (const [actor, v] of [
        ['a', 1],
        ['b', 2],
        ['a', 3],
        ['b', 4],
        ['a', 5],
      ] as const)
        await events.append(draft(name, 'd', actor, v));
      const [e1, e2, e3, e4, e5] = await events.list(name, 'd');
      const merged = { ...e4!, fromSeq: 2, diff: diff(4, { merged: true }), metadata: { compacted: 3 } };
      await events.replaceEvents(merged);
      const after = await events.list(name, 'd');
      expect(after.map((e) => [e.seq, e.fromSeq])).toEqual([
        [1, undefined],
        [4, 2],
        [5, undefined],
      ]);
      expect(after[1]).toStrictEqual(merged);
      expect(after[1]!.serverSeq).toBe(e4!.serverSeq);
      expect(after[0]).toStrictEqual(e1);
      expect(after[2]).toStrictEqual(e5);
      // The feed shows it where e4 was; unseen-by-clock still works on the merged row.
      const feed = await events.listAfterServerSeq(name, e1!.serverSeq, 10);
      expect(seqs(feed)).toEqual([4, 5]);
      expect(seqs(await events.listUnseen(name, 'd', { a: 2, b: 1 }))).toEqual([4, 5]);
      // Its range gone already: nothing happens.
      await events.replaceEvents({ ...e3!, fromSeq: 3 });
      expect(seqs(await events.list(name, 'd'))).toEqual([1, 4, 5]);
      expect(e2!.seq).toBe(2);
      expect(await events.deleteEvents(name, 'd', 4)).toBe(2);
      expect(seqs(await events.list(name, 'd'))).toEqual([5]);
      expect(await events.deleteEvents(name, 'd', 4)).toBe(0);
      // The head is untouched by compaction.
      expect(await events.head(name, 'd')).toEqual({ lastSeq: 5, vectorClock: { a: 3, b: 2 } });
    }));
}

/** Snapshots, state vectors, clients and the list of streams. */
function storedStateTests(withDb: WithDb): void {
  it('stores snapshots: latest, latest at or before a seq, deleted before a seq, null state', () =>
    withDb(async (db) => {
      const [, events, name] = await openEvents(db);
      const snap = (seq: number, state: JsonObject | null) => ({
        collection: name,
        documentId: 'd',
        seq,
        version: seq * 10,
        state,
        vectorClock: { a: seq },
        createdAt: 1_700_000_000_000 + seq,
      });
      expect(await events.latestSnapshot(name, 'd')).toBeUndefined();
      await events.putSnapshot(snap(3, { x: 3, nested: { arr: [1, 'é', null] } }));
      await events.putSnapshot(snap(6, { x: 6 }));
      await events.putSnapshot(snap(9, null));
      expect(await events.latestSnapshot(name, 'd')).toStrictEqual(snap(9, null));
      expect(await events.latestSnapshot(name, 'd', 8)).toStrictEqual(snap(6, { x: 6 }));
      expect(await events.latestSnapshot(name, 'd', 5)).toStrictEqual(
        snap(3, { x: 3, nested: { arr: [1, 'é', null] } }),
      );
      expect(await events.latestSnapshot(name, 'd', 2)).toBeUndefined();
      // Same seq again: replaced.
      await events.putSnapshot(snap(6, { x: 66 }));
      expect((await events.latestSnapshot(name, 'd', 6))?.state).toEqual({ x: 66 });
      expect(await events.deleteSnapshots(name, 'd', 6)).toBe(1);
      expect(await events.latestSnapshot(name, 'd', 5)).toBeUndefined();
      expect(await events.deleteSnapshots(name, 'd', 100)).toBe(2);
    }));

  it('stores state vectors (never backwards) and clients (registered, claimed, forgotten)', () =>
    withDb(async (db) => {
      const [, events, name] = await openEvents(db);
      const client = uniqueCollection('client');
      const vector = {
        clientId: client,
        collection: name,
        documentId: 'd',
        vectorClock: { a: 2, b: 1 },
        lastSeq: 3,
        updatedAt: 1_700_000_000_123,
      };
      expect(await events.getStateVector(client, name, 'd')).toBeUndefined();
      await events.putStateVector(vector);
      expect(await events.getStateVector(client, name, 'd')).toStrictEqual(vector);
      await events.putStateVector({ ...vector, lastSeq: 4, vectorClock: { a: 3, b: 1 } });
      expect(await events.getStateVector(client, name, 'd')).toMatchObject({
        lastSeq: 4,
        vectorClock: { a: 3 },
      });
      // Never backwards, even when acknowledgements race: the furthest one stays.
      expect(await events.putStateVector({ ...vector, lastSeq: 2 })).toMatchObject({ lastSeq: 4 });
      await Promise.all(
        [9, 5, 12, 7, 11, 6].map((lastSeq) =>
          events.putStateVector({ ...vector, lastSeq, vectorClock: { a: lastSeq } }),
        ),
      );
      expect(await events.getStateVector(client, name, 'd')).toMatchObject({
        lastSeq: 12,
        vectorClock: { a: 12 },
      });
      await events.putStateVector({ ...vector, documentId: 'e' });
      expect(await events.isRegistered(client)).toBe(false);
      await events.registerClient(client);
      await events.registerClient(client);
      expect(await events.isRegistered(client)).toBe(true);
      // Registered with no owner: the first principal to claim it owns it.
      expect(await events.claimClient(client, 'alice')).toBe('alice');
      expect(await events.claimClient(client, 'bob')).toBe('alice');
      await events.unregisterClient(client);
      expect(await events.isRegistered(client)).toBe(false);
      expect(await events.getStateVector(client, name, 'd')).toBeUndefined();
      expect(await events.getStateVector(client, name, 'e')).toBeUndefined();
      // Forgotten: free for anyone.
      expect(await events.claimClient(client, 'bob')).toBe('bob');
      expect(await events.isRegistered(client)).toBe(true);
    }));

  it('pages through streams (documents with events or snapshots) in a stable order', () =>
    withDb(async (db) => {
      const prefix = uniqueCollection('streams');
      const [n1, n2] = [`${prefix}_a`, `${prefix}_b`];
      const events = await db.events();
      const c1 = await db.collection(n1);
      for (const id of ['d3', 'd1', 'd2']) await c1.insert(doc(id, 1), { clientId: 's' });
      await c1.delete('d2', { clientId: 's' }); // still a stream
      await events.append(draft(n2, 'x', 's'));
      const snapshot = { seq: 0, version: 0, state: null, vectorClock: {}, createdAt: 1 };
      await events.putSnapshot({ ...snapshot, collection: n2, documentId: 'only-snapshot' });
      await events.putSnapshot({ ...snapshot, collection: n2, documentId: 'x', seq: 1, state: {} });
      expect(await events.streams(n1, undefined, 10)).toEqual([
        [n1, 'd1'],
        [n1, 'd2'],
        [n1, 'd3'],
      ]);
      expect(await events.streams(n2, undefined, 10)).toEqual([
        [n2, 'only-snapshot'],
        [n2, 'x'],
      ]);
      // All collections, paged two at a time from just before ours.
      const seen: [string, string][] = [];
      let after: [string, string] | undefined = [prefix, ''];
      for (;;) {
        const page = await events.streams(undefined, after, 2);
        const mine = page.filter(([c]) => c === n1 || c === n2);
        seen.push(...mine);
        if (page.length < 2 || mine.length < page.length) break;
        after = page[1];
      }
      expect(seen).toEqual([
        [n1, 'd1'],
        [n1, 'd2'],
        [n1, 'd3'],
        [n2, 'only-snapshot'],
        [n2, 'x'],
      ]);
      expect(await events.streams(n1, [n1, 'd1'], 1)).toEqual([[n1, 'd2']]);
    }));
}
