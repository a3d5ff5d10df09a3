/**
 * What a database provides for the event log: primitive reads and writes of events, stream
 * heads, snapshots and state vectors. Semantics (what counts as "missing", when to snapshot,
 * what compaction may remove) live once in `EventStore`, `EventSyncStorage` and `SyncService`.
 *
 * Events are appended in two ways:
 * - atomically with a document write: the `CollectionBackend` write primitives take an
 *   `EventRecord` and append the event in the same statement or transaction (see
 *   `src/core/collection-backend.ts`);
 * - on their own with `append` (the `'best-effort'` consistency mode, and imports).
 * Either way the backend assigns `seq` (the document's head + 1), `serverSeq`, the vector clock
 * (the head's clock with `clientId` incremented), `id` and `timestamp`, under the same lock as
 * the head, so `seq` and every actor's counter stay gapless.
 */

import type { EventDraft, Snapshot, StateVector, SyncEvent, VectorClock } from './events.js';
import type { JsonObject } from './json.js';

/**
 * A client's exactly-once record of mutations (docs/MUTATIONS.md): the last mutation id the
 * server applied or refused for `clientId`, and the answer it gave, so a resend is answered from
 * here instead of running again. Written by the statement that writes the mutation's document
 * and event (`EventRecord.mutation`), so all commit or none; an answer without a write (a
 * refusal) by `EventBackend.keepMutationRecord`. Either writes it only while the stored record
 * is at the mid before, so of two runs of one mid only one is kept.
 */
export interface MutationRecord {
  /** A client id, or a REST idempotency key's record name (`rest:<principal>:<key>`). */
  clientId: string;
  lastMid: number;
  /** The answer to `lastMid`: the `mutated` or `mutation_error` frame sent (a resend gets it again). */
  outcome: JsonObject;
  /** When it was written, in ms since the epoch. */
  updatedAt: number;
}

/** Who makes a change and what to note with it: the part of an event the caller chooses. */
export interface EventRecord {
  clientId: string;
  metadata?: JsonObject;
  /** A client mutation's record, kept by the same write as the event (see {@link MutationRecordWrite}). */
  mutation?: MutationRecordWrite;
}

/**
 * The record a mutation's write keeps with its event, in the same statement (or synchronous
 * step): so a mutation's document, event and exactly-once record commit together without a
 * transaction around them. Written only while the stored record still ends at `mid - 1` (none:
 * 0); otherwise the write throws {@link MutationRecordMoved} and nothing of it is kept.
 */
export interface MutationRecordWrite {
  /** The record's name (`MutationRecord.clientId`). */
  clientId: string;
  mid: number;
  /** The answer to keep, asked for when the write happens; the write adds its event's `seq` and `version`. */
  outcome: () => JsonObject;
  updatedAt: number;
}

/**
 * A write carrying a {@link MutationRecordWrite} found the record past `mid - 1` (another run of
 * the client's mutations got there first): nothing was written. Read the record and answer from it.
 */
export class MutationRecordMoved extends Error {
  constructor(readonly clientId: string) {
    super(`the mutation record of ${JSON.stringify(clientId)} moved on before this write`);
    this.name = 'MutationRecordMoved';
  }
}

/** A document's event stream head: its last seq and vector clock (kept across delete and re-create). */
export interface StreamHead {
  lastSeq: number;
  vectorClock: VectorClock;
}

/** An acknowledgement to write (`putStateVectors`): a state vector whose clock may be left to the backend. */
export interface Acknowledgement {
  clientId: string;
  collection: string;
  documentId: string;
  lastSeq: number;
  /** The document's clock at `lastSeq`; when absent, the clock of the event at `lastSeq` (`{}` when compacted away). */
  vectorClock?: VectorClock;
  updatedAt: number;
}

export interface EventRange {
  /** Events with seq > afterSeq (default 0). */
  afterSeq?: number;
  /** … and seq <= toSeq (default: no bound). */
  toSeq?: number;
  limit?: number;
}

export interface EventBackend {
  /** Appends one event on its own (not atomic with any document write). */
  append(draft: EventDraft): Promise<SyncEvent>;
  /** One document's events in seq order. */
  list(collection: string, documentId: string, range?: EventRange): Promise<SyncEvent[]>;
  /** One document's events whose own actor counter is past `clock` (actors absent from `clock` count as 0), in seq order. */
  listUnseen(collection: string, documentId: string, clock: VectorClock): Promise<SyncEvent[]>;
  /** One document's events with `version > afterVersion`, in seq order. */
  listAfterVersion(collection: string, documentId: string, afterVersion: number): Promise<SyncEvent[]>;
  head(collection: string, documentId: string): Promise<StreamHead | undefined>;
  /**
   * Events with `serverSeq > afterServerSeq` in serverSeq order (all collections when
   * `collection` is undefined). Never skips: an event that commits later than one returned here
   * has a larger serverSeq, or is returned by this call too (PostgreSQL needs care: sequence
   * values are taken before commit).
   */
  listAfterServerSeq(
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]>;
  /**
   * A serverSeq at or below which every event has committed (or never will): a feed that starts
   * after it misses nothing that commits later. 0 when there are no events.
   */
  latestServerSeq(): Promise<number>;
  /** Calls `onCommit` (with no argument: a wake-up, not data) whenever events may have been committed by anyone sharing the database. */
  watchCommits(onCommit: () => void): Promise<() => Promise<void>>;

  /** Removes one document's events with seq <= throughSeq. Returns how many went. */
  deleteEvents(collection: string, documentId: string, throughSeq: number): Promise<number>;
  /** Replaces the events `merged.fromSeq`..`merged.seq` of a document by the single `merged` event. */
  replaceEvents(merged: SyncEvent & { fromSeq: number }): Promise<void>;
  /** Documents that have events or snapshots, optionally of one collection: `[collection, documentId]` pairs, in a stable order, paged. */
  streams(
    collection: string | undefined,
    after: [string, string] | undefined,
    limit: number,
  ): Promise<[string, string][]>;

  putSnapshot(snapshot: Snapshot): Promise<void>;
  /** The latest snapshot with seq <= atOrBeforeSeq (default: the latest). */
  latestSnapshot(
    collection: string,
    documentId: string,
    atOrBeforeSeq?: number,
  ): Promise<Snapshot | undefined>;
  /** Removes one document's snapshots with seq < beforeSeq. */
  deleteSnapshots(collection: string, documentId: string, beforeSeq: number): Promise<number>;

  /**
   * Stores `vector` unless the stored one is as far already (`lastSeq` >= its own): in one step,
   * so racing acknowledgements never leave the older one. Returns what is stored afterwards.
   */
  putStateVector(vector: StateVector): Promise<StateVector>;
  /**
   * Writes a batch of acknowledgements in one step (one statement on SQL): registers `clients`
   * and every client in `acks`, and moves each state vector forwards as `putStateVector` does.
   * An acknowledgement past its document's head (or of a document without events) is dropped:
   * nobody can have applied what was never written.
   */
  putStateVectors(acks: readonly Acknowledgement[], clients: readonly string[]): Promise<void>;
  getStateVector(clientId: string, collection: string, documentId: string): Promise<StateVector | undefined>;
  /** Registers a client (idempotent), owned by no principal until one claims it. */
  registerClient(clientId: string): Promise<void>;
  /**
   * Registers `clientId` to `principal` unless another principal owns it, in one step, so two
   * principals racing for a new id never both get it. A client registered with no owner
   * (`registerClient`, or before owners were recorded) becomes `principal`'s. Returns the owner
   * afterwards: `principal` when the claim holds.
   */
  claimClient(clientId: string, principal: string): Promise<string>;
  /** Forgets a client, its owner, its state vectors and its mutation record (the id is free again). */
  unregisterClient(clientId: string): Promise<void>;
  isRegistered(clientId: string): Promise<boolean>;
  /** The client's mutation record as committed (`undefined`: none), read without locking it. */
  mutationRecord(clientId: string): Promise<MutationRecord | undefined>;
  /**
   * Writes `record` only while the stored one is at `record.lastMid - 1` (none: 0), in one step
   * (after a transaction whose write keeps the same record ended). Returns whether it wrote: `false`
   * when another answer to that mid (or a later one) was kept first.
   */
  keepMutationRecord(record: MutationRecord): Promise<boolean>;
  /**
   * Forgets the mutation records whose client id starts with `prefix` and that were written
   * before `updatedBefore` (ms since the epoch), e.g. REST idempotency keys past their time.
   * Returns how many went.
   */
  pruneMutationRecords(prefix: string, updatedBefore: number): Promise<number>;
}
