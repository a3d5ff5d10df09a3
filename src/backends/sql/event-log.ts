/**
 * One document's events in SQL: appending one on its own, reading them (by seq, by what a vector
 * clock has not seen, after a version), the stream head, compaction's deletes and replacements,
 * and the list of streams. Tables: `eventsync_events`, `eventsync_streams` (schema.ts, migration 2).
 */

import { ValidationError } from '../../core/errors.js';
import type { EventRange, StreamHead } from '../../core/event-backend.js';
import type { EventDraft, SyncEvent, VectorClock } from '../../core/events.js';
import { describe, SqlEventPart } from './event-context.js';
import { type EventRow, eventColumns, toEvent } from './event-rows.js';
import { eventOnlyPayload } from './notifications.js';
import { appendEvent } from './recording.js';
import { mapSqlError } from './sqlstate.js';

/**
 * A read of one document's events (ordered by seq), in two forms: as rows, and as one row holding
 * a JSON array of them (text, parsed once). A catch-up reads thousands of events: PGlite parses
 * every field of every row in JavaScript, on this thread, which costs more than PostgreSQL
 * building the JSON (10,000 events: ~150 ms instead of ~330 ms); `pg` parses rows faster and
 * while the server is still sending them, so there the array was slower (162 ms against 116 ms;
 * `bench/catch-up.ts`, service rows).
 */
interface Listing {
  rows: string;
  oneJsonArray: string;
}

function listing(select: string): Listing {
  return {
    rows: select,
    oneJsonArray: `SELECT json_agg(r ORDER BY r.seq)::text AS events FROM (${select}) r`,
  };
}

const sql = {
  list: listing(`SELECT ${eventColumns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND seq > $3 AND ($4::bigint IS NULL OR seq <= $4)
    ORDER BY seq LIMIT $5`),
  listUnseen: listing(`SELECT ${eventColumns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND actor_seq > COALESCE(($3::jsonb ->> client_id)::numeric, 0)
    ORDER BY seq`),
  listAfterVersion: listing(`SELECT ${eventColumns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND version > $3 ORDER BY seq`),
  head: 'SELECT last_seq, vector_clock FROM eventsync_streams WHERE collection = $1 AND document_id = $2',
  deleteEvents: `WITH d AS (
      DELETE FROM eventsync_events WHERE collection = $1 AND document_id = $2 AND seq <= $3 RETURNING 1
    ) SELECT count(*) AS n FROM d`,
  deleteRange: `DELETE FROM eventsync_events WHERE collection = $1 AND document_id = $2 AND seq BETWEEN $3 AND $4
    RETURNING seq, server_seq`,
  insertEvent: `INSERT INTO eventsync_events
    (collection, document_id, seq, from_seq, server_seq, id, at, operation, version, client_id, actor_seq,
     vector_clock, diff, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14::jsonb)`,
  // Keyset paging over the union of heads and snapshots, in the database's (deterministic) order.
  // $1 limit, then the collection and/or the key to start after; one text per shape (index use).
  streams: (byCollection: boolean, after: boolean) => {
    const where = [
      byCollection ? 'collection = $2' : '',
      after
        ? `(collection, document_id) > ($${byCollection ? 3 : 2}::text, $${byCollection ? 4 : 3}::text)`
        : '',
    ].filter(Boolean);
    const filter = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
    return `SELECT collection, document_id FROM (
      SELECT collection, document_id FROM eventsync_streams${filter}
      UNION
      SELECT collection, document_id FROM eventsync_snapshots${filter}
    ) u ORDER BY collection, document_id LIMIT $1`;
  },
};

/**
 * `EventBackend`'s event log proper: `append`, `list`, `listUnseen`, `listAfterVersion`, `head`,
 * `deleteEvents`, `replaceEvents`, `streams`.
 */
export class SqlEventLog extends SqlEventPart {
  async append(draft: EventDraft): Promise<SyncEvent> {
    this.ctx.assertOpen();
    try {
      const event = await appendEvent(this.ctx.driver, draft);
      if (this.ctx.notify) this.ctx.announce(eventOnlyPayload(event));
      return event;
    } catch (error) {
      throw mapSqlError(error, `append an event of ${describe(draft.collection, draft.documentId)}`);
    }
  }

  async list(collection: string, documentId: string, range: EventRange = {}): Promise<SyncEvent[]> {
    const { afterSeq = 0, toSeq, limit } = range;
    return this.#listEvents(`list the events of ${describe(collection, documentId)}`, sql.list, [
      collection,
      documentId,
      afterSeq,
      toSeq ?? null,
      limit ?? null,
    ]);
  }

  async listUnseen(collection: string, documentId: string, clock: VectorClock): Promise<SyncEvent[]> {
    for (const [clientId, count] of Object.entries(clock)) {
      if (typeof count !== 'number' || !Number.isFinite(count)) {
        throw new ValidationError(`vector clock entry ${JSON.stringify(clientId)} must be a number`);
      }
    }
    return this.#listEvents(`list the unseen events of ${describe(collection, documentId)}`, sql.listUnseen, [
      collection,
      documentId,
      JSON.stringify(clock),
    ]);
  }

  async listAfterVersion(collection: string, documentId: string, afterVersion: number): Promise<SyncEvent[]> {
    return this.#listEvents(
      `list the events after version ${afterVersion} of ${describe(collection, documentId)}`,
      sql.listAfterVersion,
      [collection, documentId, afterVersion],
    );
  }

  async head(collection: string, documentId: string): Promise<StreamHead | undefined> {
    const [row] = await this.run<{ last_seq: number | string; vector_clock: VectorClock }>(
      `read the stream head of ${describe(collection, documentId)}`,
      sql.head,
      [collection, documentId],
    );
    return row && { lastSeq: Number(row.last_seq), vectorClock: row.vector_clock };
  }

  async deleteEvents(collection: string, documentId: string, throughSeq: number): Promise<number> {
    const [row] = await this.run<{ n: number | string }>(
      `delete the events through seq ${throughSeq} of ${describe(collection, documentId)}`,
      sql.deleteEvents,
      [collection, documentId, throughSeq],
    );
    return Number(row?.n ?? 0);
  }

  /**
   * Deletes `fromSeq`..`seq` and inserts `merged` in their place, in one transaction. The merged
   * event takes the serverSeq of the last event it replaces, so feed readers past it don't see
   * it again and readers before it see it where that event was. When that last event is gone
   * already (another compaction got there first), nothing is inserted.
   */
  async replaceEvents(merged: SyncEvent & { fromSeq: number }): Promise<void> {
    const { collection, documentId } = merged;
    this.ctx.assertOpen();
    try {
      await this.ctx.driver.transaction(async (q) => {
        const gone = await q.query<{ seq: number | string; server_seq: number | string }>(sql.deleteRange, [
          collection,
          documentId,
          merged.fromSeq,
          merged.seq,
        ]);
        const last = gone.find((r) => Number(r.seq) === merged.seq);
        if (last === undefined) return;
        await q.query(sql.insertEvent, [
          collection,
          documentId,
          merged.seq,
          merged.fromSeq,
          last.server_seq,
          merged.id,
          merged.timestamp,
          merged.operation,
          merged.version,
          merged.clientId,
          merged.vectorClock[merged.clientId] ?? 0,
          JSON.stringify(merged.vectorClock),
          merged.diff === undefined ? null : JSON.stringify(merged.diff),
          merged.metadata === undefined ? null : JSON.stringify(merged.metadata),
        ]);
      });
    } catch (error) {
      throw mapSqlError(
        error,
        `replace events ${merged.fromSeq}..${merged.seq} of ${describe(collection, documentId)}`,
      );
    }
  }

  async streams(
    collection: string | undefined,
    after: [string, string] | undefined,
    limit: number,
  ): Promise<[string, string][]> {
    const params: unknown[] = [limit];
    if (collection !== undefined) params.push(collection);
    if (after !== undefined) params.push(after[0], after[1]);
    const rows = await this.run<{ collection: string; document_id: string }>(
      'list event streams',
      sql.streams(collection !== undefined, after !== undefined),
      params,
    );
    return rows.map((r) => [r.collection, r.document_id]);
  }

  /** Runs a `Listing` in the form that is faster on this driver (see `Listing`). */
  async #listEvents(doing: string, statement: Listing, params: unknown[]): Promise<SyncEvent[]> {
    if (this.ctx.driver.kind === 'pglite') {
      const [row] = await this.run<{ events: string | null }>(doing, statement.oneJsonArray, params);
      // json_agg of no rows is NULL.
      return row?.events ? (JSON.parse(row.events) as EventRow[]).map(toEvent) : [];
    }
    return (await this.run<EventRow>(doing, statement.rows, params)).map(toEvent);
  }
}
