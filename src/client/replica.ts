/**
 * One document's local replica: the state at a seq, kept from snapshots and events. No I/O.
 *
 * - Events apply strictly in seq order (`applyEvent`, the same code the server replays with).
 * - An event at or below the current seq is a duplicate and is dropped.
 * - An event that starts after `seq + 1` arrived early: it waits in a buffer until the events
 *   before it arrive (or a snapshot or a repair covers them); the owner asks the server for the
 *   missing ones when the gap does not fill in time (`needsRepair`).
 * - A snapshot replaces the state, then the buffer drains what follows it.
 * - An event that does not fit the state (the log and the replica disagree) or overlaps the seq
 *   (a compacted event covering seqs on both sides of it) marks the replica `broken`: only a
 *   rebuild from the server helps; events keep being buffered meanwhile.
 */

import { firstSeq } from '../core/event-order.js';
import type { DocumentPosition, SyncEvent, VectorClock } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import { applyEvent } from '../events/apply.js';

/** The state of a document at one seq (the client's public name of a `DocumentPosition`). */
export type ReplicaPosition = DocumentPosition;

/** What changed the replica, in the order it happened, with the document after the change. */
export type ReplicaChange =
  | { kind: 'event'; event: SyncEvent; state: JsonObject | null }
  | { kind: 'snapshot'; seq: number; previousSeq: number; state: JsonObject | null };

export const emptyPosition = (): ReplicaPosition => ({ seq: 0, version: 0, state: null, vectorClock: {} });

export class Replica {
  state: JsonObject | null;
  seq: number;
  version: number;
  vectorClock: VectorClock;
  /**
   * Whether `state` is the document at `seq`. A document met inside a collection subscription has
   * no base until its snapshot or its `create` event arrives; events before that wait.
   */
  based: boolean;
  /** An event did not fit: only a rebuild (a snapshot, or the log from the start) helps. */
  broken = false;
  /** Why the replica broke, for the error report. */
  brokenBy: unknown;
  /** Early events, by the first seq they cover. */
  readonly #early = new Map<number, SyncEvent>();

  constructor(
    readonly collection: string,
    readonly documentId: string,
    from: ReplicaPosition | undefined,
  ) {
    const p = from ?? emptyPosition();
    this.state = p.state;
    this.seq = p.seq;
    this.version = p.version;
    this.vectorClock = p.vectorClock;
    this.based = from !== undefined;
  }

  get position(): ReplicaPosition {
    return { seq: this.seq, version: this.version, state: this.state, vectorClock: this.vectorClock };
  }

  /** Events waiting for the ones before them. */
  get waiting(): number {
    return this.#early.size;
  }

  /** A gap that did not fill by itself, or a broken replica: the server must be asked. */
  get needsRepair(): boolean {
    return this.broken || (this.based && this.#early.size > 0);
  }

  /** A repair must start from scratch (seq 0) rather than after `seq`. */
  get needsRebuild(): boolean {
    return this.broken;
  }

  /** Takes one event; returns what was applied (possibly several: buffered events it unblocked). */
  receive(event: SyncEvent): ReplicaChange[] {
    if (!this.based) {
      if (event.operation !== 'create' || this.broken) {
        this.#buffer(event);
        return [];
      }
      // Nothing existed before a create: the event alone brings the whole document.
      this.based = true;
      this.seq = firstSeq(event) - 1;
      this.state = null;
      this.vectorClock = {};
      this.version = 0;
      this.#prune();
    }
    if (event.seq <= this.seq) return [];
    if (this.broken || firstSeq(event) !== this.seq + 1) {
      if (firstSeq(event) <= this.seq) this.#break(new Error(`event ${event.seq} overlaps seq ${this.seq}`));
      this.#buffer(event);
      return [];
    }
    const changes: ReplicaChange[] = [];
    if (this.#apply(event)) changes.push({ kind: 'event', event, state: this.state });
    else this.#buffer(event);
    this.#drain(changes);
    return changes;
  }

  /**
   * Replaces the replica with `position` (a snapshot, or a rebuilt state) when it is not older
   * than what the replica has, or when `force` says the server's word wins anyway (it lost events
   * the replica has seen). Returns what changed: nothing when the snapshot was older.
   */
  replace(position: ReplicaPosition, force = false): ReplicaChange[] {
    if (this.based && !this.broken && !force && position.seq < this.seq) return [];
    const previousSeq = this.seq;
    this.state = position.state;
    this.seq = position.seq;
    this.version = position.version;
    this.vectorClock = position.vectorClock;
    this.based = true;
    this.broken = false;
    this.brokenBy = undefined;
    this.#prune();
    const changes: ReplicaChange[] = [
      { kind: 'snapshot', seq: position.seq, previousSeq, state: position.state },
    ];
    this.#drain(changes);
    return changes;
  }

  #apply(event: SyncEvent): boolean {
    try {
      this.state = applyEvent(this.state, event);
    } catch (error) {
      this.#break(error);
      return false;
    }
    this.seq = event.seq;
    this.version = event.version;
    this.vectorClock = event.vectorClock;
    return true;
  }

  #break(cause: unknown): void {
    this.broken = true;
    this.brokenBy = cause;
  }

  #buffer(event: SyncEvent): void {
    const first = firstSeq(event);
    const held = this.#early.get(first);
    // Of two events starting at the same seq, keep the one that reaches further (a merged one).
    if (!held || held.seq < event.seq) this.#early.set(first, event);
  }

  /** Drops buffered events the current seq already covers (or overlaps). */
  #prune(): void {
    for (const [first, event] of this.#early) {
      if (event.seq <= this.seq || first <= this.seq) this.#early.delete(first);
    }
  }

  #drain(changes: ReplicaChange[]): void {
    this.#prune();
    for (;;) {
      if (this.broken) return;
      const next = this.#early.get(this.seq + 1);
      if (!next) return;
      this.#early.delete(this.seq + 1);
      if (this.#apply(next)) changes.push({ kind: 'event', event: next, state: this.state });
      else this.#early.set(firstSeq(next), next);
      this.#prune();
    }
  }
}
