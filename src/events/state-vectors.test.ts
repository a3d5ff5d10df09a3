import { describe, expect, it } from 'vitest';
import { memoryDatabase } from '../index.js';
import { StateVectorManager } from './state-vectors.js';

describe('StateVectorManager', () => {
  it('stores what a client acknowledged, never backwards, and forgets it', async () => {
    const backend = await memoryDatabase().events();
    const vectors = new StateVectorManager(backend);
    expect(await vectors.get('c1', 'games', 'd')).toBeUndefined();
    const first = await vectors.update('c1', 'games', 'd', 5, { s: 3, a: 2 });
    expect(first).toMatchObject({ clientId: 'c1', collection: 'games', documentId: 'd', lastSeq: 5 });
    expect(await vectors.get('c1', 'games', 'd')).toEqual(first);

    // An older acknowledgement arriving late changes nothing.
    expect(await vectors.update('c1', 'games', 'd', 4, { s: 2, a: 2 })).toEqual(first);
    expect((await vectors.update('c1', 'games', 'd', 7, { s: 5, a: 2 })).lastSeq).toBe(7);
    await vectors.update('c2', 'games', 'd', 1, { s: 1 });

    await vectors.forget('c1');
    expect(await vectors.get('c1', 'games', 'd')).toBeUndefined();
    expect((await vectors.get('c2', 'games', 'd'))?.lastSeq).toBe(1);
  });

  it('refuses bad input', async () => {
    const vectors = new StateVectorManager(await memoryDatabase().events());
    await expect(vectors.update('', 'games', 'd', 1, {})).rejects.toThrow(/clientId/);
    await expect(vectors.update('c', 'games', 'd', -1, {})).rejects.toThrow(/lastSeq/);
    await expect(vectors.update('c', 'games', 'd', 1, { a: 0.5 })).rejects.toThrow(/vectorClock/);
    await expect(vectors.get('c', 'games', 'bad id')).rejects.toThrow(/id/);
  });
});
