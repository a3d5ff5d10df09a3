/**
 * Recording an event in SQL: one statement upserts the document's stream head
 * (`eventsync_streams`: `last_seq + 1`, the actor's clock counter + 1) and inserts the event
 * (`eventsync_events`) from the head's new values. `collection.ts` puts the same two behind a
 * document write in one CTE (`recordingCte`), so a change and its event commit together or not
 * at all (I1) in one round trip; an event appended on its own is `appendEvent`.
 */

import { EventSyncError } from '../../core/errors.js';
import { type EventRecord, MutationRecordMoved } from '../../core/event-backend.js';
import type { EventDraft, SyncEvent, VectorClock } from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import type { SqlQueryable } from './driver.js';
import { keepRecordSql } from './mutation-records.js';
import { sqlState } from './sqlstate.js';

/** What a recorded write's statement returns about its event. */
export interface AssignedRow {
  seq: number | string;
  server_seq: number | string;
  vector_clock: VectorClock;
}

/**
 * The head upsert and event insert that follow a document write `w` in one CTE (`w` is the name
 * of the write's CTE; it returns one row when the write happened, none when it did not).
 * Parameters from `$first`: client id, event id, timestamp, diff (jsonb or NULL), metadata
 * (jsonb or NULL). `operation`, `version` and `metadata` (default: the metadata parameter) are
 * SQL expressions (they may read `w`).
 * Leaves the CTEs `h` (the new head) and `e` (the event: seq, server_seq, vector_clock) for the
 * caller's final SELECT.
 *
 * Why seq and every actor's counter stay gapless (I2), with several writers in several processes:
 * - Writers of one document are serialised by its row: the conditional UPDATE, the DELETE and
 *   INSERT … ON CONFLICT DO NOTHING wait for a concurrent writer's row lock (or unique-index
 *   entry) and then re-check their condition against the committed row, so of two writers
 *   expecting the same version only one writes (READ COMMITTED's re-check on the locked row).
 * - Only a write that happened reaches the head upsert (`SELECT … FROM w`), and the upsert
 *   itself takes the head row's lock: `INSERT … ON CONFLICT DO UPDATE` always updates the latest
 *   committed head (it waits for a concurrent holder and never skips), so every event, atomic or
 *   appended, gets `last_seq + 1` and `clock[client] + 1` of the head left by the previous one.
 * - The upsert, the event insert and the write are one statement: a failure of any part (a
 *   constraint, a trigger, a crash) undoes all of it, so no seq is taken without its event.
 * - The head row is never deleted with the document: delete and re-create continue the count.
 */
export function recordingCte(
  w: string | undefined,
  first: number,
  operation: string,
  version: string,
  metadata?: string,
): string {
  const [client, id, at, diff, meta] = [0, 1, 2, 3, 4].map((i) => `$${first + i}`);
  return `h AS (
      INSERT INTO eventsync_streams AS s (collection, document_id, last_seq, vector_clock)
      SELECT $1, $2, 1, jsonb_build_object(${client}::text, 1)${w ? ` FROM ${w}` : ''}
      ON CONFLICT (collection, document_id) DO UPDATE SET
        last_seq = s.last_seq + 1,
        vector_clock = jsonb_set(s.vector_clock, ARRAY[${client}::text],
          to_jsonb(COALESCE((s.vector_clock ->> ${client}::text)::bigint, 0) + 1))
      RETURNING last_seq, vector_clock
    ), e AS (
      INSERT INTO eventsync_events
        (collection, document_id, seq, id, at, operation, version, client_id, actor_seq, vector_clock, diff, metadata)
      SELECT $1, $2, h.last_seq, ${id}, ${at}, ${operation}, ${version}, ${client}::text,
        (h.vector_clock ->> ${client}::text)::bigint, h.vector_clock, ${diff}::jsonb, ${metadata ?? `${meta}::jsonb`}
      FROM h${w ? ` CROSS JOIN ${w}` : ''}
      RETURNING seq, server_seq, vector_clock, version
    )`;
}

/** Which statement keeps a mutation's record: none, the client's first (mid 1), or a later one. */
export type KeptRecord = 'none' | 'first' | 'next';

export const keptRecordOf = (record: EventRecord | undefined): KeptRecord =>
  record?.mutation === undefined ? 'none' : record.mutation.mid === 1 ? 'first' : 'next';

/**
 * The CTE `m` that keeps a mutation's record (`EventRecord.mutation`) after the event `e`, and
 * the column that fails the whole statement when it kept nothing: the record was not at
 * `mid - 1` any more (another run of the client's mutations wrote it), so the document write and
 * the event must not stand either. The failure is a division by zero (SQLSTATE 22012, which
 * nothing else in these statements can raise): `mutationRecordMoved` recognises it.
 * Parameters from `$first`: record name, mid, outcome (jsonb; the event's seq and version are
 * added here), updated_at. The record's row lock serialises it with a transaction holding the
 * record (a transaction whose write keeps it): the UPDATE and the upsert wait, then check the committed row.
 */
export function keptRecordSql(kept: KeptRecord, first: number): { cte: string; column: string } {
  if (kept === 'none') return { cte: '', column: '' };
  const [name, mid, outcome, at] = [0, 1, 2, 3].map((i) => `$${first + i}`) as [
    string,
    string,
    string,
    string,
  ];
  const value = `${outcome}::jsonb || jsonb_build_object('seq', e.seq, 'version', e.version)`;
  const keep = keepRecordSql(kept === 'first', { name: `${name}::text`, mid, outcome: value, at }, 'e');
  return { cte: `, m AS (${keep})`, column: ', 1 / (SELECT count(*)::int FROM m) AS kept' };
}

/** The parameters `keptRecordSql` takes (none for 'none'). */
export function keptRecordParams(record: EventRecord | undefined): unknown[] {
  const mutation = record?.mutation;
  if (mutation === undefined) return [];
  return [mutation.clientId, mutation.mid, JSON.stringify(mutation.outcome()), mutation.updatedAt];
}

/** Whether `error` is `keptRecordSql`'s refusal: then the write threw `MutationRecordMoved` instead. */
export function mutationRecordMoved(
  error: unknown,
  record: EventRecord | undefined,
): MutationRecordMoved | undefined {
  if (record?.mutation === undefined || sqlState(error) !== '22012') return undefined;
  return new MutationRecordMoved(record.mutation.clientId);
}

/** The parameters `recordingCte` takes, in its order, for `draft` (`diffJson`: its diff as JSON, when already made). */
export function recordingParams(
  draft: EventDraft,
  eventId: string,
  at: number,
  diffJson?: string,
): unknown[] {
  return [
    draft.clientId,
    eventId,
    at,
    diffJson ?? (draft.diff === undefined ? null : JSON.stringify(draft.diff)),
    draft.metadata === undefined ? null : JSON.stringify(draft.metadata),
  ];
}

/** The event as the caller sees it: the draft plus what the database assigned. */
export function assembleEvent(draft: EventDraft, eventId: string, at: number, row: AssignedRow): SyncEvent {
  const event: SyncEvent = {
    id: eventId,
    collection: draft.collection,
    documentId: draft.documentId,
    seq: Number(row.seq),
    serverSeq: Number(row.server_seq),
    timestamp: at,
    operation: draft.operation,
    version: draft.version,
    clientId: draft.clientId,
    vectorClock: row.vector_clock,
  };
  if (draft.diff !== undefined) event.diff = draft.diff;
  if (draft.metadata !== undefined) event.metadata = draft.metadata;
  return event;
}

/** $1, $2 the document, $3 the operation, $4 the version, then `recordingParams`, then `keptRecordParams`. */
const appendSql = (kept: KeptRecord) => {
  const { cte, column } = keptRecordSql(kept, 10);
  return `WITH ${recordingCte(undefined, 5, '$3', '$4')}${cte} SELECT seq, server_seq, vector_clock${column} FROM e`;
};
const appendStatements = { none: appendSql('none'), first: appendSql('first'), next: appendSql('next') };

/**
 * Appends `draft` on its own: head upsert + event insert, one statement on `q`; with the
 * mutation record of `record.mutation` when there is one (or throws `MutationRecordMoved`).
 */
export async function appendEvent(
  q: SqlQueryable,
  draft: EventDraft,
  record?: EventRecord,
): Promise<SyncEvent> {
  const eventId = newObjectId();
  const at = Date.now();
  const params: unknown[] = [
    draft.collection,
    draft.documentId,
    draft.operation,
    draft.version,
    ...recordingParams(draft, eventId, at),
    ...keptRecordParams(record),
  ];
  let row: AssignedRow | undefined;
  try {
    [row] = await q.query<AssignedRow>(appendStatements[keptRecordOf(record)], params);
  } catch (error) {
    throw mutationRecordMoved(error, record) ?? error;
  }
  if (row === undefined) throw new EventSyncError('internal', 'appending an event returned no row');
  return assembleEvent(draft, eventId, at, row);
}
