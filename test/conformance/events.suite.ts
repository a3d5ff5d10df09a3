/**
 * The EventSyncStorage + event store conformance suite, run unchanged on every backend.
 * `injectEventFault` makes the next event inserts of a database fail (a test-only trigger on
 * PostgreSQL, a patched method in memory): fault injection is the one use of mocks here.
 */
import { applyPatch } from 'fast-json-patch';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  createEventStore,
  createStorage,
  type Database,
  EventSyncError,
  type EventSyncOptions,
  EventSyncStorage,
  type JsonObject,
  memoryDatabase,
  PersistentVectorClockManager,
  type Storage,
  type SyncEvent,
  SyncService,
} from '../../src/index.js';

export interface EventsBackendFactory {
  name: string;
  open(): Promise<Database>;
  /** Makes event inserts on `db` fail until the returned function is called. */
  injectEventFault(db: Database): Promise<() => Promise<void>>;
}

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  inventory?: Record<string, unknown>;
  [key: string]: unknown;
}

let collections = 0;
const seqs = (answer: { events: SyncEvent[] }) => answer.events.map((e) => e.seq);
const clone = <V>(v: V): V => structuredClone(v);

/** Rebuilds a document from its events, the way a client would. */
function replayAll(events: SyncEvent[]): JsonObject | null {
  let state: JsonObject | null = null;
  for (const e of events) {
    if (e.operation === 'delete') state = null;
    else state = applyPatch(clone(state), clone(e.diff!.jsonPatch) as never).newDocument as JsonObject;
  }
  return state;
}

type LogFn = (details: object, message?: string) => void;
const quietLogger = () => ({
  error: vi.fn<LogFn>(),
  warn: vi.fn(),
  info: vi.fn(),
  debug: vi.fn(),
});

export function eventsSuite(backend: EventsBackendFactory): void {
  describe(`events conformance: ${backend.name}`, () => {
    const opened: Database[] = [];
    afterAll(async () => {
      await Promise.all(opened.map((db) => db.close()));
    });

    async function setup(options: EventSyncOptions = {}) {
      const db = await backend.open();
      opened.push(db);
      const collection = `ev_${process.pid}_${++collections}`;
      const storage = await createStorage<Game>({ db, collection });
      const events = await createEventStore({ db });
      const sync = new EventSyncStorage(storage, events, { logger: quietLogger(), ...options });
      return { db, collection, storage, events, sync };
    }

    it('is a drop-in Storage<T>', async () => {
      const { sync } = await setup();
      const asStorage: Storage<Game> = sync;
      expect(asStorage.collection).toBe(sync.collection);
    });

    it('records create, update, update_section and delete with real diffs; nothing for no-ops', async () => {
      const { sync, events, collection } = await setup();
      const { doc } = await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      await sync.findOneAndUpsert({ _id: 'g', name: 'again', gold: 1 }); // exists: no event
      await sync.findOneAndUpdate('g', (d) => {
        d.gold += 50;
      });
      await sync.findOneAndUpdate('g', (d) => {
        d.gold = 50; // no-op: no event
      });
      await sync.updateOne('g', { $inc: { gold: 10 } });
      await sync.updateOneWithPipeline('g', [{ $set: { gold: { $multiply: ['$gold', 2] } } }]);
      await sync.updateSection('g', 'inventory', (inv: Record<string, unknown>) => {
        inv.potions = 3;
      });
      const last = await sync.findOne('g');
      await sync.deleteOne('g', { metadata: { reason: 'test' } });

      const log = await events.getEvents(collection, 'g');
      expect(log.map((e) => [e.seq, e.operation, e.version])).toEqual([
        [1, 'create', 1],
        [2, 'update', 2],
        [3, 'update', 3],
        [4, 'update', 4],
        [5, 'update_section', 5],
        [6, 'delete', 5],
      ]);
      expect(log[4]!.metadata).toEqual({ section: 'inventory' });
      expect(log[5]!.metadata).toEqual({ reason: 'test', deletedDocument: last });
      expect(log[5]!.diff).toBeUndefined();
      expect(replayAll(log.slice(0, 1))).toEqual(doc);
      expect(replayAll(log.slice(0, 5))).toEqual(last);
      expect(replayAll(log)).toBeNull();
      for (const e of log) {
        expect(e).toMatchObject({ collection, documentId: 'g', clientId: 'server' });
        expect(e.id).toMatch(/^[0-9a-f]{24}$/);
        expect(e.timestamp).toBeGreaterThan(0);
      }
    });

    it('returns the event with each edit, and takes clientId and metadata per call', async () => {
      const { sync, events, collection } = await setup({ clientId: 'game-server' });
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'alice' });
      const { event } = await sync.updateOne(
        'g',
        { $inc: { gold: 1 } },
        { clientId: 'bob', metadata: { via: 'api' } },
      );
      await sync.updateOne('g', { $inc: { gold: 1 } });
      await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'alice' });
      expect(event).toMatchObject({
        seq: 2,
        clientId: 'bob',
        metadata: { via: 'api' },
        vectorClock: { alice: 1, bob: 1 },
      });
      const log = await events.getEvents(collection, 'g');
      expect(log.map((e) => [e.clientId, e.vectorClock])).toEqual([
        ['alice', { alice: 1 }],
        ['bob', { alice: 1, bob: 1 }],
        ['game-server', { alice: 1, bob: 1, 'game-server': 1 }],
        ['alice', { alice: 2, bob: 1, 'game-server': 1 }],
      ]);
      await expect(sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: '' })).rejects.toMatchObject({
        code: 'validation',
      });
    });

    it('answers the original queries: latest seq and version, by vector clock (unknown actors too), after version', async () => {
      const { sync, events, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'a' });
      for (const actor of ['b', 'a', 'c', 'b'])
        await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: actor });
      expect(await events.getLatestSequence(collection, 'g')).toBe(5);
      expect(await events.getLatestVersion(collection, 'g')).toBe(5);
      expect(await events.getLatestSequence(collection, 'never')).toBe(0);
      const unseen = await events.getEventsByVectorClock(collection, 'g', { a: 1, b: 1, z: 9 });
      expect(unseen.map((e) => [e.seq, e.clientId])).toEqual([
        [3, 'a'],
        [4, 'c'],
        [5, 'b'],
      ]);
      expect((await events.getEventsByVectorClock(collection, 'g', {})).map((e) => e.seq)).toEqual([
        1, 2, 3, 4, 5,
      ]);
      expect((await events.getEventsAfterVersion(collection, 'g', 3)).map((e) => e.seq)).toEqual([4, 5]);
      expect((await events.getEvents(collection, 'g', 2, 2)).map((e) => e.seq)).toEqual([3, 4]);
      await expect(events.getEvents(collection, 'bad/id', 0)).rejects.toMatchObject({ code: 'validation' });
    });

    it('a version-checked delete or edit that finds another version records no event', async () => {
      const { sync, events, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      await sync.updateOne('g', { $inc: { gold: 1 } });
      const stale = { code: 'version_conflict' };
      await expect(sync.deleteOne('g', { expectedVersion: 1 })).rejects.toMatchObject(stale);
      await expect(sync.updateOne('g', { $inc: { gold: 1 } }, { expectedVersion: 1 })).rejects.toMatchObject(
        stale,
      );
      expect(await events.getLatestSequence(collection, 'g')).toBe(2);
      expect(await sync.deleteOne('g', { expectedVersion: 2 })).toMatchObject({ gold: 1 });
      const log = await events.getEvents(collection, 'g');
      expect(log.map((e) => e.operation)).toEqual(['create', 'update', 'delete']);
    });

    it('keeps seq gapless across delete and re-create, and vector clock counters gapless per actor', async () => {
      const { sync, events, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'a' });
      await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'b' });
      await sync.deleteOne('g', { clientId: 'a' });
      const { doc } = await sync.findOneAndUpsert({ _id: 'g', name: 'reborn', gold: 7 }, { clientId: 'b' });
      await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'a' });
      const log = await events.getEvents(collection, 'g');
      expect(log.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(log.map((e) => e.vectorClock)).toEqual([
        { a: 1 },
        { a: 1, b: 1 },
        { a: 2, b: 1 },
        { a: 2, b: 2 },
        { a: 3, b: 2 },
      ]);
      expect(doc.version).toBe(1);
      expect(replayAll(log)).toEqual(await sync.findOne('g'));
    });

    it('orders concurrent writers from several instances without gaps or duplicates', async () => {
      const first = await setup();
      const others = await Promise.all(
        [1, 2, 3].map(async () => {
          const db = await backend.open();
          opened.push(db);
          const storage = await createStorage<Game>({ db, collection: first.collection });
          return new EventSyncStorage(storage, await createEventStore({ db }), { logger: quietLogger() });
        }),
      );
      const writers = [first.sync, ...others];
      await first.sync.findOneAndUpsert({ _id: 'hot', name: 'hot', gold: 0 });
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          writers[i % 4]!.updateOne(
            'hot',
            { $inc: { gold: 1 } },
            { clientId: `w${i % 4}`, maxRetries: 100, retryDelay: 1, maxRetryDelay: 20, timeout: 30_000 },
          ),
        ),
      );
      const log = await first.events.getEvents(first.collection, 'hot');
      expect(log.map((e) => e.seq)).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
      for (const actor of ['w0', 'w1', 'w2', 'w3']) {
        expect(log.filter((e) => e.clientId === actor).map((e) => e.vectorClock[actor])).toEqual(
          Array.from({ length: 10 }, (_, i) => i + 1),
        );
      }
      expect(replayAll(log)).toEqual(await first.sync.findOne('hot'));
    });

    it('feeds the collection in serverSeq order and streams live events', async () => {
      const { sync, events, collection } = await setup();
      const abort = new AbortController();
      const live: string[] = [];
      const consumer = (async () => {
        for await (const e of events.subscribe({
          collection,
          afterServerSeq: 0,
          signal: abort.signal,
          pollIntervalMs: 50,
        })) {
          live.push(`${e.documentId}/${e.seq}`);
          if (live.length === 4) abort.abort();
        }
      })();
      await sync.findOneAndUpsert({ _id: 'a', name: 'a', gold: 0 });
      await sync.findOneAndUpsert({ _id: 'b', name: 'b', gold: 0 });
      await sync.updateOne('a', { $inc: { gold: 1 } });
      await sync.updateOne('b', { $inc: { gold: 1 } });
      await consumer;
      expect(live).toEqual(['a/1', 'b/1', 'a/2', 'b/2']);
      const feed = await events.getEventsAfterServerSeq(collection, 0);
      expect(feed.map((e) => `${e.documentId}/${e.seq}`)).toEqual(live);
      const serverSeqs = feed.map((e) => e.serverSeq);
      expect([...serverSeqs].sort((x, y) => x - y)).toEqual(serverSeqs);
      expect(new Set(serverSeqs).size).toBe(4);
      const tail = await events.getEventsAfterServerSeq(collection, feed[1]!.serverSeq, 1);
      expect(tail.map((e) => `${e.documentId}/${e.seq}`)).toEqual(['a/2']);
    });

    it('snapshots every snapshotEvery events and on demand; a snapshot equals the document at its seq', async () => {
      const { sync, events, collection } = await setup({ snapshotEvery: 3 });
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      const states: JsonObject[] = [];
      for (let i = 0; i < 7; i++)
        states.push((await sync.updateOne('g', { $inc: { gold: 1 } })).doc as never);
      // seqs 3 and 6 are snapshots: the states after updates 2 and 5
      const at3 = await events.backend.latestSnapshot(collection, 'g', 5);
      expect(at3).toMatchObject({ seq: 3, version: 3, state: states[1] });
      const at6 = await events.backend.latestSnapshot(collection, 'g');
      expect(at6).toMatchObject({ seq: 6, version: 6, state: states[4] });
      expect(await sync.createSnapshot('g')).toBe(8);
      expect(await events.backend.latestSnapshot(collection, 'g')).toMatchObject({
        seq: 8,
        state: states[6],
      });
    });

    it('runs transactions atomically with their events', async () => {
      const { sync, events, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      await sync.withTransaction(async (tx) => {
        await tx.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'tx' });
        await tx.findOneAndUpsert({ _id: 'h', name: 'h', gold: 0 }, { clientId: 'tx' });
      });
      await expect(
        sync.withTransaction(async (tx) => {
          await tx.updateOne('g', { $inc: { gold: 100 } });
          await tx.deleteOne('h');
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect((await events.getEvents(collection, 'g')).map((e) => [e.seq, e.clientId])).toEqual([
        [1, 'server'],
        [2, 'tx'],
      ]);
      expect((await events.getEvents(collection, 'h')).map((e) => e.seq)).toEqual([1]);
      expect((await sync.findOne('g'))!.gold).toBe(1);
      // The rolled-back transaction took no seq: the next event is 3.
      expect((await sync.updateOne('g', { $inc: { gold: 1 } })).event!.seq).toBe(3);
    });

    it('I1: when the event insert fails, the call throws and the document is unchanged (atomic)', async () => {
      const { db, sync, events, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      const before = await sync.findOne('g');
      const restore = await backend.injectEventFault(db);
      try {
        await expect(sync.updateOne('g', { $inc: { gold: 1 } })).rejects.toThrow();
        await expect(sync.deleteOne('g')).rejects.toThrow();
        await expect(sync.findOneAndUpsert({ _id: 'new', name: 'n', gold: 0 })).rejects.toThrow();
        await expect(
          sync.updateSection('g', 'inventory', (s: Record<string, unknown>) => {
            s.x = 1;
          }),
        ).rejects.toThrow();
      } finally {
        await restore();
      }
      expect(await sync.findOne('g')).toEqual(before);
      expect(await sync.findOne('new')).toBeUndefined();
      expect(await events.getLatestSequence(collection, 'g')).toBe(1);
      expect((await sync.updateOne('g', { $inc: { gold: 1 } })).event!.seq).toBe(2);
    });

    it('I1 best-effort: the call succeeds and the lost event is logged', async () => {
      const logger = quietLogger();
      const { db, sync, events, collection } = await setup({ consistency: 'best-effort', logger });
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      const restore = await backend.injectEventFault(db);
      try {
        expect((await sync.updateOne('g', { $inc: { gold: 5 } })).doc.gold).toBe(5);
      } finally {
        await restore();
      }
      expect(logger.error).toHaveBeenCalledTimes(1);
      expect(logger.error.mock.calls[0]![0]).toMatchObject({ documentId: 'g', operation: 'update' });
      expect((await sync.findOne('g'))!.gold).toBe(5);
      expect((await events.getEvents(collection, 'g')).map((e) => e.seq)).toEqual([1]);
    });

    it("refuses 'atomic' across two databases, naming 'best-effort'; best-effort works there", async () => {
      const db = await backend.open();
      opened.push(db);
      const storage = await createStorage<Game>({ db, collection: `ev_other_${++collections}` });
      const elsewhere = await createEventStore({ db: memoryDatabase() });
      expect(() => new EventSyncStorage(storage, elsewhere)).toThrow(/best-effort/);
      try {
        new EventSyncStorage(storage, elsewhere);
      } catch (error) {
        expect(EventSyncError.is(error, 'validation')).toBe(true);
      }
      const sync = new EventSyncStorage(storage, elsewhere, {
        consistency: 'best-effort',
        logger: quietLogger(),
      });
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 });
      await sync.updateOne('g', { $inc: { gold: 1 } });
      expect((await elsewhere.getEvents(storage.collection, 'g')).map((e) => e.operation)).toEqual([
        'create',
        'update',
      ]);
    });

    it('batches acknowledgements: read here at once, written in one step (newest per client and document, forwards only, never past the head)', async () => {
      const { db, sync, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'a' });
      for (const actor of ['b', 'a', 'b', 'c'])
        await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: actor });
      await sync.findOneAndUpsert({ _id: 'h', name: 'h', gold: 0 }, { clientId: 'a' });
      const backend = await db.events();
      const clocks = (await backend.list(collection, 'g')).map((e) => e.vectorClock);
      const [phone, tablet, liar] = ['phone', 'tablet', 'liar'].map((c) => `${collection}_${c}`) as [
        string,
        string,
        string,
      ];
      const here = new SyncService(backend, { ackFlushMs: 60_000 });
      const elsewhere = new SyncService(backend);
      for (const client of [phone, tablet, liar]) await here.registerClient(client);
      // Out of order, without clocks: the newest (4) is kept, its clock looked up when written.
      for (const seq of [1, 3, 2, 4, 2])
        await here.acknowledge(phone, collection, 'g', seq, undefined, { reached: true });
      await here.acknowledge(tablet, collection, 'g', 5);
      await here.acknowledge(tablet, collection, 'h', 1, { a: 1 });
      // A caller that claims a seq the document never reached: dropped when written.
      await here.acknowledge(liar, collection, 'g', 9, undefined, { reached: true });

      expect(await here.stateVectors.get(phone, collection, 'g')).toMatchObject({
        lastSeq: 4,
        vectorClock: clocks[3],
      });
      expect(await here.stateVectors.get(liar, collection, 'g')).toBeUndefined();
      expect(seqs(await here.getMissingEvents(phone, collection, 'g'))).toEqual([5]);
      // Not written yet: another instance does not see them.
      expect(await elsewhere.isRegistered(phone)).toBe(false);
      expect(await elsewhere.stateVectors.get(phone, collection, 'g')).toBeUndefined();

      await here.flush();
      expect(await elsewhere.isRegistered(phone)).toBe(true);
      expect(await backend.getStateVector(phone, collection, 'g')).toMatchObject({
        lastSeq: 4,
        vectorClock: clocks[3],
      });
      expect(await backend.getStateVector(tablet, collection, 'g')).toMatchObject({
        lastSeq: 5,
        vectorClock: clocks[4],
      });
      expect(await backend.getStateVector(tablet, collection, 'h')).toMatchObject({
        lastSeq: 1,
        vectorClock: { a: 1 },
      });
      expect(await backend.getStateVector(liar, collection, 'g')).toBeUndefined();
      expect(seqs(await elsewhere.getMissingEvents(phone, collection, 'g'))).toEqual([5]);

      // A later batch from another instance with an older position changes nothing; closing writes.
      const late = new SyncService(backend, { ackFlushMs: 60_000 });
      await late.registerClient(phone);
      await late.acknowledge(phone, collection, 'g', 2, clocks[1], { reached: true });
      await late.acknowledge(tablet, collection, 'h', 1, { a: 1 }, { reached: true });
      await late.flush();
      expect((await backend.getStateVector(phone, collection, 'g'))?.lastSeq).toBe(4);
      await late.acknowledge(phone, collection, 'g', 5, undefined, { reached: true });
      await late.close();
      expect(await backend.getStateVector(phone, collection, 'g')).toMatchObject({
        lastSeq: 5,
        vectorClock: clocks[4],
      });
      await elsewhere.unregisterClient(phone);
      expect(await backend.getStateVector(phone, collection, 'g')).toBeUndefined();
    });

    it('binds a client id to the first principal that uses it; another is refused and changes nothing', async () => {
      const { db, sync, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'a' });
      await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'a' });
      const backend = await db.events();
      const [phone, legacy, raced] = ['phone', 'legacy', 'raced'].map((c) => `${collection}_${c}`) as [
        string,
        string,
        string,
      ];
      const here = new SyncService(backend, { ackFlushMs: 60_000 });
      const elsewhere = new SyncService(backend, { ackFlushMs: 60_000 });
      const forbidden = { code: 'forbidden' };

      await here.claimClient(phone, 'bob');
      await here.claimClient(phone, 'bob');
      await here.acknowledge(phone, collection, 'g', 2, undefined, { reached: true });
      await here.flush();
      // Written at once (not with the batch): another instance knows the owner too.
      await expect(here.claimClient(phone, 'alice')).rejects.toMatchObject(forbidden);
      await expect(elsewhere.claimClient(phone, 'alice')).rejects.toMatchObject(forbidden);
      await elsewhere.claimClient(phone, 'bob');
      expect(await backend.claimClient(phone, 'alice')).toBe('bob');
      // A batch that registers the client again keeps its owner.
      await backend.putStateVectors([], [phone]);
      expect(await backend.claimClient(phone, 'alice')).toBe('bob');
      expect(seqs(await here.getMissingEvents(phone, collection, 'g'))).toEqual([]);

      // Registered with no owner (registerClient, or a row from before owners were recorded):
      // the first principal to use it gets it.
      await backend.registerClient(legacy);
      await elsewhere.claimClient(legacy, 'alice');
      await expect(here.claimClient(legacy, 'bob')).rejects.toMatchObject(forbidden);

      // Two principals racing for a new id on two instances: exactly one gets it.
      const outcomes = await Promise.allSettled([
        here.claimClient(raced, 'alice'),
        elsewhere.claimClient(raced, 'bob'),
      ]);
      expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
      const winner = outcomes[0]!.status === 'fulfilled' ? 'alice' : 'bob';
      expect(await backend.claimClient(raced, 'carol')).toBe(winner);

      // Unregistered, the id (and its positions) are gone: free for anyone.
      await here.unregisterClient(phone);
      await here.claimClient(phone, 'alice');
      expect(await backend.getStateVector(phone, collection, 'g')).toBeUndefined();
    });

    it('keeps vector clocks in the persistent manager from the event log', async () => {
      const { db, sync, collection } = await setup();
      await sync.findOneAndUpsert({ _id: 'g', name: 'g', gold: 0 }, { clientId: 'a' });
      await sync.updateOne('g', { $inc: { gold: 1 } }, { clientId: 'b' });
      const manager = new PersistentVectorClockManager(await db.events(), collection);
      expect(await manager.getVectorClock('g')).toEqual({ a: 1, b: 1 });
      expect(await manager.getVectorClock('none')).toEqual({});
    });
  });
}
