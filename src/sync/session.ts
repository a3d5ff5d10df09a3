/**
 * One client connection's side of the protocol, whatever the transport: it validates every
 * frame, authenticates `hello`, runs subscriptions (catch-up, then live events, handed over
 * with no gap and no duplicate), and delivers each event of a document at most once per
 * connection, in seq order, whatever subscriptions cover the document.
 */
import { Query } from 'mingo';
import { type ErrorCode, EventSyncError } from '../core/errors.js';
import { firstSeq } from '../core/event-order.js';
import type { DocumentPosition, MissingEvents, SyncEvent, VectorClock } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import {
  ClientMessage,
  PROTOCOL_VERSION,
  type ServerMessage,
  SUPPORTED_PROTOCOLS,
  SubscriptionId,
} from '../protocol/messages.js';
import { CloseCodes, documentKey, HELLO_TIMEOUT, sseEventId, TOO_SLOW } from '../protocol/wire.js';
import type { Filter } from '../storage/types.js';
import { AuthorizationCache } from './authorization-cache.js';
import {
  FIRST_PAGE_DOCUMENTS,
  nextPageSize,
  nextTurn,
  readPage,
  readSnapshots,
} from './collection-snapshot.js';
import { assertRemoteFilter } from './filter-policy.js';
import { parseClientJson } from './json.js';
import type { MutationCaller } from './mutations.js';
import { andFilters, NOTHING, type ReadScope } from './read-scope.js';
import type { CollectionReader, Delivery, Follower, SessionHost } from './session-host.js';
import type { AuthRequest, Principal, Sink } from './types.js';

/** A `subscribe` message: one document, or the documents of a collection that match a filter. */
export type SubscribeMessage = Extract<ClientMessage, { type: 'subscribe' }>;
export type UnsubscribeMessage = Extract<ClientMessage, { type: 'unsubscribe' }>;

type Subscription =
  | { kind: 'document'; collection: string; documentId: string }
  | {
      kind: 'collection';
      collection: string;
      /** The client's filter. */
      filter: Filter;
      /** The answers `where` and `query` were built from (a new one, once asked again, rebuilds them). */
      access: CollectionAccess;
      /** The filter AND-ed into the principal's scope: what the snapshot reads. */
      where: Filter;
      /** `where`, for judging membership live; `undefined`: every document. */
      query: Query | undefined;
      /** How many documents it covers now (at most `maxSubscriptionDocuments`). */
      documents: number;
      /** Until `synced`: the documents the client said it holds, at their seqs (`subscribe.known`). */
      known?: ReadonlyMap<string, number>;
    };
type CollectionSubscription = Subscription & { kind: 'collection' };

/** What `authorize(…, 'subscribe', collection)` and `authorizeQuery` answered for a collection. */
interface CollectionAccess {
  subscribe: boolean;
  scope: ReadScope;
}

/** What this connection has of one document. */
interface Tracked {
  collection: string;
  documentId: string;
  /** The last seq sent; events at or below it are duplicates. */
  lastSeq: number;
  lastClock: VectorClock;
  /** While catching up (or repairing a gap), live events wait here. */
  held: Held[] | undefined;
  /** The subscriptions that cover this document. */
  subs: Set<string>;
}

/** A live event held while its document catches up, with its frame (serialized once). */
interface Held {
  event: SyncEvent;
  frame: string;
  bytes: number;
}

const eventFrame = (event: SyncEvent) => JSON.stringify({ type: 'event', event } satisfies ServerMessage);
let sessions = 0;

export class Session implements Follower {
  readonly id = `s${++sessions}`;
  principal: Principal | undefined;
  clientId: string | undefined;
  /** The protocol version agreed in `hello` (SSE sessions, welcomed without one: the newest). */
  protocol: number = PROTOCOL_VERSION;
  readonly #host: SessionHost;
  readonly #request: Omit<AuthRequest, 'token'>;
  readonly #sink: Sink;
  readonly #subs = new Map<string, Subscription>();
  readonly #docs = new Map<string, Tracked>();
  /** Documents this principal may read, as asked (collection subscriptions ask per document), by `documentKey`. */
  readonly #readable: AuthorizationCache<boolean>;
  /** Per collection: may this principal subscribe to it, and its scope. */
  readonly #collectionAccess: AuthorizationCache<CollectionAccess>;
  #closed = false;
  /** Collection subscriptions per collection: events of other collections skip membership checks. */
  readonly #watching = new Map<string, number>();
  /** Bytes of the live events held in `Tracked.held`, over all documents. */
  #heldBytes = 0;
  /** Documents that entered a collection subscription, waiting for their snapshot (see `#enter`). */
  readonly #entering: Tracked[] = [];
  /** Token bucket for frames per second. */
  #tokens: number;
  #refilledAt = Date.now();
  #throttled = false;
  /** Messages are handled one after another, in arrival order (see #inOrder). */
  #queue: Promise<void> = Promise.resolve();
  /** Closes a connection not welcomed in time: one that never says who it is must not hold a socket. */
  #helloTimer: NodeJS.Timeout | undefined;

  constructor(host: SessionHost, request: Omit<AuthRequest, 'token'>, sink: Sink) {
    this.#host = host;
    this.#request = request;
    this.#sink = sink;
    this.#tokens = host.limits.maxMessagesPerSecond;
    this.#readable = new AuthorizationCache(host.authorizationTtlMs);
    this.#collectionAccess = new AuthorizationCache(host.authorizationTtlMs);
    const ms = host.limits.helloTimeoutMs;
    this.#helloTimer = setTimeout(() => {
      if (!this.principal) this.close(HELLO_TIMEOUT.code, `${HELLO_TIMEOUT.reason} within ${ms} ms`);
    }, ms);
    // A pending hello is no reason to keep a process alive.
    this.#helloTimer.unref();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Takes one frame from the client. Cheap checks happen now; the rest runs in order. */
  receive(raw: string, bytes = raw.length): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const limits = this.#host.limits;
    if (bytes > limits.maxMessageBytes) {
      this.#error('too_large', `frames are limited to ${limits.maxMessageBytes} bytes`);
      this.close(CloseCodes.messageTooBig.code, 'message too large');
      return Promise.resolve();
    }
    if (!this.#takeToken()) {
      // One error per burst, not one per dropped frame: a flood should not be answered by a flood.
      if (!this.#throttled) {
        this.#throttled = true;
        this.#error(
          'rate_limited',
          `more than ${limits.maxMessagesPerSecond} messages per second; slow down`,
        );
      }
      return Promise.resolve();
    }
    this.#throttled = false;
    const parsed = parseClientJson(raw, limits.maxMessageDepth);
    if (!parsed.ok) {
      this.#error('bad_message', `the frame ${parsed.reason}`);
      return Promise.resolve();
    }
    const checked = ClientMessage.safeParse(parsed.value);
    if (!checked.success) {
      this.#error('bad_message', describeIssue(checked.error.issues[0]), refOfInvalid(parsed.value));
      return Promise.resolve();
    }
    return this.#inOrder(checked.data);
  }

  /**
   * Starts a subscription, as a `subscribe` frame does (the frames `receive` parsed come the same
   * way): SSE, whose stream is one subscription, calls it after `accept`. A refusal or a failure
   * is an `error` (`ref: sub`) to the client, never a rejection.
   */
  subscribe(message: SubscribeMessage): Promise<void> {
    return this.#inOrder(message);
  }

  /** Ends a subscription, as an `unsubscribe` frame does. */
  unsubscribe(message: UnsubscribeMessage): Promise<void> {
    return this.#inOrder(message);
  }

  /**
   * A message a transport parsed and validated itself (an SSE client stream's POSTs), counted
   * against `maxMessagesPerSecond` like a frame: `false`, and nothing done, when over it (the
   * transport refuses the request); else it is handled in order, and answered on the stream.
   */
  admit(message: ClientMessage): boolean {
    if (this.#closed || !this.#takeToken()) return false;
    void this.#inOrder(message);
    return true;
  }

  /** Messages are handled one after another, in arrival order; a failure is told to the client. */
  #inOrder(message: ClientMessage): Promise<void> {
    this.#queue = this.#queue
      .then(() => this.#handle(message))
      .catch((error: unknown) => this.#fail(error, message));
    return this.#queue;
  }

  /** Called by the host's feed for each event of a document or collection this session follows. */
  deliver(delivery: Delivery): Promise<void> | undefined {
    if (this.#closed) return undefined;
    const tracked = this.#docs.get(delivery.key);
    // Rights change: a followed document whose answer expired (authorizationTtlMs) is asked
    // about again, and this event waits for the answer.
    if (tracked && this.#readable.get(delivery.key) === undefined) {
      return this.#recheckDocument(tracked).then(() => this.#deliverNow(delivery));
    }
    return this.#deliverNow(delivery, tracked);
  }

  #deliverNow(delivery: Delivery, tracked = this.#docs.get(delivery.key)): Promise<void> | undefined {
    if (this.#closed) return undefined;
    const { event } = delivery;
    // The hot path (every subscriber of every event): no collection subscription to settle.
    if (!this.#watching.has(event.collection)) {
      if (tracked) this.#deliverLive(tracked, event, delivery.frame(), delivery.eventId);
      return undefined;
    }
    return this.#deliverWithCollections(delivery, this.#collectionSubs(event.collection));
  }

  close(code: number = CloseCodes.normalClosure.code, reason = ''): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#helloTimer);
    for (const tracked of this.#docs.values())
      this.#host.unfollow(this, tracked.collection, tracked.documentId);
    for (const sub of this.#subs.values()) {
      if (sub.kind === 'collection') this.#host.unfollowCollection(this, sub.collection);
    }
    this.#host.metrics.subscriptions -= this.#subs.size;
    this.#subs.clear();
    this.#watching.clear();
    this.#docs.clear();
    this.#host.disconnected(this);
    this.#sink.close(code, reason);
  }

  // ---- messages ----

  async #handle(message: ClientMessage): Promise<void> {
    if (this.#closed) return;
    if (message.type === 'hello') return this.#hello(message);
    if (!this.principal || !this.clientId) {
      return this.#error('unauthorized', 'send hello first', message.type);
    }
    switch (message.type) {
      case 'subscribe':
        return 'documentId' in message
          ? this.#subscribeDocument(message.sub, message.collection, message.documentId, message)
          : this.#subscribeCollection(message.sub, message.collection, message.filter, message.known);
      case 'unsubscribe':
        return this.#unsubscribe(message.sub);
      case 'ack':
        return this.#ack(message.collection, message.documentId, message.seq);
      case 'mutate':
        return this.#mutate(message);
    }
  }

  async #hello(message: Extract<ClientMessage, { type: 'hello' }>): Promise<void> {
    if (this.principal)
      return this.#error('bad_message', 'hello was already sent on this connection', 'hello');
    if (!SUPPORTED_PROTOCOLS.includes(message.protocol)) {
      const spoken = SUPPORTED_PROTOCOLS.join(' and ');
      this.#error('unsupported_protocol', `this server speaks protocols ${spoken}`, 'hello');
      return this.close(CloseCodes.unsupportedProtocol.code, 'unsupported protocol');
    }
    const principal = await this.#host.authenticate({ ...this.#request, token: message.token });
    if (!principal) {
      this.#error('unauthorized', 'the credentials were refused', 'hello');
      return this.close(CloseCodes.unauthorized.code, 'unauthorized');
    }
    // Another principal's client id would read and move that client's acknowledged positions.
    try {
      await this.#host.claimClient(message.clientId, principal.id);
    } catch (error) {
      if (!EventSyncError.is(error, 'forbidden')) throw error;
      this.#error('forbidden', error.message, 'hello');
      return this.close(CloseCodes.clientIdTaken.code, 'client id belongs to another principal');
    }
    // Protocol 2 clients learn where their mutation ids stand (one without persistence lost it).
    const lastMid = message.protocol >= 2 ? await this.#host.lastMid(message.clientId) : undefined;
    this.principal = principal;
    this.clientId = message.clientId;
    this.protocol = message.protocol;
    clearTimeout(this.#helloTimer);
    this.#send({
      type: 'welcome',
      protocol: message.protocol,
      clientId: message.clientId,
      serverTime: Date.now(),
      ...(lastMid === undefined ? {} : { lastMid }),
    });
  }

  /**
   * Hello without a frame: transports that authenticate the request itself (SSE) call this, with
   * a client id the principal may use (`SyncService.claimClient`) or one the server issued;
   * with `welcome`, a `welcome` frame goes out first.
   */
  accept(
    principal: Principal,
    clientId: string,
    welcome?: { protocol: number; lastMid?: number; streamId?: string },
  ): void {
    this.principal = principal;
    this.clientId = clientId;
    clearTimeout(this.#helloTimer);
    // A stream that said its protocol (SSE `?protocol=2`) is welcomed as a hello would be, so
    // its client learns where its mutation ids stand.
    if (welcome) {
      const { protocol, lastMid, streamId } = welcome;
      this.protocol = protocol;
      this.#send({
        type: 'welcome',
        protocol,
        clientId,
        serverTime: Date.now(),
        ...(lastMid === undefined ? {} : { lastMid }),
        ...(streamId === undefined ? {} : { streamId }),
      });
    }
  }

  async #subscribeDocument(
    sub: string,
    collection: string,
    documentId: string,
    position: { afterSeq?: number; vectorClock?: VectorClock },
  ): Promise<void> {
    if (!this.#claim(sub)) return;
    if (!(await this.#mayRead(collection, documentId))) {
      return this.#error('forbidden', `you may not read ${documentKey(collection, documentId)}`, sub);
    }
    this.#addSub(sub, { kind: 'document', collection, documentId });
    this.#send({ type: 'subscribed', sub });
    const existing = this.#docs.get(documentKey(collection, documentId));
    if (existing) this.#cover(existing, sub);
    else {
      await this.#catchUp(
        collection,
        documentId,
        sub,
        async () => {
          const from =
            position.afterSeq !== undefined
              ? { afterSeq: position.afterSeq }
              : position.vectorClock
                ? { vectorClock: position.vectorClock }
                : { afterSeq: 0 };
          return this.#host.missingEvents(this.clientId!, collection, documentId, from);
        },
        position.afterSeq,
      );
    }
    if (this.#subs.has(sub)) this.#send({ type: 'synced', sub });
  }

  async #subscribeCollection(
    sub: string,
    collection: string,
    filter: JsonObject | undefined,
    known: Record<string, number> | undefined,
  ): Promise<void> {
    if (!this.#claim(sub)) return;
    const access = await this.#accessTo(collection);
    if (!access.subscribe) return this.#error('forbidden', `you may not subscribe to ${collection}`, sub);
    if (filter && Object.keys(filter).length > 0) assertRemoteFilter(filter, this.#host.limits);
    const knownSeqs = known === undefined ? undefined : new Map(Object.entries(known));
    if (knownSeqs && knownSeqs.size > this.#host.limits.maxSubscriptionDocuments) {
      const most = this.#host.limits.maxSubscriptionDocuments;
      return this.#error('validation', `known names more than ${most} documents: send none (snapshots)`, sub);
    }
    const subscription = scoped(
      {
        kind: 'collection',
        collection,
        filter: filter ?? {},
        documents: 0,
        ...(knownSeqs && { known: knownSeqs }),
      },
      access,
    );
    this.#addSub(sub, subscription);
    // Followed before the first read: every event committed after it reaches this session.
    this.#host.followCollection(this, collection);
    const storage = await this.#host.collection(collection);
    const limits = this.#host.limits;
    // The first page is read before answering, so a filter mingo refuses fails the subscribe itself.
    let asked = Math.min(FIRST_PAGE_DOCUMENTS, limits.maxSubscriptionDocuments + 1);
    await nextTurn();
    let page = await readPage(storage, subscription.where, undefined, asked);
    this.#send({ type: 'subscribed', sub });
    for (;;) {
      const sent = await this.#snapshotPage(sub, subscription, storage, page);
      // A page shorter than asked for was the last one.
      if (page.length < asked || !this.#subs.has(sub)) break;
      // A client that stopped reading costs no more reads until it reads again.
      if (!sent.more) await this.#sink.drained?.();
      await nextTurn();
      if (!this.#subs.has(sub)) return;
      // One more than the cap leaves room for: reading it says the filter matches too many.
      asked = Math.min(
        nextPageSize(limits.maxBufferedBytes, sent.bytes, sent.frames),
        limits.maxSubscriptionDocuments - subscription.documents + 1,
      );
      // `where` as it is now: a revocation may have narrowed the scope meanwhile.
      page = await readPage(storage, subscription.where, page[page.length - 1]!._id as string, asked);
    }
    if (!this.#subs.has(sub)) return;
    this.#leaveUnknown(sub, subscription);
    this.#send({ type: 'synced', sub });
  }

  /**
   * Before `synced` of a resumed subscription: each document the client said it holds that the
   * subscription does not cover now (gone, no longer matching, or no longer readable) gets `leave`.
   */
  #leaveUnknown(sub: string, subscription: CollectionSubscription): void {
    const { collection, known } = subscription;
    subscription.known = undefined;
    for (const documentId of known?.keys() ?? []) {
      if (this.#docs.get(documentKey(collection, documentId))?.subs.has(sub)) continue;
      this.#send({ type: 'leave', sub, collection, documentId, reason: 'unmatched' });
    }
  }

  /**
   * One page of a collection subscription's snapshot: its documents are followed first (live
   * events of them are held from then on), then read at one seq each, then sent, paced to the
   * client, each followed by the events held for it. A document this connection follows already
   * gets no snapshot. One that no longer matches (or is gone) when read, with no event since it
   * was followed, is left out: membership is judged on the latest state seen.
   */
  async #snapshotPage(
    sub: string,
    subscription: CollectionSubscription,
    storage: CollectionReader,
    page: JsonObject[],
  ): Promise<{ more: boolean; bytes: number; frames: number }> {
    const sent = { more: true, bytes: 0, frames: 0 };
    const fresh = await this.#trackPage(sub, subscription, page);
    if (fresh.length === 0) return sent;
    let snapshots: DocumentPosition[];
    try {
      snapshots = await readSnapshots(
        this.#host,
        storage,
        subscription.collection,
        fresh.map((t) => t.documentId),
      );
    } catch (error) {
      for (const tracked of fresh) if (this.#follows(tracked)) this.#untrack(tracked);
      throw error;
    }
    const { query } = subscription;
    for (const [i, tracked] of fresh.entries()) {
      const snapshot = snapshots[i]!;
      if (!sent.more) await this.#sink.drained?.();
      await nextTurn();
      if (!this.#follows(tracked)) continue;
      if (tracked.held!.length === 0 && !(snapshot.state && (!query || query.test(snapshot.state)))) {
        this.#uncover(tracked, sub);
        if (tracked.subs.size === 0) {
          this.#untrack(tracked);
          continue;
        }
      }
      if (subscription.known?.get(tracked.documentId) === snapshot.seq) {
        // The client holds this very state (a resumed subscription): it needs no snapshot.
        this.#sentUpTo(tracked, snapshot);
      } else {
        const frame = this.#snapshotFrame(tracked, snapshot);
        sent.more = this.#catchUpFrame(
          frame,
          sseEventId(tracked.collection, tracked.documentId, snapshot.seq),
        );
        sent.bytes += Buffer.byteLength(frame);
        sent.frames++;
      }
      this.#release(tracked);
    }
    return sent;
  }

  /**
   * Follows the documents of a page this connection does not follow yet (holding their live
   * events) and counts every readable one against `maxSubscriptionDocuments`. Returns the newly
   * followed, also when the subscription ended meanwhile (past the cap, or by a live event): any
   * of them another subscription took up since still needs its snapshot, and its held events.
   */
  async #trackPage(
    sub: string,
    subscription: CollectionSubscription,
    page: JsonObject[],
  ): Promise<Tracked[]> {
    const { collection } = subscription;
    const fresh: Tracked[] = [];
    for (const doc of page) {
      await nextTurn();
      const documentId = doc._id as string;
      if (!(await this.#mayRead(collection, documentId))) continue;
      if (!this.#subs.has(sub)) return fresh;
      let tracked = this.#docs.get(documentKey(collection, documentId));
      if (tracked?.subs.has(sub)) continue;
      if (this.#full(sub)) {
        this.#tooMany(sub);
        return fresh;
      }
      if (!tracked) {
        tracked = { collection, documentId, lastSeq: 0, lastClock: {}, held: [], subs: new Set() };
        this.#docs.set(documentKey(collection, documentId), tracked);
        this.#host.follow(this, collection, documentId);
        fresh.push(tracked);
      }
      this.#cover(tracked, sub);
    }
    return fresh;
  }

  async #unsubscribe(sub: string): Promise<void> {
    if (!this.#subs.has(sub)) return this.#error('not_found', `no subscription ${JSON.stringify(sub)}`, sub);
    this.#drop(sub);
    this.#send({ type: 'unsubscribed', sub });
  }

  /** Ends a subscription: forgets it, and every document only it covered. */
  #drop(sub: string): void {
    const subscription = this.#subs.get(sub);
    if (!subscription) return;
    this.#subs.delete(sub);
    this.#host.metrics.subscriptions--;
    if (subscription.kind === 'collection') {
      const left = (this.#watching.get(subscription.collection) ?? 1) - 1;
      if (left > 0) this.#watching.set(subscription.collection, left);
      else {
        this.#watching.delete(subscription.collection);
        this.#host.unfollowCollection(this, subscription.collection);
      }
    }
    for (const tracked of [...this.#docs.values()]) {
      tracked.subs.delete(sub);
      if (tracked.subs.size === 0) this.#untrack(tracked);
    }
  }

  /** A client mutation (protocol 2): the host runs it once per mid and answers; this session sends the answer. */
  async #mutate(message: Extract<ClientMessage, { type: 'mutate' }>): Promise<void> {
    const { type: _, ...request } = message;
    if (this.protocol < 2) {
      return this.#send({
        type: 'mutation_error',
        mid: message.mid,
        code: 'unknown_mutator',
        message: 'mutations need protocol 2: say so in hello',
      });
    }
    const caller: MutationCaller = {
      principal: this.principal!,
      clientId: this.clientId!,
      record: { kind: 'client' },
    };
    this.#send(await this.#host.mutate(caller, request));
  }

  async #ack(collection: string, documentId: string, seq: number): Promise<void> {
    const tracked = this.#docs.get(documentKey(collection, documentId));
    if (!tracked || seq > tracked.lastSeq) {
      return this.#error(
        'validation',
        `nothing up to seq ${seq} of ${documentKey(collection, documentId)} was sent here`,
        'ack',
      );
    }
    // This session holds the clock of the last seq it sent only; for an older seq (or the
    // client's own position) the host looks the clock up when it writes.
    const known = seq === tracked.lastSeq && Object.keys(tracked.lastClock).length > 0;
    await this.#host.acknowledge(
      this.clientId!,
      collection,
      documentId,
      seq,
      known ? tracked.lastClock : undefined,
    );
  }

  // ---- documents: catch-up, live events, membership ----

  /** Starts following a document: catch-up frames from `missing`, live events held meanwhile, then sent. */
  async #catchUp(
    collection: string,
    documentId: string,
    sub: string,
    missing: () => Promise<MissingEvents<DocumentPosition>>,
    clientSeq: number | undefined,
  ): Promise<void> {
    const tracked = this.#startFollowing(collection, documentId, sub, clientSeq ?? 0);
    try {
      await this.#sendMissing(tracked, await missing());
    } catch (error) {
      this.#untrack(tracked);
      throw error;
    }
    this.#release(tracked);
  }

  /** Follows a document from `lastSeq` for `sub`, its live events held until it is released. */
  #startFollowing(collection: string, documentId: string, sub: string, lastSeq: number): Tracked {
    const tracked: Tracked = { collection, documentId, lastSeq, lastClock: {}, held: [], subs: new Set() };
    this.#docs.set(documentKey(collection, documentId), tracked);
    this.#host.follow(this, collection, documentId);
    this.#cover(tracked, sub);
    return tracked;
  }

  /**
   * A document entered a collection subscription: followed at once (its live events held), its
   * snapshot queued. The queue is sent in order, paced to the client like any catch-up: a bulk
   * update that makes thousands of documents match, or writes to documents a paused client's
   * snapshot has not reached, must not pile their snapshots up in the send buffer. Never waits:
   * the engine's feed, which awaits this, is not held up by one slow client.
   */
  #enter(collection: string, documentId: string, sub: string): void {
    this.#entering.push(this.#startFollowing(collection, documentId, sub, 0));
    if (this.#entering.length === 1) void this.#sendEntries();
  }

  /** Sends the queued entries' snapshots, each read when its turn comes, then their held events. */
  async #sendEntries(): Promise<void> {
    while (this.#entering.length > 0) {
      const tracked = this.#entering[0]!;
      try {
        await this.#sink.drained?.();
        if (this.#follows(tracked)) {
          const { collection, documentId } = tracked;
          const snapshot = await this.#host.currentSnapshot(collection, documentId);
          await this.#sendMissing(tracked, { snapshot, events: [] });
          this.#release(tracked);
        }
      } catch (error) {
        this.#host.logger.error({ err: error, session: this.id }, 'eventsync: a document snapshot failed');
        this.close(CloseCodes.internalError.code, 'internal error');
      }
      this.#entering.shift();
    }
  }

  /**
   * Sends what the log says the client is missing of a document, the snapshot first, as
   * catch-up frames paced to the client: a catch-up can be far longer than the send buffer, so
   * whenever the sink has enough of it queued, the rest waits until the socket drained. Stops
   * early when the session closes or stops following the document meanwhile.
   */
  async #sendMissing(tracked: Tracked, { snapshot, events }: MissingEvents<DocumentPosition>): Promise<void> {
    if (!this.#follows(tracked)) return; // left (or closed) while the log was read
    let more = true;
    if (snapshot) {
      more = this.#catchUpFrame(
        this.#snapshotFrame(tracked, snapshot),
        sseEventId(tracked.collection, tracked.documentId, snapshot.seq),
      );
    }
    for (const event of events) {
      if (!more) {
        await this.#sink.drained?.();
        if (!this.#follows(tracked)) return;
      }
      more = this.#emit(tracked, event, eventFrame(event), true);
    }
  }

  /** The `snapshot` frame of a followed document; from now on it is at the snapshot's seq. */
  /** The client has `tracked`'s document as of `position`: events up to it are duplicates. */
  #sentUpTo(tracked: Tracked, position: DocumentPosition): void {
    tracked.lastSeq = position.seq;
    tracked.lastClock = position.vectorClock;
  }

  #snapshotFrame(tracked: Tracked, snapshot: DocumentPosition): string {
    this.#sentUpTo(tracked, snapshot);
    return JSON.stringify({
      type: 'snapshot',
      collection: tracked.collection,
      documentId: tracked.documentId,
      seq: snapshot.seq,
      version: snapshot.version,
      state: snapshot.state,
      vectorClock: snapshot.vectorClock,
    } satisfies ServerMessage);
  }

  /** A live event of a followed document: sent now, or held while the document catches up. */
  #deliverLive(tracked: Tracked, event: SyncEvent, frame: string, eventId?: string): void {
    if (tracked.held) this.#hold(tracked, event, frame);
    else this.#emit(tracked, event, frame, false, eventId);
  }

  /**
   * Sends one event unless the client has it already; a gap before it is repaired first.
   * Returns whether more catch-up may be sent before the sink drained (see `Sink.sendCatchUp`).
   */
  #emit(
    tracked: Tracked,
    event: SyncEvent,
    frame: string,
    catchUp: boolean,
    eventId = sseEventId(event.collection, event.documentId, event.seq),
  ): boolean {
    if (event.seq <= tracked.lastSeq) return true; // already sent (catch-up and live overlap)
    const first = firstSeq(event);
    if (first > tracked.lastSeq + 1) {
      // Events between arrive later or were skipped by the feed: fetch them first, in order.
      void this.#repair(tracked, event, frame);
      return true;
    }
    let more = true;
    if (catchUp) more = this.#catchUpFrame(frame, eventId);
    else this.#sink.send(frame, eventId);
    this.#host.metrics.eventsDelivered++;
    tracked.lastSeq = event.seq;
    tracked.lastClock = event.vectorClock;
    return more;
  }

  /** A gap before `event`: hold live events, read the missing ones from the log, send all in order. */
  async #repair(tracked: Tracked, event: SyncEvent, frame: string): Promise<void> {
    if (tracked.held) {
      this.#hold(tracked, event, frame);
      return;
    }
    tracked.held = [];
    this.#hold(tracked, event, frame);
    if (this.#closed) return;
    try {
      const missing = await this.#host.missingEvents(this.clientId!, tracked.collection, tracked.documentId, {
        afterSeq: tracked.lastSeq,
      });
      await this.#sendMissing(tracked, missing);
    } catch (error) {
      this.#host.logger.error({ err: error, session: this.id }, 'eventsync: repairing a gap failed');
      this.close(CloseCodes.internalError.code, 'could not repair a gap; reconnect to catch up');
      return;
    }
    this.#release(tracked);
  }

  /**
   * Keeps a live event until its document's catch-up is sent. Held events count against
   * `maxBufferedBytes` like queued ones: a client that stops reading in the middle of a
   * catch-up is disconnected as too slow, not held for without bound.
   */
  #hold(tracked: Tracked, event: SyncEvent, frame: string): void {
    const bytes = Buffer.byteLength(frame);
    tracked.held!.push({ event, frame, bytes });
    this.#heldBytes += bytes;
    if (this.#heldBytes > this.#host.limits.maxBufferedBytes) this.close(TOO_SLOW.code, TOO_SLOW.reason);
  }

  /** The catch-up of a document is sent: the live events held meanwhile follow, in order. */
  #release(tracked: Tracked): void {
    const held = tracked.held ?? [];
    tracked.held = undefined;
    for (const h of held) this.#heldBytes -= h.bytes;
    if (!this.#follows(tracked)) return;
    for (const h of held) this.#deliverLive(tracked, h.event, h.frame);
  }

  /** Whether this open session still follows the document through `tracked` (not left, not re-entered). */
  #follows(tracked: Tracked): boolean {
    return !this.#closed && this.#docs.get(documentKey(tracked.collection, tracked.documentId)) === tracked;
  }

  #catchUpFrame(frame: string, eventId: string): boolean {
    if (this.#closed) return true;
    if (this.#sink.sendCatchUp) return this.#sink.sendCatchUp(frame, eventId);
    this.#sink.send(frame, eventId);
    return true;
  }

  /**
   * An event of a collection this session subscribes to: deliver it if the document is followed,
   * then settle membership: a collection subscription covers a document while it matches the
   * filter (judged on the document as it is now) and may be read. A document that leaves gets
   * `leave`; one that enters gets its state (the create event itself, or a snapshot).
   */
  async #deliverWithCollections(delivery: Delivery, subs: [string, CollectionSubscription][]): Promise<void> {
    const { event } = delivery;
    let matching: string[] = [];
    /** Subscriptions the document matches but may not be read in. */
    const refused = new Set<string>();
    for (const [sub, { query }] of await this.#recheckCollections(subs)) {
      const state = query ? await delivery.state() : undefined;
      const matches = query ? state != null && query.test(state) : event.operation !== 'delete';
      if (!matches) continue;
      if (await this.#mayRead(event.collection, event.documentId)) matching.push(sub);
      else refused.add(sub);
    }
    if (this.#closed) return;
    // As it is now: a document left (unsubscribed, revoked) while this event waited gets none of it.
    const current = this.#docs.get(delivery.key);
    // A subscription at its cap takes no further document: it ends instead (see #tooMany).
    for (const sub of matching) if (!current?.subs.has(sub) && this.#full(sub)) this.#tooMany(sub);
    matching = matching.filter((sub) => this.#subs.has(sub));
    if (current) {
      this.#deliverLive(current, event, delivery.frame(), delivery.eventId);
      for (const [sub] of subs) {
        if (current.subs.has(sub) && !matching.includes(sub)) {
          this.#uncover(current, sub);
          const reason = refused.has(sub) ? 'forbidden' : 'unmatched';
          this.#send({
            type: 'leave',
            sub,
            collection: event.collection,
            documentId: event.documentId,
            reason,
          });
        }
      }
      for (const sub of matching) this.#cover(current, sub);
      if (current.subs.size === 0) this.#untrack(current);
      return;
    }
    if (matching.length === 0) return;
    if (event.operation === 'create') {
      // Nothing existed before a create: the event alone brings the whole document.
      const fresh: Tracked = {
        collection: event.collection,
        documentId: event.documentId,
        lastSeq: firstSeq(event) - 1,
        lastClock: {},
        held: undefined,
        subs: new Set(),
      };
      this.#docs.set(documentKey(event.collection, event.documentId), fresh);
      this.#host.follow(this, event.collection, event.documentId);
      for (const sub of matching) this.#cover(fresh, sub);
      this.#deliverLive(fresh, event, delivery.frame(), delivery.eventId);
      return;
    }
    this.#enter(event.collection, event.documentId, matching[0]!);
    const entered = this.#docs.get(documentKey(event.collection, event.documentId));
    for (const sub of matching) if (entered && this.#subs.has(sub)) this.#cover(entered, sub);
  }

  // ---- rights that change: authorizationTtlMs, engine.revoke ----

  /**
   * Whether the principal may still read a followed document (asked again once the answer
   * expired). If no longer, each subscription covering it lets go of it: `leave` (reason
   * `forbidden`), and a document subscription, which covers nothing else, ends with
   * `error forbidden`. Resolves to whether it was refused.
   */
  async #recheckDocument(tracked: Tracked): Promise<boolean> {
    const { collection, documentId } = tracked;
    if (await this.#mayRead(collection, documentId)) return false;
    if (!this.#follows(tracked)) return true; // left meanwhile (or revoked twice at once)
    for (const sub of [...tracked.subs]) {
      this.#send({ type: 'leave', sub, collection, documentId, reason: 'forbidden' });
      if (this.#subs.get(sub)?.kind === 'document') {
        this.#end(sub, 'forbidden', `you may no longer read ${documentKey(collection, documentId)}`);
      } else this.#uncover(tracked, sub);
    }
    if (this.#follows(tracked)) this.#untrack(tracked);
    return true;
  }

  /** The collection subscriptions that may go on (see #recheckCollection). */
  async #recheckCollections(
    subs: [string, CollectionSubscription][],
  ): Promise<[string, CollectionSubscription][]> {
    const kept: [string, CollectionSubscription][] = [];
    for (const entry of subs) if (await this.#recheckCollection(...entry)) kept.push(entry);
    return kept;
  }

  /**
   * Whether a collection subscription may go on: `'subscribe'` and the scope are asked again once
   * their answers expired, and a new scope re-scopes it (documents it now excludes leave at their
   * next event; those no longer readable at once, see `revalidate`). Refused, it ends with
   * `error forbidden`; a failing `authorizeQuery` ends it with `error internal`.
   */
  async #recheckCollection(sub: string, subscription: CollectionSubscription): Promise<boolean> {
    let access: CollectionAccess;
    try {
      access = await this.#accessTo(subscription.collection);
      if (this.#subs.get(sub) !== subscription) return false;
      if (access !== subscription.access) scoped(subscription, access);
    } catch (error) {
      this.#host.logger.error({ err: error, session: this.id, sub }, 'eventsync: authorizeQuery failed');
      if (this.#subs.get(sub) === subscription)
        this.#end(sub, 'internal', 'the server could not check this subscription');
      return false;
    }
    if (access.subscribe) return true;
    this.#end(sub, 'forbidden', `you may no longer subscribe to ${subscription.collection}`);
    return false;
  }

  /**
   * Forgets every answer of `authorize` and `authorizeQuery` and asks again now for what this
   * session follows (`engine.revoke`), instead of at the next events. Resolves to how many
   * subscriptions ended or lost a document.
   */
  async revalidate(): Promise<number> {
    this.#readable.clear();
    this.#collectionAccess.clear();
    const affected = new Set<string>();
    for (const [sub, subscription] of [...this.#subs]) {
      if (subscription.kind === 'collection' && !(await this.#recheckCollection(sub, subscription))) {
        affected.add(sub);
      }
    }
    for (const tracked of [...this.#docs.values()]) {
      const subs = [...tracked.subs];
      if (this.#follows(tracked) && (await this.#recheckDocument(tracked))) {
        for (const sub of subs) affected.add(sub);
      }
    }
    return affected.size;
  }

  // ---- helpers ----

  #collectionSubs(collection: string): [string, CollectionSubscription][] {
    const out: [string, CollectionSubscription][] = [];
    for (const [sub, s] of this.#subs)
      if (s.kind === 'collection' && s.collection === collection) out.push([sub, s]);
    return out;
  }

  #claim(sub: string): boolean {
    if (this.#subs.has(sub)) {
      this.#error(
        'bad_message',
        `subscription id ${JSON.stringify(sub)} is already in use on this connection`,
        sub,
      );
      return false;
    }
    if (this.#subs.size >= this.#host.limits.maxSubscriptions) {
      this.#error(
        'rate_limited',
        `at most ${this.#host.limits.maxSubscriptions} subscriptions per connection`,
        sub,
      );
      return false;
    }
    return true;
  }

  #addSub(sub: string, subscription: Subscription): void {
    this.#subs.set(sub, subscription);
    if (subscription.kind === 'collection') {
      this.#watching.set(subscription.collection, (this.#watching.get(subscription.collection) ?? 0) + 1);
    }
    this.#host.metrics.subscriptions++;
  }

  /** `sub` covers `tracked` from now on (counted against `maxSubscriptionDocuments`). */
  #cover(tracked: Tracked, sub: string): void {
    if (tracked.subs.has(sub)) return;
    tracked.subs.add(sub);
    const subscription = this.#subs.get(sub);
    if (subscription?.kind === 'collection') subscription.documents++;
  }

  #uncover(tracked: Tracked, sub: string): void {
    if (!tracked.subs.delete(sub)) return;
    const subscription = this.#subs.get(sub);
    if (subscription?.kind === 'collection') subscription.documents--;
  }

  /** Whether `sub` is a collection subscription that covers as many documents as it may. */
  #full(sub: string): boolean {
    const subscription = this.#subs.get(sub);
    return (
      subscription?.kind === 'collection' &&
      subscription.documents >= this.#host.limits.maxSubscriptionDocuments
    );
  }

  /**
   * A collection subscription that would cover more than `maxSubscriptionDocuments` ends, and
   * the client is told why (an error with `ref: sub` ends a subscription, as after a failed
   * set-up): following part of what it asked for would look like the whole.
   */
  #tooMany(sub: string): void {
    const max = this.#host.limits.maxSubscriptionDocuments;
    this.#end(
      sub,
      'too_large',
      `a collection subscription covers at most ${max} documents and this filter matches more; narrow it`,
    );
  }

  /** Ends a subscription the client did not end: the error (`ref: sub`) says why. */
  #end(sub: string, code: ErrorCode, message: string): void {
    this.#error(code, message, sub);
    this.#drop(sub);
    this.#sink.ended?.(sub);
  }

  #untrack(tracked: Tracked): void {
    for (const sub of [...tracked.subs]) this.#uncover(tracked, sub);
    for (const h of tracked.held ?? []) this.#heldBytes -= h.bytes;
    tracked.held = undefined;
    this.#docs.delete(documentKey(tracked.collection, tracked.documentId));
    this.#host.unfollow(this, tracked.collection, tracked.documentId);
  }

  #mayRead(collection: string, documentId: string): Promise<boolean> {
    return this.#readable.ask(documentKey(collection, documentId), () =>
      this.#host.authorize(this.principal!, 'read', collection, documentId),
    );
  }

  /** May this principal subscribe to `collection`, and within which scope. Throws when `authorizeQuery` does. */
  #accessTo(collection: string): Promise<CollectionAccess> {
    return this.#collectionAccess.ask(collection, async () => {
      const subscribe = await this.#host.authorize(this.principal!, 'subscribe', collection);
      const scope = subscribe ? await this.#host.readScope(this.principal!, collection) : NOTHING;
      return { subscribe, scope };
    });
  }

  #takeToken(): boolean {
    const rate = this.#host.limits.maxMessagesPerSecond;
    const now = Date.now();
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#refilledAt) / 1000) * rate);
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #send(message: ServerMessage, eventId?: string): void {
    if (!this.#closed) this.#sink.send(JSON.stringify(message), eventId);
  }

  #error(code: ErrorCode, message: string, ref?: string): void {
    this.#send(ref === undefined ? { type: 'error', code, message } : { type: 'error', code, message, ref });
  }

  /** An error while handling a message: ours are told to the client; anything else is logged and answered `internal`. */
  #fail(error: unknown, message: ClientMessage): void {
    const ref = 'sub' in message ? message.sub : message.type;
    // A subscription whose set-up failed is gone: the error (ref = sub) says so.
    if (message.type === 'subscribe') this.#drop(message.sub);
    if (EventSyncError.is(error)) this.#error(error.code, error.message, ref);
    else {
      this.#host.logger.error(
        { err: error, session: this.id, type: message.type },
        'eventsync: handling a message failed',
      );
      this.#error('internal', 'the server could not handle this message', ref);
    }
    if (message.type === 'subscribe') this.#sink.ended?.(message.sub);
  }
}

/**
 * (Re-)scopes a collection subscription by `access`: the snapshot's pages and, live, membership
 * range only over documents in the principal's scope. Without `authorizeQuery` each document is
 * checked (#mayRead), which keeps membership independent of unreadable documents as well.
 */
function scoped(
  subscription: Omit<CollectionSubscription, 'access' | 'where' | 'query'> & Partial<CollectionSubscription>,
  access: CollectionAccess,
): CollectionSubscription {
  const where = andFilters(access.scope === 'per-document' ? {} : access.scope, subscription.filter);
  const query = Object.keys(where).length > 0 ? new Query(where) : undefined;
  return Object.assign(subscription, { access, where, query });
}

/**
 * The `ref` of the error answering a frame the schema refused: a `subscribe` is named by its `sub`
 * when that part is valid (a bad collection name, filter or id then fails that subscription in
 * the client, not only its log), anything else by its type.
 */
function refOfInvalid(value: unknown): string | undefined {
  const { type, sub } = (value ?? {}) as { type?: unknown; sub?: unknown };
  if (type === 'subscribe' && SubscriptionId.safeParse(sub).success) return sub as string;
  return typeof type === 'string' ? type.slice(0, 64) : undefined;
}

/** A schema issue as the `error` frame (or HTTP error) for a refused message says it. */
export function describeIssue(issue: { path: PropertyKey[]; message: string } | undefined): string {
  if (!issue) return 'does not match the protocol';
  const where = issue.path.length > 0 ? ` at ${issue.path.map(String).join('.')}` : '';
  return `does not match the protocol${where}: ${issue.message}`.slice(0, 300);
}
