import { describe, expect, it } from 'vitest';
import { snapshotAt, standardHistory } from '../../test/support/event-history.js';
import { EventSyncError } from '../core/errors.js';
import { replay } from './replay.js';

async function expectNotFound(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(EventSyncError.is(error, 'not_found'), String(error)).toBe(true);
  return (error as Error).message;
}

describe('replay', () => {
  it('rebuilds the document at every seq from the events alone', async () => {
    const h = await standardHistory();
    expect(h.lastSeq).toBe(24);
    for (let seq = 0; seq <= h.lastSeq; seq++) {
      const r = await replay(h.backend, h.collection, h.documentId, seq);
      expect(r.state, `seq ${seq}`).toEqual(h.states[seq]);
      expect(r.seq).toBe(seq);
      expect(r.version).toBe(h.versionAt(seq));
      expect(r.vectorClock).toEqual(h.clockAt(seq));
    }
    expect((await replay(h.backend, h.collection, h.documentId)).state).toEqual(await h.current());
  });

  it('starts from the newest snapshot at or before the seq, and needs no events before it', async () => {
    const h = await standardHistory();
    for (const seq of [5, 12, 18]) await snapshotAt(h, seq);
    await h.backend.deleteEvents(h.collection, h.documentId, 5);
    for (let seq = 5; seq <= h.lastSeq; seq++) {
      expect((await replay(h.backend, h.collection, h.documentId, seq)).state, `seq ${seq}`).toEqual(
        h.states[seq],
      );
    }
    // Before the oldest snapshot the events are gone: say so.
    expect(await expectNotFound(replay(h.backend, h.collection, h.documentId, 3))).toMatch(
      /events 1\.\.3 were compacted away/,
    );
  });

  it('uses a snapshot whose state is the deleted document (null)', async () => {
    const h = await standardHistory();
    await snapshotAt(h, 12);
    await h.backend.deleteEvents(h.collection, h.documentId, 12);
    const r = await replay(h.backend, h.collection, h.documentId, 12);
    expect(r).toMatchObject({ state: null, seq: 12, version: h.versionAt(12) });
    expect((await replay(h.backend, h.collection, h.documentId, 13)).state).toEqual(h.states[13]);
  });

  it('cannot stop inside a merged event, but can at its ends', async () => {
    const h = await standardHistory();
    const [e14, e15, e16] = h.events.slice(13, 16);
    await h.backend.replaceEvents({
      ...e16!,
      fromSeq: 14,
      diff: { ...e16!.diff!, jsonPatch: [e14!, e15!, e16!].flatMap((e) => e.diff!.jsonPatch) },
    });
    expect((await replay(h.backend, h.collection, h.documentId, 16)).state).toEqual(h.states[16]);
    expect((await replay(h.backend, h.collection, h.documentId, 13)).state).toEqual(h.states[13]);
    expect(await expectNotFound(replay(h.backend, h.collection, h.documentId, 15))).toMatch(/merged/);
  });

  it('rebuilds a document that never existed as nothing, and refuses seqs past the end', async () => {
    const h = await standardHistory();
    expect(await replay(h.backend, h.collection, 'other')).toEqual({
      state: null,
      seq: 0,
      version: 0,
      vectorClock: {},
    });
    await expect(replay(h.backend, h.collection, h.documentId, 25)).rejects.toThrow(/last seq is 24/);
    await expect(replay(h.backend, h.collection, h.documentId, -1)).rejects.toThrow(/non-negative/);
    await expect(replay(h.backend, 'Bad Name', h.documentId)).rejects.toThrow(/collection/);
  });
});
