/**
 * EventSyncClient: follows documents and collections of an eventsync server and keeps a local
 * replica of each, in browsers and Node 20+.
 *
 * How it is put together:
 * - A **feed** is one subscription: a document (`DocumentFeed`, one replica) or a collection with
 *   a filter (`CollectionFeed`, one replica per matching document). Feeds are what `document()`
 *   and `collection()` hand out (typed as `DocumentHandle` / `CollectionHandle`).
 * - A **channel** is one transport connection with its reconnect loop (state machine in
 *   `state.ts`). Over WebSocket every document feed shares one channel, and each collection feed
 *   has a channel of its own; over SSE every feed is one stream. A collection feed alone on its
 *   connection knows its members exactly: the server names no subscription in `snapshot` and
 *   `event` frames, and says nothing when a document it already sends joins another subscription.
 * - Replicas (`replica.ts`) apply events strictly in seq order, drop duplicates and buffer early
 *   events; a gap still open after `gapTimeoutMs` is repaired over REST (`POST /api/sync/...`).
 * - Reconnects use exponential backoff with jitter and resubscribe each document after the last
 *   seq it applied, so the server sends only the missing events (a snapshot when it must).
 */
import type { SyncEvent, VectorClock } from '../events/types.js';
import { type ErrorCode, EventSyncError } from '../protocol/errors.js';
import type { JsonObject } from '../storage/types.js';
import type { ReplicaStore, StoredReplica } from './persistence.js';
import { emptyPosition, Replica, type ReplicaChange, type ReplicaPosition } from './replica.js';
import { type ConnectionEvent, type ConnectionState, nextState } from './state.js';
import {
  type ClientMessage,
  type EventSourceConstructor,
  errorOf,
  type FetchLike,
  type Link,
  type LinkHandlers,
  type LinkOutcome,
  openSseLink,
  openWebSocketLink,
  type ServerMessage,
  type WebSocketConstructor,
} from './transport.js';

export type { ConnectionState } from './state.js';

/** A MongoDB query filter, as JSON. */
export type Filter = Record<string, unknown>;

/** An error the client reports: a server `error` frame, a refused request, a failed repair. */
export class EventSyncClientError extends EventSyncError {
  /** The subscription (or message type) the error is about, when the server named one. */
  readonly ref: string | undefined;
  constructor(code: string, message: string, options: { ref?: string; cause?: unknown } = {}) {
    super(code as ErrorCode, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.ref = options.ref;
  }
}

export interface ReconnectOptions {
  /** First delay after a drop. Default 250 ms; doubled each failed attempt. */
  initialDelayMs?: number;
  /** Longest delay. Default 10,000 ms. */
  maxDelayMs?: number;
  /** Share of each delay taken off at random, 0..1. Default 0.5. */
  jitter?: number;
}

export interface EventSyncClientOptions {
  /** `http(s)://host:port[/prefix]` (or `ws(s)://`): WebSocket at `/sync`, SSE at `/sse`, REST at `/api`. */
  serverUrl: string;
  /** Default: the persisted one, else a new one (persisted when `persistence` is set). */
  clientId?: string;
  /** Sent in `hello` (WebSocket), as `Authorization: Bearer` (REST) and `?token=` (SSE). */
  token?: string;
  /** Default `'websocket'`. */
  transport?: 'websocket' | 'sse';
  /** With `collection`: one document followed from the start (as `client.document(collection, documentId)`). */
  documentId?: string;
  collection?: string;
  onConnect?: () => void;
  onDisconnect?: (reason: string) => void;
  /** Each event once, after it was applied; `doc` is the document after it (`null`: deleted). */
  onEvent?: (event: SyncEvent, doc: JsonObject | null) => void;
  /** A replica was replaced by the server's state (a snapshot, or a rebuild after a repair). */
  onSnapshot?: (snapshot: {
    collection: string;
    documentId: string;
    seq: number;
    state: JsonObject | null;
  }) => void;
  onError?: (error: EventSyncClientError) => void;
  onState?: (state: ConnectionState) => void;
  /** Keeps replicas and the client id: `localStorageStore()`, `indexedDbStore()`, `fileStore(path)`, `memoryStore()`. */
  persistence?: ReplicaStore;
  reconnect?: ReconnectOptions;
  /** A gap that has not filled after this many ms is repaired by asking the server. Default 1,000. */
  gapTimeoutMs?: number;
  /** Acks (what was applied, per document) are sent at most this often, 20 documents at a time. Default 500 ms. */
  ackDelayMs?: number;
  /** Replicas are saved at most this often. Default 100 ms. */
  persistDelayMs?: number;
  /** A connection attempt not accepted within this many ms is abandoned and retried. Default 10,000. */
  connectTimeoutMs?: number;
  /** Where the server mounted its transports. Defaults `/sync`, `/sse`, `/api`. */
  paths?: { sync?: string; sse?: string; api?: string };
  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;
}

type Listener<A extends unknown[]> = (...args: A) => void;

export interface DocumentHandle<T = JsonObject> {
  readonly collection: string;
  readonly documentId: string;
  /** The replica: the document at `seq`, or `null` (not created yet, or deleted). */
  readonly state: T | null;
  /** The last seq applied (0: nothing yet). */
  readonly seq: number;
  readonly version: number;
  readonly vectorClock: Readonly<VectorClock>;
  /** Caught up with the server on the current connection. */
  readonly synced: boolean;
  /** Set when the server refused the subscription (e.g. `forbidden`); the handle then stays as it is. */
  readonly error: EventSyncClientError | undefined;
  /** `event` is absent when the replica was replaced (a snapshot). Returns a function that unsubscribes. */
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
  | { type: 'leave'; documentId: string };

export interface CollectionHandle<T = JsonObject> {
  readonly collection: string;
  readonly filter: Filter | undefined;
  /** The documents that match, by id. */
  readonly docs: ReadonlyMap<string, T>;
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

const docKey = (collection: string, documentId: string) => `${collection}/${documentId}`;

const MAX_ACKS_PER_FLUSH = 20;

/** Codes after which subscribing again cannot help. */
const PERMANENT = new Set(['forbidden', 'bad_message', 'validation', 'not_found', 'unauthorized']);

function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  const id =
    c?.randomUUID?.() ??
    Array.from({ length: 4 }, () =>
      Math.floor(Math.random() * 2 ** 32)
        .toString(16)
        .padStart(8, '0'),
    ).join('');
  return `client-${id}`;
}

function positionOfSnapshot(s: {
  seq: number;
  version: number;
  state: JsonObject | null;
  vectorClock: VectorClock;
}): ReplicaPosition {
  return { seq: s.seq, version: s.version, state: s.state, vectorClock: s.vectorClock };
}

// ---- feeds -------------------------------------------------------------------------------------

abstract class Feed {
  /** The subscription id on the current link. */
  sub = '';
  synced = false;
  closed = false;
  error: EventSyncClientError | undefined;
  channel: Channel | undefined;
  protected readonly syncedListeners = new Set<() => void>();
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];

  constructor(
    protected readonly core: Core,
    readonly collection: string,
  ) {}

  abstract subscribeMessage(sub: string): ClientMessage;
  /** Path and query of the SSE stream (after the SSE prefix), from the current position. */
  abstract ssePath(): string;
  abstract replicaOf(documentId: string): Replica | undefined;
  abstract replicas(): Iterable<Replica>;
  /** The link is about to subscribe (WebSocket: `subscribe` sent; SSE: stream opened). */
  abstract beginCatchUp(): void;
  abstract onSnapshot(message: Extract<ServerMessage, { type: 'snapshot' }>): void;
  abstract onEvent(event: SyncEvent): void;
  abstract onLeave(documentId: string): void;
  /** The replica changed: tell the listeners. */
  abstract emit(replica: Replica, changes: ReplicaChange[]): void;

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
      this.core.changed(this, replica, changes);
      this.emit(replica, changes);
    }
    this.core.watchGap(this, replica);
  }
}

class DocumentFeed extends Feed implements DocumentHandle<JsonObject> {
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
  readonly #listeners = new Set<Listener<[JsonObject | null, SyncEvent?]>>();

  constructor(
    core: Core,
    collection: string,
    readonly documentId: string,
    from: ReplicaPosition | undefined,
  ) {
    super(core, collection);
    this.replica = new Replica(collection, documentId, from ?? emptyPosition());
  }

  get state(): JsonObject | null {
    return this.replica.state;
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

  on(type: 'change', listener: (doc: JsonObject | null, event?: SyncEvent) => void): () => void;
  on(type: 'synced', listener: () => void): () => void;
  on(type: 'change' | 'synced', listener: Listener<never[]>): () => void {
    const set = (type === 'change' ? this.#listeners : this.syncedListeners) as Set<Listener<never[]>>;
    set.add(listener);
    return () => set.delete(listener);
  }

  close(): void {
    this.core.closeFeed(this);
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

  ssePath(): string {
    this.started = true;
    this.subscribedAfter = this.replica.seq;
    return `/${encodeURIComponent(this.collection)}/${encodeURIComponent(this.documentId)}?afterSeq=${this.replica.seq}`;
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
    this.core.mirrored(this);
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
      for (const listener of [...this.#listeners]) {
        if (change.kind === 'event') listener(change.state, change.event);
        else listener(change.state);
      }
    }
  }
}

class CollectionFeed extends Feed implements CollectionHandle<JsonObject> {
  readonly #replicas = new Map<string, Replica>();
  /** Document handles riding on this (unfiltered, SSE) feed, by id. */
  readonly attached = new Map<string, DocumentFeed>();
  /** Documents the current subscription has brought (snapshot or create) before `synced`. */
  #seen: Set<string> | undefined;
  #docs: Map<string, JsonObject> | undefined;
  readonly #listeners = new Set<Listener<[ReadonlyMap<string, JsonObject>, CollectionChange<JsonObject>]>>();

  constructor(
    core: Core,
    collection: string,
    readonly filter: Filter | undefined,
  ) {
    super(core, collection);
  }

  get docs(): ReadonlyMap<string, JsonObject> {
    if (!this.#docs) {
      this.#docs = new Map();
      for (const [id, r] of this.#replicas) if (r.based && r.state !== null) this.#docs.set(id, r.state);
    }
    return this.#docs;
  }

  positionOf(documentId: string) {
    const r = this.#replicas.get(documentId);
    if (!r?.based || r.state === null) return undefined;
    return { seq: r.seq, version: r.version, vectorClock: r.vectorClock };
  }

  on(
    type: 'change',
    listener: (docs: ReadonlyMap<string, JsonObject>, change: CollectionChange<JsonObject>) => void,
  ): () => void;
  on(type: 'synced', listener: () => void): () => void;
  on(type: 'change' | 'synced', listener: Listener<never[]>): () => void {
    const set = (type === 'change' ? this.#listeners : this.syncedListeners) as Set<Listener<never[]>>;
    set.add(listener);
    return () => set.delete(listener);
  }

  close(): void {
    this.core.closeFeed(this);
  }

  subscribeMessage(sub: string): ClientMessage {
    return {
      type: 'subscribe',
      sub,
      collection: this.collection,
      ...(this.filter === undefined ? {} : { filter: this.filter as Record<string, never> }),
    };
  }

  ssePath(): string {
    const query =
      this.filter === undefined ? '' : `?filter=${encodeURIComponent(JSON.stringify(this.filter))}`;
    return `/${encodeURIComponent(this.collection)}${query}`;
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

  onLeave(documentId: string): void {
    const replica = this.#replicas.get(documentId);
    if (!replica) return;
    this.#remove(replica);
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
      if (seen && !this.#replicas.get(doc.documentId)?.based) this.core.refresh(doc);
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
    this.core.forgetReplica(replica);
    const doc = this.attached.get(replica.documentId);
    if (doc?.replica === replica && replica.state !== null) {
      // Gone without a delete event (it was deleted while the stream was down): ask the server.
      this.core.refresh(doc);
    }
    const wasMember = replica.based && replica.state !== null;
    if (!wasMember) return;
    this.#docs = undefined;
    const change: CollectionChange<JsonObject> = { type: 'leave', documentId: replica.documentId };
    for (const listener of [...this.#listeners]) listener(this.docs, change);
  }

  emit(replica: Replica, changes: ReplicaChange[]): void {
    for (const change of changes) {
      this.#docs = undefined;
      const c: CollectionChange<JsonObject> =
        change.kind === 'event'
          ? { type: 'event', documentId: replica.documentId, doc: change.state, event: change.event }
          : { type: 'snapshot', documentId: replica.documentId, doc: change.state, seq: change.seq };
      for (const listener of [...this.#listeners]) listener(this.docs, c);
    }
    this.attached.get(replica.documentId)?.adopt(replica, changes);
  }
}

// ---- channels ----------------------------------------------------------------------------------

/** One transport connection and its reconnect loop. */
class Channel {
  state: ConnectionState = 'idle';
  everConnected = false;
  link: Link | undefined;
  readonly feeds = new Set<Feed>();
  /** Document feeds by `collection/documentId` (the shared WebSocket channel). */
  readonly #byDoc = new Map<string, DocumentFeed>();
  readonly #bySub = new Map<string, Feed>();
  /** Per document: the highest seq this link has brought (an ack may not go beyond it). */
  readonly #delivered = new Map<string, number>();
  readonly #acked = new Map<string, number>();
  readonly #pendingAcks = new Map<string, { collection: string; documentId: string; seq: number }>();
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  readonly #resubscribes = new Map<Feed, ReturnType<typeof setTimeout>>();

  constructor(
    readonly core: Core,
    readonly kind: 'documents' | 'single',
  ) {}

  lastReason = '';

  #go(event: ConnectionEvent): boolean {
    const next = nextState(this.state, event);
    if (next === undefined) return false;
    this.state = next;
    return true;
  }

  start(): void {
    if (this.#go('connect')) {
      this.#open();
      this.core.channelChanged(this);
    }
  }

  stop(): void {
    clearTimeout(this.#retryTimer);
    for (const t of this.#resubscribes.values()) clearTimeout(t);
    this.#resubscribes.clear();
    this.flushAcks(true);
    clearTimeout(this.#ackTimer);
    this.link?.close();
    this.link = undefined;
    this.#go('disconnect');
  }

  add(feed: Feed): void {
    this.feeds.add(feed);
    feed.channel = this;
    if (feed instanceof DocumentFeed) this.#byDoc.set(docKey(feed.collection, feed.documentId), feed);
    if (this.state === 'connected' && this.link?.canSend) this.#subscribe(feed);
  }

  remove(feed: Feed): void {
    this.feeds.delete(feed);
    feed.channel = undefined;
    clearTimeout(this.#resubscribes.get(feed));
    this.#resubscribes.delete(feed);
    if (feed instanceof DocumentFeed) this.#byDoc.delete(docKey(feed.collection, feed.documentId));
    if (this.#bySub.get(feed.sub) === feed) {
      this.#bySub.delete(feed.sub);
      if (this.link?.canSend) this.link.send({ type: 'unsubscribe', sub: feed.sub });
    }
  }

  #open(): void {
    const handlers: LinkHandlers = {
      open: () => this.#opened(link),
      message: (message) => this.#message(link, message),
      close: (reason, outcome, error) => this.#closed(link, reason, outcome, error),
    };
    const link = this.core.openLink(this, handlers);
    this.link = link;
  }

  #opened(link: Link): void {
    if (link !== this.link) return;
    this.everConnected = true;
    this.#attempt = 0;
    this.#go('open');
    if (link.canSend) {
      for (const feed of this.feeds) this.#subscribe(feed);
    } else {
      // SSE: the stream is the subscription.
      for (const feed of this.feeds) {
        feed.sub = 'sse';
        this.#bySub.set('sse', feed);
        feed.beginCatchUp();
      }
    }
    this.core.channelChanged(this);
  }

  #subscribe(feed: Feed): void {
    if (feed.error) return;
    const sub = this.core.nextSub();
    if (this.#bySub.get(feed.sub) === feed) this.#bySub.delete(feed.sub);
    feed.sub = sub;
    this.#bySub.set(sub, feed);
    const message = feed.subscribeMessage(sub);
    if (feed instanceof DocumentFeed) {
      this.#delivered.set(docKey(feed.collection, feed.documentId), feed.subscribedAfter);
    }
    feed.beginCatchUp();
    this.link?.send(message);
  }

  #closed(link: Link, reason: string, outcome: LinkOutcome, error?: { code: string; message: string }): void {
    if (link !== this.link) return;
    this.link = undefined;
    this.lastReason = reason;
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    this.#pendingAcks.clear();
    this.#acked.clear();
    this.#delivered.clear();
    this.#bySub.clear();
    for (const t of this.#resubscribes.values()) clearTimeout(t);
    this.#resubscribes.clear();
    for (const feed of this.feeds) feed.linkLost();
    if (outcome !== 'drop') {
      const err = new EventSyncClientError(error?.code ?? 'unauthorized', error?.message ?? reason);
      if (outcome === 'refused') {
        // One stream refused (forbidden, a bad filter): that subscription fails, the rest go on.
        this.#go('disconnect');
        for (const feed of [...this.feeds]) this.core.feedFailed(feed, err);
        return;
      }
      this.#go('fatal');
      this.core.fatal(err);
      return;
    }
    this.#go('drop');
    this.core.channelChanged(this, reason);
    const delay = this.core.backoff(this.#attempt++);
    this.#retryTimer = setTimeout(() => {
      if (this.#go('retry')) {
        this.#open();
        this.core.channelChanged(this);
      }
    }, delay);
  }

  #feedBySub(sub: string): Feed | undefined {
    return this.#bySub.get(sub);
  }

  #route(collection: string, documentId: string): Feed | undefined {
    if (this.kind === 'documents') return this.#byDoc.get(docKey(collection, documentId));
    const [only] = this.feeds;
    return only?.collection === collection ? only : undefined;
  }

  #message(link: Link, message: ServerMessage): void {
    if (link !== this.link) return;
    switch (message.type) {
      case 'welcome':
      case 'subscribed':
      case 'unsubscribed':
        return;
      case 'synced':
        this.#feedBySub(message.sub)?.onSynced();
        return;
      case 'snapshot': {
        const feed = this.#route(message.collection, message.documentId);
        if (!feed) return;
        this.#delivered.set(docKey(message.collection, message.documentId), message.seq);
        feed.onSnapshot(message);
        return;
      }
      case 'event': {
        const event = message.event;
        const feed = this.#route(event.collection, event.documentId);
        if (!feed) return;
        const key = docKey(event.collection, event.documentId);
        this.#delivered.set(key, Math.max(this.#delivered.get(key) ?? 0, event.seq));
        feed.onEvent(event);
        return;
      }
      case 'leave':
        this.#feedBySub(message.sub)?.onLeave(message.documentId);
        return;
      case 'error': {
        if (message.ref === 'ack') return; // an ack the server could not take: nothing to do
        const error = new EventSyncClientError(message.code, message.message, {
          ...(message.ref === undefined ? {} : { ref: message.ref }),
        });
        const feed = message.ref === undefined ? undefined : this.#feedBySub(message.ref);
        if (!feed) {
          this.core.report(error);
          return;
        }
        // The subscription is gone (refused, or its catch-up failed).
        this.#bySub.delete(message.ref!);
        if (PERMANENT.has(message.code)) {
          this.core.feedFailed(feed, error);
          return;
        }
        this.core.report(error);
        const delay = this.core.backoff(0);
        clearTimeout(this.#resubscribes.get(feed));
        this.#resubscribes.set(
          feed,
          setTimeout(() => {
            this.#resubscribes.delete(feed);
            if (this.feeds.has(feed) && this.link?.canSend) this.#subscribe(feed);
          }, delay),
        );
        return;
      }
    }
  }

  /** Records that `replica` applied up to its seq; sent (debounced) as `ack` on WebSockets. */
  ack(replica: Replica): void {
    const key = docKey(replica.collection, replica.documentId);
    const seq = Math.min(replica.seq, this.#delivered.get(key) ?? 0);
    if (seq <= 0 || seq <= (this.#acked.get(key) ?? 0) || !this.link?.canSend) return;
    this.#pendingAcks.set(key, { collection: replica.collection, documentId: replica.documentId, seq });
    this.#ackTimer ??= setTimeout(() => this.flushAcks(), this.core.ackDelayMs);
  }

  /** Sends pending acks, at most `MAX_ACKS_PER_FLUSH` (the server allows 100 frames a second); the rest follow. */
  flushAcks(all = false): void {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = undefined;
    const link = this.link;
    if (!link?.canSend) {
      this.#pendingAcks.clear();
      return;
    }
    let sent = 0;
    for (const [key, a] of this.#pendingAcks) {
      if (!all && sent >= MAX_ACKS_PER_FLUSH) break;
      this.#pendingAcks.delete(key);
      if ((this.#acked.get(key) ?? 0) >= a.seq) continue;
      link.send({ type: 'ack', collection: a.collection, documentId: a.documentId, seq: a.seq });
      this.#acked.set(key, a.seq);
      sent++;
    }
    if (this.#pendingAcks.size > 0) this.#ackTimer = setTimeout(() => this.flushAcks(), this.core.ackDelayMs);
  }
}

// ---- the client --------------------------------------------------------------------------------

/** What feeds and channels need of the client (implemented by EventSyncClient). */
interface Core {
  readonly ackDelayMs: number;
  nextSub(): string;
  openLink(channel: Channel, handlers: LinkHandlers): Link;
  channelChanged(channel: Channel, reason?: string): void;
  backoff(attempt: number): number;
  fatal(error: EventSyncClientError): void;
  feedFailed(feed: Feed, error: EventSyncClientError): void;
  report(error: EventSyncClientError): void;
  changed(feed: Feed, replica: Replica, changes: ReplicaChange[]): void;
  watchGap(feed: Feed, replica: Replica): void;
  forgetReplica(replica: Replica): void;
  closeFeed(feed: Feed): void;
  /** An attached document handle's replica changed through its source: save it. */
  mirrored(feed: DocumentFeed): void;
  /** Asks the server what a document handle's replica misses (REST), reporting failures. */
  refresh(feed: DocumentFeed): void;
}

interface SyncAnswer {
  snapshot?: { seq: number; version: number; state: JsonObject | null; vectorClock: VectorClock };
  events: SyncEvent[];
}

export class EventSyncClient {
  readonly #options: EventSyncClientOptions;
  readonly #transport: 'websocket' | 'sse';
  readonly #httpBase: string;
  readonly #wsBase: string;
  readonly #paths: { sync: string; sse: string; api: string };
  readonly #gapTimeoutMs: number;
  readonly #reconnect: Required<ReconnectOptions>;
  #clientId: string;
  #clientIdDirty: boolean;
  #state: ConnectionState = 'idle';
  #everConnected = false;
  #subCounter = 0;
  readonly #documents = new Map<string, DocumentFeed>();
  readonly #collections = new Map<string, CollectionFeed>();
  readonly #channels = new Set<Channel>();
  #documentChannel: Channel | undefined;
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  #starting: Promise<void> | undefined;
  /** Per document: the highest seq `onEvent` reported (a document followed twice reports once). */
  readonly #reported = new Map<string, number>();
  readonly #gapTimers = new Map<Replica, ReturnType<typeof setTimeout>>();
  readonly #repairFailures = new Map<Replica, number>();
  readonly #repairing = new Map<Replica, Promise<void>>();
  // persistence
  #loaded: Promise<void> | undefined;
  readonly #stored = new Map<string, StoredReplica>();
  readonly #dirty = new Map<string, DocumentFeed | null>();
  #persistTimer: ReturnType<typeof setTimeout> | undefined;
  #saving: Promise<void> = Promise.resolve();
  readonly #core: Core;

  constructor(options: EventSyncClientOptions) {
    this.#options = options;
    this.#transport = options.transport ?? 'websocket';
    const url = new URL(options.serverUrl);
    const secure = url.protocol === 'https:' || url.protocol === 'wss:';
    const prefix = url.pathname.replace(/\/+$/, '');
    this.#httpBase = `${secure ? 'https' : 'http'}://${url.host}${prefix}`;
    this.#wsBase = `${secure ? 'wss' : 'ws'}://${url.host}${prefix}`;
    this.#paths = {
      sync: options.paths?.sync ?? '/sync',
      sse: options.paths?.sse ?? '/sse',
      api: options.paths?.api ?? '/api',
    };
    this.#gapTimeoutMs = options.gapTimeoutMs ?? 1000;
    this.#reconnect = {
      initialDelayMs: options.reconnect?.initialDelayMs ?? 250,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 10_000,
      jitter: Math.min(1, Math.max(0, options.reconnect?.jitter ?? 0.5)),
    };
    this.#clientId = options.clientId ?? newClientId();
    this.#clientIdDirty = options.persistence !== undefined;
    this.#core = this.#makeCore();
    if (options.documentId !== undefined) {
      if (options.collection === undefined) {
        throw new EventSyncClientError('validation', 'documentId needs collection: the collection it is in');
      }
      this.document(options.collection, options.documentId);
    }
  }

  /** The connection state: `idle` before `connect()`, then `connecting`, `connected`, `reconnecting`, `closed`. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** This client's id (sent in `hello`). With persistence, the stored one once `connect()` has loaded it. */
  get clientId(): string {
    return this.#clientId;
  }

  /** Follows a document (or returns the handle already following it). */
  document<T extends object = JsonObject>(collection: string, documentId: string): DocumentHandle<T> {
    const key = docKey(collection, documentId);
    let feed = this.#documents.get(key);
    if (!feed) {
      const stored = this.#stored.get(key);
      feed = new DocumentFeed(this.#core, collection, documentId, stored && positionOfSnapshot(stored));
      this.#documents.set(key, feed);
      if (this.#running) this.#assign(feed);
    }
    return feed as unknown as DocumentHandle<T>;
  }

  /** Follows the documents of a collection that match `filter` (default: all). Same filter, same handle. */
  collection<T extends object = JsonObject>(collection: string, filter?: Filter): CollectionHandle<T> {
    const normalized = filter && Object.keys(filter).length > 0 ? filter : undefined;
    const key = `${collection}?${normalized === undefined ? '' : JSON.stringify(normalized)}`;
    let feed = this.#collections.get(key);
    if (!feed) {
      feed = new CollectionFeed(this.#core, collection, normalized);
      this.#collections.set(key, feed);
      if (this.#running) this.#assign(feed);
    }
    return feed as unknown as CollectionHandle<T>;
  }

  /** Connects (loading persisted replicas first); resolves once connected, rejects if refused or disconnected first. */
  connect(): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (!this.#starting && !this.#running) {
      this.#starting = this.#start().finally(() => {
        this.#starting = undefined;
      });
      this.#starting.catch((error: unknown) => this.#settle(error));
    }
    return waiting;
  }

  /** Stops every connection and timer; saves what is pending. Resolves once saved. */
  disconnect(): Promise<void> {
    const wasConnected = this.#state === 'connected';
    for (const channel of this.#channels) channel.stop();
    this.#channels.clear();
    this.#documentChannel = undefined;
    for (const feed of this.#feeds()) {
      feed.channel = undefined;
      feed.linkLost();
      if (feed instanceof CollectionFeed) feed.detachAll();
    }
    for (const t of this.#gapTimers.values()) clearTimeout(t);
    this.#gapTimers.clear();
    const next = nextState(this.#state, 'disconnect');
    if (next) this.#setState(next);
    if (wasConnected) this.#options.onDisconnect?.('disconnect');
    this.#settle(new EventSyncClientError('closed', 'disconnect() was called'));
    return this.#flushPersistence();
  }

  /**
   * Asks the server (`POST /api/sync/:collection/:id`) what each replica misses, and applies it.
   * Useful after a long time in the background, or to be sure before reading.
   */
  async syncState(): Promise<void> {
    const jobs: Promise<void>[] = [];
    for (const feed of this.#feeds()) {
      for (const replica of feed.replicas()) {
        if (replica.based || feed instanceof DocumentFeed) jobs.push(this.#repair(feed, replica, true));
      }
    }
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  // ---- internals ----

  get #running(): boolean {
    return this.#state !== 'idle' && this.#state !== 'closed';
  }

  /** Collections first, so that document handles can ride on them (SSE). */
  *#feeds(): Iterable<Feed> {
    yield* this.#collections.values();
    yield* this.#documents.values();
  }

  async #start(): Promise<void> {
    await this.#load();
    if (this.#running) return;
    const next = nextState(this.#state, 'connect');
    if (!next) return;
    this.#setState(next);
    if (this.#transport === 'websocket') {
      this.#documentChannel = new Channel(this.#core, 'documents');
      this.#channels.add(this.#documentChannel);
    }
    for (const feed of this.#feeds()) this.#assign(feed);
    for (const channel of this.#channels) channel.start();
    this.#refresh();
  }

  /** Puts a feed on a connection: its own, the shared document WebSocket, or a collection's SSE stream. */
  #assign(feed: Feed): void {
    if (feed.error || feed.closed) return;
    if (feed instanceof DocumentFeed && this.#transport === 'sse') {
      for (const c of this.#collections.values()) {
        if (c.collection === feed.collection && c.filter === undefined && !c.error && !c.closed) {
          c.attach(feed);
          return;
        }
      }
    }
    this.#channelFor(feed).add(feed);
  }

  #channelFor(feed: Feed): Channel {
    if (feed instanceof DocumentFeed && this.#documentChannel) return this.#documentChannel;
    const channel = new Channel(this.#core, 'single');
    this.#channels.add(channel);
    if (this.#running) queueMicrotask(() => this.#channels.has(channel) && channel.start());
    return channel;
  }

  /** Loads persisted replicas and the client id, once. */
  #load(): Promise<void> {
    const store = this.#options.persistence;
    if (!store) return Promise.resolve();
    this.#loaded ??= store.load().then(
      (data) => {
        if (this.#options.clientId === undefined && data.clientId !== undefined) {
          this.#clientId = data.clientId;
          this.#clientIdDirty = false;
        } else this.#clientIdDirty = data.clientId !== this.#clientId;
        for (const r of data.replicas) this.#stored.set(docKey(r.collection, r.documentId), r);
        for (const feed of this.#documents.values()) {
          const stored = this.#stored.get(docKey(feed.collection, feed.documentId));
          if (stored && !feed.started && stored.seq > feed.seq) feed.seed(positionOfSnapshot(stored));
        }
        if (this.#clientIdDirty) this.#schedulePersist();
      },
      (error: unknown) => {
        this.#report(
          new EventSyncClientError('internal', `loading persisted replicas failed: ${String(error)}`),
        );
      },
    );
    return this.#loaded;
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#options.onState?.(state);
  }

  #settle(error?: unknown): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) {
      if (error === undefined) w.resolve();
      else w.reject(error);
    }
  }

  /** The client's state from its channels': connected when all are, reconnecting when one was lost. */
  #refresh(reason?: string): void {
    if (!this.#running) return;
    const channels = [...this.#channels];
    const down = channels.some(
      (c) => c.state === 'reconnecting' || (c.state === 'connecting' && c.everConnected),
    );
    const up = channels.every(
      (c) => c.state === 'connected' || (c.state === 'connecting' && !c.everConnected && this.#everConnected),
    );
    const event: ConnectionEvent | undefined = up ? 'open' : down ? 'drop' : undefined;
    if (!event) return;
    const next = nextState(this.#state, event);
    if (!next) return;
    const was = this.#state;
    this.#setState(next);
    if (next === 'connected') {
      this.#everConnected = true;
      this.#options.onConnect?.();
      this.#settle();
    } else if (was === 'connected') {
      this.#options.onDisconnect?.(reason ?? 'connection lost');
    }
  }

  #report(error: EventSyncClientError): void {
    this.#options.onError?.(error);
  }

  #fetch(): FetchLike {
    const f = this.#options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new EventSyncClientError('closed', 'no fetch: pass options.fetch');
    return f;
  }

  #backoff(attempt: number): number {
    const { initialDelayMs, maxDelayMs, jitter } = this.#reconnect;
    const base = Math.min(maxDelayMs, initialDelayMs * 2 ** Math.min(attempt, 30));
    return Math.max(0, Math.round(base * (1 - jitter * Math.random())));
  }

  #openLink(channel: Channel, handlers: LinkHandlers): Link {
    const connectTimeoutMs = this.#options.connectTimeoutMs ?? 10_000;
    if (this.#transport === 'websocket') {
      const WebSocket =
        this.#options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
      if (!WebSocket) {
        throw new EventSyncClientError('closed', 'no WebSocket here: pass options.WebSocket (e.g. ws)');
      }
      return openWebSocketLink(
        {
          url: this.#wsBase + this.#paths.sync,
          WebSocket,
          clientId: this.#clientId,
          token: this.#options.token,
          connectTimeoutMs,
        },
        handlers,
      );
    }
    const EventSource =
      this.#options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    if (!EventSource) {
      throw new EventSyncClientError('closed', 'no EventSource here: pass options.EventSource');
    }
    const [feed] = channel.feeds;
    const path = feed!.ssePath();
    const params = new URLSearchParams({ clientId: this.#clientId });
    if (this.#options.token !== undefined) params.set('token', this.#options.token);
    const url = `${this.#httpBase}${this.#paths.sse}${path}${path.includes('?') ? '&' : '?'}${params}`;
    return openSseLink(
      { url, EventSource, fetch: this.#options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch },
      handlers,
    );
  }

  #changed(feed: Feed, replica: Replica, changes: ReplicaChange[]): void {
    const key = docKey(replica.collection, replica.documentId);
    for (const change of changes) {
      if (change.kind === 'event') {
        const reported = this.#reported.get(key) ?? 0;
        if (change.event.seq > reported) {
          this.#reported.set(key, change.event.seq);
          this.#options.onEvent?.(change.event, change.state);
        }
      } else {
        if (change.seq < (this.#reported.get(key) ?? 0) && change.seq < change.previousSeq) {
          this.#reported.set(key, change.seq); // the server went back: report its events again
        }
        this.#options.onSnapshot?.({
          collection: replica.collection,
          documentId: replica.documentId,
          seq: change.seq,
          state: change.state,
        });
      }
    }
    if (feed instanceof DocumentFeed && !feed.closed) {
      this.#dirty.set(key, feed);
      this.#schedulePersist();
    }
    feed.channel?.ack(replica);
  }

  #watchGap(feed: Feed, replica: Replica): void {
    const timer = this.#gapTimers.get(replica);
    if (!replica.needsRepair || feed.closed || !this.#running) {
      if (timer !== undefined) {
        clearTimeout(timer);
        this.#gapTimers.delete(replica);
      }
      if (!replica.needsRepair) this.#repairFailures.delete(replica);
      return;
    }
    if (timer !== undefined || this.#repairing.has(replica)) return;
    const failures = this.#repairFailures.get(replica) ?? 0;
    const delay = Math.min(this.#reconnect.maxDelayMs, this.#gapTimeoutMs * 2 ** Math.min(failures, 20));
    this.#gapTimers.set(
      replica,
      setTimeout(() => {
        this.#gapTimers.delete(replica);
        if (replica.needsRepair && !feed.closed) {
          this.#repair(feed, replica, false).catch(() => {
            // reported by #repair; the next gap check retries
          });
        }
      }, delay),
    );
  }

  /** Asks the server what `replica` misses and applies it (from scratch when the replica broke). */
  #repair(feed: Feed, replica: Replica, always: boolean): Promise<void> {
    const running = this.#repairing.get(replica);
    if (running) return running;
    const job = (async () => {
      const rebuild = replica.needsRebuild || !replica.based;
      const answer = await this.#ask(replica.collection, replica.documentId, rebuild ? 0 : replica.seq);
      if (feed.closed || feed.replicaOf(replica.documentId) !== replica) return;
      if (rebuild) {
        const fresh = new Replica(replica.collection, replica.documentId, emptyPosition());
        if (answer.snapshot) fresh.replace(positionOfSnapshot(answer.snapshot), true);
        for (const event of answer.events) fresh.receive(event);
        if (fresh.broken || fresh.waiting > 0) {
          throw new EventSyncClientError(
            'internal',
            `the server's events for ${docKey(replica.collection, replica.documentId)} do not apply from the start`,
            { cause: fresh.brokenBy },
          );
        }
        if (fresh.seq >= replica.seq || replica.broken || !replica.based) {
          feed.applied(replica, replica.replace(fresh.position, true));
        }
        return;
      }
      const changes: ReplicaChange[] = [];
      if (answer.snapshot) changes.push(...replica.replace(positionOfSnapshot(answer.snapshot)));
      for (const event of answer.events) changes.push(...replica.receive(event));
      feed.applied(replica, changes);
    })();
    const tracked = job.then(
      () => {
        this.#repairFailures.delete(replica);
      },
      (error: unknown) => {
        this.#repairFailures.set(replica, (this.#repairFailures.get(replica) ?? 0) + 1);
        const err = EventSyncError.is(error)
          ? (error as EventSyncClientError)
          : new EventSyncClientError(
              'internal',
              `repairing ${docKey(replica.collection, replica.documentId)} failed: ${String(error)}`,
              { cause: error },
            );
        if (!always) this.#report(err);
        throw err;
      },
    );
    const settled = tracked.finally(() => {
      this.#repairing.delete(replica);
      this.#watchGap(feed, replica);
    });
    this.#repairing.set(replica, settled);
    settled.catch(() => undefined);
    return settled;
  }

  /** `POST /api/sync/:collection/:id` with `afterSeq`. */
  async #ask(collection: string, documentId: string, afterSeq: number): Promise<SyncAnswer> {
    const url = `${this.#httpBase}${this.#paths.api}/sync/${encodeURIComponent(collection)}/${encodeURIComponent(documentId)}`;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.#options.token !== undefined) headers.authorization = `Bearer ${this.#options.token}`;
    const res = await this.#fetch()(url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ afterSeq, clientId: this.#clientId }),
    });
    if (!res.ok) {
      const { code, message } = await errorOf(res);
      throw new EventSyncClientError(code, `POST ${url}: ${message}`);
    }
    const body = JSON.parse(await res.text()) as Partial<SyncAnswer>;
    return { ...(body.snapshot ? { snapshot: body.snapshot } : {}), events: body.events ?? [] };
  }

  #forgetReplica(replica: Replica): void {
    clearTimeout(this.#gapTimers.get(replica));
    this.#gapTimers.delete(replica);
    this.#repairFailures.delete(replica);
  }

  #closeFeed(feed: Feed): void {
    if (feed.closed) return;
    feed.closed = true;
    const channel = feed.channel;
    channel?.remove(feed);
    if (channel && channel !== this.#documentChannel) {
      channel.stop();
      this.#channels.delete(channel);
    }
    if (feed instanceof DocumentFeed) {
      if (feed.source?.attached.get(feed.documentId) === feed) feed.source.attached.delete(feed.documentId);
      feed.source = undefined;
    } else if (feed instanceof CollectionFeed) {
      for (const doc of feed.detachAll()) if (this.#running) this.#assign(doc);
    }
    for (const replica of feed.replicas()) this.#forgetReplica(replica);
    if (feed instanceof DocumentFeed) {
      const key = docKey(feed.collection, feed.documentId);
      this.#documents.delete(key);
      this.#stored.delete(key);
      if (this.#options.persistence) {
        this.#dirty.set(key, null);
        this.#schedulePersist();
      }
    } else {
      for (const [key, f] of this.#collections) if (f === feed) this.#collections.delete(key);
    }
    this.#refresh();
  }

  #schedulePersist(): void {
    if (!this.#options.persistence || this.#persistTimer !== undefined) return;
    this.#persistTimer = setTimeout(() => {
      this.#persistTimer = undefined;
      void this.#flushPersistence();
    }, this.#options.persistDelayMs ?? 100);
  }

  #flushPersistence(): Promise<void> {
    clearTimeout(this.#persistTimer);
    this.#persistTimer = undefined;
    const store = this.#options.persistence;
    if (!store) return Promise.resolve();
    if (this.#dirty.size === 0 && !this.#clientIdDirty) return this.#saving;
    const put: StoredReplica[] = [];
    const remove: { collection: string; documentId: string }[] = [];
    for (const [key, feed] of this.#dirty) {
      if (feed === null) {
        const slash = key.indexOf('/');
        remove.push({ collection: key.slice(0, slash), documentId: key.slice(slash + 1) });
        continue;
      }
      const r = feed.replica;
      if (!r.based || r.broken) continue;
      const stored: StoredReplica = {
        collection: r.collection,
        documentId: r.documentId,
        seq: r.seq,
        version: r.version,
        state: r.state,
        vectorClock: r.vectorClock,
      };
      put.push(stored);
      this.#stored.set(key, stored);
    }
    this.#dirty.clear();
    const clientId = this.#clientIdDirty ? this.#clientId : undefined;
    this.#clientIdDirty = false;
    this.#saving = this.#saving
      .then(() => store.save({ ...(clientId === undefined ? {} : { clientId }), put, remove }))
      .catch((error: unknown) => {
        this.#report(new EventSyncClientError('internal', `saving replicas failed: ${String(error)}`));
      });
    return this.#saving;
  }

  #makeCore(): Core {
    const client = this;
    return {
      get ackDelayMs() {
        return client.#options.ackDelayMs ?? 500;
      },
      nextSub: () => `s${++this.#subCounter}`,
      openLink: (channel, handlers) => this.#openLink(channel, handlers),
      channelChanged: (_channel, reason) => this.#refresh(reason),
      backoff: (attempt) => this.#backoff(attempt),
      fatal: (error) => {
        const wasConnected = this.#state === 'connected';
        for (const channel of this.#channels) channel.stop();
        this.#channels.clear();
        this.#documentChannel = undefined;
        const next = nextState(this.#state, 'fatal');
        if (next) this.#setState(next);
        if (wasConnected) this.#options.onDisconnect?.(`${error.code}: ${error.message}`);
        this.#report(error);
        this.#settle(error);
      },
      feedFailed: (feed, error) => {
        feed.fail(error);
        if (feed instanceof CollectionFeed) {
          for (const doc of feed.detachAll()) if (this.#running) this.#assign(doc);
        }
        const channel = feed.channel;
        channel?.remove(feed);
        if (channel && channel !== this.#documentChannel) {
          channel.stop();
          this.#channels.delete(channel);
        }
        this.#report(error);
        this.#refresh();
      },
      report: (error) => this.#report(error),
      changed: (feed, replica, changes) => this.#changed(feed, replica, changes),
      watchGap: (feed, replica) => this.#watchGap(feed, replica),
      forgetReplica: (replica) => this.#forgetReplica(replica),
      closeFeed: (feed) => this.#closeFeed(feed),
      mirrored: (feed) => {
        if (feed.closed || !this.#options.persistence) return;
        this.#dirty.set(docKey(feed.collection, feed.documentId), feed);
        this.#schedulePersist();
      },
      refresh: (feed) => {
        this.#repair(feed, feed.replica, false).catch(() => undefined);
      },
    };
  }
}
