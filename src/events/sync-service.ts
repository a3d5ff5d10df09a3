/**
 * Catch-up for (re)connecting clients, and the registry of what each client has acknowledged.
 *
 * A client says where it is, as the last seq it applied (`afterSeq`) or as a vector clock, and
 * gets what takes it to the current document: the events after its position, or a snapshot plus
 * the events after the snapshot when the events it needs were compacted away or there are too
 * many of them. Either way, applying the answer (`applyEvents(snapshot?.state ?? clientState,
 * events)`) gives the document at the last event returned, which is the current one (unless
 * writes landed meanwhile: their events follow live).
 *
 * ## Position from a vector clock
 *
 * Let clock(s) be the document's vector clock after seq s (clock(0) = {}). Every event adds 1
 * to one actor's counter, so clock(s) grows with s. The client's position is the largest p with
 * clock(p) <= C (every counter; actors absent from C count 0). It is *exact* when C has seen
 * nothing after p either: for every actor a, min(C[a], head[a]) = clock(p)[a]. A client that
 * applies events in order, as the SDK does, always holds an exact clock: clock(p) itself.
 *
 * - exact p: answered as `{ afterSeq: p }`. The events returned are then exactly the events C
 *   has not seen (`listUnseen`), including those of actors C does not know.
 * - not exact (C saw events out of order, or counts events of actors that come later), or p
 *   cannot be told because the events around it were compacted (deleted, or merged into an event
 *   spanning p): the client's state is no state the document had at a seq the log can continue
 *   from, so the answer is a snapshot plus the events after it, replacing the client's state.
 *
 * p is found from the first event C has not seen, u (with F = u.fromSeq ?? u.seq): p = F - 1 if
 * clock(F - 1) <= C. clock(F - 1) is u's clock less u's own count when u is a single event, else
 * the clock of the event or snapshot at F - 1 when there is one; otherwise p is unknown.
 */

import { EventSyncError, ValidationError } from '../core/errors.js';
import type { EventBackend, StreamHead } from '../core/event-backend.js';
import { firstSeq, follows } from '../core/event-order.js';
import type { MissingEvents, Snapshot, SyncEvent, VectorClock } from '../core/events.js';
import { assertClientId } from '../core/ids.js';
import { applyEvent } from './apply.js';
import { assertDocumentRef, assertSeq, assertVectorClock } from './assert.js';
import { replay } from './replay.js';
import { StateVectorManager } from './state-vectors.js';

/** Where a client is: the last seq it applied, or the vector clock of what it has seen. */
export type ClientPosition = { afterSeq: number } | { vectorClock: VectorClock };

export interface SyncServiceOptions {
  /**
   * When more events than this separate a client from the current document and a snapshot newer
   * than its position exists, send the snapshot and the events after it instead. Default 1,000.
   */
  maxTailEvents?: number;
  /** Write acknowledgements and registrations at most this often, in ms (see `StateVectorManager`). Default 1,000. */
  ackFlushMs?: number;
  /** Told when writing acknowledgements failed (they are tried again with the next write). */
  onAckFlushError?: (error: unknown) => void;
}

/** Reads again this often when a concurrent compaction moved the log under a catch-up. */
const ATTEMPTS = 3;

export class SyncService {
  readonly stateVectors: StateVectorManager;
  readonly #maxTail: number;

  constructor(
    readonly backend: EventBackend,
    options: SyncServiceOptions = {},
  ) {
    this.#maxTail = options.maxTailEvents ?? 1000;
    assertSeq(this.#maxTail, 'maxTailEvents');
    this.stateVectors = new StateVectorManager(backend, {
      ...(options.ackFlushMs === undefined ? {} : { flushMs: options.ackFlushMs }),
      ...(options.onAckFlushError === undefined ? {} : { onFlushError: options.onAckFlushError }),
    });
  }

  /**
   * Registers a client (idempotent): its acknowledgements are kept until it is unregistered.
   * Noted in this instance at once, written with the next batch of acknowledgements.
   */
  async registerClient(clientId: string): Promise<void> {
    this.stateVectors.register(clientId);
  }

  /**
   * Lets `principal` (a principal's id) use `clientId`, or throws `forbidden` when the id is
   * another principal's: a client id keys what its client acknowledged, which is what a
   * position-less `getMissingEvents` resumes from, so it is one principal's alone. The first
   * principal to use an id that is new, or registered with no owner, gets it (written at once,
   * not batched: two principals racing for it on two instances must not both get it).
   */
  async claimClient(clientId: string, principal: string): Promise<void> {
    if (await this.stateVectors.claim(clientId, principal)) return;
    throw new EventSyncError(
      'forbidden',
      `client id ${JSON.stringify(clientId)} belongs to another principal; use one of your own`,
    );
  }

  /** Forgets a client and everything it acknowledged. */
  async unregisterClient(clientId: string): Promise<void> {
    return this.stateVectors.forget(clientId);
  }

  async isRegistered(clientId: string): Promise<boolean> {
    return this.stateVectors.isRegistered(clientId);
  }

  /**
   * Records that a registered client has applied the document up to `seq` (whose clock is
   * `vectorClock`; when omitted, the clock of the event at `seq`, looked up when written).
   * Throws `not_found` for an unregistered client and `validation` for a seq the document has not
   * reached. Noted in this instance and written in a batch (see `StateVectorManager`).
   *
   * Checking the seq reads the document's head: pass `reached: true` when the caller knows the
   * document got there (a server session acknowledges only what it sent), and the
   * acknowledgement costs no statement at all once the client is known here. A batch drops what
   * is past the head anyway.
   */
  async acknowledge(
    clientId: string,
    collection: string,
    documentId: string,
    seq: number,
    vectorClock?: VectorClock,
    options: { reached?: boolean } = {},
  ): Promise<void> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    assertSeq(seq, 'seq');
    if (vectorClock !== undefined) assertVectorClock(vectorClock);
    if (!(await this.stateVectors.isRegistered(clientId))) {
      throw new EventSyncError(
        'not_found',
        `client ${JSON.stringify(clientId)} is not registered: call registerClient first`,
      );
    }
    if (!options.reached) {
      const lastSeq = (await this.backend.head(collection, documentId))?.lastSeq ?? 0;
      if (seq > lastSeq) {
        throw new ValidationError(
          `cannot acknowledge seq ${seq} of ${collection}/${documentId}: its last seq is ${lastSeq}`,
          '/seq',
        );
      }
    }
    this.stateVectors.record(clientId, collection, documentId, seq, vectorClock);
  }

  /** Writes the acknowledgements and registrations noted so far (also done every `ackFlushMs`). */
  flush(): Promise<void> {
    return this.stateVectors.flush();
  }

  /** Writes what is noted; call before closing the database. */
  close(): Promise<void> {
    return this.stateVectors.close();
  }

  /**
   * What the client needs to reach the current document from `position`. Without a position, a
   * registered client resumes from what it last acknowledged, anyone else from the start (seq 0,
   * no document).
   */
  async getMissingEvents(
    clientId: string,
    collection: string,
    documentId: string,
    position?: ClientPosition,
  ): Promise<MissingEvents> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    return fromCurrentIncarnation(await this.#missing(clientId, collection, documentId, position));
  }

  async #missing(
    clientId: string,
    collection: string,
    documentId: string,
    position: ClientPosition | undefined,
  ): Promise<MissingEvents> {
    if (position === undefined) {
      const acknowledged = (await this.stateVectors.isRegistered(clientId))
        ? await this.stateVectors.get(clientId, collection, documentId)
        : undefined;
      return this.#afterSeq(collection, documentId, acknowledged?.lastSeq ?? 0);
    }
    if (typeof position !== 'object' || position === null) {
      throw new ValidationError('a position is { afterSeq } or { vectorClock }');
    }
    if ('afterSeq' in position) {
      assertSeq(position.afterSeq, 'afterSeq');
      return this.#afterSeq(collection, documentId, position.afterSeq);
    }
    if ('vectorClock' in position) {
      assertVectorClock(position.vectorClock);
      return this.#fromClock(collection, documentId, position.vectorClock);
    }
    throw new ValidationError('a position is { afterSeq } or { vectorClock }');
  }

  async #afterSeq(collection: string, documentId: string, afterSeq: number): Promise<MissingEvents> {
    const lastSeq = (await this.backend.head(collection, documentId))?.lastSeq ?? 0;
    if (afterSeq === lastSeq) return { events: [] };
    // A position past the end (another database, a reset): its state cannot be trusted, replace it.
    if (afterSeq > lastSeq) return this.#withSnapshot(collection, documentId);
    const tail = await this.backend.list(collection, documentId, { afterSeq, limit: this.#maxTail + 1 });
    if (!follows(tail, afterSeq)) return this.#withSnapshot(collection, documentId);
    return this.#tailOrSnapshot(collection, documentId, afterSeq, tail, tail.length <= this.#maxTail);
  }

  async #fromClock(collection: string, documentId: string, clock: VectorClock): Promise<MissingEvents> {
    const head = await this.backend.head(collection, documentId);
    if (!head || dominates(clock, head.vectorClock)) return { events: [] };
    const unseen = await this.backend.listUnseen(collection, documentId, clock);
    const first = unseen[0];
    if (!first) return this.#withSnapshot(collection, documentId); // the unseen events were compacted
    const from = firstSeq(first);
    const before = await this.#clockBefore(collection, documentId, first);
    if (!before || !dominates(clock, before) || !exact(clock, before, head)) {
      return this.#withSnapshot(collection, documentId);
    }
    // An exact clock has seen every event up to from - 1 and none after: `unseen` is the whole tail.
    return this.#tailOrSnapshot(collection, documentId, from - 1, unseen, true);
  }

  /** clock(F - 1) for the event `u` starting at F, when the log can tell it. */
  async #clockBefore(collection: string, documentId: string, u: SyncEvent): Promise<VectorClock | undefined> {
    if (u.fromSeq === undefined) {
      const clock = { ...u.vectorClock };
      clock[u.clientId] = (clock[u.clientId] ?? 0) - 1;
      if (clock[u.clientId] === 0) delete clock[u.clientId];
      return clock;
    }
    const at = u.fromSeq - 1;
    if (at === 0) return {};
    const [previous] = await this.backend.list(collection, documentId, { afterSeq: at - 1, toSeq: at });
    if (previous?.seq === at) return previous.vectorClock;
    const snapshot = await this.backend.latestSnapshot(collection, documentId, at);
    return snapshot?.seq === at ? snapshot.vectorClock : undefined;
  }

  /**
   * `tail` (the events after `position`) when it is complete and short, else the latest snapshot
   * plus its tail when that snapshot is newer than the position, else the whole tail.
   */
  async #tailOrSnapshot(
    collection: string,
    documentId: string,
    position: number,
    tail: SyncEvent[],
    complete: boolean,
  ): Promise<MissingEvents> {
    if (complete && tail.length <= this.#maxTail) return { events: tail };
    const snapshot = await this.backend.latestSnapshot(collection, documentId);
    if (snapshot && snapshot.seq > position) return this.#withSnapshot(collection, documentId);
    if (complete) return { events: tail };
    const all = await this.backend.list(collection, documentId, { afterSeq: position });
    // Compacted between the two reads: only a snapshot can help now.
    return follows(all, position) ? { events: all } : this.#withSnapshot(collection, documentId);
  }

  /**
   * The latest snapshot and the events after it; when there is none the log can continue from
   * (snapshots deleted, or merges without one), the current document rebuilt as a snapshot.
   */
  async #withSnapshot(collection: string, documentId: string): Promise<MissingEvents> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const snapshot = await this.backend.latestSnapshot(collection, documentId);
      if (!snapshot) break;
      const events = await this.backend.list(collection, documentId, { afterSeq: snapshot.seq });
      if (
        events.length > 0
          ? follows(events, snapshot.seq)
          : await this.#isHead(collection, documentId, snapshot.seq)
      ) {
        return { snapshot, events };
      }
    }
    const current = await replay(this.backend, collection, documentId);
    return { snapshot: { collection, documentId, ...current, createdAt: Date.now() }, events: [] };
  }

  async #isHead(collection: string, documentId: string, seq: number): Promise<boolean> {
    const head: StreamHead | undefined = await this.backend.head(collection, documentId);
    return (head?.lastSeq ?? 0) === seq;
  }
}

/**
 * An answer never reaches back before the current incarnation of the document: after a delete
 * and re-create of an id, whoever may read the new document (perhaps someone else's, with the
 * same id) must not be handed the old one's content through events or a snapshot of it. When
 * an answer holds a create or delete after other events, or after a snapshot, it starts at the
 * last such boundary instead: a snapshot of the created document (or of none, after a delete),
 * then the events after it. A client right before the boundary gets it as an event, as before.
 */
function fromCurrentIncarnation(answer: MissingEvents): MissingEvents {
  const { events } = answer;
  let at = events.length - 1;
  while (at >= 0 && events[at]!.operation !== 'create' && events[at]!.operation !== 'delete') at--;
  if (at < 0 || (at === 0 && !answer.snapshot)) return answer;
  const boundary = events[at]!;
  const snapshot: Snapshot = {
    collection: boundary.collection,
    documentId: boundary.documentId,
    seq: boundary.seq,
    version: boundary.version,
    state: boundary.operation === 'create' ? applyEvent(null, boundary) : null,
    vectorClock: boundary.vectorClock,
    createdAt: boundary.timestamp,
  };
  return { snapshot, events: events.slice(at + 1) };
}

/** a >= b on every counter (absent counts 0). */
function dominates(a: VectorClock, b: VectorClock): boolean {
  for (const [actor, count] of Object.entries(b)) if ((a[actor] ?? 0) < count) return false;
  return true;
}

/** Whether `clock` has seen nothing of the document beyond `at` (given clock >= at). */
function exact(clock: VectorClock, at: VectorClock, head: StreamHead): boolean {
  for (const [actor, count] of Object.entries(head.vectorClock)) {
    if (Math.min(clock[actor] ?? 0, count) !== (at[actor] ?? 0)) return false;
  }
  return true;
}
