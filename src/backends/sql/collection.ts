/**
 * One collection's rows in `eventsync_documents`, for both drivers. Each primitive is one
 * statement (one round trip). Given an `EventRecord`, the same statement also appends the write's
 * event (`recordingCte` in events.ts): the write, the stream head and the event commit together or
 * not at all. `replaceSection` is the exception: its diff needs the new version, so it records its
 * event with a second statement in the same transaction. With notifications on, every committed
 * write is then announced (see announcer.ts): after its commit, not inside it.
 */

// The collection backend contract, by its names there (this file implements it for SQL).
import type * as Backend from '../../core/collection-backend.js';
import { creationDiff, eventDraft } from '../../core/drafts.js';
import { ClosedError } from '../../core/errors.js';
import type { EventBackend, EventRecord } from '../../core/event-backend.js';
import type { EventDraft, SyncEvent } from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import type { Diff, JsonObject } from '../../core/json.js';
import { isPlainObject } from '../../core/values.js';
import { findInPages } from '../../storage/find.js';
import type { SqlDriver, SqlQueryable } from './driver.js';
import {
  type AssignedRow,
  appendEvent,
  assembleEvent,
  CHANGES_CHANNEL,
  recordingCte,
  recordingParams,
  type SqlEventBackend,
} from './events.js';
import { type FindPlan, findPlan, ID_ROWS, MAX_SORT_BUFFER, PAGE_ROWS, type Statement } from './find.js';
import { mapSqlError } from './sqlstate.js';

export { CHANGES_CHANNEL };
/** Payloads above this many bytes lose `data` (then `diff`): NOTIFY's hard limit is 8,000. */
export const NOTIFY_PAYLOAD_LIMIT = 7000;

/**
 * The NOTIFY payload, JSON: `{c: collection, id, op: 'create'|'update'|'delete', v: version,
 * data?, diff?, s?, ss?}`. `data` is the document after the change (before it, for deletes);
 * `diff` is there for updates; `s` and `ss` are the seq and serverSeq of the event the write
 * recorded. When the payload would exceed NOTIFY_PAYLOAD_LIMIT bytes `data` is left out, and
 * `diff` too if still too big; listeners then read the document themselves.
 *
 * An event appended on its own (`EventBackend.append`) notifies `{c, id, s, ss}`, without `op`:
 * a wake-up for event feeds, not a document change.
 */
export interface ChangePayload {
  c: string;
  id: string;
  op?: Backend.ChangeOperation;
  v?: number;
  data?: JsonObject;
  diff?: Diff;
  s?: number;
  ss?: number;
}

/** What the collections of one database share. */
export interface SqlContext {
  readonly driver: SqlDriver;
  readonly notify: boolean;
  /** The database's event log: the one `sharesDatabaseWith` recognises. */
  readonly eventLog: SqlEventBackend;
  assertOpen(): void;
  /** Sends a committed write's notification (see announcer.ts). */
  announce(payload: string): void;
  subscribe(
    collection: string,
    listener: (change: Backend.CommittedChange) => void,
  ): Promise<() => Promise<void>>;
}

interface VersionRow {
  version: number | string;
  data: JsonObject;
}

interface TokenRow {
  token: string;
}

interface InsertedRow extends TokenRow {
  incarnation: string;
}

const table = 'eventsync_documents';

const sql = {
  // The token is the row's xmin: the transaction that wrote this version of the row. Transaction
  // ids are never reused (short of wraparound, and VACUUM's freezing keeps the raw xmin), so a
  // row deleted and re-created at the same version carries another one.
  // The incarnation comes from a sequence (the column's default) when the row is inserted.
  get: `SELECT version, data, xmin::text AS token, incarnation::text AS incarnation
    FROM ${table} WHERE collection = $1 AND id = $2`,
  insert: `INSERT INTO ${table} (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)
    ON CONFLICT DO NOTHING RETURNING xmin::text AS token, incarnation::text AS incarnation`,
  // $6: the expected token, or NULL; $7: the expected incarnation, or NULL.
  replace: `UPDATE ${table} SET version = $3, data = $4::jsonb
    WHERE collection = $1 AND id = $2 AND version = $5 AND ($6::xid IS NULL OR xmin = $6::xid)
      AND ($7::bigint IS NULL OR incarnation = $7::bigint)
    RETURNING xmin::text AS token`,
  // $3 section path, $4 section, $5 [versionField], $6 the section's parent path, $7 versionField,
  // $8 the section's expected version (JSON), or NULL for "absent". As in the memory backend, a
  // section without a version field (or with null) is at version 0.
  replaceSection: `UPDATE ${table}
    SET version = version + 1,
        data = jsonb_set(jsonb_set(data, $3::text[], $4::jsonb), $5::text[], to_jsonb(version + 1))
    WHERE collection = $1 AND id = $2
      AND jsonb_typeof(data #> $6::text[]) = 'object'
      AND CASE WHEN $8::jsonb IS NULL THEN (data #> $3::text[]) IS NULL
        ELSE COALESCE(NULLIF((data #> $3::text[]) -> $7::text, 'null'::jsonb), '0'::jsonb) = $8::jsonb END
    RETURNING version, data`,
  // $3 the expected version, $4 the expected incarnation; NULL for any.
  delete: `DELETE FROM ${table}
    WHERE collection = $1 AND id = $2 AND ($3::bigint IS NULL OR version = $3::bigint)
      AND ($4::bigint IS NULL OR incarnation = $4::bigint)
    RETURNING version, data`,

  /*
   * The same writes recording their event (see `recordingCte` in events.ts for why seq stays
   * gapless): write `w`, head upsert `h` from `w`'s row, event insert `e` from `h`. One
   * statement, so one round trip, and all of it or nothing commits.
   */
  // $1..$4 as insert; $5..$9 the event.
  insertRecord: `WITH w AS (
      INSERT INTO ${table} (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)
      ON CONFLICT DO NOTHING RETURNING xmin::text AS token, incarnation::text AS incarnation
    ), ${recordingCte('w', 5, "'create'", '$3')}
    SELECT e.seq, e.server_seq, e.vector_clock, w.token, w.incarnation FROM e CROSS JOIN w`,
  // $1..$5 as replace; $6..$10 the event; $11 the expected token, $12 the expected incarnation, or NULL.
  replaceRecord: `WITH w AS (
      UPDATE ${table} SET version = $3, data = $4::jsonb
      WHERE collection = $1 AND id = $2 AND version = $5 AND ($11::xid IS NULL OR xmin = $11::xid)
        AND ($12::bigint IS NULL OR incarnation = $12::bigint)
      RETURNING xmin::text AS token
    ), ${recordingCte('w', 6, "'update'", '$3')}
    SELECT e.seq, e.server_seq, e.vector_clock, w.token FROM e CROSS JOIN w`,
  // $1, $2 as delete; $3..$7 the event (its metadata gets the deleted document added here);
  // $8 the expected version, $9 the expected incarnation; NULL for any.
  deleteRecord: `WITH w AS (
      DELETE FROM ${table}
      WHERE collection = $1 AND id = $2 AND ($8::bigint IS NULL OR version = $8::bigint)
        AND ($9::bigint IS NULL OR incarnation = $9::bigint)
      RETURNING version, data
    ), ${recordingCte('w', 3, "'delete'", 'w.version', `COALESCE($7::jsonb, '{}'::jsonb) || jsonb_build_object('deletedDocument', w.data)`)}
    SELECT w.version, w.data, e.seq, e.server_seq, e.vector_clock FROM e CROSS JOIN w`,
};

/** A transaction's state, shared by the backends bound to it (nested ones included). */
interface TxState {
  open: boolean;
  depth: number;
  /** Payloads of the transaction's writes, announced once it commits. */
  announcements: string[];
}

export class SqlCollection implements Backend.CollectionBackend {
  readonly collection: string;
  readonly readIsRoundTrip = true;
  readonly #ctx: SqlContext;
  readonly #q: SqlQueryable;
  readonly #tx: TxState | undefined;

  /** Whether the collection has its filter index (and `find` should use it). */
  readonly #filterIndex: boolean;

  constructor(
    ctx: SqlContext,
    collection: string,
    filterIndex = false,
    q: SqlQueryable = ctx.driver,
    tx?: TxState,
  ) {
    this.#ctx = ctx;
    this.collection = collection;
    this.#filterIndex = filterIndex;
    this.#q = q;
    this.#tx = tx;
  }

  async get(id: string): Promise<Backend.StoredDocument | undefined> {
    const [row] = await this.#run<VersionRow & InsertedRow>(`get ${JSON.stringify(id)}`, sql.get, [
      this.collection,
      id,
    ]);
    return row === undefined
      ? undefined
      : { id, version: Number(row.version), data: row.data, token: row.token, incarnation: row.incarnation };
  }

  async find(filter: Backend.Filter, options: Backend.FindOptions = {}): Promise<JsonObject[]> {
    const plan = findPlan(this.collection, this.#filterIndex, filter, options);
    if (plan === undefined) {
      this.#assertOpen();
      return [];
    }
    if (plan.pushed) {
      const { text, params } = plan.pushed;
      const rows = await this.#run<{ data: JsonObject | null; unordered?: boolean }>('find', text, params);
      // A sort value only mingo can place (see find.ts): the pages below decide.
      if (!rows[0]?.unordered) return rows.flatMap((r) => (r.data === null ? [] : [r.data]));
    }
    return findInPages(() => this.#pages(plan), filter, options, MAX_SORT_BUFFER);
  }

  /** The candidates of `plan` in id order, page by page, until the caller stops asking (see find.ts). */
  async *#pages(plan: FindPlan): AsyncGenerator<JsonObject[]> {
    const query = <R>(s: Statement, more: unknown[]) => this.#run<R>('find', s.text, [...s.params, ...more]);
    const first = await query<{ id: string; data: JsonObject }>(plan.page, ['', PAGE_ROWS]);
    if (first.length > 0) yield first.map((r) => r.data);
    if (first.length < PAGE_ROWS) return;
    let after = first[first.length - 1]!.id;
    for (;;) {
      const ids = (await query<{ id: string }>(plan.ids, [after, ID_ROWS])).map((r) => r.id);
      for (let i = 0; i < ids.length; i += PAGE_ROWS) {
        const chunk = ids.slice(i, i + PAGE_ROWS);
        const rows = await query<{ id: string; data: JsonObject }>(plan.byIds, [chunk]);
        const byId = new Map(rows.map((r) => [r.id, r.data]));
        // In id order; a document deleted since its id was read is gone.
        yield chunk.flatMap((id) => {
          const doc = byId.get(id);
          return doc ? [doc] : [];
        });
      }
      if (ids.length < ID_ROWS) return;
      after = ids[ids.length - 1]!;
    }
  }

  sharesDatabaseWith(events: EventBackend): boolean {
    return events === this.#ctx.eventLog;
  }

  async insert(doc: Backend.StoredDocument, record?: EventRecord): Promise<Backend.Written | undefined> {
    const data = doc.json ?? JSON.stringify(doc.data);
    const doing = `insert ${JSON.stringify(doc.id)}`;
    const writeParams = [this.collection, doc.id, doc.version, data];
    let written: Backend.Written;
    if (record) {
      const diff = creationDiff(doc.data, doc.version);
      const draft = eventDraft(this.collection, doc.id, 'create', doc.version, record, { diff });
      const [row] = await this.#recording<InsertedRow>(
        doing,
        sql.insertRecord,
        writeParams,
        draft,
        JSON.stringify(diff),
      );
      if (row === undefined) return undefined;
      written = { event: row.event, token: row.token, incarnation: row.incarnation };
    } else {
      const [row] = await this.#run<InsertedRow>(doing, sql.insert, writeParams);
      if (row === undefined) return undefined;
      written = { token: row.token, incarnation: row.incarnation };
    }
    this.#announce(() =>
      payload(this.collection, doc.id, 'create', doc.version, data, undefined, written.event),
    );
    return written;
  }

  async replace(
    doc: Backend.StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
    expectedToken?: string,
  ): Promise<Backend.Written | undefined> {
    const data = doc.json ?? JSON.stringify(doc.data);
    const doing = `replace ${JSON.stringify(doc.id)}`;
    const diffJson = this.#ctx.notify || record ? JSON.stringify(diff) : undefined;
    const writeParams = [this.collection, doc.id, doc.version, data, expectedVersion];
    const conditions = [expectedToken ?? null, doc.incarnation ?? null];
    let written: Backend.Written;
    if (record) {
      const draft = eventDraft(this.collection, doc.id, 'update', doc.version, record, { diff });
      const [row] = await this.#recording<TokenRow>(
        doing,
        sql.replaceRecord,
        writeParams,
        draft,
        diffJson,
        conditions,
      );
      if (row === undefined) return undefined;
      written = { event: row.event, token: row.token };
    } else {
      const [row] = await this.#run<TokenRow>(doing, sql.replace, [...writeParams, ...conditions]);
      if (row === undefined) return undefined;
      written = { token: row.token };
    }
    this.#announce(() =>
      payload(this.collection, doc.id, 'update', doc.version, data, diffJson, written.event),
    );
    return written;
  }

  async replaceSection(
    write: Backend.SectionWrite,
    record?: EventRecord,
  ): Promise<(Backend.StoredDocument & Backend.Written) | undefined> {
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
    const update = async (
      q: SqlQueryable,
    ): Promise<(Backend.StoredDocument & Backend.Written) | undefined> => {
      const [row] = await q.query<VersionRow>(sql.replaceSection, params);
      if (row === undefined) return undefined;
      const doc = { id, version: Number(row.version), data: row.data };
      if (!record) return doc;
      // The event's diff needs the new version, which only the update knows: a second statement.
      const diff = write.diff(doc.version);
      const draft = eventDraft(this.collection, id, 'update_section', doc.version, record, {
        diff,
        section: path.join('.'),
      });
      return { ...doc, event: await appendEvent(q, draft) };
    };
    this.#assertOpen();
    let written: (Backend.StoredDocument & Backend.Written) | undefined;
    try {
      // Inside a transaction already, or nothing to add to the update: one statement.
      written = this.#tx || !record ? await update(this.#q) : await this.#ctx.driver.transaction(update);
    } catch (error) {
      throw mapSqlError(error, `${doing} in ${JSON.stringify(this.collection)}`);
    }
    if (written === undefined) return undefined;
    const { version, data, event } = written;
    this.#announce(() =>
      payload(
        this.collection,
        id,
        'update',
        version,
        JSON.stringify(data),
        JSON.stringify(write.diff(version)),
        event,
      ),
    );
    return written;
  }

  async delete(
    id: string,
    record?: EventRecord,
    expected: Backend.DeleteCondition = {},
  ): Promise<(Backend.StoredDocument & Backend.Written) | undefined> {
    const doing = `delete ${JSON.stringify(id)}`;
    const conditions = [expected.version ?? null, expected.incarnation ?? null];
    let deleted: Backend.StoredDocument & Backend.Written;
    if (record) {
      // The version and the deleted document come from the row: the draft is completed below.
      const draft = eventDraft(this.collection, id, 'delete', 0, record, {});
      const [row] = await this.#recording<VersionRow>(
        doing,
        sql.deleteRecord,
        [this.collection, id],
        draft,
        undefined,
        conditions,
      );
      if (row === undefined) return undefined;
      const version = Number(row.version);
      const done = eventDraft(this.collection, id, 'delete', version, record, { deletedDocument: row.data });
      deleted = { id, version, data: row.data, event: { ...row.event, version, metadata: done.metadata! } };
    } else {
      const [row] = await this.#run<VersionRow>(doing, sql.delete, [this.collection, id, ...conditions]);
      if (row === undefined) return undefined;
      deleted = { id, version: Number(row.version), data: row.data };
    }
    this.#announce(() =>
      payload(
        this.collection,
        id,
        'delete',
        deleted.version,
        JSON.stringify(deleted.data),
        undefined,
        deleted.event,
      ),
    );
    return deleted;
  }

  async transaction<R>(fn: (tx: Backend.CollectionBackend) => Promise<R>): Promise<R> {
    this.#assertOpen();
    if (this.#tx) return this.#savepoint(this.#tx, fn);
    const state: TxState = { open: true, depth: 0, announcements: [] };
    let failure: { error: unknown } | undefined;
    try {
      const result = await this.#ctx.driver.transaction(async (q) => {
        try {
          return await fn(new SqlCollection(this.#ctx, this.collection, this.#filterIndex, q, state));
        } catch (error) {
          failure = { error };
          throw error;
        } finally {
          state.open = false;
        }
      });
      for (const announcement of state.announcements) this.#ctx.announce(announcement);
      return result;
    } catch (error) {
      if (failure && failure.error === error) throw error;
      throw mapSqlError(error, `transaction in ${JSON.stringify(this.collection)}`);
    }
  }

  subscribe(listener: (change: Backend.CommittedChange) => void): Promise<() => Promise<void>> {
    this.#assertOpen();
    return this.#ctx.subscribe(this.collection, listener);
  }

  /** A nested transaction: a savepoint, so that its failure undoes only its own writes. */
  async #savepoint<R>(state: TxState, fn: (tx: Backend.CollectionBackend) => Promise<R>): Promise<R> {
    const name = `eventsync_${++state.depth}`;
    const doing = `nested transaction in ${JSON.stringify(this.collection)}`;
    await this.#q.query(`SAVEPOINT ${name}`).catch((error) => {
      throw mapSqlError(error, doing);
    });
    const announced = state.announcements.length;
    let result: R;
    try {
      result = await fn(this);
    } catch (error) {
      state.announcements.length = announced;
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
    if (this.#tx && !this.#tx.open) throw ClosedError.transactionEnded();
  }

  /**
   * Runs a recording write (`text`) with `writeParams`, then the event's parameters, then
   * `moreParams`. Returns the row (none when the write did not happen) with the event assembled
   * from `draft` and what the database assigned.
   */
  async #recording<R = object>(
    doing: string,
    text: string,
    writeParams: unknown[],
    draft: EventDraft,
    diffJson?: string,
    moreParams: unknown[] = [],
  ): Promise<(R & AssignedRow & { event: SyncEvent })[]> {
    const eventId = newObjectId();
    const at = Date.now();
    const params = [...writeParams, ...recordingParams(draft, eventId, at, diffJson), ...moreParams];
    const rows = await this.#run<R & AssignedRow>(doing, text, params);
    return rows.map((row) => ({ ...row, event: assembleEvent(draft, eventId, at, row) }));
  }

  /** Announces a committed write (`build` makes its payload): now, or when the transaction commits. */
  #announce(build: () => string): void {
    if (!this.#ctx.notify) return;
    if (this.#tx) this.#tx.announcements.push(build());
    else this.#ctx.announce(build());
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

/**
 * The notification of a change, from JSON texts already made for the statement (no second
 * stringify of data), with the seq and serverSeq of the event it recorded, if any.
 */
export function payload(
  collection: string,
  id: string,
  op: Backend.ChangeOperation,
  version: number,
  dataJson: string,
  diffJson?: string,
  event?: Pick<SyncEvent, 'seq' | 'serverSeq'>,
): string {
  const seqs = event ? `,"s":${event.seq},"ss":${event.serverSeq}` : '';
  const head = `{"c":${JSON.stringify(collection)},"id":${JSON.stringify(id)},"op":"${op}","v":${version}${seqs}`;
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

/** A parsed notification: a document change (maybe with its event's seqs), or only an event. */
export interface Notification {
  collection: string;
  id: string;
  change?: Backend.CommittedChange;
  /** Set when the notification is about a recorded event. */
  serverSeq?: number;
}

/** Parses a NOTIFY payload; undefined when it isn't one of ours. */
export function parseNotification(text: string): Notification | undefined {
  let p: Partial<ChangePayload>;
  try {
    p = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof p !== 'object' || p === null) return undefined;
  if (typeof p.c !== 'string' || typeof p.id !== 'string') return undefined;
  const event = typeof p.s === 'number' && typeof p.ss === 'number';
  const notification: Notification = { collection: p.c, id: p.id };
  if (event) notification.serverSeq = p.ss;
  if (p.op === undefined && event) return notification;
  if (typeof p.v !== 'number' || typeof p.op !== 'string' || !operations.has(p.op)) return undefined;
  const change: Backend.CommittedChange = { collection: p.c, id: p.id, operation: p.op, version: p.v };
  if (isPlainObject(p.data)) change.data = p.data;
  if (isPlainObject(p.diff)) change.diff = p.diff as Diff;
  if (event) Object.assign(change, { seq: p.s, serverSeq: p.ss });
  notification.change = change;
  return notification;
}
