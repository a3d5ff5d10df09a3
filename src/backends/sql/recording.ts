/**
 * Recording an event in SQL: one statement upserts the document's stream head
 * (`eventsync_streams`: `last_seq + 1`, the actor's clock counter + 1) and inserts the event
 * (`eventsync_events`) from the head's new values. `collection.ts` puts the same two behind a
 * document write in one CTE (`recordingCte`), so a change and its event commit together or not
 * at all (I1) in one round trip; an event appended on its own is `appendEvent`.
 */

import { EventSyncError } from '../../core/errors.js';
import type { EventDraft, SyncEvent, VectorClock } from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import type { SqlQueryable } from './driver.js';

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
      RETURNING seq, server_seq, vector_clock
    )`;
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

/** $1, $2 the document, $3 the operation, $4 the version, then `recordingParams`. */
const appendSql = `WITH ${recordingCte(undefined, 5, '$3', '$4')} SELECT seq, server_seq, vector_clock FROM e`;

/** Appends `draft` on its own: head upsert + event insert, one statement on `q`. */
export async function appendEvent(q: SqlQueryable, draft: EventDraft): Promise<SyncEvent> {
  const eventId = newObjectId();
  const at = Date.now();
  const params: unknown[] = [
    draft.collection,
    draft.documentId,
    draft.operation,
    draft.version,
    ...recordingParams(draft, eventId, at),
  ];
  const [row] = await q.query<AssignedRow>(appendSql, params);
  if (row === undefined) throw new EventSyncError('internal', 'appending an event returned no row');
  return assembleEvent(draft, eventId, at, row);
}
