/**
 * What each client has acknowledged of each document, persisted in the event backend, so a
 * client that comes back (to any server instance, after a restart) resumes where it left off.
 */
import { assertClientId, assertDocumentRef, assertSeq, assertVectorClock } from './assert.js';
import type { EventBackend } from './backend.js';
import type { StateVector, VectorClock } from './types.js';

export class StateVectorManager {
  constructor(readonly backend: EventBackend) {}

  async get(clientId: string, collection: string, documentId: string): Promise<StateVector | undefined> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    return this.backend.getStateVector(clientId, collection, documentId);
  }

  /**
   * Records that the client has the document at `lastSeq` (with `vectorClock`, the document's
   * clock there). Never moves backwards: acknowledgements can arrive out of order, and an older
   * one would only make the client be sent events it already has. Returns the state vector now
   * stored. The backend decides in one step, so acknowledgements racing each other (two server
   * instances, say) never leave the older one.
   */
  async update(
    clientId: string,
    collection: string,
    documentId: string,
    lastSeq: number,
    vectorClock: VectorClock,
  ): Promise<StateVector> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    assertSeq(lastSeq, 'lastSeq');
    assertVectorClock(vectorClock);
    return this.backend.putStateVector({
      clientId,
      collection,
      documentId,
      vectorClock: { ...vectorClock },
      lastSeq,
      updatedAt: Date.now(),
    });
  }

  /** Forgets everything the client acknowledged (and the client itself: see `EventBackend.unregisterClient`). */
  async forget(clientId: string): Promise<void> {
    assertClientId(clientId);
    return this.backend.unregisterClient(clientId);
  }
}
