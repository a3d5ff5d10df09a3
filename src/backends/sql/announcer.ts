/**
 * Sends change notifications after their writes committed, many per statement.
 *
 * A NOTIFY inside a write would be cheaper to write down, but PostgreSQL lets only one notifying
 * transaction commit at a time (a database-wide lock held through the commit's WAL flush), so
 * concurrent writers that notify lose group commit: measured, a NOTIFY in the same statement
 * halves the write throughput of 8 connections. Here writes carry no NOTIFY; each committed
 * write hands its payload to `announce`, and one statement at a time, on the driver's notify
 * connection, sends everything queued so far, at most one statement per MIN_INTERVAL_MS. Under
 * load the queue fills meanwhile, so the cost per write shrinks as writes come faster.
 *
 * What this gives up: a process that dies between a commit and its announcement leaves that
 * change unannounced. Event feeds do not depend on it (they read the event log, and poll);
 * `watch` does (see README, "Choices worth knowing").
 */
import { sleep } from '../../core/sleep.js';

/** At most this many payloads (each at most ~7 KB) go in one statement. */
const MAX_PER_STATEMENT = 200;
/**
 * At most one statement per this many ms: a payload queued sooner after the last statement waits
 * for the rest of the interval (one after a quiet spell goes at once). Measured at 8 connections:
 * a statement per write costs the atomic write ~25% of its throughput, one per 2 ms about nothing.
 */
const MIN_INTERVAL_MS = 2;

export class Announcer {
  readonly #send: (payloads: string[]) => Promise<void>;
  readonly #onError: (error: unknown) => void;
  #queue: string[] = [];
  /** The running send loop, while there is one. */
  #sending: Promise<void> | undefined;
  /** When the last statement went out (performance.now()). */
  #lastSent = Number.NEGATIVE_INFINITY;

  constructor(send: (payloads: string[]) => Promise<void>, onError: (error: unknown) => void) {
    this.#send = send;
    this.#onError = onError;
  }

  /** Queues `payload`; it is sent after every payload queued before it. */
  announce(payload: string): void {
    this.#queue.push(payload);
    if (this.#sending === undefined) this.#sending = this.#drain();
  }

  /** Resolves once everything queued so far has been sent (or failed to be). */
  async flush(): Promise<void> {
    while (this.#sending) await this.#sending;
  }

  async #drain(): Promise<void> {
    // Never synchronously: `#sending` must be set before the loop can end and clear it.
    await Promise.resolve();
    try {
      while (this.#queue.length > 0) {
        // Writes completing meanwhile share the statement.
        const wait = this.#lastSent + MIN_INTERVAL_MS - performance.now();
        if (wait > 0) await sleep(wait);
        this.#lastSent = performance.now();
        const batch = this.#queue.splice(0, MAX_PER_STATEMENT);
        try {
          await this.#send(batch);
        } catch (error) {
          // Lost notifications: listeners miss these changes (feeds catch up by polling).
          this.#onError(error);
        }
      }
    } finally {
      this.#sending = undefined;
    }
  }
}
