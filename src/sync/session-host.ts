/**
 * What a `Session` is given instead of the engine: the few calls one client connection makes
 * outside itself. `SyncEngine` is the host in a server (and REST and SSE use the same calls); a
 * test can be one with a few maps (test/sync/session.test.ts). A session sees neither the event
 * store nor the sync service nor the other sessions, and the engine sees a session only as a
 * `Follower`, so neither file imports the other's module but this one.
 */
import type { StreamHead } from '../core/event-backend.js';
import type { MissingEvents, Snapshot, SyncEvent, VectorClock } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import type { Logger } from '../events/logger.js';
import type { ClientPosition } from '../events/sync-service.js';
import type { Filter } from '../storage/types.js';
import type { SyncMetrics } from './metrics.js';
import type { MutationAnswer, MutationCaller, MutationRequest } from './mutations.js';
import type { ReadScope } from './read-scope.js';
import type { Action, AuthRequest, Principal, SyncLimits } from './types.js';

/** What a session needs to know about one event; built once per event, shared by all sessions. */
export interface Delivery {
  event: SyncEvent;
  /** `collection/documentId`: the key sessions track the document by. */
  key: string;
  /** `collection/documentId/seq`: the frame's position (SSE sends it as the event id). */
  eventId: string;
  /** The `event` frame, serialized on first use. */
  frame(): string;
  /** The document now (null when deleted), read once on first use; for collection filters. */
  state(): Promise<JsonObject | null>;
}

/** What the host's feed and its indexes see of a session. */
export interface Follower {
  readonly id: string;
  readonly principal: Principal | undefined;
  readonly closed: boolean;
  /** Each event of a document or collection it follows; a promise when the feed must wait for it. */
  deliver(delivery: Delivery): Promise<void> | undefined;
  /** Asks again for the rights of everything it follows; resolves to the subscriptions that ended or lost a document. */
  revalidate(): Promise<number>;
  close(code?: number, reason?: string): void;
}

/** What a collection subscription reads of a collection (an `EventSyncStorage` has it). */
export interface CollectionReader {
  readonly versionField: string;
  findMany(filter: Filter, options: { sort: Record<string, 1 | -1>; limit: number }): Promise<unknown[]>;
}

export interface SessionHost {
  readonly limits: SyncLimits;
  readonly metrics: SyncMetrics;
  readonly logger: Logger;
  /** How long a session keeps an answer of `authorize` and `readScope`, in ms. */
  readonly authorizationTtlMs: number;

  // ---- who the client is, and what it may do ----

  /** The principal of a `hello`'s credentials, or `undefined` when they are refused. */
  authenticate(request: AuthRequest): Promise<Principal | undefined>;
  /** Whether `principal` may `action` the collection or document; a hook that throws is `false`. */
  authorize(principal: Principal, action: Action, collection: string, documentId?: string): Promise<boolean>;
  /** What collection subscriptions of `principal` range over; throws when `authorizeQuery` does. */
  readScope(principal: Principal, collection: string): Promise<ReadScope>;
  /** Lets `principalId` use `clientId`; throws `forbidden` when the id is another principal's. */
  claimClient(clientId: string, principalId: string): Promise<void>;

  // ---- reads ----

  /** What a client at `position` lacks of a document: a snapshot and/or the events after it. */
  missingEvents(
    clientId: string,
    collection: string,
    documentId: string,
    position?: ClientPosition,
  ): Promise<MissingEvents>;
  /** The document at one seq, read consistently. */
  currentSnapshot(collection: string, documentId: string): Promise<Snapshot>;
  /** A document's stream head: its last seq and clock (`undefined`: no events yet). */
  head(collection: string, documentId: string): Promise<StreamHead | undefined>;
  /** A collection to read a subscription's snapshot pages from. */
  collection(name: string): Promise<CollectionReader>;

  // ---- writes ----

  /** The client applied a document up to `seq` (its clock there, when known): kept as its position. */
  acknowledge(
    clientId: string,
    collection: string,
    documentId: string,
    seq: number,
    vectorClock: VectorClock | undefined,
  ): Promise<void>;

  /**
   * Runs one client mutation (docs/MUTATIONS.md) and answers it: never rejects, a failure is a
   * `mutation_error`.
   */
  mutate(caller: MutationCaller, request: MutationRequest): Promise<MutationAnswer>;
  /** The last mutation id applied or refused for `clientId` (0: none), for `welcome`. */
  lastMid(clientId: string): Promise<number>;

  // ---- the feed: which events reach the session ----

  follow(follower: Follower, collection: string, documentId: string): void;
  unfollow(follower: Follower, collection: string, documentId: string): void;
  followCollection(follower: Follower, collection: string): void;
  unfollowCollection(follower: Follower, collection: string): void;
  /** The session closed: it is forgotten. */
  disconnected(follower: Follower): void;
}
