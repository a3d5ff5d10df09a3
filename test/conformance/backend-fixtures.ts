/**
 * What the backend contract suites (collection-backend.suite.ts, event-backend.suite.ts) and the
 * SQL-only backend tests (test/backends/sql-*.ts) share: the target a backend test file
 * registers, and small builders of documents, diffs, event drafts and section writes.
 */

import type {
  CollectionBackend,
  CommittedChange,
  Database,
  StoredDocument,
} from '../../src/core/collection-backend.js';
import type { EventDraft } from '../../src/core/events.js';
import type { Diff, JsonObject } from '../../src/core/json.js';

/** A backend, as a test file registers it with the contract suites. */
export interface BackendTarget {
  name: string;
  /** A database of this backend; the suite closes it. Tests keep apart by collection name. */
  open(): Promise<Database>;
  /**
   * Two instances on the same data, like two server processes (SQL: two databases on one
   * server; memory, which has no such thing: one database, twice). The suite closes both.
   */
  openPeers(): Promise<[Database, Database]>;
  /** Makes event inserts on `db` fail until the returned function is called (message: INJECTED_FAULT). */
  injectEventFault(db: Database): Promise<() => Promise<void>>;
}

/** Runs `fn` on a database from `open`, closing it afterwards. */
export async function withDatabase<D extends Database>(
  open: () => Promise<D>,
  fn: (db: D) => Promise<void>,
): Promise<void> {
  const db = await open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

export const diff = (version: number, patch: JsonObject = {}): Diff => ({
  hasChanges: true,
  version,
  jsonPatch: Object.entries(patch).map(([k, value]) => ({ op: 'replace' as const, path: `/${k}`, value })),
  mergePatch: patch,
  mongoUpdate: { $set: patch },
});

export const doc = (id: string, version: number, fields: JsonObject = {}): StoredDocument => ({
  id,
  version,
  data: { _id: id, version, ...fields },
});

export const draft = (collection: string, documentId: string, clientId: string, version = 1): EventDraft => ({
  collection,
  documentId,
  operation: 'update',
  version,
  clientId,
  diff: diff(version, { n: version }),
});

/** A write of the section `s` of `id` (see `SectionWrite`). */
export const sectionWrite = (id: string, expected: number | undefined, section: JsonObject) => ({
  id,
  path: ['s'],
  expectedSectionVersion: expected,
  section,
  versionField: 'version',
  diff: (v: number) => diff(v, { s: section }),
});

/**
 * `value` without its `token`, which only some backends give (SQL: the row's xmin; see
 * `StoredDocument.token`); where there is one, it is a string.
 */
export function withoutToken<V extends object | undefined>(value: V): V {
  if (value === undefined) return value;
  const { token, ...rest } = value as V & { token?: unknown };
  if (token !== undefined && typeof token !== 'string') throw new Error(`a token is a string, not ${token}`);
  return rest as V;
}

/** Waits until `condition()` holds, or fails after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Collects a collection's changes; `next()` waits for the next one not yet taken. */
export async function watchChanges(backend: CollectionBackend) {
  const changes: CommittedChange[] = [];
  let taken = 0;
  const stop = await backend.subscribe((c) => changes.push(c));
  return {
    changes,
    stop,
    async next(timeoutMs = 5000): Promise<CommittedChange> {
      await until(() => changes.length > taken, timeoutMs);
      return changes[taken++]!;
    },
    /** Lets in-flight notifications arrive, then returns how many came since the last `next()`. */
    async pending(): Promise<number> {
      await new Promise((r) => setTimeout(r, 100));
      return changes.length - taken;
    },
  };
}
