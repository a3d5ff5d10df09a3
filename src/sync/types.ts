/** The pluggable parts of the sync service: who a client is, what it may do, and the limits. */

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
 * reads; `'subscribe'` is asked once for a collection subscription; `'write'` for REST changes.
 * Default: everything is allowed.
 */
export type Authorize = (
  principal: Principal,
  action: Action,
  collection: string,
  documentId?: string,
) => boolean | Promise<boolean>;

export interface SyncLimits {
  /** Largest accepted frame or request body, in bytes. Default 64 KiB. */
  maxMessageBytes: number;
  /** Deepest JSON nesting accepted in a frame. Default 32. */
  maxMessageDepth: number;
  /** Frames per second per connection (a burst of this many is fine). Default 100. */
  maxMessagesPerSecond: number;
  /** Subscriptions per connection. Default 100. */
  maxSubscriptions: number;
  /** Bytes waiting to be sent to one client before it is disconnected as too slow. Default 4 MiB. */
  maxBufferedBytes: number;
  /** Ping every this many ms; a connection that missed a pong by the next ping is closed. Default 30 s. */
  heartbeatMs: number;
}

export const defaultLimits: SyncLimits = {
  maxMessageBytes: 64 * 1024,
  maxMessageDepth: 32,
  maxMessagesPerSecond: 100,
  maxSubscriptions: 100,
  maxBufferedBytes: 4 * 1024 * 1024,
  heartbeatMs: 30_000,
};

/** Where a session's frames go: a WebSocket, an SSE response, a test. */
export interface Sink {
  /** `eventId` is set for frames that carry one document's position (SSE uses it as the event id). */
  send(frame: string, eventId?: string): void;
  close(code: number, reason: string): void;
}
