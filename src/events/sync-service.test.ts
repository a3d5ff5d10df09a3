import { describe, expect, it } from 'vitest';
import { snapshotAt, standardHistory } from '../../test/support/event-history.js';
import { EventSyncError } from '../protocol/errors.js';
import { applyEvents } from './apply.js';
import { compact } from './compaction.js';
import { type MissingEvents, SyncService } from './sync-service.js';

const seqs = (answer: MissingEvents) => answer.events.map((e) => e.seq);

async function rejectsWith(promise: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(EventSyncError.is(error, code as never), String(error)).toBe(true);
  expect((error as Error).message).toMatch(message);
}

describe('SyncService.getMissingEvents', () => {
  it('sends just the events after the position when they are all there', async () => {
    const h = await standardHistory();
    const sync = new SyncService(h.backend);
    expect(seqs(await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 20 }))).toEqual([
      21, 22, 23, 24,
    ]);
    expect(await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 24 })).toEqual({
      events: [],
    });
    expect(await sync.getMissingEvents('c', h.collection, 'never-written', { afterSeq: 0 })).toEqual({
      events: [],
    });
  });

  it('sends a snapshot when the position falls inside a merged event or before the first event left', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 12);
    await compact(h.backend, { mergeUpdates: true, keepLatest: 2 });
    const sync = new SyncService(h.backend);
    // 14..22 were merged: a client at 16 gets the snapshot (at 12) and everything after it.
    const inside = await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 16 });
    expect(inside.snapshot?.seq).toBe(12);
    expect(inside.events.map((e) => [e.fromSeq ?? e.seq, e.seq])).toEqual([
      [13, 13],
      [14, 22],
      [23, 23],
      [24, 24],
    ]);
    expect(applyEvents(inside.snapshot!.state, inside.events, 12)).toEqual(await h.current());
    // At the merged event's start, the merged event itself.
    expect(seqs(await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 13 }))).toEqual([
      22, 23, 24,
    ]);
    expect(
      (await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 5 })).snapshot?.seq,
    ).toBe(12);
  });

  it('replaces the state of a client claiming a seq past the end', async () => {
    const h = await standardHistory();
    const answer = await new SyncService(h.backend).getMissingEvents('c', h.collection, h.documentId, {
      afterSeq: 99,
    });
    expect(answer.snapshot).toMatchObject({ seq: 24, state: await h.current(), vectorClock: h.clockAt(24) });
    expect(answer.events).toEqual([]);
  });

  it('with a vector clock, sends exactly the unseen events when the clock is a prefix', async () => {
    const h = await standardHistory();
    const sync = new SyncService(h.backend);
    const clock = h.clockAt(17);
    const answer = await sync.getMissingEvents('c', h.collection, h.documentId, { vectorClock: clock });
    expect(answer).toEqual({ events: await h.backend.listUnseen(h.collection, h.documentId, clock) });
    expect(seqs(answer)).toEqual([18, 19, 20, 21, 22, 23, 24]);
    // A clock that saw a later event out of order holds no state the log can continue: snapshot.
    const ahead = await sync.getMissingEvents('c', h.collection, h.documentId, {
      vectorClock: { ...clock, server: clock.server! + 1 },
    });
    expect(ahead.snapshot?.seq).toBe(24);
  });

  it('refuses malformed positions', async () => {
    const h = await standardHistory();
    const sync = new SyncService(h.backend);
    const get = (position: unknown) =>
      sync.getMissingEvents('c', h.collection, h.documentId, position as { afterSeq: number });
    await rejectsWith(get({ afterSeq: -1 }), 'validation', /afterSeq/);
    await rejectsWith(get({ afterSeq: '3' }), 'validation', /afterSeq/);
    await rejectsWith(get({ vectorClock: { a: -2 } }), 'validation', /vectorClock/);
    await rejectsWith(get({ vectorClock: [] }), 'validation', /vectorClock/);
    await rejectsWith(get({ since: 3 }), 'validation', /afterSeq.*vectorClock/);
    await rejectsWith(get(7), 'validation', /afterSeq.*vectorClock/);
    await rejectsWith(sync.getMissingEvents('', h.collection, h.documentId), 'validation', /clientId/);
    expect(() => new SyncService(h.backend, { maxTailEvents: -1 })).toThrow(/maxTailEvents/);
  });
});

describe('SyncService client registry', () => {
  it('acknowledges only for registered clients and seqs that exist, in batches, and resumes from there', async () => {
    const h = await standardHistory();
    const sync = new SyncService(h.backend, { ackFlushMs: 60_000 });
    await rejectsWith(
      sync.acknowledge('phone', h.collection, h.documentId, 3, h.clockAt(3)),
      'not_found',
      /not registered/,
    );
    await sync.registerClient('phone');
    await sync.registerClient('phone');
    expect(await sync.isRegistered('phone')).toBe(true);
    await rejectsWith(
      sync.acknowledge('phone', h.collection, h.documentId, 25, h.clockAt(24)),
      'validation',
      /last seq is 24/,
    );
    await sync.acknowledge('phone', h.collection, h.documentId, 20, h.clockAt(20));
    expect(await sync.stateVectors.get('phone', h.collection, h.documentId)).toMatchObject({
      clientId: 'phone',
      lastSeq: 20,
      vectorClock: h.clockAt(20),
    });
    // A late, older acknowledgement does not move it back; one without a clock gets the event's.
    await sync.acknowledge('phone', h.collection, h.documentId, 18, h.clockAt(18));
    expect(seqs(await sync.getMissingEvents('phone', h.collection, h.documentId))).toEqual([21, 22, 23, 24]);
    await sync.acknowledge('phone', h.collection, h.documentId, 22);
    expect(await sync.stateVectors.get('phone', h.collection, h.documentId)).toMatchObject({
      lastSeq: 22,
      vectorClock: h.clockAt(22),
    });
    // Another document it never acknowledged: from the start.
    expect(await sync.getMissingEvents('phone', h.collection, 'other')).toEqual({ events: [] });
    // Nothing was written yet; a flush writes the newest position and the registration.
    expect(await h.backend.getStateVector('phone', h.collection, h.documentId)).toBeUndefined();
    expect(await h.backend.isRegistered('phone')).toBe(false);
    await sync.flush();
    expect(await h.backend.isRegistered('phone')).toBe(true);
    expect(await h.backend.getStateVector('phone', h.collection, h.documentId)).toMatchObject({
      lastSeq: 22,
      vectorClock: h.clockAt(22),
    });
    expect(
      seqs(await new SyncService(h.backend).getMissingEvents('phone', h.collection, h.documentId)),
    ).toEqual([23, 24]);

    await sync.unregisterClient('phone');
    expect(await sync.isRegistered('phone')).toBe(false);
    expect(await sync.stateVectors.get('phone', h.collection, h.documentId)).toBeUndefined();
    expect(seqs(await sync.getMissingEvents('phone', h.collection, h.documentId))).toHaveLength(24);
  });
});
