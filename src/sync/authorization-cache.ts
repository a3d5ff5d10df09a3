/**
 * The answers a session got from `authorize` and `authorizeQuery`, each kept at most `ttlMs`
 * (the engine's `authorizationTtlMs`). Rights change while connections stay open (a user leaves
 * a team, a document is unshared): a connection that asked once and kept the answer would stream
 * a document for as long as it stays open. An answer past its time is asked again when it is
 * next needed (the session: at the next event of the document); `clear()` (`engine.revoke`)
 * forgets them all at once. A `ttlMs` of 0 keeps nothing: every need asks.
 */

/** Expired answers are swept when the cache reaches this many entries (and then twice as many as are left). */
const SWEEP_AT = 1024;

export class AuthorizationCache<V> {
  readonly #ttlMs: number;
  readonly #entries = new Map<string, { value: V; expires: number }>();
  /** Moves on at every `clear()`: an answer asked before it may predate a revocation. */
  #generation = 0;
  #sweepAt = SWEEP_AT;

  constructor(ttlMs: number) {
    this.#ttlMs = ttlMs;
  }

  /** The answer for `key`, if one was given less than `ttlMs` ago. */
  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expires > Date.now()) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  /**
   * The answer for `key`: the kept one while fresh, else `question()`'s, kept from now on. An
   * answer that arrives after a `clear()` is asked for again: the question may have been
   * answered from rights the revocation took back.
   */
  async ask(key: string, question: () => Promise<V>): Promise<V> {
    for (;;) {
      const kept = this.get(key);
      if (kept !== undefined) return kept;
      const generation = this.#generation;
      const value = await question();
      if (generation !== this.#generation) continue;
      this.#keep(key, value);
      return value;
    }
  }

  /** Forgets every answer, including those being asked for now. */
  clear(): void {
    this.#entries.clear();
    this.#generation++;
  }

  #keep(key: string, value: V): void {
    if (this.#ttlMs <= 0) return;
    if (this.#entries.size >= this.#sweepAt) {
      const now = Date.now();
      for (const [k, entry] of this.#entries) if (entry.expires <= now) this.#entries.delete(k);
      this.#sweepAt = Math.max(SWEEP_AT, 2 * this.#entries.size);
    }
    this.#entries.set(key, { value, expires: Date.now() + this.#ttlMs });
  }
}
