/**
 * One collection's rows in `eventsync_documents`, for both drivers. Each primitive is one
 * statement (one round trip); with notifications on, the statement also calls `pg_notify` in a
 * CTE over the written row, so the change is announced at commit, by the same round trip.
 * `replaceSection` is the exception: its diff needs the new version, so it notifies with a second
 * statement in the same transaction.
 */

import type { EventBackend, EventRecord } from '../../events/backend.js';
import { ClosedError, EventSyncError } from '../../protocol/errors.js';
import type {
  CollectionBackend,
  CommittedChange,
  SectionWrite,
  StoredDocument,
  Written,
} from '../../storage/backend.js';
import type { ChangeOperation, Diff, Filter, JsonObject } from '../../storage/types.js';
import type { SqlDriver, SqlQueryable } from './driver.js';
import { translateFilter } from './filter.js';
import { mapSqlError } from './sqlstate.js';

// TODO(events): record events atomically with each write (issue 3, in progress).
function notYet(record: EventRecord | undefined): void {
  if (record) throw new EventSyncError('internal', 'event recording on SQL backends is not built yet');
}

/** The NOTIFY channel every write announces itself on. */
export const CHANGES_CHANNEL = 'eventsync_changes';
/** Payloads above this many bytes lose `data` (then `diff`): NOTIFY's hard limit is 8,000. */
export const NOTIFY_PAYLOAD_LIMIT = 7000;

/**
 * The NOTIFY payload, JSON: `{c: collection, id, op: 'create'|'update'|'delete', v: version,
 * data?, diff?}`. `data` is the document after the change (before it, for deletes); `diff` is
 * there for updates. When the payload would exceed NOTIFY_PAYLOAD_LIMIT bytes `data` is left
 * out, and `diff` too if still too big; listeners then read the document themselves.
 */
export interface ChangePayload {
  c: string;
  id: string;
  op: ChangeOperation;
  v: number;
  data?: JsonObject;
  diff?: Diff;
}

/** What the collections of one database share. */
export interface SqlContext {
  readonly driver: SqlDriver;
  readonly notify: boolean;
  assertOpen(): void;
  subscribe(collection: string, listener: (change: CommittedChange) => void): Promise<() => Promise<void>>;
}

interface VersionRow {
  version: number | string;
  data: JsonObject;
}

const table = 'eventsync_documents';

const sql = {
  get: `SELECT version, data FROM ${table} WHERE collection = $1 AND id = $2`,
  find: (where: string) => `SELECT data FROM ${table} WHERE collection = $1 AND ${where}`,
  insert: `INSERT INTO ${table} (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)
    ON CONFLICT DO NOTHING RETURNING 1 AS ok`,
  insertNotify: `WITH i AS (
      INSERT INTO ${table} (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)
      ON CONFLICT DO NOTHING RETURNING 1
    ) SELECT pg_notify('${CHANGES_CHANNEL}', $5) AS ok FROM i`,
  replace: `UPDATE ${table} SET version = $3, data = $4::jsonb
    WHERE collection = $1 AND id = $2 AND version = $5 RETURNING 1 AS ok`,
  replaceNotify: `WITH u AS (
      UPDATE ${table} SET version = $3, data = $4::jsonb
      WHERE collection = $1 AND id = $2 AND version = $5 RETURNING 1
    ) SELECT pg_notify('${CHANGES_CHANNEL}', $6) AS ok FROM u`,
  // $3 section path, $4 section, $5 [versionField], $6 the section's parent path, $7 versionField,
  // $8 the section's expected version (JSON) or NULL for "absent or without a version".
  replaceSection: `UPDATE ${table}
    SET version = version + 1,
        data = jsonb_set(jsonb_set(data, $3::text[], $4::jsonb), $5::text[], to_jsonb(version + 1))
    WHERE collection = $1 AND id = $2
      AND jsonb_typeof(data #> $6::text[]) = 'object'
      AND ((data #> $3::text[]) -> $7::text) IS NOT DISTINCT FROM $8::jsonb
    RETURNING version, data`,
  notify: `SELECT pg_notify('${CHANGES_CHANNEL}', $1)`,
  delete: `DELETE FROM ${table} WHERE collection = $1 AND id = $2 RETURNING version, data`,
  // The payload is built here because only the database has the deleted row. jsonb's text form
  // has spaces; it still parses as JSON.
  deleteNotify: `WITH d AS (
      DELETE FROM ${table} WHERE collection = $1 AND id = $2 RETURNING version, data
    ) SELECT d.version, d.data,
      pg_notify('${CHANGES_CHANNEL}', CASE WHEN octet_length(p.full) <= ${NOTIFY_PAYLOAD_LIMIT} THEN p.full ELSE p.brief END)
    FROM d CROSS JOIN LATERAL (SELECT
      json_build_object('c', $1::text, 'id', $2::text, 'op', 'delete', 'v', d.version, 'data', d.data)::text AS full,
      json_build_object('c', $1::text, 'id', $2::text, 'op', 'delete', 'v', d.version)::text AS brief) p`,
};

/** A transaction's state, shared by the backends bound to it (nested ones included). */
interface TxState {
  open: boolean;
  depth: number;
}

export class SqlCollection implements CollectionBackend {
  readonly collection: string;
  readonly #ctx: SqlContext;
  readonly #q: SqlQueryable;
  readonly #tx: TxState | undefined;

  constructor(ctx: SqlContext, collection: string, q: SqlQueryable = ctx.driver, tx?: TxState) {
    this.#ctx = ctx;
    this.collection = collection;
    this.#q = q;
    this.#tx = tx;
  }

  async get(id: string): Promise<StoredDocument | undefined> {
    const [row] = await this.#run<VersionRow>(`get ${JSON.stringify(id)}`, sql.get, [this.collection, id]);
    return row === undefined ? undefined : { id, version: Number(row.version), data: row.data };
  }

  async find(filter: Filter): Promise<JsonObject[]> {
    const where = translateFilter(filter, 2);
    if (where.sql === 'FALSE') {
      this.#assertOpen();
      return [];
    }
    const rows = await this.#run<{ data: JsonObject }>('find', sql.find(where.sql), [
      this.collection,
      ...where.params,
    ]);
    return rows.map((r) => r.data);
  }

  sharesDatabaseWith(_events: EventBackend): boolean {
    return false; // TODO(events)
  }

  async insert(doc: StoredDocument, record?: EventRecord): Promise<Written | undefined> {
    notYet(record);
    const data = JSON.stringify(doc.data);
    const params: unknown[] = [this.collection, doc.id, doc.version, data];
    if (this.#ctx.notify) params.push(payload(this.collection, doc.id, 'create', doc.version, data));
    const rows = await this.#run(
      `insert ${JSON.stringify(doc.id)}`,
      this.#ctx.notify ? sql.insertNotify : sql.insert,
      params,
    );
    return rows.length === 1 ? {} : undefined;
  }

  async replace(
    doc: StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
  ): Promise<Written | undefined> {
    notYet(record);
    const data = JSON.stringify(doc.data);
    const params: unknown[] = [this.collection, doc.id, doc.version, data, expectedVersion];
    if (this.#ctx.notify) {
      params.push(payload(this.collection, doc.id, 'update', doc.version, data, JSON.stringify(diff)));
    }
    const rows = await this.#run(
      `replace ${JSON.stringify(doc.id)}`,
      this.#ctx.notify ? sql.replaceNotify : sql.replace,
      params,
    );
    return rows.length === 1 ? {} : undefined;
  }

  async replaceSection(write: SectionWrite, record?: EventRecord): Promise<StoredDocument | undefined> {
    notYet(record);
    const { id, path, versionField } = write;
    const params = [
      this.collection,
      id,
      path,
      JSON.stringify(write.section),
      [versionField],
      path.slice(0, -1),
      versionField,
      write.expectedSectionVersion === undefined ? null : JSON.stringify(write.expectedSectionVersion),
    ];
    const doing = `replace section ${JSON.stringify(path.join('.'))} of ${JSON.stringify(id)}`;
    const update = async (q: SqlQueryable): Promise<StoredDocument | undefined> => {
      const [row] = await q.query<VersionRow>(sql.replaceSection, params);
      if (row === undefined) return undefined;
      const doc = { id, version: Number(row.version), data: row.data };
      if (this.#ctx.notify) {
        const diff = JSON.stringify(write.diff(doc.version));
        await q.query(sql.notify, [
          payload(this.collection, id, 'update', doc.version, JSON.stringify(doc.data), diff),
        ]);
      }
      return doc;
    };
    this.#assertOpen();
    try {
      // Inside a transaction already, or nothing to announce: one statement.
      if (this.#tx || !this.#ctx.notify) return await update(this.#q);
      return await this.#ctx.driver.transaction(update);
    } catch (error) {
      throw mapSqlError(error, `${doing} in ${JSON.stringify(this.collection)}`);
    }
  }

  async delete(id: string, record?: EventRecord): Promise<StoredDocument | undefined> {
    notYet(record);
    const [row] = await this.#run<VersionRow>(
      `delete ${JSON.stringify(id)}`,
      this.#ctx.notify ? sql.deleteNotify : sql.delete,
      [this.collection, id],
    );
    return row === undefined ? undefined : { id, version: Number(row.version), data: row.data };
  }

  async transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    this.#assertOpen();
    if (this.#tx) return this.#savepoint(this.#tx, fn);
    const state: TxState = { open: true, depth: 0 };
    let failure: { error: unknown } | undefined;
    try {
      return await this.#ctx.driver.transaction(async (q) => {
        try {
          return await fn(new SqlCollection(this.#ctx, this.collection, q, state));
        } catch (error) {
          failure = { error };
          throw error;
        } finally {
          state.open = false;
        }
      });
    } catch (error) {
      if (failure && failure.error === error) throw error;
      throw mapSqlError(error, `transaction in ${JSON.stringify(this.collection)}`);
    }
  }

  subscribe(listener: (change: CommittedChange) => void): Promise<() => Promise<void>> {
    this.#assertOpen();
    return this.#ctx.subscribe(this.collection, listener);
  }

  /** A nested transaction: a savepoint, so that its failure undoes only its own writes. */
  async #savepoint<R>(state: TxState, fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    const name = `eventsync_${++state.depth}`;
    const doing = `nested transaction in ${JSON.stringify(this.collection)}`;
    await this.#q.query(`SAVEPOINT ${name}`).catch((error) => {
      throw mapSqlError(error, doing);
    });
    let result: R;
    try {
      result = await fn(this);
    } catch (error) {
      await this.#q.query(`ROLLBACK TO SAVEPOINT ${name}`).catch(() => {
        // The outer transaction is broken anyway; its own rollback follows when the error reaches it.
      });
      throw error;
    } finally {
      state.depth--;
    }
    await this.#q.query(`RELEASE SAVEPOINT ${name}`).catch((error) => {
      throw mapSqlError(error, doing);
    });
    return result;
  }

  #assertOpen(): void {
    this.#ctx.assertOpen();
    if (this.#tx && !this.#tx.open) throw new ClosedError('the transaction');
  }

  async #run<R>(doing: string, text: string, params: unknown[]): Promise<R[]> {
    this.#assertOpen();
    try {
      return await this.#q.query<R>(text, params);
    } catch (error) {
      throw mapSqlError(error, `${doing} in ${JSON.stringify(this.collection)}`);
    }
  }
}

/** Builds the NOTIFY payload from JSON texts already made for the statement (no second stringify of data). */
export function payload(
  collection: string,
  id: string,
  op: ChangeOperation,
  version: number,
  dataJson: string,
  diffJson?: string,
): string {
  const head = `{"c":${JSON.stringify(collection)},"id":${JSON.stringify(id)},"op":"${op}","v":${version}`;
  const diff = diffJson === undefined ? '' : `,"diff":${diffJson}`;
  const full = `${head},"data":${dataJson}${diff}}`;
  if (fits(full)) return full;
  if (diff && fits(`${head}${diff}}`)) return `${head}${diff}}`;
  return `${head}}`;
}

function fits(text: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most payloads are decided without counting.
  if (text.length * 3 <= NOTIFY_PAYLOAD_LIMIT) return true;
  return text.length <= NOTIFY_PAYLOAD_LIMIT && Buffer.byteLength(text) <= NOTIFY_PAYLOAD_LIMIT;
}

const operations = new Set<string>(['create', 'update', 'delete']);

/** Parses a NOTIFY payload; undefined when it isn't one of ours. */
export function parsePayload(text: string): CommittedChange | undefined {
  let p: Partial<ChangePayload>;
  try {
    p = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof p !== 'object' || p === null) return undefined;
  if (typeof p.c !== 'string' || typeof p.id !== 'string' || typeof p.v !== 'number') return undefined;
  if (typeof p.op !== 'string' || !operations.has(p.op)) return undefined;
  const change: CommittedChange = { collection: p.c, id: p.id, operation: p.op, version: p.v };
  if (isObject(p.data)) change.data = p.data;
  if (isObject(p.diff)) change.diff = p.diff as Diff;
  return change;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
