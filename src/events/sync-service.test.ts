import { describe, expect, it } from 'vitest';
import { snapshotAt, standardHistory } from '../../test/support/event-history.js';
import { EventSyncError } from '../core/errors.js';
import type { MissingEvents } from '../core/events.js';
import { applyEvents } from './apply.js';
import { compact } from './compaction.js';
import { SyncService } from './sync-service.js';

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
    // 14..22 were merged: a client at 16 gets a snapshot and everything after it; the stored one
    // (at 12, the delete) is before the re-create at 13, so the answer starts there instead.
    const inside = await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 16 });
    expect(inside.snapshot?.seq).toBe(13);
    expect(inside.events.map((e) => [e.fromSeq ?? e.seq, e.seq])).toEqual([
      [14, 22],
      [23, 23],
      [24, 24],
    ]);
    expect(applyEvents(inside.snapshot!.state, inside.events, 13)).toEqual(await h.current());
    // At the merged event's start, the merged event itself.
    expect(seqs(await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 13 }))).toEqual([
      22, 23, 24,
    ]);
    // Before the first event left: the snapshot, here moved on to the re-create at 13.
    expect(
      (await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 5 })).snapshot?.seq,
    ).toBe(13);
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

describe('SyncService: never before the current incarnation', () => {
  it('answers a position before a delete and re-create from the re-create, as a snapshot', async () => {
    const h = await standardHistory(); // deleted at 12, re-created at 13
    const sync = new SyncService(h.backend);
    for (const afterSeq of [0, 1, 5, 11]) {
      const answer = await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq });
      expect(answer.snapshot).toMatchObject({ seq: 13, state: h.states[13] });
      expect(seqs(answer)).toEqual([14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
      // Nothing of the deleted incarnation: not its name, not its events.
      expect(JSON.stringify(answer)).not.toContain('"game"');
      expect(applyEvents(answer.snapshot!.state, answer.events, 13)).toEqual(await h.current());
    }
    // Right before a boundary, the boundary itself is the next event, as before.
    expect(seqs(await sync.getMissingEvents('c', h.collection, h.documentId, { afterSeq: 12 }))[0]).toBe(13);
    const fromClock = await sync.getMissingEvents('c', h.collection, h.documentId, { vectorClock: {} });
    expect(fromClock.snapshot?.seq).toBe(13);
  });

  it('answers a position before a delete with no document, not with what was deleted', async () => {
    const h = await standardHistory();
    await h.as('server').deleteOne(h.documentId); // seq 25
    const answer = await new SyncService(h.backend).getMissingEvents('c', h.collection, h.documentId, {
      afterSeq: 20,
    });
    expect(answer).toMatchObject({ snapshot: { seq: 25, state: null }, events: [] });
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
    // From the start: the current incarnation (re-created at 13) as a snapshot, then its events.
    const fresh = await sync.getMissingEvents('phone', h.collection, h.documentId);
    expect([fresh.snapshot?.seq, ...seqs(fresh)]).toEqual([13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
  });
});
