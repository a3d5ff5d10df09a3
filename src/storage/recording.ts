/**
 * Atomic recording: a storage whose writes also append their event in the same statement or
 * transaction, so a change and its event commit together or not at all (`EventSyncStorage`'s
 * `'atomic'` consistency). `DocumentStorage` is one, on every backend; any other `Storage<T>`
 * can be too, by implementing {@link RecordingStorage}.
 */
import type { EventBackend, EventRecord } from '../core/event-backend.js';
import type { SyncEvent } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import type { BaseDocument, Storage } from './types.js';

/** Who records events for the writes of a storage view, and who hears of each event once it committed. */
export interface Recorder {
  record: EventRecord;
  onEvent(event: SyncEvent, doc: JsonObject | undefined): void | Promise<void>;
}

export interface RecordingStorage<T extends BaseDocument> extends Storage<T> {
  /** Whether this storage keeps its documents in `events`' database: atomic recording needs both in one. */
  sharesDatabaseWith(events: EventBackend): boolean;
  /**
   * A view of this storage whose writes also append their event, atomically, as `recorder.record`
   * says; `recorder.onEvent` hears of each after it committed (inside a transaction: after the
   * transaction committed).
   */
  recordingAs(recorder: Recorder): Storage<T>;
  /** As `Storage.withTransaction`, with a transaction that can record too. */
  withTransaction<R>(fn: (tx: RecordingStorage<T>) => Promise<R>): Promise<R>;
  /**
   * Whether its writes keep `EventRecord.mutation` (see `MutationRecordWrite`). Optional: a
   * storage without it cannot run client mutations (`DocumentStorage` can, on every backend).
   */
  readonly keepsMutationRecords?: boolean;
}

/** Whether `storage` can record atomically (it has the methods of {@link RecordingStorage}). */
export function isRecordingStorage<T extends BaseDocument>(
  storage: Storage<T>,
): storage is RecordingStorage<T> {
  const candidate = storage as Partial<RecordingStorage<T>>;
  return typeof candidate.recordingAs === 'function' && typeof candidate.sharesDatabaseWith === 'function';
}
