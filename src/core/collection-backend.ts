/**
 * What a backend provides to the storage: a handful of primitive, single-round-trip operations
 * on one collection. Everything with semantics (edits, retries, diffs, validation, filters'
 * exact meaning, sections' rules) lives once in `DocumentStorage` (`src/storage/`), so every
 * backend behaves alike. Memory, PGlite and PostgreSQL implement it (`src/backends/`).
 */
import type { EventBackend, EventRecord } from './event-backend.js';
import type { SyncEvent } from './events.js';
import type { Diff, JsonObject } from './json.js';
import type { Filter as UntypedFilter } from './query.js';

/**
 * A MongoDB query filter, untyped (`Filter<T>` in query.ts checks one against a document type).
 * Operators `$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or` run in the database where it
 * can; everything mingo supports works.
 */
export type Filter = UntypedFilter;

export type ChangeOperation = 'create' | 'update' | 'delete';

export type SortSpec = Record<string, 1 | -1>;

/** What a backend's `find` takes besides the filter (projection stays with the storage). */
export interface FindOptions {
  sort?: SortSpec;
  skip?: number;
  /** At most this many documents; 0 or absent: all. */
  limit?: number;
}

/** A document as stored: `data` holds the whole document, `_id` and version field included. */
export interface StoredDocument {
  id: string;
  version: number;
  data: JsonObject;
  /**
   * Marks this stored state of the row (SQL: its `xmin`, the transaction that wrote it), so a
   * write can require that nothing touched the row since, even a delete and re-create that
   * reached the same version again. Absent where the backend has no such mark (memory).
   */
  token?: string;
  /**
   * Names this incarnation of the document: given by the backend when the document is created,
   * kept by every update, another one after a delete and re-create. On `replace`, when set, the
   * write happens only in that incarnation. (Read back from every backend; optional on writes.)
   */
  incarnation?: string;
  /** On writes: `data` as JSON text, when the caller made it already (saves the backend a stringify). */
  json?: string;
}

/** A committed change, as delivered to `subscribe` listeners (in commit order per document). */
export interface CommittedChange {
  collection: string;
  id: string;
  operation: ChangeOperation;
  version: number;
  /** The document after the change (before it, for deletes). May be missing when the backend had to drop it to stay small (PostgreSQL NOTIFY payloads); the storage then looks it up. */
  data?: JsonObject;
  diff?: Diff;
  /** When the write recorded an event: its seq and serverSeq. */
  seq?: number;
  serverSeq?: number;
}

/** A write that happened; with the event it recorded when it was given an `EventRecord`. */
export interface Written {
  event?: SyncEvent;
  /** The written row's new `token` (see StoredDocument), where the backend has one. */
  token?: string;
  /** On `insert`: the incarnation the backend gave the new document. */
  incarnation?: string;
}

/** What a conditional delete requires of the document; each part left out is not checked. */
export interface DeleteCondition {
  version?: number;
  incarnation?: string;
}

export interface SectionWrite {
  id: string;
  /** Object keys from the root to the section, e.g. `['inventory']`. */
  path: string[];
  /** The section's version field value that was read, or `undefined` when the section was absent. */
  expectedSectionVersion: number | undefined;
  /** The new section, its version field already set. */
  section: JsonObject;
  versionField: string;
  /** Builds the diff once the new document version is known (for the change notification). */
  diff: (newVersion: number) => Diff;
}

export interface CollectionBackend {
  readonly collection: string;
  /**
   * Whether a read costs a round trip to a database server (SQL) rather than a copy in memory:
   * then the storage starts an edit from the state it last wrote itself, when it has it, and
   * reads only when that turns out stale (see `LastWrites`).
   */
  readonly readIsRoundTrip: boolean;
  get(id: string): Promise<StoredDocument | undefined>;
  /**
   * The documents matching `filter` (exactly as mingo matches), in mingo's order of `options.sort`
   * with ties, and everything when there is no sort, in the backend's natural order (memory:
   * insertion; SQL: the id column's), after `skip`, at most `limit` (0 or absent: all). What a
   * backend cannot answer in its database it leaves to `findInPages` (find.ts), so every backend
   * gives mingo's answer. The storage applies the projection.
   */
  find(filter: Filter, options?: FindOptions): Promise<JsonObject[]>;
  /*
   * Writes. Each returns `undefined` when it did not happen (the id exists, the version moved on,
   * the document is gone). Given an `EventRecord`, a write also appends its event (see
   * `src/core/event-backend.ts`) in the same statement or transaction: both commit, or neither.
   * With `record.mutation`, it also keeps that mutation record, only while the stored record is
   * at `mid - 1` (waiting for another transaction whose write keeps it to end); otherwise it
   * writes nothing and throws `MutationRecordMoved`.
   */

  /** Inserts unless the id exists. Never overwrites. Records a `create` event. */
  insert(doc: StoredDocument, record?: EventRecord): Promise<Written | undefined>;
  /**
   * Replaces the document if its stored version is still `expectedVersion` (and, given
   * `expectedToken`, its token is still that one). Records an `update` event.
   */
  replace(
    doc: StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
    expectedToken?: string,
  ): Promise<Written | undefined>;
  /**
   * Sets the section at `write.path` if the section's version is still the expected one, and
   * bumps the document version by one (also inside `data`). Returns the new document, or
   * `undefined` on a section version mismatch or a missing document. Records an `update_section` event.
   */
  replaceSection(write: SectionWrite, record?: EventRecord): Promise<(StoredDocument & Written) | undefined>;
  /**
   * Deletes and returns what was deleted, or `undefined` when absent, or when the document does
   * not meet `expected` (nothing deleted). Records a `delete` event.
   */
  delete(
    id: string,
    record?: EventRecord,
    expected?: DeleteCondition,
  ): Promise<(StoredDocument & Written) | undefined>;
  /** Runs `fn` with a backend whose writes commit together when `fn` resolves and roll back when it throws. Changes are announced after commit. */
  transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R>;
  /** Whether `events` is the event log of this collection's own database (what atomic recording needs). */
  sharesDatabaseWith(events: EventBackend): boolean;
  /** Listens to changes committed to this collection by anyone sharing the database (other instances, other processes). */
  subscribe(listener: (change: CommittedChange) => void): Promise<() => Promise<void>>;
}

/** How a collection is kept. */
export interface CollectionOptions {
  /**
   * SQL backends: keep a GIN index on this collection's documents (jsonpath `@@` filters), so
   * that `find` reads only the documents a filter can match. It costs every write of the
   * collection (each update rewrites index entries). Created on first open, kept afterwards.
   */
  filterIndex?: boolean;
}

/** A database holds collections. Memory, PGlite and PostgreSQL each provide one. */
export interface Database {
  readonly kind: 'memory' | 'pglite' | 'pg';
  /** Opens (creating tables on first use) one collection's backend. */
  collection(name: string, options?: CollectionOptions): Promise<CollectionBackend>;
  /** The event log of this database (creating its tables on first use). */
  events(): Promise<EventBackend>;
  close(): Promise<void>;
}
