/**
 * EventSyncStorage: a `Storage<T>` that records every change as an event. Code that used the
 * storage switches by wrapping it; nothing else changes. With `consistency: 'atomic'` (the
 * default) a change and its event commit together or not at all: that needs a storage that can
 * record (`RecordingStorage`, as `DocumentStorage` on any backend is) on the event store's
 * database. `'best-effort'` wraps any `Storage<T>`: it is the original design's behaviour (store
 * the event after the change, log a failure) and can lose events.
 */

import { creationDiff, eventDraft, type WriteFacts } from '../core/drafts.js';
import { EventSyncError, ValidationError } from '../core/errors.js';
import type { EventRecord, MutationRecordWrite } from '../core/event-backend.js';
import type { EventOperation, Snapshot, SyncEvent } from '../core/events.js';
import { assertClientId, assertId } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import type { SectionAt, SectionPath } from '../core/query.js';
import { isRecordingStorage, type Recorder, type RecordingStorage } from '../storage/recording.js';
// The storage's shapes, by their names there (this class forwards the whole of Storage<T>).
import type * as S from '../storage/types.js';
import { assertJsonValue } from '../storage/validate.js';
import type { EventStore } from './event-store.js';
import { consoleLogger, type Logger } from './logger.js';
import { SnapshotStore } from './snapshots.js';
import { MemoryVectorClockManager, type VectorClockManager } from './vector-clocks.js';

export type Consistency = 'atomic' | 'best-effort';

/** How often `currentSnapshot` reads a document again while writes keep landing between its reads. */
const CURRENT_SNAPSHOT_ATTEMPTS = 20;

export interface EventSyncOptions {
  /** The actor recorded when a call names none. Default `"server"`. */
  clientId?: string;
  /** Default: in memory, like the original. `PersistentVectorClockManager` reads the event log. */
  vectorClockManager?: VectorClockManager;
  /** pino-compatible. Default: errors and warnings to the console. */
  logger?: Logger;
  /** Default `'atomic'`. */
  consistency?: Consistency;
  /** Take a snapshot every this many events of a document (0: never automatically). Default 100. */
  snapshotEvery?: number;
}

/** Per call: who acts, and what to note in the event. */
export interface EventCallOptions {
  clientId?: string;
  metadata?: JsonObject;
  /**
   * Hears the event the call recorded as soon as it is written (inside a transaction: before the
   * commit), e.g. to learn the seq of a delete, whose result is the deleted document.
   */
  onEvent?: (event: SyncEvent) => void;
  /**
   * A client mutation's exactly-once record, kept by the write with its event (`'atomic'` only;
   * see `MutationRecordWrite`): the write throws `MutationRecordMoved` when the record moved on.
   * The sync engine's mutations use it.
   */
  mutation?: MutationRecordWrite;
}

type Heard = (event: SyncEvent, doc: JsonObject | undefined) => Promise<void>;

export class EventSyncStorage<T extends S.BaseDocument> implements S.Storage<T> {
  readonly collection: string;
  readonly versionField: string;
  readonly consistency: Consistency;
  readonly #storage: S.Storage<T>;
  /** The same storage, where it records atomically: set exactly when `consistency` is `'atomic'`. */
  readonly #recording: RecordingStorage<T> | undefined;
  readonly #events: EventStore;
  readonly #clientId: string;
  readonly #clocks: VectorClockManager;
  readonly #logger: Logger;
  readonly #snapshotEvery: number;
  readonly #snapshots: SnapshotStore;
  /** What happens after an event committed; inside a transaction it is held until the commit. */
  readonly #heard: Heard;

  constructor(storage: S.Storage<T>, events: EventStore, options: EventSyncOptions = {}, heard?: Heard) {
    this.#storage = storage;
    this.#events = events;
    this.collection = storage.collection;
    this.versionField = storage.versionField;
    this.consistency = options.consistency ?? 'atomic';
    this.#clientId = options.clientId ?? 'server';
    this.#clocks = options.vectorClockManager ?? new MemoryVectorClockManager();
    this.#logger = options.logger ?? consoleLogger;
    this.#snapshotEvery = options.snapshotEvery ?? 100;
    this.#snapshots = new SnapshotStore(events.backend);
    assertClientId(this.#clientId);
    if (!Number.isSafeInteger(this.#snapshotEvery) || this.#snapshotEvery < 0) {
      throw new ValidationError(
        'snapshotEvery must be a non-negative integer (0 turns automatic snapshots off)',
      );
    }
    if (this.consistency === 'atomic') {
      if (!isRecordingStorage(storage) || !storage.sharesDatabaseWith(events.backend)) {
        throw new ValidationError(
          "consistency 'atomic' needs the storage and the event store on the same database, so a change and " +
            "its event commit together; open both from one database, or pass consistency: 'best-effort' " +
            '(events are stored after each change and can be lost)',
        );
      }
      this.#recording = storage;
    } else if (this.consistency !== 'best-effort') {
      throw new ValidationError("consistency must be 'atomic' or 'best-effort'");
    }
    this.#heard = heard ?? ((event, doc) => this.#afterEvent(event, doc));
  }

  findOne(id: string): Promise<T | undefined> {
    return this.#storage.findOne(id);
  }

  findEntry(id: string): Promise<S.StoredEntry<T> | undefined> {
    return this.#storage.findEntry(id);
  }

  findMany(filter?: S.Filter<T>, options?: S.FindManyOptions): Promise<T[]> {
    return this.#storage.findMany(filter, options);
  }

  watch(options?: S.WatchOptions): S.ChangeStream<T> {
    return this.#storage.watch(options);
  }

  async findOneAndUpsert(
    doc: S.NewDocument<T>,
    options?: EventCallOptions,
  ): Promise<{ doc: T; created: boolean; incarnation: string }> {
    return this.#write(
      options,
      (s) => s.findOneAndUpsert(doc),
      (r) =>
        r.created
          ? this.#draftOf('create', r.doc, { diff: creationDiff(asJson(r.doc), version(r.doc, this)) })
          : undefined,
    );
  }

  async findOneAndUpdate(
    id: string,
    edit: S.EditFunction<T>,
    options?: S.EditOptions & EventCallOptions,
  ): Promise<S.EditResult<T>> {
    return this.#write(options, (s) => s.findOneAndUpdate(id, edit, options), this.#updateDraft);
  }

  async updateOne(
    id: string,
    operators: S.UpdateOperators<T>,
    options?: S.EditOptions & EventCallOptions,
  ): Promise<S.EditResult<T>> {
    return this.#write(options, (s) => s.updateOne(id, operators, options), this.#updateDraft);
  }

  async updateOneWithPipeline(
    id: string,
    pipeline: S.UpdatePipeline,
    options?: S.EditOptions & EventCallOptions,
  ): Promise<S.EditResult<T>> {
    return this.#write(options, (s) => s.updateOneWithPipeline(id, pipeline, options), this.#updateDraft);
  }

  updateSection<P extends SectionPath<T>>(
    id: string,
    path: P,
    edit: S.EditFunction<SectionAt<T, P>>,
    options?: S.RetryOptions & EventCallOptions,
  ): Promise<S.EditResult<T>>;
  updateSection<Section extends object>(
    id: string,
    path: SectionPath<T>,
    edit: S.EditFunction<Section>,
    options?: S.RetryOptions & EventCallOptions,
  ): Promise<S.EditResult<T>>;
  async updateSection(
    id: string,
    path: SectionPath<T>,
    edit: S.EditFunction<never>,
    options?: S.RetryOptions & EventCallOptions,
  ): Promise<S.EditResult<T>> {
    return this.#write(
      options,
      (s) => s.updateSection(id, path, edit, options),
      (r) =>
        r.diff.hasChanges
          ? this.#draftOf('update_section', r.doc, { diff: r.diff, section: path })
          : undefined,
    );
  }

  async deleteOne(id: string, options?: S.DeleteOptions & EventCallOptions): Promise<T | undefined> {
    return this.#write(
      options,
      (s) => s.deleteOne(id, options),
      (deleted) =>
        deleted ? this.#draftOf('delete', deleted, { deletedDocument: asJson(deleted) }) : undefined,
    );
  }

  /**
   * `fn`'s writes commit together with their events, or none do. Each event is heard (clocks,
   * snapshots) only after the commit. Needs `'atomic'`: a best-effort transaction could not
   * keep its events.
   */
  async withTransaction<R>(fn: (tx: EventSyncStorage<T>) => Promise<R>): Promise<R> {
    if (!this.#recording) {
      throw new ValidationError("withTransaction on EventSyncStorage needs consistency 'atomic'");
    }
    const held: [SyncEvent, JsonObject | undefined][] = [];
    const result = await this.#recording.withTransaction((tx) =>
      fn(
        new EventSyncStorage<T>(
          tx,
          this.#events,
          {
            clientId: this.#clientId,
            vectorClockManager: this.#clocks,
            logger: this.#logger,
            snapshotEvery: this.#snapshotEvery,
          },
          async (event, doc) => void held.push([event, doc]),
        ),
      ),
    );
    for (const [event, doc] of held) await this.#heard(event, doc);
    return result;
  }

  /** Snapshots the document now (on demand); returns the seq it covers. */
  async createSnapshot(id: string): Promise<number> {
    const { collection, documentId, createdAt, ...position } = await this.currentSnapshot(id);
    if (position.seq === 0) {
      throw new EventSyncError('not_found', `document ${JSON.stringify(id)} has no events to snapshot`);
    }
    await this.#snapshots.create(collection, documentId, position);
    return position.seq;
  }

  /**
   * The document as it is now, at its current seq (`null` when deleted or never written). Read
   * between two reads of its stream head: when they agree, no event committed in between, and
   * since a write and its event commit together the document read is the state at that seq.
   * Read again while writes land, up to {@link CURRENT_SNAPSHOT_ATTEMPTS} times.
   */
  async currentSnapshot(id: string): Promise<Snapshot> {
    assertId(id);
    const { backend } = this.#events;
    for (let attempt = 0; attempt < CURRENT_SNAPSHOT_ATTEMPTS; attempt++) {
      const before = await backend.head(this.collection, id);
      const doc = await this.#storage.findOne(id);
      const after = await backend.head(this.collection, id);
      if (before?.lastSeq !== after?.lastSeq) continue;
      const seq = after?.lastSeq ?? 0;
      return {
        collection: this.collection,
        documentId: id,
        seq,
        // Deleted: the version its delete event recorded, as replay and stored snapshots say it.
        version: doc ? version(doc, this) : await this.#versionAt(id, seq),
        state: doc ? asJson(doc) : null,
        vectorClock: after?.vectorClock ?? {},
        createdAt: Date.now(),
      };
    }
    throw new EventSyncError(
      'version_conflict',
      `document ${JSON.stringify(id)} of ${JSON.stringify(this.collection)} kept changing while it was read; try again`,
    );
  }

  close(): Promise<void> {
    return this.#storage.close();
  }

  /** The storage as it should run this call: recording atomically, or plain (best-effort records after). */
  async #write<R>(
    options: EventCallOptions | undefined,
    run: (storage: S.Storage<T>) => Promise<R>,
    draftAfter: (result: R) => DraftFor | undefined,
  ): Promise<R> {
    const record = this.#record(options);
    const heard: Heard = options?.onEvent
      ? (event, doc) => {
          options.onEvent!(event);
          return this.#heard(event, doc);
        }
      : this.#heard;
    if (this.#recording) {
      const recorder: Recorder = { record, onEvent: (event, doc) => heard(event, doc) };
      return run(this.#recording.recordingAs(recorder));
    }
    const result = await run(this.#storage);
    const draft = draftAfter(result);
    if (draft) {
      try {
        const event = await this.#events.append(
          eventDraft(this.collection, draft.id, draft.operation, draft.version, record, draft.facts),
        );
        await heard(event, draft.operation === 'delete' ? undefined : draft.doc);
      } catch (error) {
        this.#logger.error(
          { err: error, collection: this.collection, documentId: draft.id, operation: draft.operation },
          'eventsync: failed to store the event of a change (best-effort consistency: the change stands, its event is lost)',
        );
      }
    }
    return result;
  }

  #record(options: EventCallOptions | undefined): EventRecord {
    const clientId = options?.clientId ?? this.#clientId;
    assertClientId(clientId);
    const record: EventRecord = { clientId };
    if (options?.metadata !== undefined) {
      assertJsonValue(options.metadata, '/metadata');
      record.metadata = options.metadata;
    }
    if (options?.mutation !== undefined) {
      if (!this.#recording?.keepsMutationRecords) throw noMutationRecords();
      record.mutation = options.mutation;
    }
    return record;
  }

  readonly #updateDraft = (r: S.EditResult<T>) =>
    r.diff.hasChanges ? this.#draftOf('update', r.doc, { diff: r.diff }) : undefined;

  #draftOf(operation: EventOperation, doc: T, facts: WriteFacts): DraftFor {
    return { id: doc._id, operation, version: version(doc, this), doc: asJson(doc), facts };
  }

  /** The version of the event at `seq` (0 at seq 0, or when compaction removed it). */
  async #versionAt(id: string, seq: number): Promise<number> {
    if (seq === 0) return 0;
    const [event] = await this.#events.backend.list(this.collection, id, { afterSeq: seq - 1, toSeq: seq });
    return event?.version ?? 0;
  }

  /** After an event committed: advance the clock manager, snapshot every `snapshotEvery` events. */
  async #afterEvent(event: SyncEvent, doc: JsonObject | undefined): Promise<void> {
    await this.#clocks.updateVectorClock(
      event.documentId,
      event.clientId,
      event.vectorClock[event.clientId] ?? 0,
    );
    if (this.#snapshotEvery > 0 && event.seq % this.#snapshotEvery === 0) {
      try {
        await this.#snapshots.create(event.collection, event.documentId, {
          seq: event.seq,
          version: event.version,
          state: event.operation === 'delete' ? null : (doc ?? null),
          vectorClock: event.vectorClock,
        });
      } catch (error) {
        // A snapshot is a shortcut, never the only copy: losing one costs replay time, not data.
        this.#logger.warn(
          { err: error, documentId: event.documentId, seq: event.seq },
          'eventsync: snapshot failed',
        );
      }
    }
  }
}

const noMutationRecords = () =>
  new ValidationError(
    "a write keeping a mutation record needs consistency 'atomic' over a storage that keeps them (DocumentStorage does)",
  );

interface DraftFor {
  id: string;
  operation: EventOperation;
  version: number;
  doc: JsonObject;
  facts: WriteFacts;
}

const asJson = (doc: unknown) => doc as JsonObject;
const version = (doc: unknown, s: { versionField: string }) => Number(asJson(doc)[s.versionField] ?? 0);
