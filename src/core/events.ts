/** The shapes of the event log: events, vector clocks, snapshots, state vectors. No I/O here. */
import type { Diff, JsonObject } from './json.js';

/** Per document: how many events each actor (client id) has produced. Counters are gapless. */
export type VectorClock = Record<string, number>;

export type EventOperation = 'create' | 'update' | 'update_section' | 'delete';

export interface SyncEvent {
  /** Unique id of the event (24-hex ObjectId). */
  id: string;
  collection: string;
  documentId: string;
  /** Per document: 1, 2, 3, … with no gap and no duplicate, across delete and re-create. */
  seq: number;
  /** One order over all events of the database, for collection-wide feeds. */
  serverSeq: number;
  /** Milliseconds since the epoch, when the event was recorded. */
  timestamp: number;
  operation: EventOperation;
  /** Set on an event that compaction merged from several: the first seq it covers (it ends at `seq`). */
  fromSeq?: number;
  /** The change, for create (everything added), update and update_section; absent for delete. */
  diff?: Diff;
  /** The document version after the event (the deleted version for delete). */
  version: number;
  clientId: string;
  /** The document's vector clock after this event. */
  vectorClock: VectorClock;
  /** For update_section: `{ section: "inventory" }`; for delete: `{ deletedDocument }`; plus the caller's metadata. */
  metadata?: JsonObject;
}

/** What the storage hands the event store for one change; the store assigns the rest. */
export interface EventDraft {
  collection: string;
  documentId: string;
  operation: EventOperation;
  version: number;
  diff?: Diff;
  clientId: string;
  metadata?: JsonObject;
}

export interface Snapshot {
  collection: string;
  documentId: string;
  /** The event seq the state includes (everything up to and including it). */
  seq: number;
  version: number;
  /** The document at `seq`; `null` when it was deleted at that point. */
  state: JsonObject | null;
  vectorClock: VectorClock;
  createdAt: number;
}

/** What one client has acknowledged of one document. */
export interface StateVector {
  clientId: string;
  collection: string;
  documentId: string;
  vectorClock: VectorClock;
  lastSeq: number;
  updatedAt: number;
}
