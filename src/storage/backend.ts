/**
 * What a backend provides to the storage: a handful of primitive, single-round-trip operations
 * on one collection. Everything with semantics (edits, retries, diffs, validation, filters'
 * exact meaning, sections' rules) lives once in `DocumentStorage`, so every backend behaves alike.
 */
import type { ChangeOperation, Diff, Filter, JsonObject } from './types.js';

/** A document as stored: `data` holds the whole document, `_id` and version field included. */
export interface StoredDocument {
  id: string;
  version: number;
  data: JsonObject;
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
  get(id: string): Promise<StoredDocument | undefined>;
  /**
   * Documents that may match `filter`: a superset is fine (the storage re-checks every document
   * with mingo), fewer is a bug. SQL backends translate what they can to narrow the read.
   */
  find(filter: Filter): Promise<JsonObject[]>;
  /** Inserts unless the id exists; returns whether it inserted. Never overwrites. */
  insert(doc: StoredDocument): Promise<boolean>;
  /** Replaces the document if its stored version is still `expectedVersion`; returns whether it did. */
  replace(doc: StoredDocument, expectedVersion: number, diff: Diff): Promise<boolean>;
  /**
   * Sets the section at `write.path` if the section's version is still the expected one, and
   * bumps the document version by one (also inside `data`). Returns the new document, or
   * `undefined` on a section version mismatch or a missing document.
   */
  replaceSection(write: SectionWrite): Promise<StoredDocument | undefined>;
  /** Deletes and returns what was deleted, or `undefined` when absent. */
  delete(id: string): Promise<StoredDocument | undefined>;
  /** Runs `fn` with a backend whose writes commit together when `fn` resolves and roll back when it throws. Changes are announced after commit. */
  transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R>;
  /** Listens to changes committed to this collection by anyone sharing the database (other instances, other processes). */
  subscribe(listener: (change: CommittedChange) => void): Promise<() => Promise<void>>;
}

/** A database holds collections. Memory, PGlite and PostgreSQL each provide one. */
export interface Database {
  readonly kind: 'memory' | 'pglite' | 'pg';
  /** Opens (creating tables on first use) one collection's backend. */
  collection(name: string): Promise<CollectionBackend>;
  close(): Promise<void>;
}
