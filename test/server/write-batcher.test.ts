/**
 * WriteBatcher on a real Writable stream that records the batches it is handed (`_writev`):
 * the writes of one turn leave as one batch, in order; a stream with `flushBytes` corked is
 * written out at once.
 */
import { Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { batchedWrites, WriteBatcher } from '../../src/server/write-batcher.js';

/** A stream that keeps each batch of chunks it writes out. */
function recorder(): { stream: Writable; batches: string[][] } {
  const batches: string[][] = [];
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, _encoding, callback) {
      batches.push([String(chunk)]);
      callback();
    },
    writev(chunks, callback) {
      batches.push(chunks.map((c) => String(c.chunk)));
      callback();
    },
  });
  return { stream, batches };
}

describe('WriteBatcher', () => {
  it('writes what one turn wrote to a stream as one batch, in order, once the turn is over', async () => {
    const batcher = new WriteBatcher({ maxHoldMs: 60_000 });
    const a = recorder();
    const b = recorder();
    for (const frame of ['1', '2', '3']) {
      batcher.write(a.stream, () => a.stream.write(frame));
      batcher.write(b.stream, () => b.stream.write(frame));
    }
    expect(a.batches).toEqual([]);
    await nextTurn();
    expect(a.batches).toEqual([['1', '2', '3']]);
    expect(b.batches).toEqual([['1', '2', '3']]);
    batcher.write(a.stream, () => a.stream.write('4'));
    await nextTurn();
    expect(a.batches).toEqual([['1', '2', '3'], ['4']]);
  });

  it('writes a stream out at once when flushBytes wait on it', async () => {
    const batcher = new WriteBatcher({ flushBytes: 10, maxHoldMs: 60_000 });
    const { stream, batches } = recorder();
    batcher.write(stream, () => stream.write('12345'));
    expect(batches).toEqual([]);
    batcher.write(stream, () => stream.write('67890'));
    expect(batches).toEqual([['12345', '67890']]);
    batcher.write(stream, () => stream.write('x'));
    await nextTurn();
    expect(batches).toEqual([['12345', '67890'], ['x']]);
  });

  it('writes a batch open for maxHoldMs out at the next write, even within one turn', () => {
    const batcher = new WriteBatcher({ maxHoldMs: 5 });
    const { stream, batches } = recorder();
    batcher.write(stream, () => stream.write('1'));
    const until = performance.now() + 10;
    while (performance.now() < until) {
      // one long turn, as a burst of commits on the memory backend makes
    }
    batcher.write(stream, () => stream.write('2'));
    expect(batches).toEqual([['1']]);
  });

  it('writes at once when batchWritesMs is 0', () => {
    const write = batchedWrites(0);
    const { stream, batches } = recorder();
    write(stream, () => stream.write('1'));
    write(stream, () => stream.write('2'));
    expect(batches).toEqual([['1'], ['2']]);
  });
});
