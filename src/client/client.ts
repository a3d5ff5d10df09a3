/**
 * EventSyncClient: follows documents and collections of an eventsync server and keeps a local
 * replica of each, in browsers and Node 20+.
 *
 * How it is put together:
 * - A **feed** (`handles.ts`) is one subscription: a document (`DocumentFeed`, one replica) or a
 *   collection with a filter (`CollectionFeed`, one replica per matching document). Feeds are
 *   what `document()` and `collection()` hand out (typed as `DocumentHandle` / `CollectionHandle`).
 * - A **channel** (`channel.ts`) is one transport connection with its reconnect loop (state
 *   machine in `state.ts`). Over WebSocket every document feed shares one channel, and each
 *   collection feed has a channel of its own; over SSE every feed is one stream, except that a
 *   document of a collection followed without a filter rides on that collection's stream. A
 *   collection feed alone on its connection knows its members exactly: the server names no
 *   subscription in `snapshot` and `event` frames, and says nothing when a document it already
 *   sends joins another subscription.
 * - Replicas (`replica.ts`) apply events strictly in seq order, drop duplicates and buffer early
 *   events; a gap still open after `gapTimeoutMs` is repaired over REST (`POST /api/sync/...`).
 * - Reconnects use exponential backoff with jitter and resubscribe each document after the last
 *   seq it applied, so the server sends only the missing events (a snapshot when it must).
 */
import type { SyncEvent, VectorClock } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import { EventSyncError } from '../protocol/errors.js';
import { DEFAULT_PATHS, documentKey, parseDocumentKey } from '../protocol/wire.js';
import { Channel } from './channel.js';
import {
  CollectionFeed,
  type CollectionHandle,
  type Core,
  DocumentFeed,
  type DocumentHandle,
  EventSyncClientError,
  type Feed,
  type Filter,
  positionOfSnapshot,
} from './handles.js';
import type { ReplicaStore, StoredReplica } from './persistence.js';
import { emptyPosition, Replica, type ReplicaChange } from './replica.js';
import { type ConnectionEvent, type ConnectionState, nextState } from './state.js';
import {
  type EventSourceConstructor,
  errorOf,
  type FetchLike,
  type Link,
  type LinkHandlers,
  openSseLink,
  openWebSocketLink,
  type WebSocketConstructor,
} from './transport.js';

export {
  type CollectionChange,
  type CollectionHandle,
  type DocumentHandle,
  EventSyncClientError,
  type Filter,
} from './handles.js';
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
  /** A connection attempt not accepted within this many ms is abandoned and retried. Default 10,000. */
  connectTimeoutMs?: number;
  /** Where the server mounted its transports. Defaults `/sync`, `/sse`, `/api`. */
  paths?: { sync?: string; sse?: string; api?: string };
  WebSocket?: WebSocketConstructor;
  EventSource?: EventSourceConstructor;
  fetch?: FetchLike;
}

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
      sync: options.paths?.sync ?? DEFAULT_PATHS.sync,
      sse: options.paths?.sse ?? DEFAULT_PATHS.sse,
      api: options.paths?.api ?? DEFAULT_PATHS.api,
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
    const key = documentKey(collection, documentId);
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
  collection<T extends object = JsonObject>(collection: string, filter?: Filter<T>): CollectionHandle<T> {
    const normalized = filter && Object.keys(filter).length > 0 ? (filter as Filter) : undefined;
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
        for (const r of data.replicas) this.#stored.set(documentKey(r.collection, r.documentId), r);
        for (const feed of this.#documents.values()) {
          const stored = this.#stored.get(documentKey(feed.collection, feed.documentId));
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
            `the server's events for ${documentKey(replica.collection, replica.documentId)} do not apply from the start`,
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
              `repairing ${documentKey(replica.collection, replica.documentId)} failed: ${String(error)}`,
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
      const key = documentKey(feed.collection, feed.documentId);
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
        remove.push(parseDocumentKey(key)!);
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
        this.#dirty.set(documentKey(feed.collection, feed.documentId), feed);
        this.#schedulePersist();
      },
      refresh: (feed) => {
        this.#repair(feed, feed.replica, false).catch(() => undefined);
      },
    };
  }
}
