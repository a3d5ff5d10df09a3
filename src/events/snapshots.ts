/**
 * Snapshots of a document's state at a seq, over any `EventBackend`. A snapshot is a shortcut
 * for replay and catch-up, never the only copy of anything: the events up to its seq can go
 * (compaction), and then it is what replay and catch-up start from.
 */

import type { EventBackend } from '../core/event-backend.js';
import type { DocumentPosition, Snapshot } from '../core/events.js';
import { assertJsonDocument } from '../storage/validate.js';
import { assertDocumentRef, assertSeq, assertVectorClock } from './assert.js';

/** What a snapshot records, a `DocumentPosition`; the store adds the document's identity and `createdAt`. */
export type SnapshotInput = DocumentPosition;

export class SnapshotStore {
  constructor(readonly backend: EventBackend) {}

  /** Stores the state of a document at `seq` (replacing a snapshot at the same seq) and returns it. */
  async create(collection: string, documentId: string, input: SnapshotInput): Promise<Snapshot> {
    assertDocumentRef(collection, documentId);
    assertSeq(input.seq, 'seq');
    assertSeq(input.version, 'version');
    assertVectorClock(input.vectorClock);
    if (input.state !== null) assertJsonDocument(input.state);
    const snapshot: Snapshot = {
      collection,
      documentId,
      seq: input.seq,
      version: input.version,
      state: input.state,
      vectorClock: input.vectorClock,
      createdAt: Date.now(),
    };
    await this.backend.putSnapshot(snapshot);
    return snapshot;
  }

  /** The newest snapshot of the document. */
  async latest(collection: string, documentId: string): Promise<Snapshot | undefined> {
    assertDocumentRef(collection, documentId);
    return this.backend.latestSnapshot(collection, documentId);
  }

  /** The newest snapshot with `seq <= atOrBeforeSeq`: where a replay to that seq starts. */
  async latestAtOrBefore(
    collection: string,
    documentId: string,
    atOrBeforeSeq: number,
  ): Promise<Snapshot | undefined> {
    assertDocumentRef(collection, documentId);
    assertSeq(atOrBeforeSeq, 'seq');
    return this.backend.latestSnapshot(collection, documentId, atOrBeforeSeq);
  }

  /**
   * Removes the snapshots with `seq < beforeSeq`; returns how many went. Replays to a seq before
   * the oldest remaining snapshot then need the events from the start, so only do this for seqs
   * whose events are still there or no longer wanted.
   */
  async deleteBefore(collection: string, documentId: string, beforeSeq: number): Promise<number> {
    assertDocumentRef(collection, documentId);
    assertSeq(beforeSeq, 'seq');
    return this.backend.deleteSnapshots(collection, documentId, beforeSeq);
  }
}
