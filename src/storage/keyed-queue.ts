/**
 * Runs tasks one at a time per key, in arrival order. The storage queues writes per document
 * so edits of one document inside one process never conflict with each other: only other
 * processes (or other storage instances) can make an edit retry.
 */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<unknown>>();

  run<R>(key: string, task: () => Promise<R>): Promise<R> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    // Forget the key once nothing more is queued behind this task.
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }

  get size(): number {
    return this.#tails.size;
  }
}
