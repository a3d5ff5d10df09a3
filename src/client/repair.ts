/**
 * Gap repair: a replica whose gap has not filled after `gapTimeoutMs` (or that broke) asks the
 * server over REST what it misses (`POST /api/sync/:collection/:id`) and applies the answer,
 * from scratch when it broke. Failed repairs are retried with the gap timer, backing off.
 */
import { EventSyncError } from '../core/errors.js';
import type { DocumentPosition, MissingEvents } from '../core/events.js';
import { documentKey } from '../protocol/wire.js';
import { EventSyncClientError } from './errors.js';
import { type Feed, positionOfSnapshot } from './handles.js';
import { emptyPosition, Replica, type ReplicaChange } from './replica.js';
import { errorOf, type FetchLike } from './transport.js';

/** The server's answer to `POST /api/sync/...`: a snapshot when it must, then the events after it. */
export type SyncAnswer = MissingEvents<DocumentPosition>;

/** `POST url` (`…/api/sync/:collection/:id`) with `afterSeq`: what the server says a replica misses. */
export async function fetchMissing(
  fetch: FetchLike,
  url: string,
  token: string | undefined,
  body: { afterSeq: number; clientId: string },
): Promise<SyncAnswer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body) });
  if (!res.ok) {
    const { code, message } = await errorOf(res);
    throw new EventSyncClientError(code, `POST ${url}: ${message}`);
  }
  const answer = JSON.parse(await res.text()) as Partial<SyncAnswer>;
  return { ...(answer.snapshot ? { snapshot: answer.snapshot } : {}), events: answer.events ?? [] };
}

export interface GapRepairOptions {
  /** A gap that has not filled after this many ms is repaired; doubled after each failed repair. */
  gapTimeoutMs: number;
  /** The longest wait before a repair. */
  maxDelayMs: number;
  /** Asks the server what a document misses after `afterSeq` (`fetchMissing`). */
  ask(collection: string, documentId: string, afterSeq: number): Promise<SyncAnswer>;
  report(error: EventSyncClientError): void;
  /** Whether the client is connected or connecting: gaps are not watched otherwise. */
  running(): boolean;
}

/** The gap timers and repairs of a client's replicas. */
export class GapRepair {
  readonly #options: GapRepairOptions;
  readonly #timers = new Map<Replica, ReturnType<typeof setTimeout>>();
  readonly #failures = new Map<Replica, number>();
  readonly #repairing = new Map<Replica, Promise<void>>();

  constructor(options: GapRepairOptions) {
    this.#options = options;
  }

  /** Looks at `replica` after a change: starts the gap timer when it needs a repair, stops it when not. */
  watch(feed: Feed, replica: Replica): void {
    const timer = this.#timers.get(replica);
    if (!replica.needsRepair || feed.closed || !this.#options.running()) {
      if (timer !== undefined) {
        clearTimeout(timer);
        this.#timers.delete(replica);
      }
      if (!replica.needsRepair) this.#failures.delete(replica);
      return;
    }
    if (timer !== undefined || this.#repairing.has(replica)) return;
    const failures = this.#failures.get(replica) ?? 0;
    const { gapTimeoutMs, maxDelayMs } = this.#options;
    const delay = Math.min(maxDelayMs, gapTimeoutMs * 2 ** Math.min(failures, 20));
    this.#timers.set(
      replica,
      setTimeout(() => {
        this.#timers.delete(replica);
        if (replica.needsRepair && !feed.closed) {
          this.repair(feed, replica, false).catch(() => {
            // reported by repair; the next gap check retries
          });
        }
      }, delay),
    );
  }

  /**
   * Asks the server what `replica` misses and applies it (from scratch when the replica broke).
   * One repair per replica at a time: a second call gets the running one. Failures are reported
   * unless `always` (the caller asked, and gets the rejection).
   */
  repair(feed: Feed, replica: Replica, always: boolean): Promise<void> {
    const running = this.#repairing.get(replica);
    if (running) return running;
    const tracked = this.#catchUp(feed, replica).then(
      () => {
        this.#failures.delete(replica);
      },
      (error: unknown) => {
        this.#failures.set(replica, (this.#failures.get(replica) ?? 0) + 1);
        const err = EventSyncError.is(error)
          ? (error as EventSyncClientError)
          : new EventSyncClientError(
              'internal',
              `repairing ${documentKey(replica.collection, replica.documentId)} failed: ${String(error)}`,
              { cause: error },
            );
        if (!always) this.#options.report(err);
        throw err;
      },
    );
    const settled = tracked.finally(() => {
      this.#repairing.delete(replica);
      this.watch(feed, replica);
    });
    this.#repairing.set(replica, settled);
    settled.catch(() => undefined);
    return settled;
  }

  /** The replica is gone: its timer and failure count with it. */
  forget(replica: Replica): void {
    clearTimeout(this.#timers.get(replica));
    this.#timers.delete(replica);
    this.#failures.delete(replica);
  }

  /** Stops every gap timer (the client disconnects); repairs under way finish. */
  stopTimers(): void {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }

  async #catchUp(feed: Feed, replica: Replica): Promise<void> {
    const rebuild = replica.needsRebuild || !replica.based;
    const { collection, documentId } = replica;
    const answer = await this.#options.ask(collection, documentId, rebuild ? 0 : replica.seq);
    if (feed.closed || feed.replicaOf(documentId) !== replica) return;
    if (rebuild) {
      const fresh = new Replica(collection, documentId, emptyPosition());
      if (answer.snapshot) fresh.replace(positionOfSnapshot(answer.snapshot), true);
      for (const event of answer.events) fresh.receive(event);
      if (fresh.broken || fresh.waiting > 0) {
        throw new EventSyncClientError(
          'internal',
          `the server's events for ${documentKey(collection, documentId)} do not apply from the start`,
          { cause: fresh.brokenBy },
        );
      }
      if (fresh.seq >= replica.seq || replica.broken || !replica.based) {
        feed.applied(replica, replica.replace(fresh.position, true));
      }
      return;
    }
    const changes: ReplicaChange[] = [];
    if (answer.snapshot) changes.push(...replica.replace(positionOfSnapshot(answer.snapshot)));
    for (const event of answer.events) changes.push(...replica.receive(event));
    feed.applied(replica, changes);
  }
}
