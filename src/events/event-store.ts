/**
 * The event store: the original design's queries over the event log, plus a collection-wide
 * feed and a live subscription. Backends provide primitives (`EventBackend`); this class adds
 * validation and the meaning of each query.
 */

import type { Database } from '../core/collection-backend.js';
import type { EventBackend } from '../core/event-backend.js';
import type { EventDraft, SyncEvent, VectorClock } from '../core/events.js';
import { assertCollectionName, assertId } from '../core/ids.js';
import { assertDocumentRef, assertSeq, assertVectorClock } from './assert.js';

export interface SubscribeOptions {
  /** Only this collection's events (default: all). */
  collection?: string;
  /** Start after this serverSeq: 0 for everything, or the last one you processed. */
  afterServerSeq: number;
  signal?: AbortSignal;
  /** Events read per query. Default 500. */
  batchSize?: number;
  /** Poll this often even without a notification (a notification lost with a dropped connection costs at most this much delay). Default 1,000 ms. */
  pollIntervalMs?: number;
}

export class EventStore {
  constructor(readonly backend: EventBackend) {}

  /** Appends an event on its own (not atomic with a document write: `EventSyncStorage` does that). */
  async append(draft: EventDraft): Promise<SyncEvent> {
    assertCollectionName(draft.collection);
    assertId(draft.documentId);
    return this.backend.append(draft);
  }

  /** A document's events after `afterSeq`, in seq order. */
  async getEvents(
    collection: string,
    documentId: string,
    afterSeq = 0,
    limit?: number,
  ): Promise<SyncEvent[]> {
    assertDocumentRef(collection, documentId);
    assertSeq(afterSeq, 'afterSeq');
    if (limit !== undefined) assertSeq(limit, 'limit');
    return this.backend.list(
      collection,
      documentId,
      limit === undefined ? { afterSeq } : { afterSeq, limit },
    );
  }

  /** The document's last seq (0 before its first event); it keeps counting across delete and re-create. */
  async getLatestSequence(collection: string, documentId: string): Promise<number> {
    assertDocumentRef(collection, documentId);
    return (await this.backend.head(collection, documentId))?.lastSeq ?? 0;
  }

  /** Exactly the events `clock` has not seen: each event whose own actor's count is past the clock's (unknown actors count 0). */
  async getEventsByVectorClock(
    collection: string,
    documentId: string,
    clock: VectorClock,
  ): Promise<SyncEvent[]> {
    assertDocumentRef(collection, documentId);
    assertVectorClock(clock);
    return this.backend.listUnseen(collection, documentId, clock);
  }

  async getEventsAfterVersion(collection: string, documentId: string, version: number): Promise<SyncEvent[]> {
    assertDocumentRef(collection, documentId);
    assertSeq(version, 'version');
    return this.backend.listAfterVersion(collection, documentId, version);
  }

  /** The document version after its latest event (0 when it has none). */
  async getLatestVersion(collection: string, documentId: string): Promise<number> {
    const lastSeq = await this.getLatestSequence(collection, documentId);
    if (lastSeq === 0) return 0;
    const [last] = await this.backend.list(collection, documentId, { afterSeq: lastSeq - 1 });
    return last?.version ?? 0;
  }

  /** The collection-wide feed: events after `afterServerSeq` in serverSeq order. Never skips one that commits later. */
  async getEventsAfterServerSeq(
    collection: string | undefined,
    afterServerSeq: number,
    limit = 1000,
  ): Promise<SyncEvent[]> {
    if (collection !== undefined) assertCollectionName(collection);
    assertSeq(afterServerSeq, 'afterServerSeq');
    assertSeq(limit, 'limit');
    return this.backend.listAfterServerSeq(collection, afterServerSeq, limit);
  }

  /** Every event after `afterServerSeq`, then live ones as they commit, until `signal` aborts. */
  async *subscribe(options: SubscribeOptions): AsyncGenerator<SyncEvent> {
    const { collection, signal, batchSize = 500, pollIntervalMs = 1000 } = options;
    let after = options.afterServerSeq;
    let wake: (() => void) | undefined;
    let pending = false;
    const poke = () => {
      pending = true;
      wake?.();
    };
    const stopWatching = await this.backend.watchCommits(poke);
    signal?.addEventListener('abort', poke, { once: true });
    try {
      while (!signal?.aborted) {
        pending = false;
        const batch = await this.getEventsAfterServerSeq(collection, after, batchSize);
        for (const event of batch) {
          if (signal?.aborted) return;
          after = event.serverSeq;
          yield event;
        }
        if (batch.length === batchSize || pending) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollIntervalMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    } finally {
      signal?.removeEventListener('abort', poke);
      await stopWatching();
    }
  }
}

/** The event store of `db` (memory, PGlite or PostgreSQL), creating its tables on first use. */
export async function createEventStore(options: { db: Database }): Promise<EventStore> {
  return new EventStore(await options.db.events());
}
