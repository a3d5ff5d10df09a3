/**
 * A channel: one transport connection (a WebSocket, an SSE stream) with the feeds it carries,
 * its reconnect loop (the state table in `state.ts`, exponential backoff with jitter), the
 * routing of server frames to feeds, and debounced acks.
 */

import { EventSyncError } from '../core/errors.js';
import { documentKey, isRetryable } from '../protocol/wire.js';
import { EventSyncClientError } from './errors.js';
import type { Replica } from './replica.js';
import { type ConnectionEvent, type ConnectionState, nextState } from './state.js';
import type { ClientMessage, Link, LinkHandlers, LinkOutcome, Refusal, ServerMessage } from './transport.js';

const MAX_ACKS_PER_FLUSH = 20;

/** What a channel carries: one subscription, a document's or a collection's (the feeds of handles.ts). */
export interface Subscription {
  /** The subscription id on the current link. */
  sub: string;
  /** The channel carrying it: set by `add`, cleared by `remove` (typed by the feed). */
  channel: unknown;
  readonly collection: string;
  /** Set for a document's subscription: the shared channel routes frames to it by document. */
  readonly documentId?: string;
  /** A document's subscription: the seq its `subscribe` asked to start after. */
  readonly subscribedAfter?: number;
  /** Set when the server refused the subscription for good: it is not sent again. */
  readonly error: EventSyncClientError | undefined;
  subscribeMessage(sub: string): ClientMessage;
  /** The link is about to subscribe (`subscribe` sent). */
  beginCatchUp(): void;
  onSynced(): void;
  onSnapshot(message: Extract<ServerMessage, { type: 'snapshot' }>): void;
  onEvent(event: Extract<ServerMessage, { type: 'event' }>['event']): void;
  /** `reason`: `unmatched`, or `forbidden` (the principal may no longer read the document). */
  onLeave(documentId: string, reason: string): void;
  linkLost(): void;
}

/** What channels need of the client that owns them. */
export interface ChannelHost<F extends Subscription> {
  readonly ackDelayMs: number;
  nextSub(): string;
  openLink(channel: Channel<F>, handlers: LinkHandlers): Link;
  /** The channel's state changed (`reason`: why it dropped). */
  channelChanged(channel: Channel<F>, reason?: string): void;
  backoff(attempt: number): number;
  /** The platform says there is no network (network.ts): no connection is tried until it is back. */
  offline(): boolean;
  /** Retrying cannot help: every channel stops. */
  fatal(error: EventSyncClientError): void;
  /** The server refused `feed`'s subscription for good. */
  feedFailed(feed: F, error: EventSyncClientError): void;
  report(error: EventSyncClientError): void;
  /** A connection attempt failed for a reason worth telling (a wrong URL); the channel retries. */
  connectFailed(error: EventSyncClientError): void;
  /** The server welcomed this channel's link (`lastMid`: the last mutation it applied for us). */
  welcomed(channel: Channel<F>, lastMid: number): void;
  mutationAnswered(message: Extract<ServerMessage, { type: 'mutated' | 'mutation_error' }>): void;
}

/** One transport connection and its reconnect loop. */
export class Channel<F extends Subscription = Subscription> {
  state: ConnectionState = 'idle';
  everConnected = false;
  link: Link | undefined;
  readonly feeds = new Set<F>();
  /** Document subscriptions by `collection/documentId` (the shared WebSocket channel). */
  readonly #byDoc = new Map<string, F>();
  readonly #bySub = new Map<string, F>();
  /** Per document: the highest seq this link has brought (an ack may not go beyond it). */
  readonly #delivered = new Map<string, number>();
  readonly #acked = new Map<string, number>();
  readonly #pendingAcks = new Map<string, { collection: string; documentId: string; seq: number }>();
  #ackTimer: ReturnType<typeof setTimeout> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  readonly #resubscribes = new Map<F, ReturnType<typeof setTimeout>>();

  constructor(
    readonly core: ChannelHost<F>,
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
      if (!this.core.offline()) this.#open();
      this.core.channelChanged(this);
    }
  }

  /** The network went away: the link is dropped now, not when it times out, and not retried. */
  networkLost(): void {
    const link = this.link;
    if (!link) return;
    link.close();
    this.#closed(link, 'offline', 'drop');
  }

  /** The network is back: a connection is tried now rather than at the end of the backoff delay. */
  networkBack(): void {
    if (this.link || (this.state !== 'connecting' && this.state !== 'reconnecting')) return;
    clearTimeout(this.#retryTimer);
    this.#attempt = 0;
    this.#retry();
  }

  /** A connection attempt, now: not while offline (a backoff timer may outlive the network). */
  #retry(): void {
    if (this.core.offline()) return; // networkBack() tries again
    if (this.state === 'connecting' || this.#go('retry')) {
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

  add(feed: F): void {
    this.feeds.add(feed);
    feed.channel = this;
    if (feed.documentId !== undefined) this.#byDoc.set(documentKey(feed.collection, feed.documentId), feed);
    if (this.state === 'connected' && this.link?.canSend) this.#subscribe(feed);
  }

  remove(feed: F): void {
    this.feeds.delete(feed);
    feed.channel = undefined;
    clearTimeout(this.#resubscribes.get(feed));
    this.#resubscribes.delete(feed);
    if (feed.documentId !== undefined) this.#byDoc.delete(documentKey(feed.collection, feed.documentId));
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
    let link: Link;
    try {
      link = this.core.openLink(this, handlers);
    } catch (error) {
      // No WebSocket/EventSource to use, or a URL it refuses: retrying cannot help.
      this.#go('fatal');
      this.core.fatal(
        EventSyncError.is(error)
          ? (error as EventSyncClientError)
          : new EventSyncClientError('closed', `cannot open a connection: ${String(error)}`, {
              cause: error,
            }),
      );
      return;
    }
    this.link = link;
  }

  #opened(link: Link): void {
    if (link !== this.link) return;
    this.everConnected = true;
    this.#attempt = 0;
    this.#go('open');
    for (const feed of this.feeds) this.#subscribe(feed);
    this.core.channelChanged(this);
  }

  #subscribe(feed: F): void {
    if (feed.error) return;
    const sub = this.core.nextSub();
    if (this.#bySub.get(feed.sub) === feed) this.#bySub.delete(feed.sub);
    feed.sub = sub;
    this.#bySub.set(sub, feed);
    const message = feed.subscribeMessage(sub);
    if (feed.documentId !== undefined) {
      this.#delivered.set(documentKey(feed.collection, feed.documentId), feed.subscribedAfter ?? 0);
    }
    feed.beginCatchUp();
    this.link?.send(message);
  }

  #closed(link: Link, reason: string, outcome: LinkOutcome, error?: Refusal): void {
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
    if (error) this.core.connectFailed(new EventSyncClientError(error.code, error.message));
    this.#retryTimer = setTimeout(() => this.#retry(), this.core.backoff(this.#attempt++));
  }

  #feedBySub(sub: string): F | undefined {
    return this.#bySub.get(sub);
  }

  #route(collection: string, documentId: string): F | undefined {
    if (this.kind === 'documents') return this.#byDoc.get(documentKey(collection, documentId));
    const [only] = this.feeds;
    return only?.collection === collection ? only : undefined;
  }

  #message(link: Link, message: ServerMessage): void {
    if (link !== this.link) return;
    switch (message.type) {
      case 'welcome':
        this.core.welcomed(this, message.lastMid ?? 0);
        return;
      case 'mutated':
      case 'mutation_error':
        this.core.mutationAnswered(message);
        return;
      case 'subscribed':
      case 'unsubscribed':
        return;
      case 'synced':
        this.#feedBySub(message.sub)?.onSynced();
        return;
      case 'snapshot': {
        const feed = this.#route(message.collection, message.documentId);
        if (!feed) return;
        this.#delivered.set(documentKey(message.collection, message.documentId), message.seq);
        feed.onSnapshot(message);
        return;
      }
      case 'event': {
        const event = message.event;
        const feed = this.#route(event.collection, event.documentId);
        if (!feed) return;
        const key = documentKey(event.collection, event.documentId);
        this.#delivered.set(key, Math.max(this.#delivered.get(key) ?? 0, event.seq));
        feed.onEvent(event);
        return;
      }
      case 'leave':
        this.#feedBySub(message.sub)?.onLeave(message.documentId, message.reason);
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
        // Subscribing again cannot help after some codes (it would only be refused again).
        if (!isRetryable(message.code)) {
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

  /** Records that `replica` applied up to its seq; sent (debounced) as `ack`. */
  ack(replica: Replica): void {
    const key = documentKey(replica.collection, replica.documentId);
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
