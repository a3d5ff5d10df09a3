/** The columns of `eventsync_events` that make an event, and how a row of them becomes a `SyncEvent`. */
import type { EventOperation, SyncEvent, VectorClock } from '../../core/events.js';
import type { Diff, JsonObject } from '../../core/json.js';

/** Every column a read of events selects, in `EventRow`'s order. */
export const eventColumns = `collection, document_id, seq, from_seq, server_seq, id, at, operation, version, client_id,
  vector_clock, diff, metadata`;

/** A row of `eventColumns`, as both drivers return it (`bigint`: a number in PGlite, a string in `pg`). */
export interface EventRow {
  collection: string;
  document_id: string;
  seq: number | string;
  from_seq: number | string | null;
  server_seq: number | string;
  id: string;
  at: number | string;
  operation: EventOperation;
  version: number | string;
  client_id: string;
  vector_clock: VectorClock;
  diff: Diff | null;
  metadata: JsonObject | null;
}

export function toEvent(row: EventRow): SyncEvent {
  const event: SyncEvent = {
    id: row.id,
    collection: row.collection,
    documentId: row.document_id,
    seq: Number(row.seq),
    serverSeq: Number(row.server_seq),
    timestamp: Number(row.at),
    operation: row.operation,
    version: Number(row.version),
    clientId: row.client_id,
    vectorClock: row.vector_clock,
  };
  if (row.from_seq !== null) event.fromSeq = Number(row.from_seq);
  if (row.diff !== null) event.diff = row.diff;
  if (row.metadata !== null) event.metadata = row.metadata;
  return event;
}
