/**
 * One collection's rows in `eventsync_documents`, for both drivers. Each primitive is one
 * statement (one round trip). Given an `EventRecord`, the same statement also appends the write's
 * event (`recordingCte` in recording.ts): the write, the stream head and the event commit together or
 * not at all. `replaceSection` is the exception: its diff needs the new version, so it records its
 * event with a second statement in the same transaction. With notifications on, every committed
 * write is then announced (see announcer.ts): after its commit, not inside it.
 */

// The collection backend contract, by its names there (this file implements it for SQL).
import type * as Backend from '../../core/collection-backend.js';
import { creationDiff, eventDraft } from '../../core/drafts.js';
import { ClosedError } from '../../core/errors.js';
import { type EventBackend, type EventRecord, MutationRecordMoved } from '../../core/event-backend.js';
import type { EventDraft, SyncEvent } from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import type { Diff, JsonObject } from '../../core/json.js';
import { findInPages } from '../../storage/find.js';
import type { SqlDriver, SqlQueryable } from './driver.js';
import { type FindPlan, findPlan, ID_ROWS, MAX_SORT_BUFFER, PAGE_ROWS, type Statement } from './find.js';
import { payload, type WriteNotice } from './notifications.js';
import {
  type AssignedRow,
  appendEvent,
  assembleEvent,
  type KeptRecord,
  keptRecordOf,
  keptRecordParams,
  keptRecordSql,
  mutationRecordMoved,
  recordingCte,
  recordingParams,
} from './recording.js';
import { mapSqlError } from './sqlstate.js';

/** What the collections of one database share. */
export interface SqlContext {
  readonly driver: SqlDriver;
  readonly notify: boolean;
  /** The database's event log: the one `sharesDatabaseWith` recognises. */
  readonly eventLog: EventBackend;
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
};

/**
 * The same writes recording their event (see `recordingCte` in recording.ts for why seq stays
 * gapless): write `w`, head upsert `h` from `w`'s row, event insert `e` from `h`, and, for a
 * mutation, its record `m` (`keptRecordSql`). One statement, so one round trip, and all of it or
 * nothing commits.
 */
function recordedWrites(kept: KeptRecord) {
  // The record's parameters follow each statement's last one.
  const [insert, replace, remove] = [10, 13, 10].map((first) => keptRecordSql(kept, first));
  return {
    // $1..$4 as insert; $5..$9 the event.
    insert: `WITH w AS (
      INSERT INTO ${table} (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)
      ON CONFLICT DO NOTHING RETURNING xmin::text AS token, incarnation::text AS incarnation
    ), ${recordingCte('w', 5, "'create'", '$3')}${insert!.cte}
    SELECT e.seq, e.server_seq, e.vector_clock, w.token, w.incarnation${insert!.column} FROM e CROSS JOIN w`,
    // $1..$5 as replace; $6..$10 the event; $11 the expected token, $12 the expected incarnation, or NULL.
    replace: `WITH w AS (
      UPDATE ${table} SET version = $3, data = $4::jsonb
      WHERE collection = $1 AND id = $2 AND version = $5 AND ($11::xid IS NULL OR xmin = $11::xid)
        AND ($12::bigint IS NULL OR incarnation = $12::bigint)
      RETURNING xmin::text AS token
    ), ${recordingCte('w', 6, "'update'", '$3')}${replace!.cte}
    SELECT e.seq, e.server_seq, e.vector_clock, w.token${replace!.column} FROM e CROSS JOIN w`,
    // $1, $2 as delete; $3..$7 the event (its metadata gets the deleted document added here);
    // $8 the expected version, $9 the expected incarnation; NULL for any.
    delete: `WITH w AS (
      DELETE FROM ${table}
      WHERE collection = $1 AND id = $2 AND ($8::bigint IS NULL OR version = $8::bigint)
        AND ($9::bigint IS NULL OR incarnation = $9::bigint)
      RETURNING version, data
    ), ${recordingCte('w', 3, "'delete'", 'w.version', `COALESCE($7::jsonb, '{}'::jsonb) || jsonb_build_object('deletedDocument', w.data)`)}${remove!.cte}
    SELECT w.version, w.data, e.seq, e.server_seq, e.vector_clock${remove!.column} FROM e CROSS JOIN w`,
  };
}

const recorded = {
  none: recordedWrites('none'),
  first: recordedWrites('first'),
  next: recordedWrites('next'),
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
    const { id, version } = doc;
    const data = doc.json ?? JSON.stringify(doc.data);
    const diff = record && creationDiff(doc.data, version);
    const row = await this.#write<InsertedRow>(
      `insert ${JSON.stringify(id)}`,
      sql.insert,
      [this.collection, id, version, data],
      [],
      record && {
        statement: recorded[keptRecordOf(record)].insert,
        record,
        draft: eventDraft(this.collection, id, 'create', version, record, { diff }),
        diffJson: JSON.stringify(diff),
      },
    );
    if (row === undefined) return undefined;
    const written: Backend.Written = { token: row.token, incarnation: row.incarnation };
    if (row.event) written.event = row.event;
    this.#announce(() => ({ id, op: 'create', version, dataJson: data, event: row.event }));
    return written;
  }

  async replace(
    doc: Backend.StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
    expectedToken?: string,
  ): Promise<Backend.Written | undefined> {
    const { id, version } = doc;
    const data = doc.json ?? JSON.stringify(doc.data);
    const diffJson = this.#ctx.notify || record ? JSON.stringify(diff) : undefined;
    const row = await this.#write<TokenRow>(
      `replace ${JSON.stringify(id)}`,
      sql.replace,
      [this.collection, id, version, data, expectedVersion],
      [expectedToken ?? null, doc.incarnation ?? null],
      record && {
        statement: recorded[keptRecordOf(record)].replace,
        record,
        draft: eventDraft(this.collection, id, 'update', version, record, { diff }),
        diffJson,
      },
    );
    if (row === undefined) return undefined;
    const written: Backend.Written = { token: row.token };
    if (row.event) written.event = row.event;
    this.#announce(() => ({ id, op: 'update', version, dataJson: data, diffJson, event: row.event }));
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
      return { ...doc, event: await appendEvent(q, draft, record) };
    };
    this.#assertOpen();
    let written: (Backend.StoredDocument & Backend.Written) | undefined;
    try {
      // Inside a transaction already, or nothing to add to the update: one statement.
      written = this.#tx || !record ? await update(this.#q) : await this.#ctx.driver.transaction(update);
    } catch (error) {
      if (error instanceof MutationRecordMoved) throw error;
      throw mapSqlError(error, `${doing} in ${JSON.stringify(this.collection)}`);
    }
    if (written === undefined) return undefined;
    const { version, data, event } = written;
    this.#announce(() => ({
      id,
      op: 'update',
      version,
      dataJson: JSON.stringify(data),
      diffJson: JSON.stringify(write.diff(version)),
      event,
    }));
    return written;
  }

  async delete(
    id: string,
    record?: EventRecord,
    expected: Backend.DeleteCondition = {},
  ): Promise<(Backend.StoredDocument & Backend.Written) | undefined> {
    const row = await this.#write<VersionRow>(
      `delete ${JSON.stringify(id)}`,
      sql.delete,
      [this.collection, id],
      [expected.version ?? null, expected.incarnation ?? null],
      // The version and the deleted document come from the row: the event is completed below.
      record && {
        statement: recorded[keptRecordOf(record)].delete,
        record,
        draft: eventDraft(this.collection, id, 'delete', 0, record, {}),
      },
    );
    if (row === undefined) return undefined;
    const version = Number(row.version);
    const deleted: Backend.StoredDocument & Backend.Written = { id, version, data: row.data };
    if (row.event) {
      const done = eventDraft(this.collection, id, 'delete', version, record!, { deletedDocument: row.data });
      deleted.event = { ...row.event, version, metadata: done.metadata! };
    }
    this.#announce(() => ({
      id,
      op: 'delete',
      version,
      dataJson: JSON.stringify(row.data),
      event: deleted.event,
    }));
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
   * Runs one write: `plain` with `writeParams` and `conditions`, or, given an event to record, its
   * `statement` (the same write recording the event) with the event's parameters between the
   * two. Returns the written row, with the event assembled from the draft and what the database
   * assigned; undefined when the write did not happen (a condition did not hold).
   */
  async #write<R>(
    doing: string,
    plain: string,
    writeParams: unknown[],
    conditions: unknown[],
    recording?: { statement: string; draft: EventDraft; record: EventRecord; diffJson?: string },
  ): Promise<(R & { event?: SyncEvent }) | undefined> {
    if (!recording) {
      const [row] = await this.#run<R & { event?: SyncEvent }>(doing, plain, [...writeParams, ...conditions]);
      return row;
    }
    const { statement, draft, record, diffJson } = recording;
    const eventId = newObjectId();
    const at = Date.now();
    const params = [
      ...writeParams,
      ...recordingParams(draft, eventId, at, diffJson),
      ...conditions,
      ...keptRecordParams(record),
    ];
    const [row] = await this.#run<R & AssignedRow>(doing, statement, params, record);
    return row && { ...row, event: assembleEvent(draft, eventId, at, row) };
  }

  /** Announces a committed write (`build` tells it, see notifications.ts): now, or when the transaction commits. */
  #announce(build: () => WriteNotice): void {
    if (!this.#ctx.notify) return;
    const text = payload(this.collection, build());
    if (this.#tx) this.#tx.announcements.push(text);
    else this.#ctx.announce(text);
  }

  /** Runs one statement; `record`: the event record it keeps, whose mutation record may have moved. */
  async #run<R>(doing: string, text: string, params: unknown[], record?: EventRecord): Promise<R[]> {
    this.#assertOpen();
    try {
      return await this.#q.query<R>(text, params);
    } catch (error) {
      throw (
        mutationRecordMoved(error, record) ??
        mapSqlError(error, `${doing} in ${JSON.stringify(this.collection)}`)
      );
    }
  }
}
