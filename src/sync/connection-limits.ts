/**
 * Counts open long-lived connections (WebSockets and SSE streams, which share one engine) in
 * total and per remote address, so one address cannot take every socket the process has.
 * A proxy in front makes every client one address: raise `maxConnectionsPerAddress` there.
 */
import type { SyncLimits } from './types.js';

export type ConnectionSlot =
  | { ok: true; release: () => void }
  | { ok: false; status: 429 | 503; message: string };

export class ConnectionLimits {
  readonly #limits: Pick<SyncLimits, 'maxConnections' | 'maxConnectionsPerAddress'>;
  readonly #byAddress = new Map<string, number>();
  #total = 0;

  constructor(limits: Pick<SyncLimits, 'maxConnections' | 'maxConnectionsPerAddress'>) {
    this.#limits = limits;
  }

  get open(): number {
    return this.#total;
  }

  /** Takes a slot for a connection from `address`; `release` gives it back (once, however often called). */
  acquire(address: string | undefined): ConnectionSlot {
    const key = address ?? 'unknown';
    const fromAddress = this.#byAddress.get(key) ?? 0;
    if (this.#total >= this.#limits.maxConnections) {
      return {
        ok: false,
        status: 503,
        message: `the server has its ${this.#limits.maxConnections} connections open`,
      };
    }
    if (fromAddress >= this.#limits.maxConnectionsPerAddress) {
      return {
        ok: false,
        status: 429,
        message: `at most ${this.#limits.maxConnectionsPerAddress} connections per address are open at once`,
      };
    }
    this.#total++;
    this.#byAddress.set(key, fromAddress + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#byAddress.get(key) ?? 1) - 1;
      if (left === 0) this.#byAddress.delete(key);
      else this.#byAddress.set(key, left);
    };
    return { ok: true, release };
  }
}
