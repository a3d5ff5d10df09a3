/**
 * The in-process event log: events per document and in one serverSeq order, stream heads,
 * snapshots, state vectors. Appends are synchronous, so an event and the document write that
 * made it happen in one step; a transaction stages its events and publishes them at commit,
 * which is also when they get their serverSeq (so the feed never skips one).
 */
import type {
  Acknowledgement,
  EventBackend,
  EventRange,
  MutationRecord,
  StreamHead,
} from '../../core/event-backend.js';
import type { EventDraft, Snapshot, StateVector, SyncEvent, VectorClock } from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import { expects, MemoryMutationRecords } from './memory-mutations.js';

const key = (collection: string, documentId: string) => `${collection}\u0000${documentId}`;
const clone = <V>(value: V): V => structuredClone(value);

/** Builds the next event of a stream from its head; the caller decides when it becomes visible. */
export function nextEvent(head: StreamHead | undefined, draft: EventDraft): SyncEvent {
  const vectorClock: VectorClock = { ...head?.vectorClock };
  vectorClock[draft.clientId] = (vectorClock[draft.clientId] ?? 0) + 1;
  return {
    ...clone(draft),
    id: newObjectId(),
    seq: (head?.lastSeq ?? 0) + 1,
    serverSeq: 0,
    timestamp: Date.now(),
    vectorClock,
  };
}

export class MemoryEventLog implements EventBackend {
  readonly #streams = new Map<string, SyncEvent[]>();
  readonly #heads = new Map<string, StreamHead>();
  /** Every event in serverSeq order (compaction leaves holes, never reorders). */
  #all: SyncEvent[] = [];
  #serverSeq = 0;
  readonly #snapshots = new Map<string, Snapshot[]>();
  readonly #stateVectors = new Map<string, StateVector>();
  /** Registered clients and their owners (null: none yet). */
  readonly #clients = new Map<string, string | null>();
  readonly #commitListeners = new Set<() => void>();
  /** Each client's mutation record; transactions lock and write them (memory-database.ts). */
  readonly mutations = new MemoryMutationRecords();

  constructor(
    /** Waits for a collection's transactions to finish before a write; set by the database. */
    private readonly whenFree: <R>(collection: string, write: () => R) => Promise<R>,
    /** Throws `closed` once the database is closed: every method of the `EventBackend` asks first. */
    private readonly assertOpen: () => void,
  ) {}

  async head(collection: string, documentId: string): Promise<StreamHead | undefined> {
    this.assertOpen();
    const head = this.#heads.get(key(collection, documentId));
    return head && clone(head);
  }

  /** The head including events staged but not yet published (a transaction's own). */
  headOf(collection: string, documentId: string): StreamHead | undefined {
    return this.#heads.get(key(collection, documentId));
  }

  /** Makes events visible, in order: assigns serverSeq, advances heads, wakes watchers. Synchronous. */
  publish(events: SyncEvent[]): void {
    for (const event of events) {
      event.serverSeq = ++this.#serverSeq;
      const k = key(event.collection, event.documentId);
      this.#heads.set(k, { lastSeq: event.seq, vectorClock: { ...event.vectorClock } });
      const stream = this.#streams.get(k);
      if (stream) stream.push(event);
      else this.#streams.set(k, [event]);
      this.#all.push(event);
    }
    if (events.length > 0) for (const listener of this.#commitListeners) listener();
  }

  async append(draft: EventDraft): Promise<SyncEvent> {
    this.assertOpen();
    return this.whenFree(draft.collection, () => {
      const event = nextEvent(this.headOf(draft.collection, draft.documentId), draft);
      this.publish([event]);
      return clone(event);
    });
  }

  async list(collection: string, documentId: string, range: EventRange = {}): Promise<SyncEvent[]> {
    this.assertOpen();
    const { afterSeq = 0, toSeq = Number.POSITIVE_INFINITY, limit = Number.POSITIVE_INFINITY } = range;
    const stream = this.#streams.get(key(collection, documentId)) ?? [];
    return stream
      .filter((e) => e.seq > afterSeq && e.seq <= toSeq)
      .slice(0, limit)
      .map(clone);
  }

  async listUnseen(collection: string, documentId: string, clock: VectorClock): Promise<SyncEvent[]> {
    this.assertOpen();
    const stream = this.#streams.get(key(collection, documentId)) ?? [];
    return stream.filter((e) => (e.vectorClock[e.clientId] ?? 0) > (clock[e.clientId] ?? 0)).map(clone);
  }

  async listAfterVersion(collection: string, documentId: string, afterVersion: number): Promise<SyncEvent[]> {
    this.assertOpen();
    const stream = this.#streams.get(key(collection, documentId)) ?? [];
    return stream.filter((e) => e.version > afterVersion).map(clone);
  }

  async listAfterServerSeq(
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]> {
    this.assertOpen();
    const out: SyncEvent[] = [];
    for (const event of this.#all) {
      if (out.length >= limit) break;
      if (event.serverSeq > afterServerSeq && (collection === undefined || event.collection === collection)) {
        out.push(clone(event));
      }
    }
    return out;
  }

  async latestServerSeq(): Promise<number> {
    this.assertOpen();
    // Staged (uncommitted) events get their serverSeq only at commit, so the counter is settled.
    return this.#serverSeq;
  }

  async watchCommits(onCommit: () => void): Promise<() => Promise<void>> {
    this.assertOpen();
    this.#commitListeners.add(onCommit);
    return async () => {
      this.#commitListeners.delete(onCommit);
    };
  }

  async deleteEvents(collection: string, documentId: string, throughSeq: number): Promise<number> {
    this.assertOpen();
    const k = key(collection, documentId);
    const stream = this.#streams.get(k) ?? [];
    const kept = stream.filter((e) => e.seq > throughSeq);
    const gone = new Set(stream.filter((e) => e.seq <= throughSeq));
    this.#streams.set(k, kept);
    if (gone.size > 0) this.#all = this.#all.filter((e) => !gone.has(e));
    return gone.size;
  }

  async replaceEvents(merged: SyncEvent & { fromSeq: number }): Promise<void> {
    this.assertOpen();
    const k = key(merged.collection, merged.documentId);
    const stream = this.#streams.get(k) ?? [];
    const replaced = new Set(stream.filter((e) => e.seq >= merged.fromSeq && e.seq <= merged.seq));
    const event = clone(merged);
    this.#streams.set(
      k,
      stream.flatMap((e) => (e.seq === merged.seq ? [event] : replaced.has(e) ? [] : [e])),
    );
    this.#all = this.#all.flatMap((e) =>
      e.seq === merged.seq && replaced.has(e) ? [event] : replaced.has(e) ? [] : [e],
    );
  }

  async streams(
    collection: string | undefined,
    after: [string, string] | undefined,
    limit: number,
  ): Promise<[string, string][]> {
    this.assertOpen();
    const pairs = new Set<string>([...this.#streams.keys(), ...this.#snapshots.keys()]);
    return [...pairs]
      .map((k) => k.split('\u0000') as [string, string])
      .filter(([c]) => collection === undefined || c === collection)
      .sort(([c1, d1], [c2, d2]) => (c1 === c2 ? compare(d1, d2) : compare(c1, c2)))
      .filter(([c, d]) => !after || c > after[0] || (c === after[0] && d > after[1]))
      .slice(0, limit);
  }

  async putSnapshot(snapshot: Snapshot): Promise<void> {
    this.assertOpen();
    const k = key(snapshot.collection, snapshot.documentId);
    const list = (this.#snapshots.get(k) ?? []).filter((s) => s.seq !== snapshot.seq);
    list.push(clone(snapshot));
    list.sort((a, b) => a.seq - b.seq);
    this.#snapshots.set(k, list);
  }

  async latestSnapshot(
    collection: string,
    documentId: string,
    atOrBeforeSeq?: number,
  ): Promise<Snapshot | undefined> {
    this.assertOpen();
    const list = this.#snapshots.get(key(collection, documentId)) ?? [];
    const found = list.filter((s) => atOrBeforeSeq === undefined || s.seq <= atOrBeforeSeq).at(-1);
    return found && clone(found);
  }

  async deleteSnapshots(collection: string, documentId: string, beforeSeq: number): Promise<number> {
    this.assertOpen();
    const k = key(collection, documentId);
    const list = this.#snapshots.get(k) ?? [];
    const kept = list.filter((s) => s.seq >= beforeSeq);
    this.#snapshots.set(k, kept);
    return list.length - kept.length;
  }

  async putStateVector(vector: StateVector): Promise<StateVector> {
    this.assertOpen();
    const k = key(vector.clientId, key(vector.collection, vector.documentId));
    const stored = this.#stateVectors.get(k);
    if (stored === undefined || stored.lastSeq < vector.lastSeq) this.#stateVectors.set(k, clone(vector));
    return clone(this.#stateVectors.get(k)!);
  }

  async putStateVectors(acks: readonly Acknowledgement[], clients: readonly string[]): Promise<void> {
    this.assertOpen();
    for (const clientId of clients) this.#register(clientId);
    for (const ack of acks) {
      this.#register(ack.clientId);
      const k = key(ack.collection, ack.documentId);
      const head = this.#heads.get(k);
      if (!head || ack.lastSeq > head.lastSeq) continue;
      const vectorClock =
        ack.vectorClock ??
        (ack.lastSeq === head.lastSeq
          ? head.vectorClock
          : (this.#streams.get(k)?.findLast((e) => e.seq === ack.lastSeq)?.vectorClock ?? {}));
      await this.putStateVector({ ...ack, vectorClock });
    }
  }

  async getStateVector(
    clientId: string,
    collection: string,
    documentId: string,
  ): Promise<StateVector | undefined> {
    this.assertOpen();
    const found = this.#stateVectors.get(key(clientId, key(collection, documentId)));
    return found && clone(found);
  }

  async registerClient(clientId: string): Promise<void> {
    this.assertOpen();
    this.#register(clientId);
  }

  async claimClient(clientId: string, principal: string): Promise<string> {
    this.assertOpen();
    const owner = this.#clients.get(clientId) ?? principal;
    this.#clients.set(clientId, owner);
    return owner;
  }

  async unregisterClient(clientId: string): Promise<void> {
    this.assertOpen();
    this.#clients.delete(clientId);
    this.mutations.delete(clientId);
    for (const k of [...this.#stateVectors.keys()])
      if (k.startsWith(`${clientId}\u0000`)) this.#stateVectors.delete(k);
  }

  async isRegistered(clientId: string): Promise<boolean> {
    this.assertOpen();
    return this.#clients.has(clientId);
  }

  async mutationRecord(clientId: string): Promise<MutationRecord | undefined> {
    this.assertOpen();
    return this.mutations.get(clientId);
  }

  async keepMutationRecord(record: MutationRecord): Promise<boolean> {
    // A transaction whose write keeps this record holds it until it ends (as SQL's row lock).
    await this.mutations.free(record.clientId);
    this.assertOpen();
    if (!expects(this.mutations.get(record.clientId), record.lastMid)) return false;
    this.mutations.set(record);
    return true;
  }

  async pruneMutationRecords(prefix: string, updatedBefore: number): Promise<number> {
    this.assertOpen();
    return this.mutations.prune(prefix, updatedBefore);
  }

  /** Registers a client, keeping its owner if it has one. */
  #register(clientId: string): void {
    if (!this.#clients.has(clientId)) this.#clients.set(clientId, null);
  }
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
