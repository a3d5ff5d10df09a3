/** The pluggable parts of the sync service: who a client is, what it may do, and the limits. */
import type { Filter } from '../storage/types.js';
import type { FilterLimits } from './filter-policy.js';

/** Whoever `authenticate` says the client is; `id` names it in logs. */
export interface Principal {
  id: string;
  [claim: string]: unknown;
}

export type Action = 'read' | 'subscribe' | 'write';

/** What `authenticate` sees of a connection or request. */
export interface AuthRequest {
  headers: Record<string, string | string[] | undefined>;
  url: string;
  /** The token from `hello` (WebSocket), `Authorization: Bearer …` or `?token=` (SSE, REST). */
  token?: string;
}

/** Returns the principal, or `undefined` to refuse (`unauthorized`). Default: everyone is `{ id: 'anonymous' }`. */
export type Authenticate = (request: AuthRequest) => Principal | undefined | Promise<Principal | undefined>;

/**
 * Whether `principal` may `action` the collection (and document, when one is named). `'read'`
 * covers snapshots and events of a document (also inside collection subscriptions) and REST
 * reads; `'subscribe'` is asked once for a collection subscription; `'write'` for REST changes
 * (whose answer holds the document only when `'read'` is allowed too).
 * Required with `authenticate` (or `'allow-all'`, written out); without `authenticate`, all is allowed.
 */
export type Authorize = (
  principal: Principal,
  action: Action,
  collection: string,
  documentId?: string,
) => boolean | Promise<boolean>;

/**
 * The documents of `collection` that `principal` may read, as a MongoDB filter (the language of
 * `Storage.findMany`, `$regex` and `$expr` included: it is server code, not held to the limits of
 * remote filters) that lists and collection subscriptions AND into the client's filter before
 * anything else runs, so `filter`, `sort`, `skip` and `limit` only ever see documents in scope
 * (Firestore's rules as query constraints). `true`: every document; `false`: none. Anything else
 * (`undefined` from a rule that forgot to return, an invalid filter, a throw) fails the request
 * as `internal` (logged), never opens the collection.
 *
 * It must admit only documents `authorize` lets the principal read: `authorize` still checks
 * each document, and one the scope admits but `authorize` refuses is dropped from the page after
 * `skip` and `limit` counted it, so it shapes the page. Without `authorizeQuery` (and with an
 * `authorize`), a REST list reads the whole collection and filters it in memory (see
 * `maxUnscopedListDocuments`). Asked once per list and per collection subscription.
 */
export type AuthorizeQuery = (
  principal: Principal,
  collection: string,
) => Filter | boolean | Promise<Filter | boolean>;

/**
 * Which web pages may use the transports (checked on every upgrade, SSE stream and REST request).
 * `Origin` is checked because WebSockets have no CORS and a `text/plain` POST needs no preflight:
 * any website could otherwise act through its visitors' browsers. `Host` is checked because a
 * page whose name an attacker points at 127.0.0.1 (DNS rebinding) is same-origin with itself.
 */
export interface AccessOptions {
  /** Origins (`https://app.example.com`) allowed besides the server's own (same origin); `'*'`: every origin. */
  allowedOrigins?: readonly string[] | '*';
  /** Host names, without port, the server answers to (e.g. `['localhost', '127.0.0.1', '[::1]']`); absent: any. */
  allowedHosts?: readonly string[];
}

/** What remote callers may send; filter limits: see `assertRemoteFilter`. */
export interface SyncLimits extends FilterLimits {
  /** Largest accepted frame or request body, in bytes. Default 64 KiB. */
  maxMessageBytes: number;
  /** Deepest JSON nesting accepted in a frame. Default 32. */
  maxMessageDepth: number;
  /** Frames per second per connection (a burst of this many is fine). Default 100. */
  maxMessagesPerSecond: number;
  /** Subscriptions per connection. Default 100. */
  maxSubscriptions: number;
  /**
   * Bytes of live frames waiting to be sent to one client before it is disconnected as too slow.
   * Catch-up is paced instead (at most half this much of it queued at a time). Default 4 MiB.
   */
  maxBufferedBytes: number;
  /** Ping every this many ms; a connection that missed a pong by the next ping is closed. Default 30 s. */
  heartbeatMs: number;
  /** A WebSocket that has not sent `hello` within this many ms is closed (4408). Default 10 s. */
  helloTimeoutMs: number;
  /** Open WebSocket connections and SSE streams, in total. Default 20,000. */
  maxConnections: number;
  /** Open WebSocket connections and SSE streams from one remote address. Default 6,000 (a benchmark opens 5,000 from loopback). */
  maxConnectionsPerAddress: number;
  /**
   * Bytes of one answer page: a REST list or event page stops after the item that crosses it
   * (at least one item, so a page always moves forwards) and says where to continue. Default 1 MiB.
   */
  maxPageBytes: number;
  /** Documents one collection subscription may snapshot (and then follow). Default 10,000. */
  maxSubscriptionDocuments: number;
  /**
   * Without `authorizeQuery`, a REST list under an `authorize` hook reads the whole collection, keeps
   * what `authorize` admits and only then filters, sorts and pages it in memory, so that no page
   * depends on documents the principal may not read; a collection of more documents than this is
   * 413 `too_large` (give `authorizeQuery`). Default 10,000.
   */
  maxUnscopedListDocuments: number;
  /** Acknowledged positions are written to the database in one batch at most this often, in ms. Default 1,000. */
  ackFlushMs: number;
}

export const defaultLimits: SyncLimits = {
  maxMessageBytes: 64 * 1024,
  maxMessageDepth: 32,
  maxMessagesPerSecond: 100,
  maxSubscriptions: 100,
  maxBufferedBytes: 4 * 1024 * 1024,
  heartbeatMs: 30_000,
  helloTimeoutMs: 10_000,
  maxConnections: 20_000,
  maxConnectionsPerAddress: 6_000,
  maxPageBytes: 1024 * 1024,
  maxSubscriptionDocuments: 10_000,
  maxUnscopedListDocuments: 10_000,
  ackFlushMs: 1_000,
  maxFilterBytes: 8 * 1024,
  maxFilterDepth: 8,
  maxFilterListLength: 256,
};

/**
 * Where a session's frames go: a WebSocket, an SSE response, a test.
 *
 * Live frames (`send`) are subject to the too-slow rule: a client with more than
 * `maxBufferedBytes` of them waiting is disconnected. Catch-up frames (`sendCatchUp`: snapshots
 * and events read from the log) are not, because a catch-up can be far longer than any send
 * buffer: the session paces them itself, waiting for `drained()` whenever `sendCatchUp` says
 * the socket has enough of them queued.
 */
export interface Sink {
  /** `eventId` is set for frames that carry one document's position (SSE uses it as the event id). */
  send(frame: string, eventId?: string): void;
  /**
   * A catch-up frame, exempt from the too-slow rule. Returns `false` when the caller should
   * wait for `drained()` before the next one. Without it, catch-up goes through `send`, unpaced.
   */
  sendCatchUp?(frame: string, eventId?: string): boolean;
  /** Resolves once enough queued catch-up frames were written out to send more, or the sink closed. */
  drained?(): Promise<void>;
  /**
   * The server ended subscription `sub` (after an `error` with `ref: sub`: refused, too large, its
   * set-up failed). SSE, whose stream is its one subscription, closes the stream then.
   */
  ended?(sub: string): void;
  close(code: number, reason: string): void;
}
