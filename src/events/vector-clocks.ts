/**
 * Vector clocks per document, as the original design's `VectorClockManager`. The event log is
 * the source of truth (every event carries the document's clock after it, assigned atomically
 * with the event); a manager answers "what is this document's clock" for code that asks often.
 */
import type { EventBackend } from '../core/event-backend.js';
import type { VectorClock } from '../core/events.js';

export interface VectorClockManager {
  getVectorClock(documentId: string): Promise<VectorClock>;
  /** Notes that `clientId` produced its `seq`-th event on the document (counters only grow). */
  updateVectorClock(documentId: string, clientId: string, seq: number): Promise<void>;
}

/** In process, like the original's default: knows what this process recorded or was told. */
export class MemoryVectorClockManager implements VectorClockManager {
  readonly #clocks = new Map<string, VectorClock>();

  async getVectorClock(documentId: string): Promise<VectorClock> {
    return { ...this.#clocks.get(documentId) };
  }

  async updateVectorClock(documentId: string, clientId: string, seq: number): Promise<void> {
    const clock = this.#clocks.get(documentId) ?? {};
    clock[clientId] = Math.max(clock[clientId] ?? 0, seq);
    this.#clocks.set(documentId, clock);
  }
}

/**
 * Reads clocks from the event log's stream heads, which every recorded event advances in the
 * same commit: correct across processes and restarts, and nothing to update.
 */
export class PersistentVectorClockManager implements VectorClockManager {
  constructor(
    private readonly events: EventBackend,
    private readonly collection: string,
  ) {}

  async getVectorClock(documentId: string): Promise<VectorClock> {
    return { ...(await this.events.head(this.collection, documentId))?.vectorClock };
  }

  async updateVectorClock(): Promise<void> {
    // The head moved with the event itself.
  }
}
