/** The public shapes of the document storage. No I/O lives here. */
import type { ChangeOperation } from '../core/collection-backend.js';
import type { SyncEvent } from '../core/events.js';
import type { Diff } from '../core/json.js';
import type { Filter, SectionAt, SectionPath, UpdateOperators } from '../core/query.js';

// In core because backends take it too; part of the storage's shapes all the same.
export type { ChangeOperation };

/** Every stored document has a string `_id` (default: a new 24-hex ObjectId) and a version field. */
export interface BaseDocument {
  _id: string;
}

/** A document to create: `_id` optional (generated), version set by the storage. */
export type NewDocument<T> = Omit<T, '_id' | 'version'> & { _id?: string; version?: number };

/**
 * An edit receives a copy-on-write draft: mutate it, or return a whole new document.
 * Returning `undefined` (or nothing) keeps the mutated draft.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: edits that return nothing (sync or async) are typed void
export type EditFunction<T> = (draft: T) => T | undefined | void | Promise<T | undefined | void>;

export interface RetryOptions {
  /** Attempts after the first one. Default 10. */
  maxRetries?: number;
  /** First backoff in ms, doubled each retry. Default 5. */
  retryDelay?: number;
  /** Cap on one backoff in ms. Default 500. */
  maxRetryDelay?: number;
  /** Random share of each backoff, 0..1. Default 0.5. */
  retryJitter?: number;
  /** Give up (VersionConflictError) when the whole call has taken this many ms. Default 10,000. */
  timeout?: number;
}

/** Options of a whole-document edit (`findOneAndUpdate`, `updateOne`, `updateOneWithPipeline`). */
export interface EditOptions extends RetryOptions {
  /**
   * Edit only the document at this version (what the caller last read), with no retry on
   * another: a `StaleVersionError` (`version_conflict`) then, and nothing changes. Optimistic
   * concurrency across a round trip, e.g. an HTTP `If-Match`.
   */
  expectedVersion?: number;
  /**
   * Edit only this incarnation of the document (see {@link StoredEntry}): one deleted and
   * re-created since the caller read it is another, whatever its version. A `StaleVersionError`
   * otherwise, and nothing changes.
   */
  expectedIncarnation?: string;
}

/**
 * A document with what names its stored state: its version, and its incarnation, which the
 * storage gives a document when it is created and keeps until it is deleted (a re-created
 * document with the same id is another incarnation, and starts again at version 1). Together
 * they make a strong validator, e.g. an HTTP ETag `"<incarnation>-<version>"`.
 */
export interface StoredEntry<T> {
  doc: T;
  version: number;
  incarnation: string;
}

export interface EditResult<T> {
  doc: T;
  diff: Diff;
  /** The incarnation of the edited document (absent after a section edit). */
  incarnation?: string;
  /** The event the write recorded, when made through `EventSyncStorage`. */
  event?: SyncEvent;
}

export interface FindManyOptions {
  /**
   * MongoDB sort spec, e.g. `{ level: -1, name: 1 }`, ordered as mingo orders. Ties, and every
   * result without a sort, come in the backend's natural order: insertion order in memory, `_id`
   * in the database's collation on PostgreSQL and PGlite. On those, the database sorts, skips and
   * limits when it can evaluate the whole filter; otherwise a sort with a limit holds at most
   * 10,000 documents in process (`too_large` beyond: lower `skip` or narrow the filter).
   */
  sort?: Record<string, 1 | -1>;
  /** At most this many documents; 0 or absent: all. */
  limit?: number;
  skip?: number;
  /** MongoDB projection, e.g. `{ name: 1, gold: 1 }` or `{ secret: 0 }`. */
  projection?: Record<string, 0 | 1 | boolean>;
}

// MongoDB query filters and update operators, typed by the document (`Filter<T>`, `UpdateOperators<T>`).
export type { Filter, UpdateOperators } from '../core/query.js';

/** An aggregation-pipeline update: `$set`/`$addFields`/`$unset`/`$project`/`$replaceRoot` stages with expressions. */
export type UpdatePipeline = Record<string, unknown>[];

export interface DeleteOptions {
  /** Delete only if the document is still at this version (what the caller last read). */
  expectedVersion?: number;
  /** Delete only this incarnation (see {@link StoredEntry}). */
  expectedIncarnation?: string;
}

export interface ChangeEvent<T> {
  id: string;
  operation: ChangeOperation;
  /** Version after the change; for a delete, the version the document had. */
  version: number;
  /** The document after the change; for a delete, the document as it was. */
  data: T;
  /** What changed; absent for create and delete, and for PostgreSQL changes too large for one notification. */
  diff?: Diff;
}

export interface WatchOptions {
  operations?: ChangeOperation[];
  /** Only changes of these ids. */
  ids?: string[];
  signal?: AbortSignal;
}

/** What `watch()` returns: iterate it; `ready` resolves once changes are being listened to. */
export interface ChangeStream<T> extends AsyncIterable<ChangeEvent<T>> {
  readonly ready: Promise<void>;
}

export interface Storage<T extends BaseDocument> {
  readonly collection: string;
  readonly versionField: string;

  findOne(id: string): Promise<T | undefined>;
  /** The document with its version and incarnation, or `undefined`. */
  findEntry(id: string): Promise<StoredEntry<T> | undefined>;
  findMany(filter?: Filter<T>, options?: FindManyOptions): Promise<T[]>;
  /** Creates the document if its `_id` is absent, otherwise returns the stored one unchanged. */
  findOneAndUpsert(doc: NewDocument<T>): Promise<{ doc: T; created: boolean; incarnation: string }>;
  findOneAndUpdate(id: string, edit: EditFunction<T>, options?: EditOptions): Promise<EditResult<T>>;
  updateOne(id: string, operators: UpdateOperators<T>, options?: EditOptions): Promise<EditResult<T>>;
  updateOneWithPipeline(id: string, pipeline: UpdatePipeline, options?: EditOptions): Promise<EditResult<T>>;
  /**
   * Edits the object at `path` (dotted, e.g. `"inventory"`) as a section with its own version
   * field: edits of different sections never conflict; edits of one section are checked like
   * whole-document edits. The section is created (`{}`) if absent; its parent must exist.
   * For a typed `T`, `path` is one where `T` holds an object, and the draft has its type.
   */
  updateSection<P extends SectionPath<T>>(
    id: string,
    path: P,
    edit: EditFunction<SectionAt<T, P>>,
    options?: RetryOptions,
  ): Promise<EditResult<T>>;
  /** The same, with the section's type stated: `updateSection<{ potions?: number }>(id, 'inventory', …)`. */
  updateSection<S extends object>(
    id: string,
    path: SectionPath<T>,
    edit: EditFunction<S>,
    options?: RetryOptions,
  ): Promise<EditResult<T>>;
  /**
   * Deletes and returns the document; `undefined` when there was none. With `expectedVersion`,
   * deletes only the document at that version: another version throws `StaleVersionError`
   * (`version_conflict`) and nothing is deleted.
   */
  deleteOne(id: string, options?: DeleteOptions): Promise<T | undefined>;
  /** Runs `fn` so that all its writes commit together, or none do when it throws. */
  withTransaction<R>(fn: (tx: Storage<T>) => Promise<R>): Promise<R>;
  watch(options?: WatchOptions): ChangeStream<T>;
  close(): Promise<void>;
}
