import { describe, expect, it } from 'vitest';
import { memoryDatabase } from '../index.js';
import { SnapshotStore } from './snapshots.js';

async function store(): Promise<SnapshotStore> {
  return new SnapshotStore(await memoryDatabase().events());
}

const at = (seq: number) => ({
  seq,
  version: seq,
  state: { _id: 'd', version: seq },
  vectorClock: { s: seq },
});

describe('SnapshotStore', () => {
  it('creates, finds the latest (at or before a seq) and deletes older ones', async () => {
    const snapshots = await store();
    const before = Date.now();
    const created = await snapshots.create('games', 'd', at(10));
    expect(created).toMatchObject({ collection: 'games', documentId: 'd', ...at(10) });
    expect(created.createdAt).toBeGreaterThanOrEqual(before);
    await snapshots.create('games', 'd', at(20));
    await snapshots.create('games', 'd', { seq: 30, version: 29, state: null, vectorClock: { s: 30 } });

    expect((await snapshots.latest('games', 'd'))?.seq).toBe(30);
    expect((await snapshots.latest('games', 'd'))?.state).toBeNull();
    expect((await snapshots.latestAtOrBefore('games', 'd', 29))?.seq).toBe(20);
    expect(await snapshots.latestAtOrBefore('games', 'd', 20)).toMatchObject(at(20));
    expect(await snapshots.latestAtOrBefore('games', 'd', 9)).toBeUndefined();
    expect(await snapshots.latest('games', 'other')).toBeUndefined();

    expect(await snapshots.deleteBefore('games', 'd', 30)).toBe(2);
    expect(await snapshots.latestAtOrBefore('games', 'd', 29)).toBeUndefined();
    expect((await snapshots.latest('games', 'd'))?.seq).toBe(30);
  });

  it('replaces a snapshot at the same seq', async () => {
    const snapshots = await store();
    await snapshots.create('games', 'd', at(5));
    await snapshots.create('games', 'd', { ...at(5), state: { _id: 'd', version: 5, x: 1 } });
    expect((await snapshots.latest('games', 'd'))?.state).toEqual({ _id: 'd', version: 5, x: 1 });
  });

  it('refuses bad input before writing anything', async () => {
    const snapshots = await store();
    await expect(snapshots.create('games', 'd', { ...at(1), seq: -1 })).rejects.toThrow(/seq/);
    await expect(snapshots.create('games', 'd', { ...at(1), seq: 1.5 })).rejects.toThrow(/seq/);
    await expect(snapshots.create('games', 'd', { ...at(1), vectorClock: { s: -1 } })).rejects.toThrow(
      /vectorClock/,
    );
    await expect(
      snapshots.create('games', 'd', { ...at(1), state: JSON.parse('{"__proto__": {"x": 1}}') }),
    ).rejects.toThrow(/reserved/);
    await expect(snapshots.create('Games!', 'd', at(1))).rejects.toThrow(/collection/);
    await expect(snapshots.latestAtOrBefore('games', '', 1)).rejects.toThrow(/id/);
    expect(await snapshots.latest('games', 'd')).toBeUndefined();
  });
});
