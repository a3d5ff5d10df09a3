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

/**
 * A document at one seq: its state, version and vector clock there. The one shape of a position:
 * what replay rebuilds (`ReplayResult`), a snapshot records (`SnapshotInput`), a client's replica
 * holds (`ReplicaPosition`) and a `snapshot` frame carries; those names are this type.
 */
export interface DocumentPosition {
  /** The last event seq the state includes (everything up to and including it); 0 before the first. */
  seq: number;
  /** The version of the last event up to `seq` (for a delete, the deleted version); 0 at seq 0. */
  version: number;
  /** The document at `seq`; `null` before its creation and while deleted. */
  state: JsonObject | null;
  /** The document's vector clock at `seq`. */
  vectorClock: VectorClock;
}

/**
 * A position as the event log keeps it: which document it is of, and when it was taken. (A
 * client's persisted replica is one without `createdAt`: `StoredReplica`.)
 */
export interface Snapshot extends DocumentPosition {
  collection: string;
  documentId: string;
  createdAt: number;
}

/**
 * What takes a client from its position to the current document (`SyncService.getMissingEvents`,
 * REST `POST /api/sync`): when `snapshot` is present, the client replaces its state with it first;
 * then it applies `events` in order. The session and the client read only the position of the
 * snapshot (`MissingEvents<DocumentPosition>`).
 */
export interface MissingEvents<S extends DocumentPosition = Snapshot> {
  snapshot?: S;
  events: SyncEvent[];
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
