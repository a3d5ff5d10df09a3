/**
 * Frames written to one socket in one turn of the event loop leave together: the socket is
 * corked at its first write of the turn and uncorked once the turn's work is done
 * (`setImmediate`), so the K events of a feed batch cost each client one `writev` system call
 * instead of K (one per frame is most of what a broadcast costs; a per-broadcast loop cannot
 * do this). Bounds: a socket with `flushBytes` corked is uncorked at once, so what waits in the
 * process for a client stays small; and a batch open for `maxHoldMs` is written out at the
 * next write, because one turn can be long (on the memory backend a burst of commits and
 * their dispatch runs as one chain of microtasks) and no frame should wait for all of it.
 */
/** What can be corked: a socket, or an HTTP response (whose `cork` corks its socket). */
export interface Corkable {
  cork(): void;
  uncork(): void;
  readonly writableLength: number;
}

export interface WriteBatcherOptions {
  /** Corked bytes past which a socket is written out at once. Default 64 KiB. */
  flushBytes?: number;
  /** How long the first frame of a batch may wait before the batch is written out. Default 5 ms. */
  maxHoldMs?: number;
}

export class WriteBatcher {
  readonly #corked = new Set<Corkable>();
  #scheduled = false;
  /** When the open batch corked its first socket (performance.now()). */
  #openedAt = 0;
  readonly #flushBytes: number;
  readonly #maxHoldMs: number;

  constructor(options: WriteBatcherOptions = {}) {
    this.#flushBytes = options.flushBytes ?? 64 * 1024;
    this.#maxHoldMs = options.maxHoldMs ?? 5;
  }

  /** Runs `write` (which writes to `socket`) with it corked until the batch is written out. */
  write(socket: Corkable, write: () => void): void {
    if (this.#corked.size > 0 && performance.now() - this.#openedAt > this.#maxHoldMs) this.#uncorkAll();
    if (!this.#corked.has(socket)) {
      if (this.#corked.size === 0) this.#openedAt = performance.now();
      socket.cork();
      this.#corked.add(socket);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#flush);
      }
    }
    write();
    if (socket.writableLength >= this.#flushBytes) {
      this.#corked.delete(socket);
      socket.uncork();
    }
  }

  /** The end of the turn. */
  readonly #flush = (): void => {
    this.#scheduled = false;
    this.#uncorkAll();
  };

  #uncorkAll(): void {
    for (const socket of this.#corked) socket.uncork();
    this.#corked.clear();
  }
}

/**
 * What a transport writes its frames through: batched per `WriteBatcher` when `batchWritesMs`
 * (default 5) is above 0, else written at once.
 */
export function batchedWrites(batchWritesMs = 5): (stream: Corkable, write: () => void) => void {
  if (batchWritesMs <= 0) return (_stream, write) => write();
  const batcher = new WriteBatcher({ maxHoldMs: batchWritesMs });
  return (stream, write) => batcher.write(stream, write);
}
