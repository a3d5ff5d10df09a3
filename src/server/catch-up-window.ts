/**
 * The catch-up frames of one connection that were handed to its socket and not yet written out
 * (what the transports share to pace catch-up and to keep it out of the too-slow rule).
 *
 * A transport counts each catch-up frame in when it writes it and out in the write's callback
 * (ws `send(data, cb)`, `res.write(chunk, cb)`), which fires once the bytes left the process's
 * buffer. The session sends catch-up while at most `highWater` bytes of it wait, then waits
 * until half of that is written: a catch-up of any length flows at the client's pace, and what
 * the server holds for it stays bounded. The too-slow rule judges the rest of the send buffer
 * (what waits minus `bytes`): only live frames can get a client disconnected.
 */
export class CatchUpWindow {
  readonly highWater: number;
  #bytes = 0;
  #waiters: (() => void)[] = [];
  #closed = false;

  constructor(highWater: number) {
    this.highWater = Math.max(1, highWater);
  }

  /** Catch-up bytes handed to the socket and not yet written out. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the sender should wait for `drained()` before handing over more. */
  get full(): boolean {
    return this.#bytes > this.highWater;
  }

  /** Counts in a frame of `size` bytes; returns the callback to run once it is written out. */
  add(size: number): () => void {
    this.#bytes += size;
    let counted = true;
    return () => {
      if (!counted) return;
      counted = false;
      this.#bytes -= size;
      if (this.#bytes <= this.highWater / 2) this.#wake();
    };
  }

  /** Resolves once at most half of `highWater` waits, or at once when the connection closed. */
  drained(): Promise<void> {
    if (this.#closed || this.#bytes <= this.highWater / 2) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** The connection is gone: nobody waits any more (its write callbacks may never come). */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }
}
