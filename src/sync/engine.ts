/**
 * The sync engine: everything the transports share. It owns the event feed of the database
 * (one per server process: `EventStore.subscribe`, woken by the database's change
 * notifications, so changes made by other processes arrive too), indexes which sessions follow
 * which documents and collections, serializes each event once and hands the same frame to
 * every session that follows it. No transport code lives here.
 */

import type { Database } from '../core/collection-backend.js';
import { ClosedError, EventSyncError, ValidationError } from '../core/errors.js';
import type { StreamHead } from '../core/event-backend.js';
import type { MissingEvents, Snapshot, SyncEvent, VectorClock } from '../core/events.js';
import { assertCollectionName } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import type { Mutators } from '../core/mutators.js';
import { sleep } from '../core/sleep.js';
import { EventStore } from '../events/event-store.js';
import { EventSyncStorage } from '../events/event-sync-storage.js';
import { consoleLogger, type Logger } from '../events/logger.js';
import { type ClientPosition, SyncService } from '../events/sync-service.js';
import { CloseCodes, DISCONNECTED, documentKey, sseEventId } from '../protocol/wire.js';
import { createStorage } from '../storage/create-storage.js';
import { KeyedQueue } from '../storage/keyed-queue.js';
import type { BaseDocument } from '../storage/types.js';
import { ConnectionLimits } from './connection-limits.js';
import { SyncMetrics } from './metrics.js';
import {
  checkedMutators,
  errorAnswer,
  KnownRecords,
  lastMidOf,
  type MutationAnswer,
  type MutationCaller,
  type MutationRequest,
  type MutationRuntime,
  RESERVED_RECORD_PREFIX,
  runMutation,
} from './mutations.js';
import { checkedScope, type ReadScope } from './read-scope.js';
import { Session } from './session.js';
import type { Delivery, Follower, SessionHost } from './session-host.js';
import {
  type AccessOptions,
  type Action,
  type Authenticate,
  type Authorize,
  type AuthorizeQuery,
  type AuthRequest,
  defaultLimits,
  type Principal,
  type Sink,
  type SyncLimits,
} from './types.js';

export interface SyncEngineOptions {
  db: Database;
  /** Who a client is. Default: everyone is `{ id: 'anonymous' }` (then `authorize` may be left out: all is allowed). */
  authenticate?: Authenticate;
  /**
   * What a principal may do. Required with `authenticate` (deny by default: `create` throws without
   * it); `'allow-all'` lets every authenticated principal read and write everything.
   */
  authorize?: Authorize | 'allow-all';
  /** The documents a principal may read, as a filter lists and collection subscriptions are scoped by; see `AuthorizeQuery`. */
  authorizeQuery?: AuthorizeQuery;
  /**
   * How long a connection keeps an answer of `authorize` (per document, and `'subscribe'` per
   * collection) and of `authorizeQuery`, in ms. A followed document whose answer is older is
   * asked about again at its next event, before the event is sent; refused, it leaves (`leave`,
   * reason `forbidden`). `0`: ask at every event (one call per event and subscriber, awaited in
   * the event feed). `engine.revoke(principalId)` takes answers back at once. Default 60,000.
   */
  authorizationTtlMs?: number;
  limits?: Partial<SyncLimits>;
  logger?: Logger;
  /** Automatic snapshot interval of the collections' EventSyncStorage. Default 100. */
  snapshotEvery?: number;
  /** Which web pages (`Origin`) and host names (`Host`) the transports serve; see `AccessOptions`. Default: same origin, any host. */
  access?: AccessOptions;
  /**
   * Per collection, the mutators clients may ask the server to run (`defineMutators`; see
   * docs/MUTATIONS.md). A collection without any accepts no mutation (`unknown_mutator`).
   */
  // biome-ignore lint/suspicious/noExplicitAny: each collection's mutators are typed by its own document type
  mutators?: Record<string, Mutators<any>>;
}

const MAX_OPEN_COLLECTIONS = 1000;
const DEFAULT_AUTHORIZATION_TTL_MS = 60_000;
/** WebSocket close reasons are at most 123 bytes of UTF-8. */
const MAX_CLOSE_REASON_BYTES = 123;
/** Records of REST idempotency keys are kept this long (a key sent again later runs again)… */
const KEY_RECORD_TTL_MS = 24 * 60 * 60 * 1000;
/** … and pruned this often. */
const KEY_PRUNE_EVERY_MS = 60 * 60 * 1000;
/** After a failed read of the event feed, read again this much later. */
const FEED_RETRY_MS = 500;
/** Client mutation records kept in memory to skip a read per mutation (the least recently used go first). */
const KNOWN_MUTATION_RECORDS = 10_000;
const anonymous: Authenticate = () => ({ id: 'anonymous' });
const allowAll: Authorize = () => true;
/**
 * The server side of sync: collections whose writes are events, the feed that delivers them, and
 * the host of every session (`SessionHost`: the calls a session, and REST and SSE, make of it).
 */
export class SyncEngine implements SessionHost {
  readonly events: EventStore;
  readonly service: SyncService;
  readonly limits: SyncLimits;
  readonly metrics = new SyncMetrics();
  /** Open WebSockets and SSE streams, in total and per address (both transports share them). */
  readonly connections: ConnectionLimits;
  /** Checked by every transport before anything else (see `AccessOptions`). */
  readonly access: AccessOptions;
  readonly logger: Logger;
  /** See `SyncEngineOptions.authorizationTtlMs`. */
  readonly authorizationTtlMs: number;
  readonly #db: Database;
  readonly #authenticate: Authenticate;
  readonly #authorize: Authorize;
  readonly #authorizeQuery: AuthorizeQuery | undefined;
  readonly #snapshotEvery: number | undefined;
  readonly #collections = new Map<string, Promise<EventSyncStorage<BaseDocument>>>();
  /**
   * Sessions following a document, by `collection/documentId`. Each array is replaced, never
   * changed, when a session follows or unfollows: an event is delivered to the array as it was
   * when the event was dispatched, without copying it per event.
   */
  readonly #byDocument = new Map<string, readonly Follower[]>();
  /** Sessions with a subscription to a whole collection (copy-on-write, as `#byDocument`). */
  readonly #byCollection = new Map<string, readonly Follower[]>();
  readonly #sessions = new Set<Follower>();
  readonly #stopFeed = new AbortController();
  #feed: Promise<void> | undefined;
  readonly #mutations: MutationRuntime;
  #keyPruning: NodeJS.Timeout | undefined;

  private constructor(options: SyncEngineOptions, authorize: Authorize, events: EventStore) {
    this.#db = options.db;
    this.events = events;
    this.limits = { ...defaultLimits, ...options.limits };
    this.connections = new ConnectionLimits(this.limits);
    this.access = options.access ?? {};
    this.logger = options.logger ?? consoleLogger;
    this.service = new SyncService(events.backend, {
      ackFlushMs: this.limits.ackFlushMs,
      onAckFlushError: (error) =>
        this.logger.warn({ err: error }, 'eventsync: writing acknowledgements failed; retrying'),
    });
    this.#authenticate = options.authenticate ?? anonymous;
    this.#authorize = authorize;
    this.#authorizeQuery = options.authorizeQuery;
    this.authorizationTtlMs = options.authorizationTtlMs ?? DEFAULT_AUTHORIZATION_TTL_MS;
    this.#snapshotEvery = options.snapshotEvery;
    this.#mutations = {
      mutators: checkedMutators(options.mutators),
      collection: (name) => this.collection(name),
      mutationRecord: (key) => this.events.backend.mutationRecord(key),
      keepMutationRecord: (record) => this.events.backend.keepMutationRecord(record),
      authorize: (principal, action, collection, documentId) =>
        this.authorize(principal, action, collection, documentId),
      logger: this.logger,
      // A result travels in one frame: no larger than a frame the server accepts.
      maxResultBytes: this.limits.maxMessageBytes,
      lanes: new KeyedQueue(),
      known: new KnownRecords(KNOWN_MUTATION_RECORDS),
    };
  }

  /** Opens the event log and starts following it from now. */
  static async create(options: SyncEngineOptions): Promise<SyncEngine> {
    const authorize = chooseAuthorize(options);
    const ttl = options.authorizationTtlMs;
    if (ttl !== undefined && !(typeof ttl === 'number' && ttl >= 0)) {
      throw new ValidationError(
        `SyncEngine.create: authorizationTtlMs must be a number of ms, 0 or more, not ${String(ttl)}`,
        '/authorizationTtlMs',
      );
    }
    const engine = new SyncEngine(options, authorize, new EventStore(await options.db.events()));
    await engine.#startFeed();
    engine.#keyPruning = setInterval(() => void engine.#pruneKeyRecords(), KEY_PRUNE_EVERY_MS);
    // Pruning is housekeeping: no reason to keep a process alive.
    engine.#keyPruning.unref();
    return engine;
  }

  /** The collection as an EventSyncStorage (opened once). Writes through it reach every subscriber. */
  collection<T extends BaseDocument = BaseDocument>(name: string): Promise<EventSyncStorage<T>> {
    assertCollectionName(name);
    let storage = this.#collections.get(name);
    if (storage) {
      // Most recently used last, so the oldest is the first to go when the cache is full.
      this.#collections.delete(name);
      this.#collections.set(name, storage);
    } else {
      // Clients choose collection names: keep a bounded number open, not one per name ever asked for.
      if (this.#collections.size >= MAX_OPEN_COLLECTIONS) {
        this.#collections.delete(this.#collections.keys().next().value!);
      }
      storage = createStorage<BaseDocument>({ db: this.#db, collection: name }).then(
        (s) =>
          new EventSyncStorage(s, this.events, { logger: this.logger, snapshotEvery: this.#snapshotEvery }),
      );
      storage.catch(() => this.#collections.delete(name));
      this.#collections.set(name, storage);
    }
    return storage as unknown as Promise<EventSyncStorage<T>>;
  }

  authenticate(request: AuthRequest): Promise<Principal | undefined> {
    return Promise.resolve(this.#authenticate(request));
  }

  async authorize(
    principal: Principal,
    action: Action,
    collection: string,
    documentId?: string,
  ): Promise<boolean> {
    try {
      return (await this.#authorize(principal, action, collection, documentId)) === true;
    } catch (error) {
      this.logger.error(
        { err: error, principal: principal.id, action, collection, documentId },
        'authorize threw',
      );
      return false;
    }
  }

  /**
   * What lists and collection subscriptions of `principal` in `collection` range over (see
   * `ReadScope`): `authorizeQuery`'s filter; without it, everything when every read is allowed,
   * else 'per-document' (only `authorize` knows). Throws when `authorizeQuery` throws or answers
   * something that is not a scope: the transports log it and answer `internal`.
   */
  async readScope(principal: Principal, collection: string): Promise<ReadScope> {
    if (this.#authorizeQuery) return checkedScope(await this.#authorizeQuery(principal, collection));
    return this.#authorize === allowAll ? {} : 'per-document';
  }

  /** A new session for a connection; the transport passes it every frame the client sends. */
  connect(request: Omit<AuthRequest, 'token'>, sink: Sink): Session {
    const session = new Session(this, request, sink);
    this.#sessions.add(session);
    this.metrics.connections++;
    return session;
  }

  claimClient(clientId: string, principalId: string): Promise<void> {
    return this.service.claimClient(clientId, principalId);
  }

  async mutate(caller: MutationCaller, request: MutationRequest): Promise<MutationAnswer> {
    try {
      return await runMutation(this.#mutations, caller, request);
    } catch (error) {
      // Nothing of it was kept (its transaction rolled back): the same mid may be sent again.
      if (EventSyncError.is(error)) return errorAnswer(request.mid, error.code, error.message);
      this.logger.error(
        { err: error, collection: request.collection, mutator: request.name },
        'eventsync: running a mutation failed',
      );
      return errorAnswer(request.mid, 'internal', 'the mutation could not be run; send it again');
    }
  }

  /** Forgets the records of REST idempotency keys older than a day (every instance may; the delete is idempotent). */
  async #pruneKeyRecords(): Promise<void> {
    try {
      await this.events.backend.pruneMutationRecords(RESERVED_RECORD_PREFIX, Date.now() - KEY_RECORD_TTL_MS);
    } catch (error) {
      this.logger.warn(
        { err: error },
        'eventsync: pruning idempotency-key records failed; trying again later',
      );
    }
  }

  async lastMid(clientId: string): Promise<number> {
    if (clientId.startsWith(RESERVED_RECORD_PREFIX)) return 0;
    return lastMidOf(await this.events.backend.mutationRecord(clientId));
  }

  missingEvents(
    clientId: string,
    collection: string,
    documentId: string,
    position?: ClientPosition,
  ): Promise<MissingEvents> {
    return this.service.getMissingEvents(clientId, collection, documentId, position);
  }

  /** A document's events with seq > `afterSeq`, at most `limit` of them, in seq order. */
  readEvents(collection: string, documentId: string, afterSeq: number, limit: number): Promise<SyncEvent[]> {
    return this.events.getEvents(collection, documentId, afterSeq, limit);
  }

  head(collection: string, documentId: string): Promise<StreamHead | undefined> {
    return this.events.backend.head(collection, documentId);
  }

  /** The document as it is now, at its current seq (see `EventSyncStorage.currentSnapshot`). */
  async currentSnapshot(collection: string, documentId: string): Promise<Snapshot> {
    return (await this.collection(collection)).currentSnapshot(documentId);
  }

  /**
   * Held in memory and written in batches (no statement per acknowledgement). Without a clock
   * (the session holds none for that seq) the backend looks it up when it writes: a document's
   * clock after its first event is never empty.
   */
  async acknowledge(
    clientId: string,
    collection: string,
    documentId: string,
    seq: number,
    vectorClock: VectorClock | undefined,
  ): Promise<void> {
    await this.service.registerClient(clientId);
    await this.service.acknowledge(clientId, collection, documentId, seq, vectorClock, { reached: true });
  }

  // ---- the indexes sessions keep up to date ----

  follow(follower: Follower, collection: string, documentId: string): void {
    addTo(this.#byDocument, documentKey(collection, documentId), follower);
  }

  unfollow(follower: Follower, collection: string, documentId: string): void {
    removeFrom(this.#byDocument, documentKey(collection, documentId), follower);
  }

  followCollection(follower: Follower, collection: string): void {
    addTo(this.#byCollection, collection, follower);
  }

  unfollowCollection(follower: Follower, collection: string): void {
    removeFrom(this.#byCollection, collection, follower);
  }

  disconnected(follower: Follower): void {
    if (this.#sessions.delete(follower)) this.metrics.connections--;
  }

  // ---- taking rights back ----

  /**
   * Takes back what a principal was allowed, now rather than within `authorizationTtlMs`: its
   * connections forget every answer of `authorize` and `authorizeQuery` and ask again at once
   * for everything they follow. A collection subscription refused `'subscribe'` ends (`error
   * forbidden`); a document that may no longer be read leaves (`leave`, reason `forbidden`), and
   * a document subscription ends with it. Call it after changing what the hooks answer. Resolves
   * to the number of subscriptions that ended or lost a document.
   */
  async revoke(principalId: string): Promise<number> {
    const counts = await Promise.all(
      this.#sessionsOf(principalId).map((session) =>
        session.revalidate().catch((error: unknown) => {
          // Failing closed: a connection whose rights could not be checked again does not keep them.
          this.logger.error({ err: error, session: session.id }, 'eventsync: revoking failed');
          session.close(CloseCodes.internalError.code, 'internal error');
          return 0;
        }),
      ),
    );
    return counts.reduce((sum, n) => sum + n, 0);
  }

  /**
   * Closes every WebSocket (close code 4010) and SSE stream (`event: close`, code 4010) of a
   * principal, e.g. when its account is deleted. Clients may connect again: `authenticate`
   * decides then, so keep it out there. Returns the number of connections closed.
   */
  disconnect(principalId: string, reason: string = DISCONNECTED.reason): number {
    const sessions = this.#sessionsOf(principalId);
    const text = closeReason(reason);
    for (const session of sessions) session.close(DISCONNECTED.code, text);
    return sessions.length;
  }

  /** A scan, not an index: revoking is rare, and each event's delivery stays free of it. */
  #sessionsOf(principalId: string): Follower[] {
    return [...this.#sessions].filter((s) => !s.closed && s.principal?.id === principalId);
  }

  /**
   * Stops the feed and closes every session (with `code`/`reason`), e.g. on shutdown; writes the
   * acknowledgements still held in memory. Call it before closing the database.
   */
  async close(code: number = CloseCodes.goingAway.code, reason = 'server shutting down'): Promise<void> {
    for (const session of [...this.#sessions]) session.close(code, reason);
    clearInterval(this.#keyPruning);
    this.#stopFeed.abort();
    await this.#feed;
    await this.service.close();
    const open = [...this.#collections.values()];
    this.#collections.clear();
    await Promise.all(open.map((storage) => storage.then((s) => s.close()).catch(() => undefined)));
  }

  // ---- the feed ----

  async #startFeed(): Promise<void> {
    let after = await this.events.backend.latestServerSeq();
    const signal = this.#stopFeed.signal;
    this.#feed = (async () => {
      while (!signal.aborted) {
        try {
          for await (const event of this.events.subscribe({ afterServerSeq: after, signal })) {
            await this.#dispatch(event);
            after = event.serverSeq;
          }
        } catch (error) {
          if (signal.aborted) return;
          // A failed read (a dropped connection, the database restarting) loses nothing: read again
          // from the last event dispatched, sessions stay open. Only a database closed under the
          // engine (ClosedError) ends the feed.
          if (!ClosedError.is(error)) {
            this.logger.warn({ err: error }, 'eventsync: reading the event feed failed; retrying');
            await sleep(FEED_RETRY_MS, signal);
            continue;
          }
          this.logger.error(
            { err: error },
            'eventsync: the event feed stopped; closing sessions so clients reconnect',
          );
          for (const session of [...this.#sessions])
            session.close(CloseCodes.internalError.code, 'event feed failed');
          return;
        }
      }
    })();
  }

  async #dispatch(event: SyncEvent): Promise<void> {
    this.metrics.eventsStored++;
    const key = documentKey(event.collection, event.documentId);
    const followers = this.#byDocument.get(key);
    const watchers = this.#byCollection.get(event.collection);
    if (!followers && !watchers) return;
    const delivery = this.#delivery(event, key);
    // Most events reach only the followers of their document: their array as it is. Only when
    // collection subscriptions are involved too is a session in both delivered to once.
    const sessions = !watchers ? followers! : !followers ? watchers : new Set([...followers, ...watchers]);
    for (const session of sessions) {
      try {
        const pending = session.deliver(delivery);
        if (pending) await pending;
      } catch (error) {
        this.logger.error({ err: error, session: session.id }, 'eventsync: delivering an event failed');
        session.close(CloseCodes.internalError.code, 'internal error');
      }
    }
  }

  #delivery(event: SyncEvent, key: string): Delivery {
    let frame: string | undefined;
    let state: Promise<JsonObject | null> | undefined;
    return {
      event,
      key,
      eventId: sseEventId(event.collection, event.documentId, event.seq),
      frame: () => {
        if (frame === undefined) {
          frame = JSON.stringify({ type: 'event', event });
          this.metrics.observeCommitToSend(Math.max(0, Date.now() - event.timestamp));
        }
        return frame;
      },
      state: () => {
        state ??=
          event.operation === 'delete'
            ? Promise.resolve(null)
            : retryTransient(async () => {
                const storage = await this.collection(event.collection);
                return (
                  ((await storage.findOne(event.documentId)) as unknown as JsonObject | undefined) ?? null
                );
              });
        return state;
      },
    };
  }
}

/**
 * The `authorize` hook to run. Deny by default: an app that says who its users are but forgot to
 * say what they may do would otherwise let every user read and delete everyone's documents, so
 * that must be written out (`'allow-all'`). Without `authenticate` everyone is the same
 * anonymous principal, and allowing all is what the app asked for.
 */
function chooseAuthorize({ authenticate, authorize }: SyncEngineOptions): Authorize {
  if (typeof authorize === 'function') return authorize;
  if (authorize === 'allow-all' || (authorize === undefined && authenticate === undefined)) return allowAll;
  if (authorize === undefined) {
    throw new ValidationError(
      "SyncEngine.create: authenticate without authorize would let every principal do everything; pass authorize, or authorize: 'allow-all' to let every authenticated principal do everything",
      '/authorize',
    );
  }
  throw new ValidationError(
    `SyncEngine.create: authorize must be a function or 'allow-all', not ${JSON.stringify(authorize)}`,
    '/authorize',
  );
}

/** `reason`, cut to what a WebSocket close frame carries. */
function closeReason(reason: string): string {
  let out = '';
  let bytes = 0;
  for (const char of reason) {
    // By code point, so a cut never splits a surrogate pair; one pass, whatever the length.
    bytes += Buffer.byteLength(char);
    if (bytes > MAX_CLOSE_REASON_BYTES) break;
    out += char;
  }
  return out;
}

/**
 * Runs `read` again (three tries, 100 ms apart) when it fails for a reason other than bad input:
 * a pooled connection killed under it should cost a retry, not every session that needed it.
 */
async function retryTransient<R>(read: () => Promise<R>): Promise<R> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await read();
    } catch (error) {
      if (attempt >= 3 || EventSyncError.is(error, 'validation')) throw error;
      await sleep(100);
    }
  }
}

function addTo<K>(index: Map<K, readonly Follower[]>, k: K, session: Follower): void {
  const sessions = index.get(k);
  if (!sessions) index.set(k, [session]);
  else if (!sessions.includes(session)) index.set(k, [...sessions, session]);
}

function removeFrom<K>(index: Map<K, readonly Follower[]>, k: K, session: Follower): void {
  const sessions = index.get(k);
  if (!sessions?.includes(session)) return;
  if (sessions.length === 1) index.delete(k);
  else
    index.set(
      k,
      sessions.filter((s) => s !== session),
    );
}
