export { MemoryDatabase, memoryDatabase } from './backends/memory/memory-database.js';
export type {
  CollectionBackend,
  CommittedChange,
  Database,
  StoredDocument,
} from './core/collection-backend.js';
export * from './core/errors.js';
export type { EventBackend, EventRecord, MutationRecord, StreamHead } from './core/event-backend.js';
export type * from './core/events.js';
export { newObjectId } from './core/ids.js';
export type * from './core/json.js';
export {
  type ArgsSchema,
  defineMutators,
  type MutationContext,
  type Mutator,
  type MutatorRun,
  type MutatorSpec,
  type Mutators,
} from './core/mutators.js';
export { applyEvent, applyEvents } from './events/apply.js';
export {
  type CompactionPolicy,
  type CompactionTotals,
  type CompactOptions,
  compact,
  compactDocument,
} from './events/compaction.js';
export { createEventStore, EventStore, type SubscribeOptions } from './events/event-store.js';
export {
  type Consistency,
  type EventCallOptions,
  type EventSyncOptions,
  EventSyncStorage,
} from './events/event-sync-storage.js';
export { consoleLogger, type Logger } from './events/logger.js';
export { EMPTY, type ReplayResult, replay, replayFrom } from './events/replay.js';
export { type SnapshotInput, SnapshotStore } from './events/snapshots.js';
export { StateVectorManager } from './events/state-vectors.js';
export {
  type ClientPosition,
  SyncService,
  type SyncServiceOptions,
} from './events/sync-service.js';
export {
  MemoryVectorClockManager,
  PersistentVectorClockManager,
  type VectorClockManager,
} from './events/vector-clocks.js';
export { type CreateStorageOptions, createStorage } from './storage/create-storage.js';
export { DocumentStorage, type StorageOptions } from './storage/document-storage.js';
export type { StorageLimits } from './storage/limits.js';
export type * from './storage/types.js';
