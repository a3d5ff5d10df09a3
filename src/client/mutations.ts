/**
 * The client's mutations (docs/MUTATIONS.md, "Client"): the mid counter, the queue of mutations
 * the server has not confirmed yet, the prediction of each document (its confirmed state with the
 * queue replayed on a copy), and the answers. The client sends and saves what the queue says;
 * `postMutation` is the REST request of the SSE transport.
 */

import { EventSyncError } from '../core/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { type MutationContext, type Mutators, mutatorNamed } from '../core/mutators.js';
import { documentKey, isRetryable } from '../protocol/wire.js';
import { EventSyncClientError } from './errors.js';
import type { StoredMutation } from './persistence.js';
import type { ReplicaChange } from './replica.js';
import type { ClientMessage, FetchLike, ServerMessage } from './transport.js';

/** The server's answer to a mutation (`mutated` without its type). */
export interface MutationAnswer {
  mid: number;
  seq?: number;
  version?: number;
  result?: JsonValue;
  duplicate?: true;
}

/** A mutation the server has not confirmed yet: what `handle.pending` lists. */
export type PendingMutation = StoredMutation;

interface Entry {
  readonly mutation: PendingMutation;
  /** Still replayed on the confirmed state (its effect has not arrived by an event yet). */
  predicting: boolean;
  /** The seq that holds its effect, from `mutated`: the entry stops predicting once the replica has it. */
  seq?: number;
  /** The caller's promise, until the server answers (absent for a mutation restored after a reload). */
  settle?: { resolve(answer: MutationAnswer): void; reject(error: EventSyncClientError): void };
}

export type MutateFrame = Extract<ClientMessage, { type: 'mutate' }>;
type MutationError = Extract<ServerMessage, { type: 'mutation_error' }>;
export type MutationReply = Extract<ServerMessage, { type: 'mutated' | 'mutation_error' }>;

export class MutationQueue {
  readonly #mutators = new Map<string, Mutators<JsonObject>>();
  /** By mid, in mid order (mids only grow). */
  readonly #entries = new Map<number, Entry>();
  /** The last mid assigned (or applied, per the server's `welcome`). */
  lastMid = 0;
  /** Per document: the confirmed state the prediction was made on, and the prediction. */
  readonly #predictions = new Map<string, { base: JsonObject | null; state: JsonObject | null }>();

  constructor(
    private readonly clientId: () => string,
    /**
     * The queue of a document changed (to save); `notify`: other than by its replica, so its
     * handles must show the new prediction themselves.
     */
    private readonly changed: (collection: string, documentId: string, notify: boolean) => void,
  ) {}

  register(collection: string, mutators: Mutators<never>): void {
    this.#mutators.set(collection, mutators as Mutators<JsonObject>);
    this.#predictions.clear();
  }

  /** Queues a mutation; the caller sends `frame` when it can. */
  add(collection: string, documentId: string, name: string, args: JsonValue | undefined) {
    const mutation: PendingMutation = {
      mid: ++this.lastMid,
      collection,
      documentId,
      name,
      args, // undefined when none: frames and stores are JSON, which leaves it out
    } as PendingMutation;
    let settle: Entry['settle'];
    const answer = new Promise<MutationAnswer>((resolve, reject) => {
      settle = { resolve, reject };
    });
    this.#entries.set(mutation.mid, { mutation, predicting: true, settle });
    this.#touch(collection, documentId);
    this.changed(collection, documentId, true);
    return { frame: frameOf(mutation), answer };
  }

  /**
   * The counter and the mutations loaded from the store: predicted again, sent again at the next
   * connection. Mutations made before the store was loaded were not sent yet (nothing connects
   * before it is): they take the mids after the stored ones.
   */
  restore(lastMid: number, mutations: readonly PendingMutation[]): void {
    const early = [...this.#entries.values()];
    this.#entries.clear();
    this.#predictions.clear();
    const sorted = [...mutations].sort((a, b) => a.mid - b.mid);
    this.lastMid = Math.max(lastMid, sorted.at(-1)?.mid ?? 0);
    for (const mutation of sorted) this.#entries.set(mutation.mid, { mutation, predicting: true });
    for (const entry of early) {
      const mutation = { ...entry.mutation, mid: ++this.lastMid };
      this.#entries.set(mutation.mid, { ...entry, mutation });
    }
  }

  /** What to persist: the mutations still predicted. */
  stored(): PendingMutation[] {
    return [...this.#entries.values()].filter((e) => e.predicting).map((e) => e.mutation);
  }

  /** The mutations still predicted of a document (`documentId` undefined: of the whole collection). */
  pendingOf(collection: string, documentId?: string): PendingMutation[] {
    const out: PendingMutation[] = [];
    for (const { predicting, mutation: m } of this.#entries.values()) {
      if (predicting && m.collection === collection && (documentId ?? m.documentId) === m.documentId)
        out.push(m);
    }
    return out;
  }

  /**
   * A (re)connection was accepted; `lastMid`: the last mid the server applied for us. Mutations
   * up to it are applied (their effect comes by events); the rest, and those whose answer was
   * lost, are what to send again, in mid order.
   */
  welcomed(lastMid: number): MutateFrame[] {
    this.lastMid = Math.max(this.lastMid, lastMid);
    const resend: MutateFrame[] = [];
    for (const entry of [...this.#entries.values()]) {
      if (entry.mutation.mid <= lastMid) this.#stopPredicting(entry, true);
      if (this.#entries.has(entry.mutation.mid)) resend.push(frameOf(entry.mutation));
    }
    return resend;
  }

  /** The mutations from mid `from` on, to send again after a retryable refusal. */
  from(mid: number): MutateFrame[] {
    return [...this.#entries.values()].filter((e) => e.mutation.mid >= mid).map((e) => frameOf(e.mutation));
  }

  /**
   * The server answered (`mutated` or `mutation_error`). `seqOf` is the seq the client's replica
   * of a document has reached (`undefined`: not followed). Returns `retry` when the refusal may
   * pass later (`rate_limited`, `out_of_order`, …): the mutation stays queued, to be sent again.
   */
  answered(
    message: MutationReply,
    seqOf: (collection: string, documentId: string) => number | undefined,
  ): 'retry' | undefined {
    const entry = this.#entries.get(message.mid);
    if (!entry) return;
    if (message.type === 'mutation_error') {
      if (isRetryable(message.code)) return 'retry';
      const { code, reason } = message;
      entry.settle?.reject(new EventSyncClientError(code, message.message, { ref: 'mutate', reason }));
      entry.settle = undefined;
      this.#stopPredicting(entry, true);
      return;
    }
    const { type: _type, ...answer } = message;
    entry.settle?.resolve(answer);
    entry.settle = undefined;
    entry.seq = message.seq;
    const reached = seqOf(entry.mutation.collection, entry.mutation.documentId);
    const done =
      message.seq === undefined || message.duplicate || reached === undefined || reached >= message.seq;
    if (done || !entry.predicting) this.#stopPredicting(entry, true);
  }

  /** A replica applied `changes` (now at `seq`): mutations they carry, or whose seq it reached, stop predicting. */
  confirmed(collection: string, documentId: string, seq: number, changes: readonly ReplicaChange[]): void {
    const me = this.clientId();
    const carried = new Set<number>();
    for (const c of changes) {
      const mutation = c.kind === 'event' && c.event.clientId === me ? c.event.metadata?.mutation : undefined;
      const mid = (mutation as { mid?: unknown } | undefined)?.mid;
      if (typeof mid === 'number') carried.add(mid);
    }
    for (const entry of this.#entries.values()) {
      const m = entry.mutation;
      if (m.collection !== collection || m.documentId !== documentId || !entry.predicting) continue;
      if (carried.has(m.mid) || (entry.seq !== undefined && seq >= entry.seq))
        this.#stopPredicting(entry, false);
    }
  }

  /** `confirmed` with the pending mutations of the document replayed, in mid order. */
  predict(collection: string, documentId: string, confirmed: JsonObject | null): JsonObject | null {
    const key = documentKey(collection, documentId);
    const pending = this.pendingOf(collection, documentId);
    if (pending.length === 0) return confirmed;
    const memo = this.#predictions.get(key);
    if (memo?.base === confirmed) return memo.state;
    let state = confirmed;
    for (const m of pending) state = this.#replay(state, m);
    this.#predictions.set(key, { base: confirmed, state });
    return state;
  }

  /**
   * One mutation on a copy of `state`, as the server runs it: a missing document only for a
   * `create` mutator (on `{ _id }`), `ctx.delete()` leaves none. A mutator that is not registered
   * or throws changes nothing: the server decides.
   */
  #replay(state: JsonObject | null, m: PendingMutation): JsonObject | null {
    const spec = mutatorNamed(this.#mutators.get(m.collection), m.name);
    if (!spec || (state === null && spec.create !== true)) return state;
    let deleted = false;
    const ctx: MutationContext = {
      clientId: this.clientId(),
      collection: m.collection,
      documentId: m.documentId,
      mid: m.mid,
      delete: () => {
        deleted = true;
      },
    };
    try {
      const args = spec.args ? spec.args.parse(m.args) : m.args;
      const draft: JsonObject = state === null ? { _id: m.documentId } : structuredClone(state);
      spec.run(draft, args, ctx);
      return deleted ? null : draft;
    } catch {
      return state;
    }
  }

  #stopPredicting(entry: Entry, notify: boolean): void {
    if (entry.predicting) {
      entry.predicting = false;
      this.#touch(entry.mutation.collection, entry.mutation.documentId);
      this.changed(entry.mutation.collection, entry.mutation.documentId, notify);
    }
    if (!entry.settle) this.#entries.delete(entry.mutation.mid);
  }

  #touch(collection: string, documentId: string): void {
    this.#predictions.delete(documentKey(collection, documentId));
  }
}

function frameOf(m: PendingMutation): MutateFrame {
  return { type: 'mutate', ...m };
}

/**
 * `POST {api}/:collection/:id/mutate/:name` (the SSE transport's way to mutate): the answer as
 * the WebSocket would bring it. Throws when the request failed on the way (retried later).
 */
export async function postMutation(
  fetch: FetchLike,
  api: string,
  headers: Record<string, string>,
  { mid, collection, documentId, name, args }: MutateFrame,
): Promise<MutationReply> {
  const url = `${api}/${encodeURIComponent(collection)}/${encodeURIComponent(documentId)}/mutate/${name}`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json', 'x-eventsync-mutation-id': String(mid) },
    ...(args === undefined ? {} : { body: JSON.stringify(args) }),
  });
  const text = await res.text();
  let body: { error?: { code?: unknown; message?: unknown; reason?: unknown } } & Partial<MutationAnswer> =
    {};
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: a proxy's page
  }
  if (res.ok) return { ...body, type: 'mutated', mid } as MutationReply;
  const { code, message, reason } = body.error ?? {};
  if (!EventSyncError.is(body.error))
    throw new EventSyncClientError('internal', `POST ${url}: HTTP ${res.status}`);
  return {
    type: 'mutation_error',
    mid,
    code: code as MutationError['code'],
    message: String(message ?? ''),
    ...(typeof reason === 'string' ? { reason } : {}),
  };
}
