/**
 * Sends change notifications after their writes committed, many per statement.
 *
 * A NOTIFY inside a write would be cheaper to write down, but PostgreSQL lets only one notifying
 * transaction commit at a time (a database-wide lock held through the commit's WAL flush), so
 * concurrent writers that notify lose group commit: measured, a NOTIFY in the same statement
 * halves the write throughput of 8 connections. Here writes carry no NOTIFY; each committed
 * write hands its payload to `announce`, and one statement at a time, on the driver's notify
 * connection, sends everything queued so far. Under load the queue fills while a statement is
 * out, so the cost per write shrinks as writes come faster.
 *
 * What this gives up: a process that dies between a commit and its announcement leaves that
 * change unannounced. Event feeds do not depend on it (they read the event log, and poll);
 * `watch` does (see README, "Choices worth knowing").
 */
/** At most this many payloads (each at most ~7 KB) go in one statement. */
const MAX_PER_STATEMENT = 200;

export class Announcer {
  readonly #send: (payloads: string[]) => Promise<void>;
  readonly #onError: (error: unknown) => void;
  #queue: string[] = [];
  /** The running send loop, while there is one. */
  #sending: Promise<void> | undefined;

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
    // Yield once, so that writes completing in the same tick share the first statement.
    await Promise.resolve();
    try {
      while (this.#queue.length > 0) {
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
