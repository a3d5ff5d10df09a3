import { apply as applyMergePatch } from 'json-merge-patch';
import { update as mingoUpdate } from 'mingo';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  freshCollection,
  type History,
  openHistory,
  snapshotAt,
  standardHistory,
} from '../../test/support/event-history.js';
import { EventSyncError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import { memoryDatabase } from '../index.js';
import { applyEvents } from './apply.js';
import { type CompactionTotals, compact } from './compaction.js';
import { replay } from './replay.js';

const remaining = (h: History) => h.backend.list(h.collection, h.documentId);
const spans = async (h: History) => (await remaining(h)).map((e) => [e.fromSeq ?? e.seq, e.seq]);

/**
 * The log left still rebuilds the current document from the latest snapshot, and every seq it
 * still has an event ending at: exactly, or (for events kept before the snapshot whose own base
 * was compacted) not at all, with `not_found`.
 */
async function expectConsistent(h: History): Promise<void> {
  const events = await remaining(h);
  const snapshot = await h.backend.latestSnapshot(h.collection, h.documentId);
  const base = snapshot?.seq ?? 0;
  const after = events.filter((e) => e.seq > base);
  expect(applyEvents(snapshot?.state ?? null, after, base)).toEqual(await h.current());
  for (const e of events) {
    const rebuilt = await replay(h.backend, h.collection, h.documentId, e.seq).catch((error: unknown) => {
      expect(EventSyncError.is(error, 'not_found')).toBe(true);
      expect(e.seq).toBeLessThan(base);
      return undefined;
    });
    if (rebuilt) expect(rebuilt.state).toEqual(h.states[e.seq]);
  }
}

function withoutNullMembers(value: unknown): unknown {
  if (Array.isArray(value)) return value;
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => [k, withoutNullMembers(v)]),
  );
}

afterEach(() => {
  vi.useRealTimers();
});

describe('compact: removal', () => {
  it('removes the events covered by the latest snapshot', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 5);
    await snapshotAt(h, 12);
    const totals = await compact(h.backend, {});
    expect(totals).toEqual({ documents: 1, eventsRemoved: 12, eventsMerged: 0 });
    expect((await spans(h))[0]).toEqual([13, 13]);
    await expectConsistent(h);
    // Nothing more to do the second time.
    expect(await compact(h.backend, {})).toEqual({ documents: 1, eventsRemoved: 0, eventsMerged: 0 });
  });

  it('removes nothing without a snapshot', async () => {
    const h = await standardHistory();
    expect(await compact(h.backend, { keepLatest: 0 })).toMatchObject({ eventsRemoved: 0 });
    expect(await remaining(h)).toHaveLength(24);
  });

  it('keeps the latest K events even when a snapshot covers them', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 24);
    expect(await compact(h.backend, { keepLatest: 5 })).toMatchObject({ eventsRemoved: 19 });
    expect((await spans(h)).map(([, s]) => s)).toEqual([20, 21, 22, 23, 24]);
    await expectConsistent(h);
    expect(await compact(h.backend, { keepLatest: 0 })).toMatchObject({ eventsRemoved: 5 });
    expect(await remaining(h)).toEqual([]);
    expect((await replay(h.backend, h.collection, h.documentId)).state).toEqual(await h.current());
  });

  it('only removes events older than the age limit', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const t0 = Date.UTC(2030, 0, 1);
    vi.setSystemTime(t0);
    const h = await openHistory(memoryDatabase(), freshCollection());
    const server = h.as('server');
    await server.findOneAndUpsert({ _id: 'doc1', n: 0 });
    for (let i = 1; i < 10; i++) await server.updateOne('doc1', { $inc: { n: 1 } });
    vi.setSystemTime(t0 + 3_600_000);
    for (let i = 0; i < 10; i++) await server.updateOne('doc1', { $inc: { n: 1 } });
    await snapshotAt(h, 15);

    const now = t0 + 3_600_000;
    expect(await compact(h.backend, { olderThanMs: 2 * 3_600_000 }, { now })).toMatchObject({
      eventsRemoved: 0,
    });
    expect(await compact(h.backend, { olderThanMs: 1_800_000 }, { now })).toMatchObject({
      eventsRemoved: 10,
    });
    expect(await compact(h.backend, { olderThanMs: 0 }, { now })).toMatchObject({ eventsRemoved: 5 });
    expect((await spans(h))[0]).toEqual([16, 16]);
    await expectConsistent(h);
  });
});

describe('compact: merging updates', () => {
  it('merges each run of consecutive updates into one event whose diff is the composition', async () => {
    const h = await standardHistory();
    const totals = await compact(h.backend, { mergeUpdates: true });
    // Runs of `update`: 2-4, 6-8, 10-11, 14-24 (5 and 9 are section updates, 12 a delete, 13 a create).
    expect(totals).toEqual({ documents: 1, eventsRemoved: 0, eventsMerged: 3 + 3 + 2 + 11 });
    expect(await spans(h)).toEqual([
      [1, 1],
      [2, 4],
      [5, 5],
      [6, 8],
      [9, 9],
      [10, 11],
      [12, 12],
      [13, 13],
      [14, 24],
    ]);
    await expectConsistent(h);

    for (const merged of (await remaining(h)).filter((e) => e.fromSeq !== undefined)) {
      const last = h.events[merged.seq - 1]!;
      const before = h.states[merged.fromSeq! - 1]!;
      const after = h.states[merged.seq]!;
      expect(merged).toMatchObject({
        id: last.id,
        operation: 'update',
        clientId: last.clientId,
        vectorClock: last.vectorClock,
        serverSeq: last.serverSeq,
        version: last.version,
        timestamp: last.timestamp,
        metadata: { mergedFrom: merged.fromSeq },
      });
      expect(merged.diff!.jsonPatch).toEqual(
        h.events.slice(merged.fromSeq! - 1, merged.seq).flatMap((e) => e.diff!.jsonPatch),
      );
      expect(merged.diff!.version).toBe(last.version);
      // The MongoDB update is the net change from before the run to after it.
      const viaMongo = structuredClone(before);
      mingoUpdate(viaMongo, merged.diff!.mongoUpdate as never);
      expect(viaMongo).toEqual(after);
      // The merge patch too, except that RFC 7396 cannot set a member to null (it removes it).
      expect(applyMergePatch(structuredClone(before), merged.diff!.mergePatch!)).toEqual(
        withoutNullMembers(after),
      );
    }
  });

  it('merges nothing the policy keeps: the latest K, the covered, the recent', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 12);
    expect(await compact(h.backend, { mergeUpdates: true, keepLatest: 4 })).toEqual({
      documents: 1,
      eventsRemoved: 12,
      eventsMerged: 7,
    });
    expect(await spans(h)).toEqual([
      [13, 13],
      [14, 20],
      [21, 21],
      [22, 22],
      [23, 23],
      [24, 24],
    ]);
    await expectConsistent(h);
    expect(await compact(h.backend, { mergeUpdates: true, olderThanMs: 3_600_000 })).toMatchObject({
      eventsMerged: 0,
    });
  });

  it('extends a merged event with the updates after it on the next run', async () => {
    const h = await standardHistory();
    await compact(h.backend, { mergeUpdates: true });
    for (let i = 0; i < 3; i++) await h.as('carol').updateOne(h.documentId, { $inc: { gold: 1 } });
    expect(await compact(h.backend, { mergeUpdates: true })).toMatchObject({ eventsMerged: 4 });
    expect((await spans(h)).at(-1)).toEqual([14, 27]);
    const last = (await remaining(h)).at(-1)!;
    expect(last.vectorClock).toEqual(h.clockAt(27));
    expect(last.metadata).toEqual({ mergedFrom: 14 });
    await expectConsistent(h);
  });

  it('never merges across a snapshot: merges start after the latest one', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 17);
    await compact(h.backend, { mergeUpdates: true, keepLatest: 24 });
    await compact(h.backend, { mergeUpdates: true });
    expect(await spans(h)).toEqual([[18, 24]]);
    await expectConsistent(h);
  });
});

describe('compact: many documents', () => {
  it('pages through the documents of one collection and reports progress', async () => {
    const db = memoryDatabase();
    const games = freshCollection('games');
    const other = freshCollection('other');
    const backend = await db.events();
    const histories: History[] = [];
    for (let i = 0; i < 250; i++) {
      const h = await openHistory(db, games, `g${String(i).padStart(3, '0')}`);
      await h.as('server').findOneAndUpsert({ _id: h.documentId, n: 0 });
      for (let k = 0; k < 3; k++) await h.as('server').updateOne(h.documentId, { $inc: { n: 1 } });
      await snapshotAt(h, 2);
      histories.push(h);
    }
    const o = await openHistory(db, other, 'o1');
    await o.as('server').findOneAndUpsert({ _id: 'o1', n: 0 });
    await snapshotAt(o, 1);

    const progress: CompactionTotals[] = [];
    const totals = await compact(
      backend,
      {},
      { collection: games, pageSize: 7, onProgress: (p) => progress.push(p) },
    );
    expect(totals).toEqual({ documents: 250, eventsRemoved: 500, eventsMerged: 0 });
    expect(progress.map((p) => p.documents)).toEqual([100, 200, 250]);
    expect(progress[0]!.eventsRemoved).toBe(200);
    expect(progress.at(-1)).toEqual(totals);
    expect(await o.backend.list(other, 'o1')).toHaveLength(1);
    for (const h of [histories[0]!, histories[249]!]) {
      expect((await replay(backend, games, h.documentId)).state).toEqual(await h.current());
    }
  });

  it('refuses a bad policy', async () => {
    const backend = await memoryDatabase().events();
    await expect(compact(backend, { keepLatest: -1 })).rejects.toThrow(/keepLatest/);
    await expect(compact(backend, { olderThanMs: Number.NaN })).rejects.toThrow(/olderThanMs/);
    await expect(compact(backend, {}, { collection: 'Bad!' })).rejects.toThrow(/collection/);
    expect(await compact(backend, {})).toEqual({
      documents: 0,
      eventsRemoved: 0,
      eventsMerged: 0,
    } as JsonObject);
  });
});
