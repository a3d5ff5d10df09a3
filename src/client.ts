/**
 * `eventsync/client`: the browser-safe client SDK. Follows documents and collections of an
 * eventsync server over WebSocket or SSE and keeps a local replica of each.
 *
 * ```ts
 * const client = new EventSyncClient({ serverUrl: 'http://127.0.0.1:8080' });
 * await client.connect();
 * const game = client.document<Game>('games', 'g1');
 * game.on('change', (doc) => render(doc));
 * ```
 */
export {
  type CollectionChange,
  type CollectionHandle,
  type DocumentHandle,
  EventSyncClient,
  EventSyncClientError,
  type EventSyncClientOptions,
  type Filter,
  type MutationAnswer,
  type PendingMutation,
  type ReconnectOptions,
} from './client/client.js';
export { browserNetwork, type NetworkStatus } from './client/network.js';
export {
  fileStore,
  type IdbFactoryLike,
  indexedDbStore,
  localStorageStore,
  memoryStore,
  type ReplicaStore,
  type StoreChanges,
  type StoredMeta,
  type StoredMutation,
  type StoredReplica,
  type StoredState,
  type WebStorageLike,
} from './client/persistence.js';
export type { ReplicaChange, ReplicaPosition } from './client/replica.js';
export { type ConnectionEvent, type ConnectionState, nextState, transitions } from './client/state.js';
export type {
  EventSourceConstructor,
  EventSourceLike,
  FetchLike,
  WebSocketConstructor,
  WebSocketLike,
} from './client/transport.js';
export { EventSyncError, MutationRefused } from './core/errors.js';
export type { SyncEvent, VectorClock } from './core/events.js';
export type { JsonObject, JsonValue } from './core/json.js';
export {
  type ArgsSchema,
  defineMutators,
  type MutationContext,
  type Mutator,
  type MutatorRun,
  type MutatorSpec,
  type Mutators,
} from './core/mutators.js';
