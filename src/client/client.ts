/**
 * EventSyncClient: follows documents and collections of an eventsync server and keeps a local
 * replica of each, in browsers and Node 20+.
 *
 * How it is put together:
 * - A **feed** (`handles.ts`) is one subscription: a document (`DocumentFeed`, one replica) or a
 *   collection with a filter (`CollectionFeed`, one replica per matching document). Feeds are
 *   what `document()` and `collection()` hand out (typed as `DocumentHandle` / `CollectionHandle`).
 * - A **channel** (`channel.ts`) is one transport connection with its reconnect loop (state
 *   machine in `state.ts`). Every document feed shares one channel, and each collection feed has
 *   a channel of its own: over WebSocket a socket, over SSE a client stream (`GET /sse`) whose
 *   subscriptions are added by requests, so any number of document handles costs one HTTP
 *   connection (browsers open at most 6 per origin over HTTP/1.1). Over SSE a document of a
 *   collection followed without a filter rides on that collection's stream instead. A collection
 *   feed alone on its connection knows its members exactly: the server names no subscription in
 *   `snapshot` and `event` frames, and says nothing when a document it already sends joins
 *   another subscription.
 * - Replicas (`replica.ts`) apply events strictly in seq order, drop duplicates and buffer early
 *   events; a gap still open after `gapTimeoutMs` is repaired over REST (`POST /api/sync/...`,
 *   `repair.ts`).
 * - Replicas of document and collection handles are saved in batches (`saver.ts`) to the
 *   `persistence` store, with the mutation queue (`mutations.ts`).
 * - Mutations go on the shared document WebSocket (over SSE: by REST, one at a time), after the
 *   server's `welcome` said which it applied last; they are predicted on the replicas meanwhile.
 * - Reconnects use exponential backoff with jitter and resubscribe each document after the last
 *   seq it applied, so the server sends only the missing events (a snapshot when it must).
 */
import type { SyncEvent } from '../core/events.js';
import { assertCollectionName, assertId } from '../core/ids.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { assertMutatorName, type Mutators } from '../core/mutators.js';
import { DEFAULT_PATHS, documentKey } from '../protocol/wire.js';
import { Channel, type ChannelHost } from './channel.js';
import { EventSyncClientError } from './errors.js';
import {
  CollectionFeed,
  type CollectionHandle,
  DocumentFeed,
  type DocumentHandle,
  type Feed,
  type FeedHost,
  type Filter,
  positionOfSnapshot,
} from './handles.js';
import {
  type MutateFrame,
  type MutationAnswer,
  MutationQueue,
  type MutationReply,
  postMutation,
} from './mutations.js';
import { browserNetwork, type NetworkStatus } from './network.js';
import type { ReplicaStore, StoredMeta, StoredState } from './persistence.js';
import { fetchMissing, GapRepair } from './repair.js';
import type { Replica, ReplicaChange, ReplicaPosition } from './replica.js';
import { ReplicaSaver } from './saver.js';
import { type ConnectionEvent, type ConnectionState, nextState } from './state.js';
import {
  type EventSourceConstructor,
  type FetchLike,
  type Link,
  type LinkHandlers,
  openSseLink,
  openWebSocketLink,
  type WebSocketConstructor,
} from './transport.js';

export { EventSyncClientError } from './errors.js';
export type { CollectionChange, CollectionHandle, DocumentHandle, Filter } from './handles.js';
export type { MutationAnswer, PendingMutation } from './mutations.js';
export type { ConnectionState } from './state.js';

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
  /**
   * A connection attempt not accepted within this many ms is abandoned and retried, and `connect()`
   * rejects (code `timeout`, `onError` too) when the client is not connected this long after it was
   * called; the client keeps trying in the background. Default 10,000.
   */
  connectTimeoutMs?: number;
  /**
   * Whether the device is online (network.ts). Default: the browser's `online`/`offline` events, so
   * an offline page drops its connections at once, queues its mutations, and reconnects as soon as
   * the network is back; none in Node. `false`: never consulted.
   */
  network?: NetworkStatus | false;
  /** Where the server mounted its transports. Defaults `/sync`, `/sse`, `/api`. */
  paths?: { sync?: string; sse?: string; api?: string };
  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;
}

function newClientId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  // randomUUID is missing in pages served over plain http (not a secure context): 2 × 52 random bits.
  const random = () => Math.random().toString(36).slice(2);
  return `client-${c?.randomUUID?.() ?? random() + random()}`;
}

export class EventSyncClient {
  readonly #options: EventSyncClientOptions;
  readonly #transport: 'websocket' | 'sse';
  readonly #httpBase: string;
  readonly #wsBase: string;
  readonly #paths: { sync: string; sse: string; api: string };
  readonly #reconnect: Required<ReconnectOptions>;
  #clientId: string;
  #state: ConnectionState = 'idle';
  readonly #stateListeners = new Set<(state: ConnectionState) => void>();
  #everConnected = false;
  #subCounter = 0;
  readonly #documents = new Map<string, DocumentFeed>();
  readonly #collections = new Map<string, CollectionFeed>();
  readonly #channels = new Set<Channel<Feed>>();
  #documentChannel: Channel<Feed> | undefined;
  #waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  /** Rejects the waiters of `connect()` once `connectTimeoutMs` passed without a connection. */
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** The last connection failure told to `onError` (told once until the client connects). */
  #toldFailure: string | undefined;
  #starting: Promise<void> | undefined;
  /** Per document: the highest seq `onEvent` reported (a document followed twice reports once). */
  readonly #reported = new Map<string, number>();
  readonly #repair: GapRepair;
  readonly #saver: ReplicaSaver;
  readonly #channelHost: ChannelHost<Feed>;
  readonly #feedHost: FeedHost;
  readonly #mutations: MutationQueue;
  /** The link mutations go on (WebSocket: the document channel's, once welcomed). */
  #mutationLink: Link | undefined;
  /** SSE: a stream was welcomed since connecting, so mutations may be posted. */
  #sseWelcomed = false;
  /** SSE: the posts, one after another (the server takes a client's mids in order). */
  #posting: Promise<void> = Promise.resolve();
  readonly #posted = new Set<number>();
  #resendTimer: ReturnType<typeof setTimeout> | undefined;
  /** The lowest mid the resend timer sends from (two refusals in a row must not skip the first). */
  #resendFrom: number | undefined;
  /** Retryable refusals in a row: the delay before sending again grows with them. */
  #refusals = 0;
  readonly #network: NetworkStatus | undefined;
  #unwatchNetwork: (() => void) | undefined;
  /** Collection handles' documents as loaded from the store, by handle key. */
  #storedCollections: Record<string, string[]> = {};

  constructor(options: EventSyncClientOptions) {
    this.#options = options;
    this.#transport = options.transport ?? 'websocket';
    const url = new URL(options.serverUrl);
    const secure = url.protocol === 'https:' || url.protocol === 'wss:';
    const prefix = url.pathname.replace(/\/+$/, '');
    this.#httpBase = `${secure ? 'https' : 'http'}://${url.host}${prefix}`;
    this.#wsBase = `${secure ? 'wss' : 'ws'}://${url.host}${prefix}`;
    this.#paths = {
      sync: options.paths?.sync ?? DEFAULT_PATHS.sync,
      sse: options.paths?.sse ?? DEFAULT_PATHS.sse,
      api: options.paths?.api ?? DEFAULT_PATHS.api,
    };
    this.#reconnect = {
      initialDelayMs: options.reconnect?.initialDelayMs ?? 250,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 10_000,
      jitter: Math.min(1, Math.max(0, options.reconnect?.jitter ?? 0.5)),
    };
    this.#clientId = options.clientId ?? newClientId();
    this.#network = options.network === false ? undefined : (options.network ?? browserNetwork());
    const report = (error: EventSyncClientError) => this.#report(error);
    this.#repair = new GapRepair({
      gapTimeoutMs: options.gapTimeoutMs ?? 1000,
      maxDelayMs: this.#reconnect.maxDelayMs,
      ask: (collection, documentId, afterSeq) => this.#ask(collection, documentId, afterSeq),
      report,
      running: () => this.#running,
    });
    this.#mutations = new MutationQueue(
      () => this.#clientId,
      (collection, documentId, notify) => this.#queueChanged(collection, documentId, notify),
    );
    this.#saver = new ReplicaSaver(options.persistence, {
      delayMs: options.persistDelayMs ?? 100,
      clientId: this.#clientId,
      meta: () => this.#meta(),
      report,
    });
    this.#channelHost = this.#makeChannelHost();
    this.#feedHost = this.#makeFeedHost();
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

  /** Calls `listener` with each new connection state (as `onState` does); returns a function that stops it. */
  onStateChange(listener: (state: ConnectionState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /** This client's id (sent in `hello`). With persistence, the stored one once `connect()` has loaded it. */
  get clientId(): string {
    return this.#clientId;
  }

  /** Registers a collection's mutators (the server's definitions) to predict their effect. */
  mutators<T extends object>(collection: string, mutators: Mutators<T>): void {
    this.#mutations.register(collection, mutators as Mutators<never>);
  }

  /**
   * Runs the server's mutator `name` on a document (`handle.mutate` without a handle): resolves
   * with the server's answer, rejects with its refusal. The handles that follow the document show
   * the prediction at once; sent in order, kept (and persisted) until answered, also offline.
   */
  mutate(collection: string, documentId: string, name: string, args?: JsonValue): Promise<MutationAnswer> {
    return this.#mutate(collection, documentId, name, args);
  }

  /** Follows a document (or returns the handle already following it). */
  document<T extends object = JsonObject>(collection: string, documentId: string): DocumentHandle<T> {
    const key = documentKey(collection, documentId);
    let feed = this.#documents.get(key);
    if (!feed) {
      const stored = this.#saver.stored.get(key);
      feed = new DocumentFeed(this.#feedHost, collection, documentId, stored && positionOfSnapshot(stored));
      this.#documents.set(key, feed);
      if (this.#running) this.#assign(feed);
    }
    return feed as unknown as DocumentHandle<T>;
  }

  /** Follows the documents of a collection that match `filter` (default: all). Same filter, same handle. */
  collection<T extends object = JsonObject>(collection: string, filter?: Filter<T>): CollectionHandle<T> {
    const normalized = filter && Object.keys(filter).length > 0 ? (filter as Filter) : undefined;
    const key = `${collection}?${normalized === undefined ? '' : JSON.stringify(normalized)}`;
    let feed = this.#collections.get(key);
    if (!feed) {
      feed = new CollectionFeed(this.#feedHost, collection, normalized);
      this.#collections.set(key, feed);
      this.#seedCollection(key, feed);
      if (this.#running) this.#assign(feed);
    }
    return feed as unknown as CollectionHandle<T>;
  }

  /** Connects (loading persisted replicas first); resolves once connected, rejects if refused or disconnected first. */
  connect(): Promise<void> {
    if (this.#state === 'connected') return Promise.resolve();
    const waiting = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#connectTimer ??= setTimeout(() => this.#connectTimedOut(), this.#connectTimeoutMs());
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
    this.#stopChannels();
    for (const feed of this.#feeds()) {
      feed.channel = undefined;
      feed.linkLost();
      if (feed instanceof CollectionFeed) feed.detachAll();
    }
    this.#repair.stopTimers();
    this.#mutationLink = undefined;
    this.#sseWelcomed = false;
    clearTimeout(this.#resendTimer);
    this.#resendFrom = undefined;
    const next = nextState(this.#state, 'disconnect');
    if (next) this.#setState(next);
    if (wasConnected) this.#options.onDisconnect?.('disconnect');
    this.#settle(new EventSyncClientError('closed', 'disconnect() was called'));
    return this.#saver.flush();
  }

  /**
   * Asks the server (`POST /api/sync/:collection/:id`) what each replica misses, and applies it.
   * Useful after a long time in the background, or to be sure before reading.
   */
  async syncState(): Promise<void> {
    const jobs: Promise<void>[] = [];
    for (const feed of this.#feeds()) {
      for (const replica of feed.replicas()) {
        if (replica.based || feed instanceof DocumentFeed)
          jobs.push(this.#repair.repair(feed, replica, true));
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
    await this.#saver.load((state) => this.#loaded(state));
    if (this.#running) return;
    const next = nextState(this.#state, 'connect');
    if (!next) return;
    this.#setState(next);
    if (this.#transport === 'websocket') {
      this.#documentChannel = new Channel(this.#channelHost, 'documents');
      this.#channels.add(this.#documentChannel);
    }
    for (const feed of this.#feeds()) this.#assign(feed);
    this.#unwatchNetwork = this.#network?.subscribe((online) => this.#networkChanged(online));
    for (const channel of this.#channels) channel.start();
    this.#refresh();
  }

  #offline(): boolean {
    return this.#network?.online === false;
  }

  /** Offline: every connection drops now. Online: each tries at once (the welcome sends the queue). */
  #networkChanged(online: boolean): void {
    for (const channel of [...this.#channels]) {
      if (online) channel.networkBack();
      else channel.networkLost();
    }
  }

  /** Persisted replicas and client id, loaded: seeds the handles that have not subscribed yet. */
  #loaded(state: StoredState): void {
    if (this.#options.clientId === undefined && state.clientId !== undefined) {
      this.#clientId = state.clientId;
      this.#saver.saveClientId(undefined);
    } else {
      this.#saver.saveClientId(state.clientId === this.#clientId ? undefined : this.#clientId);
    }
    if (state.meta) {
      this.#mutations.restore(state.meta.lastMid, state.meta.mutations);
      this.#storedCollections = state.meta.collections;
    }
    for (const [key, feed] of this.#collections) this.#seedCollection(key, feed);
    for (const feed of this.#documents.values()) {
      const stored = this.#saver.stored.get(documentKey(feed.collection, feed.documentId));
      if (stored && !feed.started && stored.seq > feed.seq) feed.seed(positionOfSnapshot(stored));
    }
  }

  /** A collection handle not yet subscribed starts from the documents it had when saved. */
  #seedCollection(key: string, feed: CollectionFeed): void {
    if (feed.channel?.link) return;
    const positions = new Map<string, ReplicaPosition>();
    for (const id of this.#storedCollections[key] ?? []) {
      const stored = this.#saver.stored.get(documentKey(feed.collection, id));
      if (stored?.state) positions.set(id, positionOfSnapshot(stored));
    }
    feed.seed(positions);
  }

  /** What the store keeps besides replicas. */
  #meta(): StoredMeta {
    const collections: Record<string, string[]> = {};
    for (const [key, feed] of this.#collections) collections[key] = feed.memberIds();
    return { lastMid: this.#mutations.lastMid, mutations: this.#mutations.stored(), collections };
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

  /** Document feeds share one channel (over SSE made for the first of them); a collection feed has its own. */
  #channelFor(feed: Feed): Channel<Feed> {
    if (feed instanceof DocumentFeed) {
      this.#documentChannel ??= this.#newChannel('documents');
      return this.#documentChannel;
    }
    return this.#newChannel('single');
  }

  #newChannel(kind: 'documents' | 'single'): Channel<Feed> {
    const channel = new Channel(this.#channelHost, kind);
    this.#channels.add(channel);
    if (this.#running) queueMicrotask(() => this.#channels.has(channel) && channel.start());
    return channel;
  }

  /**
   * Takes a feed that closed or failed off its connection (stopping the connection when it was
   * the feed's own), and puts the document handles riding on a collection feed on their own.
   */
  #unassign(feed: Feed): void {
    const channel = feed.channel;
    channel?.remove(feed);
    if (channel && channel !== this.#documentChannel) {
      channel.stop();
      this.#channels.delete(channel);
    }
    if (feed instanceof CollectionFeed) {
      for (const doc of feed.detachAll()) if (this.#running) this.#assign(doc);
    }
  }

  #stopChannels(): void {
    this.#unwatchNetwork?.();
    this.#unwatchNetwork = undefined;
    for (const channel of this.#channels) channel.stop();
    this.#channels.clear();
    this.#documentChannel = undefined;
  }

  #setState(state: ConnectionState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#options.onState?.(state);
    for (const listener of this.#stateListeners) listener(state);
  }

  #connectTimeoutMs(): number {
    return this.#options.connectTimeoutMs ?? 10_000;
  }

  #connectTimedOut(): void {
    this.#connectTimer = undefined;
    const last = [...this.#channels].map((c) => c.lastReason).find((reason) => reason);
    const why = this.#offline()
      ? ' (offline)'
      : `${last ? ` (last attempt: ${last})` : ''}: is the server running there? The client keeps trying`;
    const error = new EventSyncClientError(
      'timeout',
      `no connection to ${this.#options.serverUrl} within ${this.#connectTimeoutMs()} ms${why}`,
    );
    this.#report(error);
    this.#settle(error);
  }

  /** A connection attempt failed for a reason worth telling: once to `onError`, and to whoever awaits `connect()`. */
  #connectFailed(error: EventSyncClientError): void {
    if (this.#state === 'connected') return;
    if (this.#toldFailure !== error.message) this.#report(error);
    this.#toldFailure = error.message;
    this.#settle(error);
  }

  #settle(error?: unknown): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
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
      this.#toldFailure = undefined;
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

  #openLink(handlers: LinkHandlers): Link {
    const connectTimeoutMs = this.#connectTimeoutMs();
    const fetch = this.#options.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
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
          fetch,
        },
        handlers,
      );
    }
    const EventSource =
      this.#options.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
    if (!EventSource) {
      throw new EventSyncClientError('closed', 'no EventSource here: pass options.EventSource');
    }
    // One client stream: its subscriptions are added and removed by requests (transport.ts).
    const params = new URLSearchParams({ clientId: this.#clientId, protocol: '2' });
    if (this.#options.token !== undefined) params.set('token', this.#options.token);
    const base = this.#httpBase + this.#paths.sse;
    const headers = this.#authorization();
    return openSseLink(
      { url: `${base}?${params}`, base, headers, EventSource, fetch: this.#fetch() },
      handlers,
    );
  }

  /** The credentials of a request: `Authorization: Bearer <token>`, when there is a token. */
  #authorization(): Record<string, string> {
    const token = this.#options.token;
    return token === undefined ? {} : { authorization: `Bearer ${token}` };
  }

  #changed(feed: Feed, replica: Replica, changes: ReplicaChange[]): void {
    const key = documentKey(replica.collection, replica.documentId);
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
    this.#mutations.confirmed(replica.collection, replica.documentId, replica.seq, changes);
    if (!feed.closed) this.#saver.changed(key, feed instanceof DocumentFeed ? feed : { replica });
    if (feed instanceof CollectionFeed) this.#saver.metaChanged();
    feed.channel?.ack(replica);
  }

  #mutate(collection: string, documentId: string, name: string, args: JsonValue | undefined) {
    try {
      // What the server would refuse as a malformed frame (no answer for the mid) is refused here.
      assertCollectionName(collection);
      assertId(documentId);
      assertMutatorName(name);
      // The JSON that goes on the wire, taken now: a later change of the caller's object changes nothing.
      args = args === undefined ? undefined : (JSON.parse(JSON.stringify(args)) as JsonValue);
    } catch (error) {
      return Promise.reject(new EventSyncClientError('validation', (error as Error).message));
    }
    const { frame, answer } = this.#mutations.add(collection, documentId, name, args);
    this.#send(frame);
    return answer;
  }

  /** Sends a mutation if the link for mutations is up and welcomed; otherwise the next welcome sends it. */
  #send(frame: MutateFrame): void {
    if (this.#transport === 'sse') {
      if (this.#sseWelcomed && !this.#offline()) this.#post(frame);
      return;
    }
    const link = this.#documentChannel?.link;
    if (link && link === this.#mutationLink && link.canSend) link.send(frame);
  }

  #post(frame: MutateFrame): void {
    if (this.#posted.has(frame.mid)) return;
    this.#posted.add(frame.mid);
    const headers = { 'x-eventsync-client-id': this.#clientId, ...this.#authorization() };
    this.#posting = this.#posting
      .then(() => postMutation(this.#fetch(), this.#httpBase + this.#paths.api, headers, frame))
      .then(
        (reply) => this.#answered(reply),
        (error: unknown) => {
          // Not answered (the network, a proxy's page): sent again after a backoff delay, or at the
          // next stream's welcome. The stream may stay up, so waiting for a welcome alone could be forever.
          const message = `sending mutation ${frame.mid} failed: ${String(error)}`;
          this.#report(
            error instanceof EventSyncClientError ? error : new EventSyncClientError('closed', message),
          );
          this.#resendLater(frame.mid);
        },
      )
      .finally(() => this.#posted.delete(frame.mid));
  }

  /** A link was welcomed: mutations the server has not applied are sent again, in mid order. */
  #welcomed(channel: Channel<Feed>, lastMid: number): void {
    if (this.#transport === 'websocket') {
      if (channel !== this.#documentChannel) return;
      this.#mutationLink = channel.link;
    } else {
      this.#sseWelcomed = true;
    }
    for (const frame of this.#mutations.welcomed(lastMid)) this.#send(frame);
  }

  #answered(reply: MutationReply): void {
    const seqOf = (collection: string, documentId: string) => {
      const doc = this.#documents.get(documentKey(collection, documentId));
      if (doc) return doc.replica.seq;
      for (const c of this.#collections.values()) {
        const replica = c.collection === collection ? c.replicaOf(documentId) : undefined;
        if (replica) return replica.seq;
      }
      return undefined;
    };
    const retry = this.#mutations.answered(reply, seqOf) === 'retry';
    if (reply.type === 'mutated') this.#refusals = 0;
    if (!retry || reply.type !== 'mutation_error') return;
    // Refused for now (rate_limited, out_of_order, …): it and what follows go again after a while.
    const message = `mutation ${reply.mid}: ${reply.message}`;
    this.#report(new EventSyncClientError(reply.code, message, { ref: 'mutate' }));
    this.#resendLater(reply.mid);
  }

  /** Sends the mutations from mid `from` on again after one backoff delay. */
  #resendLater(from: number): void {
    clearTimeout(this.#resendTimer);
    const first = Math.min(this.#resendFrom ?? from, from);
    this.#resendFrom = first;
    const delay = this.#backoff(this.#refusals++);
    this.#resendTimer = setTimeout(() => {
      this.#resendFrom = undefined;
      for (const frame of this.#mutations.from(first)) this.#send(frame);
    }, delay);
  }

  /** The queue of a document changed: save it; show the new prediction when no replica change does. */
  #queueChanged(collection: string, documentId: string, notify: boolean): void {
    this.#saver.metaChanged();
    if (!notify) return;
    this.#documents.get(documentKey(collection, documentId))?.repredicted();
    for (const feed of this.#collections.values()) {
      if (feed.collection === collection) feed.repredicted(documentId);
    }
  }

  #closeFeed(feed: Feed): void {
    if (feed.closed) return;
    feed.closed = true;
    this.#unassign(feed);
    if (feed instanceof DocumentFeed) {
      if (feed.source?.attached.get(feed.documentId) === feed) feed.source.attached.delete(feed.documentId);
      feed.source = undefined;
    }
    for (const replica of feed.replicas()) this.#repair.forget(replica);
    if (feed instanceof DocumentFeed) {
      const key = documentKey(feed.collection, feed.documentId);
      this.#documents.delete(key);
      this.#saver.removed(key);
    } else {
      for (const [key, f] of this.#collections) if (f === feed) this.#collections.delete(key);
    }
    this.#refresh();
  }

  /** `POST /api/sync/:collection/:id` with `afterSeq` (repair.ts). */
  #ask(collection: string, documentId: string, afterSeq: number) {
    const url = `${this.#httpBase}${this.#paths.api}/sync/${encodeURIComponent(collection)}/${encodeURIComponent(documentId)}`;
    return fetchMissing(this.#fetch(), url, this.#options.token, { afterSeq, clientId: this.#clientId });
  }

  #makeChannelHost(): ChannelHost<Feed> {
    return {
      ackDelayMs: this.#options.ackDelayMs ?? 500,
      nextSub: () => `s${++this.#subCounter}`,
      openLink: (_channel, handlers) => this.#openLink(handlers),
      channelChanged: (_channel, reason) => this.#refresh(reason),
      backoff: (attempt) => this.#backoff(attempt),
      offline: () => this.#offline(),
      fatal: (error) => {
        const wasConnected = this.#state === 'connected';
        this.#stopChannels();
        const next = nextState(this.#state, 'fatal');
        if (next) this.#setState(next);
        if (wasConnected) this.#options.onDisconnect?.(`${error.code}: ${error.message}`);
        this.#report(error);
        this.#settle(error);
      },
      feedFailed: (feed, error) => this.#feedFailed(feed, error),
      report: (error) => {
        // The server drops frames over its rate limit unanswered, and says so once (no ref): queued
        // mutations go again later. A subscription refused for its rate has a ref: it alone retries.
        if (error.code === 'rate_limited' && error.ref === undefined) this.#resendLater(0);
        this.#report(error);
      },
      connectFailed: (error) => this.#connectFailed(error),
      welcomed: (channel, lastMid) => this.#welcomed(channel, lastMid),
      mutationAnswered: (reply) => this.#answered(reply),
    };
  }

  #makeFeedHost(): FeedHost {
    return {
      changed: (feed, replica, changes) => this.#changed(feed, replica, changes),
      watchGap: (feed, replica) => this.#repair.watch(feed, replica),
      forgetReplica: (replica) => {
        this.#repair.forget(replica);
        this.#saver.metaChanged();
      },
      closeFeed: (feed) => this.#closeFeed(feed),
      feedFailed: (feed, error) => this.#feedFailed(feed, error),
      mirrored: (feed) => {
        if (!feed.closed) this.#saver.changed(documentKey(feed.collection, feed.documentId), feed);
      },
      refresh: (feed) => {
        this.#repair.repair(feed, feed.replica, false).catch(() => undefined);
      },
      predict: (collection, documentId, state) => this.#mutations.predict(collection, documentId, state),
      pending: (collection, documentId) => this.#mutations.pendingOf(collection, documentId),
      mutate: (collection, documentId, name, args) => this.#mutate(collection, documentId, name, args),
    };
  }

  #feedFailed(feed: Feed, error: EventSyncClientError): void {
    // The connection itself was refused (an SSE stream answered 4xx), not a subscription on it.
    const linkRefused = !feed.channel?.everConnected;
    feed.fail(error);
    this.#unassign(feed);
    this.#report(error);
    // Before the client ever connected, connect() hears it (a handle's refusal is its own affair).
    if (linkRefused && !this.#everConnected) this.#settle(error);
    this.#refresh();
  }
}
