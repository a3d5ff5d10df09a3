/** The replica logic alone: order, duplicates, early events, snapshots, broken replicas. */
import { describe, expect, it } from 'vitest';
import { emptyPosition, Replica, type ReplicaChange } from '../../src/client/replica.js';
import { created, deleted, history, setGold, stateAt } from './events.js';

const seqs = (changes: ReplicaChange[]) =>
  changes.map((c) => (c.kind === 'event' ? c.event.seq : `s${c.seq}`));

describe('Replica', () => {
  it('applies events in seq order', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    const [e1, e2, e3] = history(3);
    expect(seqs(r.receive(e1!))).toEqual([1]);
    expect(seqs(r.receive(e2!))).toEqual([2]);
    expect(seqs(r.receive(e3!))).toEqual([3]);
    expect(r.state).toEqual(stateAt(3));
    expect(r.seq).toBe(3);
    expect(r.vectorClock).toEqual({ writer: 3 });
    expect(r.needsRepair).toBe(false);
  });

  it('drops duplicates', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    const [e1, e2] = history(2);
    r.receive(e1!);
    r.receive(e2!);
    expect(r.receive(e1!)).toEqual([]);
    expect(r.receive(e2!)).toEqual([]);
    expect(r.state).toEqual(stateAt(2));
  });

  it('buffers early events and applies them once the gap fills', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    const [e1, e2, e3, e4] = history(4);
    r.receive(e1!);
    expect(r.receive(e4!)).toEqual([]);
    expect(r.receive(e3!)).toEqual([]);
    expect(r.receive(e3!)).toEqual([]); // a duplicate of a buffered event
    expect(r.waiting).toBe(2);
    expect(r.needsRepair).toBe(true);
    expect(seqs(r.receive(e2!))).toEqual([2, 3, 4]);
    expect(r.waiting).toBe(0);
    expect(r.needsRepair).toBe(false);
    expect(r.state).toEqual(stateAt(4));
  });

  it('a snapshot replaces the state, drops what it covers and drains what follows', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    const events = history(6);
    r.receive(events[0]!);
    r.receive(events[2]!); // 3: covered by the snapshot
    r.receive(events[4]!); // 5: follows it
    const changes = r.replace({ seq: 4, version: 4, state: stateAt(4), vectorClock: { writer: 4 } });
    expect(seqs(changes)).toEqual(['s4', 5]);
    expect(r.state).toEqual(stateAt(5));
    expect(r.waiting).toBe(0);
  });

  it('ignores a snapshot older than the replica unless forced', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    for (const e of history(3)) r.receive(e);
    expect(r.replace({ seq: 2, version: 2, state: stateAt(2), vectorClock: {} })).toEqual([]);
    expect(r.seq).toBe(3);
    expect(seqs(r.replace({ seq: 2, version: 2, state: stateAt(2), vectorClock: {} }, true))).toEqual(['s2']);
    expect(r.state).toEqual(stateAt(2));
  });

  it('breaks on an event that does not fit the state, and a rebuild (forced replace) mends it', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    r.receive(created(1, { gold: 0 }));
    expect(r.receive(created(2, { gold: 5 }))).toEqual([]); // a create of an existing document
    expect(r.broken).toBe(true);
    expect(r.needsRebuild).toBe(true);
    expect(r.receive(setGold(3, 30))).toEqual([]); // waits while broken
    const changes = r.replace({
      seq: 2,
      version: 1,
      state: { _id: 'd1', version: 1, gold: 5 },
      vectorClock: {},
    });
    expect(seqs(changes)).toEqual(['s2', 3]);
    expect(r.broken).toBe(false);
    expect(r.state).toEqual({ _id: 'd1', version: 3, gold: 30 });
  });

  it('without a base (met in a collection), waits for a snapshot or a create', () => {
    const r = new Replica('games', 'd1', undefined);
    expect(r.receive(setGold(8, 70))).toEqual([]);
    expect(r.needsRepair).toBe(false); // nothing to repair from: the server sends the base
    expect(seqs(r.replace({ seq: 7, version: 7, state: stateAt(7), vectorClock: {} }))).toEqual(['s7', 8]);

    const fresh = new Replica('games', 'd2', undefined);
    expect(fresh.receive(setGold(6, 50, 'd2'))).toEqual([]);
    expect(seqs(fresh.receive(created(5, { gold: 40 }, 'd2')))).toEqual([5, 6]);
    expect(fresh.state).toMatchObject({ gold: 50 });
  });

  it('applies delete and re-create, and events merged by compaction (fromSeq)', () => {
    const r = new Replica('games', 'd1', emptyPosition());
    r.receive(created(1, { gold: 0 }));
    r.receive(deleted(2));
    expect(r.state).toBeNull();
    r.receive(created(3, { gold: 1 }));
    const merged = { ...setGold(6, 99), fromSeq: 4 };
    expect(seqs(r.receive(merged))).toEqual([6]);
    expect(r.state).toMatchObject({ gold: 99 });
    // An event overlapping the seq cannot apply: only a rebuild helps.
    expect(r.receive({ ...setGold(8, 1), fromSeq: 5 })).toEqual([]);
    expect(r.broken).toBe(true);
  });
});
