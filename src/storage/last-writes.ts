/**
 * The state this storage instance last wrote of each document, so that its next edit of one can
 * skip the read: on a database server, read + conditional write is two round trips, the write
 * alone one. The per-document write queue already makes this instance's edits of a document run
 * one after another, so when nobody else writes the document the remembered state is current.
 *
 * The edit on a remembered state is speculative: it counts only if its conditional write
 * succeeds, which requires the row's version *and* token (PostgreSQL's `xmin`) to be what this
 * instance wrote: a write by anyone else in between, even a delete and re-create that reached
 * the same version, makes it fail, and the edit runs again on a fresh read (see DocumentStorage).
 *
 * Kept as JSON text, not objects: the caller owns (and may mutate) every document it is handed,
 * and a parse is what the read would have cost anyway. Bounded by total text length, least
 * recently used first out.
 */

import type { StoredDocument } from '../core/collection-backend.js';
import type { JsonObject } from '../core/json.js';

interface Entry {
  version: number;
  token: string;
  json: string;
  incarnation: string | undefined;
}

/** After a remembered state turned out stale, the document's writes are not remembered for this long. */
const STALE_PAUSE_MS = 1000;

/** What the storage uses of `LastWrites` (a transaction's view only forgets). */
export interface LastWriteCache {
  take(id: string): StoredDocument | undefined;
  remember(id: string, version: number, token: string | undefined, json: string, incarnation?: string): void;
  forget(id: string): void;
  stale(id: string): void;
  forgetting(): LastWriteCache;
}

export class LastWrites implements LastWriteCache {
  readonly #maxChars: number;
  readonly #entries = new Map<string, Entry>();
  /** Documents someone else writes too: id → until when not to remember them. */
  readonly #contended = new Map<string, number>();
  #chars = 0;

  constructor(maxChars: number) {
    this.#maxChars = maxChars;
  }

  /** The remembered state of `id` as a fresh document, or undefined. */
  take(id: string): StoredDocument | undefined {
    const entry = this.#entries.get(id);
    if (entry === undefined) return undefined;
    // Most recently used last.
    this.#entries.delete(id);
    this.#entries.set(id, entry);
    const { version, token, incarnation } = entry;
    return { id, version, token, incarnation, data: JSON.parse(entry.json) as JsonObject };
  }

  remember(id: string, version: number, token: string | undefined, json: string, incarnation?: string): void {
    this.forget(id);
    if (token === undefined || json.length > this.#maxChars) return;
    const until = this.#contended.get(id);
    if (until !== undefined) {
      if (Date.now() < until) return;
      this.#contended.delete(id);
    }
    this.#entries.set(id, { version, token, json, incarnation });
    this.#chars += json.length;
    for (const [oldest, entry] of this.#entries) {
      if (this.#chars <= this.#maxChars) break;
      this.#entries.delete(oldest);
      this.#chars -= entry.json.length;
    }
  }

  forget(id: string): void {
    const entry = this.#entries.get(id);
    if (entry === undefined) return;
    this.#entries.delete(id);
    this.#chars -= entry.json.length;
  }

  /**
   * A view for a transaction's writes: it never hands out remembered state (a transaction reads
   * its own) and forgets what the transaction writes (it may commit).
   */
  forgetting(): LastWriteCache {
    const forget = (id: string) => this.forget(id);
    const view: LastWriteCache = {
      take: () => undefined,
      remember: forget,
      forget,
      stale: forget,
      forgetting: () => view,
    };
    return view;
  }

  /** The remembered state of `id` was stale: someone else writes it, so stop remembering it for a while. */
  stale(id: string): void {
    this.forget(id);
    this.#contended.set(id, Date.now() + STALE_PAUSE_MS);
    // Bounded like the entries: a pause is only an optimisation.
    if (this.#contended.size > 10_000) this.#contended.delete(this.#contended.keys().next().value!);
  }
}
