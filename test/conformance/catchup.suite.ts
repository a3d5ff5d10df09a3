/**
 * Replay, compaction and catch-up conformance, run unchanged on every backend: whatever was
 * snapshotted, deleted or merged, a client catching up from any position ends with exactly the
 * stored document, and replay to any seq it can still reach gives the document at that seq.
 * The oracle is the document the storage returned after each event (`History`).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { MissingEvents, VectorClock } from '../../src/core/events.js';
import { applyEvents } from '../../src/events/apply.js';
import { type CompactionPolicy, compact } from '../../src/events/compaction.js';
import { replay } from '../../src/events/replay.js';
import { SnapshotStore } from '../../src/events/snapshots.js';
import { SyncService } from '../../src/events/sync-service.js';
import { type Database, EventSyncError } from '../../src/index.js';
import {
  freshCollection,
  type History,
  openHistory,
  writeStandardHistory,
} from '../support/event-history.js';

export interface CatchupBackendFactory {
  name: string;
  open(): Promise<Database>;
  /** Runs of the property test. Default 100. */
  propertyRuns?: number;
}

const ACTORS = ['server', 'alice', 'bob'] as const;

/** Stores the oracle's state at `seq` as a snapshot. */
function snapshotAt(h: History, seq: number) {
  return new SnapshotStore(h.backend).create(h.collection, h.documentId, {
    seq,
    version: h.versionAt(seq),
    state: h.states[seq]!,
    vectorClock: h.clockAt(seq),
  });
}

/** The answer, applied to what the client has (its state at `clientSeq`), gives the current document. */
async function expectConverges(
  h: History,
  answer: MissingEvents,
  clientState: unknown,
  clientSeq: number,
  context: string,
): Promise<void> {
  const base = answer.snapshot ? answer.snapshot.state : clientState;
  const from = answer.snapshot ? answer.snapshot.seq : clientSeq;
  if (answer.snapshot)
    expect(answer.snapshot.state, `${context}: snapshot`).toEqual(h.states[answer.snapshot.seq]);
  const state = applyEvents(base as never, answer.events, from);
  expect(state, context).toEqual(await h.current());
  expect(answer.events.at(-1)?.seq ?? from, context).toBe(h.lastSeq);
}

/** Catch-up from `{ afterSeq: seq }` with the client holding the document at `seq`. */
/** The standard history deletes its document at seq 12 and creates it again at 13. */
const DELETED_AT = 12;
const RECREATED_AT = 13;

async function checkAfterSeq(
  sync: SyncService,
  h: History,
  seq: number,
  context: string,
): Promise<MissingEvents> {
  const answer = await sync.getMissingEvents('client', h.collection, h.documentId, { afterSeq: seq });
  await expectConverges(h, answer, h.states[seq], seq, `${context}, afterSeq ${seq}`);
  return answer;
}

const dominates = (a: VectorClock, b: VectorClock) => Object.entries(b).every(([k, n]) => (a[k] ?? 0) >= n);

/**
 * Catch-up from a vector clock. The client's position is the largest seq whose clock the given
 * one dominates; when the clock has seen nothing beyond it (exact), the client holds the document
 * there, else the answer must carry a snapshot. Either way every event the clock has not seen
 * after the answer's starting point is in the answer.
 */
async function checkClock(
  sync: SyncService,
  h: History,
  clock: VectorClock,
  context: string,
): Promise<MissingEvents> {
  let position = 0;
  while (position < h.lastSeq && dominates(clock, h.clockAt(position + 1))) position++;
  const head = h.clockAt(h.lastSeq);
  const at = h.clockAt(position);
  const exact = Object.entries(head).every(([k, n]) => Math.min(clock[k] ?? 0, n) === (at[k] ?? 0));
  const answer = await sync.getMissingEvents('client', h.collection, h.documentId, { vectorClock: clock });
  const where = `${context}, clock ${JSON.stringify(clock)} (position ${position}${exact ? '' : ', not exact'})`;
  if (!exact) expect(answer.snapshot, where).toBeDefined();
  await expectConverges(h, answer, h.states[position], position, where);
  const from = answer.snapshot?.seq ?? position;
  const returned = new Set(answer.events.map((e) => e.seq));
  for (const e of await h.backend.listUnseen(h.collection, h.documentId, clock)) {
    if (e.seq > from) expect(returned.has(e.seq), `${where}: unseen event ${e.seq} returned`).toBe(true);
  }
  return answer;
}

/** Replay reaches `seq` exactly when the newest snapshot at or before it is at it or followed by unbroken events up to it. */
async function expectReplayEverywhere(h: History, context: string): Promise<void> {
  const events = await h.backend.list(h.collection, h.documentId);
  for (let seq = 0; seq <= h.lastSeq; seq++) {
    const base = (await h.backend.latestSnapshot(h.collection, h.documentId, seq))?.seq ?? 0;
    const needed = events.filter((e) => e.seq > base && e.seq <= seq);
    const reachable =
      base === seq || ((needed[0]?.fromSeq ?? needed[0]?.seq) === base + 1 && needed.at(-1)?.seq === seq);
    const result = await replay(h.backend, h.collection, h.documentId, seq).then(
      (r) => r,
      (error: unknown) => {
        expect(EventSyncError.is(error, 'not_found'), `${context}, replay to ${seq}: ${String(error)}`).toBe(
          true,
        );
        return undefined;
      },
    );
    expect(result !== undefined, `${context}: replay to ${seq} possible`).toBe(reachable);
    if (result) {
      expect(result.state, `${context}, replay to ${seq}`).toEqual(h.states[seq]);
      expect(result.vectorClock).toEqual(h.clockAt(seq));
      expect(result.version).toBe(h.versionAt(seq));
    }
  }
}

/** An answer without the snapshot's `createdAt` (a snapshot rebuilt on the fly is new each time). */
const comparable = ({ snapshot, events }: MissingEvents) => ({
  snapshot: snapshot && { ...snapshot, createdAt: 0 },
  events,
});

export function catchupSuite(backend: CatchupBackendFactory): void {
  describe(`catch-up conformance: ${backend.name}`, () => {
    const opened: Database[] = [];
    afterAll(async () => {
      await Promise.all(opened.map((db) => db.close()));
    });

    async function fresh(): Promise<History> {
      const db = await backend.open();
      opened.push(db);
      return openHistory(db, freshCollection('catchup'));
    }

    async function standard(): Promise<History> {
      const h = await fresh();
      await writeStandardHistory(h);
      return h;
    }

    it('replay(toSeq) equals the document at every seq, with and without snapshots', async () => {
      const h = await standard();
      await expectReplayEverywhere(h, 'no snapshots');
      for (const seq of [4, 12, 19]) await snapshotAt(h, seq);
      await expectReplayEverywhere(h, 'snapshots at 4, 12, 19');
    });

    const scenarios: [string, (h: History) => Promise<void>][] = [
      ['no snapshots', async () => {}],
      [
        'snapshots',
        async (h) => {
          for (const seq of [6, 12, 20]) await snapshotAt(h, seq);
        },
      ],
      [
        'compaction',
        async (h) => {
          await snapshotAt(h, 12);
          await compact(h.backend, {}, { collection: h.collection });
        },
      ],
      [
        'compaction with merged updates',
        async (h) => {
          await snapshotAt(h, 12);
          await compact(h.backend, { mergeUpdates: true }, { collection: h.collection });
        },
      ],
      [
        'compaction keeping the latest 5, merged updates',
        async (h) => {
          await snapshotAt(h, 22);
          await compact(h.backend, { keepLatest: 5, mergeUpdates: true }, { collection: h.collection });
        },
      ],
      [
        'merged updates, no snapshot',
        async (h) => {
          await compact(h.backend, { mergeUpdates: true }, { collection: h.collection });
        },
      ],
      [
        'everything compacted',
        async (h) => {
          await snapshotAt(h, h.lastSeq);
          await compact(h.backend, { mergeUpdates: true }, { collection: h.collection });
        },
      ],
    ];

    for (const [name, prepare] of scenarios) {
      it(`catch-up from every seq 0..N reproduces the current document: ${name}`, async () => {
        const h = await standard();
        await prepare(h);
        await expectReplayEverywhere(h, name);
        for (const maxTailEvents of [1000, 3]) {
          const sync = new SyncService(h.backend, { maxTailEvents });
          const context = `${name}, maxTailEvents ${maxTailEvents}`;
          for (let seq = 0; seq <= h.lastSeq; seq++) {
            const bySeq = await checkAfterSeq(sync, h, seq, context);
            const byClock = await checkClock(sync, h, h.clockAt(seq), context);
            // A clock the client got by applying events in order is the same position as its seq.
            expect(comparable(byClock), `${context}, clock of seq ${seq}`).toEqual(comparable(bySeq));
            // Never before the current incarnation: a position before the delete (12) and
            // re-create (13) of the standard history starts at the re-create.
            if (name === 'no snapshots' && seq >= DELETED_AT) expect(bySeq.snapshot).toBeUndefined();
            if (seq < DELETED_AT) expect(bySeq.snapshot?.seq, context).toBeGreaterThanOrEqual(RECREATED_AT);
          }
        }
      });
    }

    it('takes a snapshot instead of a long tail only when one newer than the client exists', async () => {
      const h = await standard();
      const sync = new SyncService(h.backend, { maxTailEvents: 5 });
      // (Positions after the re-create at 13: earlier ones start there anyway.)
      expect((await checkAfterSeq(sync, h, 13, 'no snapshot')).events).toHaveLength(11);
      await snapshotAt(h, 15);
      const answer = await checkAfterSeq(sync, h, 13, 'snapshot at 15');
      expect(answer.snapshot?.seq).toBe(15);
      expect(answer.events.map((e) => e.seq)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24]);
      // Past the snapshot, the tail is what is left.
      expect((await checkAfterSeq(sync, h, 16, 'after the snapshot')).snapshot).toBeUndefined();
    });

    it('vector clocks: several actors, actors the clock does not know, clocks seen out of order', async () => {
      const h = await standard();
      const sync = new SyncService(h.backend);
      const head = h.clockAt(h.lastSeq);
      expect(Object.keys(head).sort()).toEqual(['alice', 'bob', 'server']);
      for (let seq = 0; seq <= h.lastSeq; seq++) {
        const clock = h.clockAt(seq);
        const context = `seq ${seq}`;
        // An actor of another document: ignored.
        const ghost = await checkClock(sync, h, { ...clock, ghost: 7 }, context);
        const from = seq < DELETED_AT ? RECREATED_AT : seq; // never before the current incarnation
        expect(ghost.snapshot?.seq).toBe(seq < DELETED_AT ? RECREATED_AT : undefined);
        expect(ghost.events.map((e) => e.seq)).toEqual(h.events.slice(from).map((e) => e.seq));
        // The clock does not know one of the actors: its events count as unseen.
        for (const actor of ACTORS) {
          const { [actor]: _dropped, ...rest } = clock;
          await checkClock(sync, h, rest, `${context}, without ${actor}`);
        }
        // Seen one more event of an actor than the prefix has (out of order).
        for (const actor of ACTORS) {
          if ((clock[actor] ?? 0) < (head[actor] ?? 0)) {
            await checkClock(
              sync,
              h,
              { ...clock, [actor]: (clock[actor] ?? 0) + 1 },
              `${context}, ${actor} + 1`,
            );
          }
        }
      }
      // Nothing seen at all, and everything seen.
      const empty = await checkClock(sync, h, {}, 'empty clock');
      expect([empty.snapshot?.seq, empty.events.length]).toEqual([RECREATED_AT, h.lastSeq - RECREATED_AT]);
      expect(await checkClock(sync, h, { ...head, server: 99 }, 'ahead')).toEqual({ events: [] });
    });

    it('a registered client resumes from what it acknowledged', async () => {
      const h = await standard();
      const sync = new SyncService(h.backend);
      await sync.registerClient('tablet');
      await sync.acknowledge('tablet', h.collection, h.documentId, 15, h.clockAt(15));
      const resumed = await sync.getMissingEvents('tablet', h.collection, h.documentId);
      expect(resumed.events[0]?.seq).toBe(16);
      await expectConverges(h, resumed, h.states[15], 15, 'resume');
      await sync.unregisterClient('tablet');
      const fromStart = await sync.getMissingEvents('tablet', h.collection, h.documentId);
      await expectConverges(h, fromStart, null, 0, 'after unregister');
    });

    it('property: random edits, snapshots and compaction; replay and catch-up from everywhere', async () => {
      const key = fc.constantFrom('a', 'b', 'c');
      const value = fc.oneof(
        fc.integer(),
        fc.string({ maxLength: 4 }),
        fc.constant(null),
        fc.boolean(),
        fc.constant([1]),
      );
      const actor = fc.constantFrom(...ACTORS);
      const step = fc.oneof(
        { weight: 3, arbitrary: fc.record({ kind: fc.constant('set' as const), actor, key, value }) },
        {
          weight: 3,
          arbitrary: fc.record({
            kind: fc.constant('inc' as const),
            actor,
            by: fc.integer({ min: 1, max: 5 }),
          }),
        },
        { weight: 2, arbitrary: fc.record({ kind: fc.constant('push' as const), actor, value }) },
        { weight: 2, arbitrary: fc.record({ kind: fc.constant('unset' as const), actor, key }) },
        {
          weight: 2,
          arbitrary: fc.record({
            kind: fc.constant('section' as const),
            actor,
            section: fc.constantFrom('inv', 'gear'),
            key,
            value,
          }),
        },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant('recreate' as const), actor }) },
        {
          weight: 1,
          arbitrary: fc.record({ kind: fc.constant('snapshot' as const), back: fc.nat({ max: 4 }) }),
        },
        {
          weight: 2,
          arbitrary: fc.record({
            kind: fc.constant('compact' as const),
            keepLatest: fc.option(fc.nat({ max: 4 }), { nil: undefined }),
            olderThanMs: fc.option(fc.constantFrom(0, 1e12), { nil: undefined }),
            mergeUpdates: fc.boolean(),
          }),
        },
      );
      type Step = typeof step extends fc.Arbitrary<infer S> ? S : never;

      async function run(h: History, s: Step): Promise<void> {
        const id = h.documentId;
        const exists = (await h.current()) !== null;
        if (s.kind === 'snapshot') {
          const seq = Math.max(1, h.lastSeq - s.back);
          // Only where replay can go (never inside a merged event), as EventSyncStorage would.
          const reachable = await replay(h.backend, h.collection, id, seq).then(
            () => true,
            () => false,
          );
          if (h.lastSeq > 0 && reachable) await snapshotAt(h, seq);
          return;
        }
        if (s.kind === 'compact') {
          const policy: CompactionPolicy = { mergeUpdates: s.mergeUpdates };
          if (s.keepLatest !== undefined) policy.keepLatest = s.keepLatest;
          if (s.olderThanMs !== undefined) policy.olderThanMs = s.olderThanMs;
          await compact(h.backend, policy, { collection: h.collection });
          return;
        }
        const as = h.as(s.actor);
        if (!exists || s.kind === 'recreate') {
          if (exists) await as.deleteOne(id);
          else await as.findOneAndUpsert({ _id: id, n: 0, list: [] });
          return;
        }
        switch (s.kind) {
          case 'set':
            await as.updateOne(id, { $set: { [s.key]: s.value } });
            break;
          case 'inc':
            await as.updateOne(id, { $inc: { n: s.by } });
            break;
          case 'push':
            await as.updateOne(id, { $push: { list: s.value } });
            break;
          case 'unset':
            await as.updateOne(id, { $unset: { [s.key]: '' } });
            break;
          case 'section':
            await as.updateSection(id, s.section, (draft: Record<string, unknown>) => {
              draft[s.key] = s.value;
            });
            break;
        }
      }

      await fc.assert(
        fc.asyncProperty(
          fc.array(step, { minLength: 10, maxLength: 40, size: 'max' }),
          fc.constantFrom(1000, 2, 5),
          async (steps, maxTailEvents) => {
            const h = await fresh();
            for (const s of steps) await run(h, s);
            await expectReplayEverywhere(h, 'property');
            const sync = new SyncService(h.backend, { maxTailEvents });
            for (let seq = 0; seq <= h.lastSeq; seq++) {
              await checkAfterSeq(sync, h, seq, 'property');
              const clock = h.clockAt(seq);
              await checkClock(sync, h, clock, 'property');
              const { alice: _a, ...withoutAlice } = clock;
              await checkClock(sync, h, withoutAlice, 'property');
            }
          },
        ),
        { numRuns: backend.propertyRuns ?? 100 },
      );
    });
  });
}
