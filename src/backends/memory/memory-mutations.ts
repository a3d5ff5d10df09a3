/**
 * The in-process mutation records (see `MutationRecord`): one per client id, and a lock per
 * client id that a transaction holds from its first write keeping the record to its end, as
 * SQL's row lock.
 */
import type { MutationRecord } from '../../core/event-backend.js';

const clone = <V>(value: V): V => structuredClone(value);

/** Whether `record` (none: 0) is at the mid before `mid`: what keeping `mid`'s answer requires. */
export const expects = (record: MutationRecord | undefined, mid: number): boolean =>
  (record?.lastMid ?? 0) === mid - 1;

export class MemoryMutationRecords {
  readonly #records = new Map<string, MutationRecord>();
  /** Per client id: the promise the next holder of its lock waits for (absent: nobody holds it). */
  readonly #tails = new Map<string, Promise<void>>();

  get(clientId: string): MutationRecord | undefined {
    const record = this.#records.get(clientId);
    return record && clone(record);
  }

  set(record: MutationRecord): void {
    this.#records.set(record.clientId, clone(record));
  }

  delete(clientId: string): void {
    this.#records.delete(clientId);
  }

  prune(prefix: string, updatedBefore: number): number {
    let pruned = 0;
    for (const [clientId, record] of this.#records) {
      if (clientId.startsWith(prefix) && record.updatedAt < updatedBefore) {
        this.#records.delete(clientId);
        pruned++;
      }
    }
    return pruned;
  }

  /** Whether a transaction holds `clientId`'s record (or waits for it). */
  held(clientId: string): boolean {
    return this.#tails.has(clientId);
  }

  /** Resolves once no transaction holds `clientId`'s record (a later one may take it at once). */
  async free(clientId: string): Promise<void> {
    for (let tail = this.#tails.get(clientId); tail; tail = this.#tails.get(clientId)) await tail;
  }

  /** Waits until no transaction holds `clientId`'s record, then holds it; returns its release. */
  async lock(clientId: string): Promise<() => void> {
    const previous = this.#tails.get(clientId) ?? Promise.resolve();
    let release!: () => void;
    const tail = new Promise<void>((resolve) => {
      release = () => {
        // The last holder in line leaves no entry behind: a client id seen once costs nothing later.
        if (this.#tails.get(clientId) === tail) this.#tails.delete(clientId);
        resolve();
      };
    });
    this.#tails.set(clientId, tail);
    await previous;
    return release;
  }
}
