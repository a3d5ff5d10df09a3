/**
 * Feeds: what `client.document()` and `client.collection()` hand out. A feed is one subscription
 * (a document, or a collection with a filter) with its replicas; it takes the server's frames
 * from its channel (or, for a document riding on a collection's SSE stream, from that collection)
 * and tells its listeners. The public shapes are `DocumentHandle` and `CollectionHandle`.
 */

import type { SyncEvent, VectorClock } from '../core/events.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import type { Filter } from '../core/query.js';
import { documentKey } from '../protocol/wire.js';
import type { Channel, Subscription } from './channel.js';
import { EventSyncClientError } from './errors.js';
import type { MutationAnswer, PendingMutation } from './mutations.js';
import { emptyPosition, Replica, type ReplicaChange, type ReplicaPosition } from './replica.js';
import type { ClientMessage, ServerMessage } from './transport.js';

// The storage's MongoDB query filter: typed by the document (`Filter<T>`), plain JSON untyped.
export type { Filter } from '../core/query.js';

type Listener<A extends unknown[]> = (...args: A) => void;

export interface DocumentHandle<T = JsonObject> {
  readonly collection: string;
  readonly documentId: string;
  /** The document as predicted: `confirmed` with the pending mutations replayed (`null`: none). */
  readonly state: T | null;
  /** The replica: the server's document at `seq`, or `null` (not created yet, or deleted). */
  readonly confirmed: T | null;
  /** The mutations of this document the server has not confirmed yet, in mid order. */
  readonly pending: readonly PendingMutation[];
  /**
   * Asks the server to run mutator `name` on the document; `state` shows its predicted effect at
   * once. Resolves with the server's answer; rejects with an `EventSyncClientError` (`reason`
   * set for `mutation_refused`), the prediction rolled back.
   */
  mutate(name: string, args?: JsonValue): Promise<MutationAnswer>;
  /** The last seq applied (0: nothing yet). */
  readonly seq: number;
  readonly version: number;
  readonly vectorClock: Readonly<VectorClock>;
  /** Caught up with the server on the current connection. */
  readonly synced: boolean;
  /** Set when the server refused the subscription (e.g. `forbidden`); the handle then stays as it is. */
  readonly error: EventSyncClientError | undefined;
  /** `event` is absent when the replica was replaced (a snapshot) or a pending mutation came or went. Returns a function that unsubscribes. */
  on(type: 'change', listener: (doc: T | null, event?: SyncEvent) => void): () => void;
  on(type: 'synced', listener: () => void): () => void;
  /** Resolves when the handle is caught up (at once if it is). */
  whenSynced(): Promise<void>;
  /** Stops following the document. */
  close(): void;
}

export type CollectionChange<T> =
  | { type: 'event'; documentId: string; doc: T | null; event: SyncEvent }
  | { type: 'snapshot'; documentId: string; doc: T | null; seq: number }
  | { type: 'leave'; documentId: string }
  /** A pending mutation came or went: `doc` is the new prediction. */
  | { type: 'mutation'; documentId: string; doc: T | null };

export interface CollectionHandle<T = JsonObject> {
  readonly collection: string;
  readonly filter: Filter<T> | undefined;
  /** The documents that match, by id, as predicted (pending mutations replayed). */
  readonly docs: ReadonlyMap<string, T>;
  /** The server's documents only. */
  readonly confirmed: ReadonlyMap<string, T>;
  /** The mutations of this collection's documents the server has not confirmed yet, in mid order. */
  readonly pending: readonly PendingMutation[];
  /** As `DocumentHandle.mutate`, on document `documentId`. */
  mutate(documentId: string, name: string, args?: JsonValue): Promise<MutationAnswer>;
  /** A member's replica position (seq, version, vector clock), or `undefined`. */
  positionOf(
    documentId: string,
  ): { seq: number; version: number; vectorClock: Readonly<VectorClock> } | undefined;
  readonly synced: boolean;
  readonly error: EventSyncClientError | undefined;
  on(
    type: 'change',
    listener: (docs: ReadonlyMap<string, T>, change: CollectionChange<T>) => void,
  ): () => void;
  on(type: 'synced', listener: () => void): () => void;
  whenSynced(): Promise<void>;
  close(): void;
}

export function positionOfSnapshot(s: {
  seq: number;
  version: number;
  state: JsonObject | null;
  vectorClock: VectorClock;
}): ReplicaPosition {
  return { seq: s.seq, version: s.version, state: s.state, vectorClock: s.vectorClock };
}

/** One subscription with its replicas: what a channel carries (`Subscription` in channel.ts). */
export abstract class Feed implements Subscription {
  /** The subscription id on the current link. */
  sub = '';
  synced = false;
  closed = false;
  error: EventSyncClientError | undefined;
  channel: Channel<Feed> | undefined;
  protected readonly syncedListeners = new Set<() => void>();
  /** The `change` listeners, as each kind of feed calls them. */
  protected abstract readonly changeListeners: Set<Listener<never[]>>;
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(
    protected readonly host: FeedHost,
    readonly collection: string,
  ) {}

  abstract subscribeMessage(sub: string): ClientMessage;
  abstract replicaOf(documentId: string): Replica | undefined;
  abstract replicas(): Iterable<Replica>;
  /** The link is about to subscribe (`subscribe` sent). */
  abstract beginCatchUp(): void;
  abstract onSnapshot(message: Extract<ServerMessage, { type: 'snapshot' }>): void;
  abstract onEvent(event: SyncEvent): void;
  /** `reason`: `unmatched`, or `forbidden` (the principal may no longer read the document). */
  abstract onLeave(documentId: string, reason: string): void;
  /** The replica changed: tell the listeners. */
  abstract emit(replica: Replica, changes: ReplicaChange[]): void;
  /** The pending mutations of a document changed (not its replica): tell the listeners. */
  abstract repredicted(documentId: string): void;

  /** Adds a `change` or `synced` listener; returns the function that removes it. */
  on(type: 'change' | 'synced', listener: Listener<never[]>): () => void {
    const listeners: Set<Listener<never[]>> = type === 'change' ? this.changeListeners : this.syncedListeners;
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  onSynced(): void {
    this.synced = true;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
    for (const listener of [...this.syncedListeners]) listener();
  }

  linkLost(): void {
    this.synced = false;
  }

  /** The server refused the subscription for good. */
  fail(error: EventSyncClientError): void {
    this.error = error;
    this.synced = false;
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(error);
  }

  whenSynced(): Promise<void> {
    if (this.synced) return Promise.resolve();
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Changes from the link or a repair, applied: report them and look after the replica. */
  applied(replica: Replica, changes: ReplicaChange[]): void {
    if (changes.length > 0) {
      this.host.changed(this, replica, changes);
      this.emit(replica, changes);
    }
    this.host.watchGap(this, replica);
  }
}

export class DocumentFeed extends Feed implements DocumentHandle<JsonObject> {
  replica: Replica;
  /**
   * Over SSE, a document of a collection followed without a filter rides on that collection's
   * stream instead of opening one more (browsers allow 6 HTTP/1.1 connections per server).
   */
  source: CollectionFeed | undefined;
  /** Whether any subscription was sent yet (a persisted replica may seed it until then). */
  started = false;
  /** The `afterSeq` of the current link's subscription. */
  subscribedAfter = 0;
  protected readonly changeListeners = new Set<Listener<[JsonObject | null, SyncEvent?]>>();

  constructor(
    host: FeedHost,
    collection: string,
    readonly documentId: string,
    from: ReplicaPosition | undefined,
  ) {
    super(host, collection);
    this.replica = new Replica(collection, documentId, from ?? emptyPosition());
  }

  get state(): JsonObject | null {
    return this.#predicted(this.replica.state);
  }
  get confirmed(): JsonObject | null {
    return this.replica.state;
  }
  get pending(): PendingMutation[] {
    return this.host.pending(this.collection, this.documentId);
  }

  mutate(name: string, args?: JsonValue): Promise<MutationAnswer> {
    return this.host.mutate(this.collection, this.documentId, name, args);
  }

  #predicted(state: JsonObject | null): JsonObject | null {
    return this.host.predict(this.collection, this.documentId, state);
  }
  get seq(): number {
    return this.replica.seq;
  }
  get version(): number {
    return this.replica.version;
  }
  get vectorClock(): Readonly<VectorClock> {
    return this.replica.vectorClock;
  }

  close(): void {
    this.host.closeFeed(this);
  }

  subscribeMessage(sub: string): ClientMessage {
    this.started = true;
    this.subscribedAfter = this.replica.seq;
    return {
      type: 'subscribe',
      sub,
      collection: this.collection,
      documentId: this.documentId,
      afterSeq: this.replica.seq,
    };
  }

  replicaOf(documentId: string): Replica | undefined {
    return documentId === this.documentId ? this.replica : undefined;
  }

  *replicas(): Iterable<Replica> {
    yield this.replica;
  }

  beginCatchUp(): void {
    this.synced = false;
  }

  onSnapshot(message: Extract<ServerMessage, { type: 'snapshot' }>): void {
    // A snapshot older than the seq we subscribed after: the server lost events we had seen, and
    // its word wins. Older than the replica only (a repair got further meanwhile): ignored.
    const force = message.seq < this.subscribedAfter;
    this.applied(this.replica, this.replica.replace(positionOfSnapshot(message), force));
  }

  onEvent(event: SyncEvent): void {
    this.applied(this.replica, this.replica.receive(event));
  }

  onLeave(): void {
    // Document subscriptions have no members to lose.
  }

  /** Replaces the replica wholesale (persisted state loaded before the first subscription). */
  seed(position: ReplicaPosition): void {
    this.applied(this.replica, this.replica.replace(position, true));
  }

  /**
   * The source collection's replica of this document changed (`changes`), or is offered on
   * attaching (no `changes`). A replica other than ours (the document entered the collection
   * again) is taken over when it is not behind ours, as a snapshot.
   */
  adopt(replica: Replica, changes: ReplicaChange[] | undefined): void {
    if (replica !== this.replica) {
      if (!replica.based || (this.replica.seq > 0 && replica.seq < this.replica.seq)) return;
      const previousSeq = this.replica.seq;
      this.replica = replica;
      changes = [{ kind: 'snapshot', seq: replica.seq, previousSeq, state: replica.state }];
    }
    if (!changes || changes.length === 0) return;
    this.emit(replica, changes);
    this.host.mirrored(this);
  }

  /** Leaves the source collection with a replica of its own, at the position it had. */
  detach(): void {
    this.source = undefined;
    const r = this.replica;
    this.replica = new Replica(
      r.collection,
      r.documentId,
      r.based && !r.broken ? r.position : emptyPosition(),
    );
  }

  emit(_replica: Replica, changes: ReplicaChange[]): void {
    for (const change of changes) {
      const state = this.#predicted(change.state);
      for (const listener of [...this.changeListeners]) {
        if (change.kind === 'event') listener(state, change.event);
        else listener(state);
      }
    }
  }

  repredicted(): void {
    const state = this.state;
    for (const listener of [...this.changeListeners]) listener(state);
  }
}

export class CollectionFeed extends Feed implements CollectionHandle<JsonObject> {
  readonly #replicas = new Map<string, Replica>();
  /** Document handles riding on this (unfiltered, SSE) feed, by id. */
  readonly attached = new Map<string, DocumentFeed>();
  /** Documents the current subscription has brought (snapshot or create) before `synced`. */
  #seen: Set<string> | undefined;
  #docs: Map<string, JsonObject> | undefined;
  #confirmed: Map<string, JsonObject> | undefined;
  protected readonly changeListeners = new Set<
    Listener<[ReadonlyMap<string, JsonObject>, CollectionChange<JsonObject>]>
  >();

  constructor(
    host: FeedHost,
    collection: string,
    readonly filter: Filter | undefined,
  ) {
    super(host, collection);
  }

  get docs(): ReadonlyMap<string, JsonObject> {
    this.#docs ??= this.#members((id, r) => this.host.predict(this.collection, id, r.state));
    return this.#docs;
  }

  get confirmed(): ReadonlyMap<string, JsonObject> {
    this.#confirmed ??= this.#members((_id, r) => r.state);
    return this.#confirmed;
  }

  get pending(): PendingMutation[] {
    return this.host.pending(this.collection, undefined);
  }

  mutate(documentId: string, name: string, args?: JsonValue): Promise<MutationAnswer> {
    return this.host.mutate(this.collection, documentId, name, args);
  }

  /** The ids of the documents the handle has (saved so that a reload shows them before the server answers). */
  memberIds(): string[] {
    return [...this.confirmed.keys()];
  }

  /** Replicas restored from the store, before the first subscription brings the server's. */
  seed(positions: Map<string, ReplicaPosition>): void {
    if (this.#replicas.size > 0) return;
    for (const [id, p] of positions) this.#replicas.set(id, new Replica(this.collection, id, p));
    this.#docs = this.#confirmed = undefined;
    // Listeners hear what the store gave as they hear the server's snapshots.
    for (const [id, p] of positions) {
      this.#tell({ type: 'snapshot', documentId: id, doc: this.docs.get(id) ?? null, seq: p.seq });
    }
  }

  #tell(change: CollectionChange<JsonObject>): void {
    for (const listener of [...this.changeListeners]) listener(this.docs, change);
  }

  #members(stateOf: (id: string, r: Replica) => JsonObject | null): Map<string, JsonObject> {
    const members = new Map<string, JsonObject>();
    for (const [id, r] of this.#replicas) {
      const state = r.based && r.state !== null ? stateOf(id, r) : null;
      if (state !== null) members.set(id, state);
    }
    return members;
  }

  positionOf(documentId: string) {
    const r = this.#replicas.get(documentId);
    if (!r?.based || r.state === null) return undefined;
    return { seq: r.seq, version: r.version, vectorClock: r.vectorClock };
  }

  close(): void {
    this.host.closeFeed(this);
  }

  subscribeMessage(sub: string): ClientMessage {
    // Absent fields are left undefined: the frame is JSON, which drops them.
    return {
      type: 'subscribe',
      sub,
      collection: this.collection,
      filter: this.filter as Record<string, never>,
    } as ClientMessage;
  }

  replicaOf(documentId: string): Replica | undefined {
    return this.#replicas.get(documentId);
  }

  replicas(): Iterable<Replica> {
    return this.#replicas.values();
  }

  attach(doc: DocumentFeed): void {
    this.attached.set(doc.documentId, doc);
    doc.source = this;
    const replica = this.#replicas.get(doc.documentId);
    if (replica) doc.adopt(replica, undefined);
    if (this.synced) doc.onSynced();
  }

  /** Lets go of every attached document handle (this feed closes or failed). */
  detachAll(): DocumentFeed[] {
    const docs = [...this.attached.values()];
    this.attached.clear();
    for (const doc of docs) doc.detach();
    return docs;
  }

  override linkLost(): void {
    super.linkLost();
    for (const doc of this.attached.values()) doc.linkLost();
  }

  beginCatchUp(): void {
    this.synced = false;
    this.#seen = new Set();
    // Events held for documents that never got a base: the new subscription starts over.
    for (const [id, r] of this.#replicas) if (!r.based) this.#replicas.delete(id);
  }

  onSnapshot(message: Extract<ServerMessage, { type: 'snapshot' }>): void {
    const replica = this.#replica(message.documentId);
    this.#seen?.add(message.documentId);
    // During the catch-up of a new subscription the server's state wins even if older.
    this.applied(replica, replica.replace(positionOfSnapshot(message), this.#seen !== undefined));
  }

  onEvent(event: SyncEvent): void {
    const replica = this.#replica(event.documentId);
    if (event.operation === 'create') this.#seen?.add(event.documentId);
    this.applied(replica, replica.receive(event));
  }

  onLeave(documentId: string, reason: string): void {
    if (reason === 'forbidden') this.#forbid(documentId);
    const replica = this.#replicas.get(documentId);
    if (!replica) return;
    this.#remove(replica);
  }

  /**
   * The principal may no longer read a document: a handle riding on this stream ends with
   * `forbidden`, as its own subscription would, instead of asking the server (REST) again.
   */
  #forbid(documentId: string): void {
    const doc = this.attached.get(documentId);
    if (!doc) return;
    this.attached.delete(documentId);
    doc.detach();
    const message = `you may no longer read ${documentKey(this.collection, documentId)}`;
    this.host.feedFailed(doc, new EventSyncClientError('forbidden', message));
  }

  override onSynced(): void {
    const seen = this.#seen;
    this.#seen = undefined;
    if (seen) {
      // Members the new subscription did not bring back no longer match.
      for (const replica of [...this.#replicas.values()]) {
        if (replica.based && !seen.has(replica.documentId)) this.#remove(replica);
      }
    }
    super.onSynced();
    for (const doc of this.attached.values()) {
      // Not a member: it may have been created and deleted while the stream was down, which a
      // collection's catch-up does not tell. The handle asks the server where the document is.
      if (seen && !this.#replicas.get(doc.documentId)?.based) this.host.refresh(doc);
      doc.onSynced();
    }
  }

  #replica(documentId: string): Replica {
    let replica = this.#replicas.get(documentId);
    if (!replica) {
      replica = new Replica(this.collection, documentId, undefined);
      this.#replicas.set(documentId, replica);
    }
    return replica;
  }

  #remove(replica: Replica): void {
    this.#replicas.delete(replica.documentId);
    this.host.forgetReplica(replica);
    const doc = this.attached.get(replica.documentId);
    if (doc?.replica === replica && replica.state !== null) {
      // Gone without a delete event (it was deleted while the stream was down): ask the server.
      this.host.refresh(doc);
    }
    const wasMember = replica.based && replica.state !== null;
    if (!wasMember) return;
    this.#docs = this.#confirmed = undefined;
    this.#tell({ type: 'leave', documentId: replica.documentId });
  }

  emit(replica: Replica, changes: ReplicaChange[]): void {
    const id = replica.documentId;
    for (const change of changes) {
      this.#docs = this.#confirmed = undefined;
      const doc = this.host.predict(this.collection, id, change.state);
      this.#tell(
        change.kind === 'event'
          ? { type: 'event', documentId: id, doc, event: change.event }
          : { type: 'snapshot', documentId: id, doc, seq: change.seq },
      );
    }
    this.attached.get(replica.documentId)?.adopt(replica, changes);
  }

  repredicted(documentId: string): void {
    if (!this.#replicas.get(documentId)?.based) return;
    this.#docs = undefined;
    this.#tell({ type: 'mutation', documentId, doc: this.docs.get(documentId) ?? null });
  }
}

/** What feeds need of the client that owns them. */
export interface FeedHost {
  /** A replica changed (from the link or a repair): report it, ack it, save it. */
  changed(feed: Feed, replica: Replica, changes: ReplicaChange[]): void;
  /** A replica may have a gap, or have lost one: repair it when it does not fill (repair.ts). */
  watchGap(feed: Feed, replica: Replica): void;
  forgetReplica(replica: Replica): void;
  closeFeed(feed: Feed): void;
  /** The server refused a feed for good. */
  feedFailed(feed: Feed, error: EventSyncClientError): void;
  /** An attached document handle's replica changed through its source: save it. */
  mirrored(feed: DocumentFeed): void;
  /** Asks the server what a document handle's replica misses (REST), reporting failures. */
  refresh(feed: DocumentFeed): void;
  /** `state` (a replica's, confirmed) with the document's pending mutations replayed. */
  predict(collection: string, documentId: string, state: JsonObject | null): JsonObject | null;
  /** The pending mutations of a document (`undefined`: of every document of the collection). */
  pending(collection: string, documentId: string | undefined): PendingMutation[];
  mutate(
    collection: string,
    documentId: string,
    name: string,
    args: JsonValue | undefined,
  ): Promise<MutationAnswer>;
}
