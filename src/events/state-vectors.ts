/**
 * What each client has acknowledged of each document, persisted in the event backend, so a
 * client that comes back (to any server instance, after a restart) resumes where it left off.
 *
 * Acknowledgements arrive often (the SDK sends one per document every 500 ms while events flow,
 * from every subscriber): written one by one they cost the database a statement or more each,
 * which grows with the number of subscribers. So `record` and `register` only note them here, in
 * this instance's memory (the newest position per client and document), and `flush` writes them
 * all in one step (`EventBackend.putStateVectors`: one statement on SQL) at most every `flushMs`,
 * and on `close`. Reads (`get`, `isRegistered`) see what this instance noted and has not written
 * yet. What is lost when the process dies before a flush: at most `flushMs` of acknowledgements,
 * so a client resuming from its stored position is sent again some events it already has.
 *
 * A client id belongs to the principal that first used it (`claim`): that is written at once,
 * and known here from then on, so a principal's later uses cost nothing.
 */

import { ClosedError } from '../core/errors.js';
import type { Acknowledgement, EventBackend } from '../core/event-backend.js';
import type { StateVector, VectorClock } from '../core/events.js';
import { assertClientId } from '../core/ids.js';
import { assertDocumentRef, assertSeq, assertVectorClock } from './assert.js';

export interface StateVectorOptions {
  /** Write noted acknowledgements at most this often, in ms. Default 1,000; 0 writes each at once (one step each). */
  flushMs?: number;
  /** Told when a write failed; its acknowledgements stay noted and go with the next one. */
  onFlushError?: (error: unknown) => void;
}

/** Clients this instance knows are registered (so `isRegistered` needs no statement): at most this many. */
const MAX_KNOWN_CLIENTS = 100_000;

const keyOf = (clientId: string, collection: string, documentId: string) =>
  `${clientId}\u0000${collection}\u0000${documentId}`;

export class StateVectorManager {
  readonly #flushMs: number;
  readonly #onFlushError: (error: unknown) => void;
  /** Acknowledgements noted and not written yet: the newest per client and document. */
  #pending = new Map<string, Acknowledgement>();
  /** Registrations noted and not written yet. */
  #pendingClients = new Set<string>();
  /**
   * Clients known to be registered (noted here, or found in the backend), oldest first, with
   * their owner when known: an owner never changes while the client stays registered.
   */
  readonly #known = new Map<string, string | undefined>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(
    readonly backend: EventBackend,
    options: StateVectorOptions = {},
  ) {
    this.#flushMs = options.flushMs ?? 1000;
    assertSeq(this.#flushMs, 'flushMs');
    this.#onFlushError = options.onFlushError ?? (() => {});
  }

  /**
   * What the client acknowledged of the document: the stored state vector, or the one noted
   * here when it is further (and not past the document's head: such a one is never written).
   */
  async get(clientId: string, collection: string, documentId: string): Promise<StateVector | undefined> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    const stored = await this.backend.getStateVector(clientId, collection, documentId);
    const noted = this.#pending.get(keyOf(clientId, collection, documentId));
    if (!noted || (stored && stored.lastSeq >= noted.lastSeq)) return stored;
    const head = await this.backend.head(collection, documentId);
    if (!head || noted.lastSeq > head.lastSeq) return stored;
    const vectorClock =
      noted.vectorClock ?? (noted.lastSeq === head.lastSeq ? head.vectorClock : await this.#clockAt(noted));
    return { ...noted, vectorClock };
  }

  /**
   * Records that the client has the document at `lastSeq` (with `vectorClock`, the document's
   * clock there), at once, one step per call. Never moves backwards: acknowledgements can arrive
   * out of order, and an older one would only make the client be sent events it already has.
   * Returns the state vector now stored. The backend decides in one step, so acknowledgements
   * racing each other (two server instances, say) never leave the older one.
   */
  async update(
    clientId: string,
    collection: string,
    documentId: string,
    lastSeq: number,
    vectorClock: VectorClock,
  ): Promise<StateVector> {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    assertSeq(lastSeq, 'lastSeq');
    assertVectorClock(vectorClock);
    return this.backend.putStateVector({
      clientId,
      collection,
      documentId,
      vectorClock: { ...vectorClock },
      lastSeq,
      updatedAt: Date.now(),
    });
  }

  /**
   * Notes that the client has the document at `lastSeq`, to be written with the next flush (the
   * newest noted per client and document; never backwards, there either). Without
   * `vectorClock`, the clock of the event at `lastSeq` is looked up when written. One past the
   * document's head is not checked here (that would take a statement): reads ignore it and the
   * write drops it.
   */
  record(
    clientId: string,
    collection: string,
    documentId: string,
    lastSeq: number,
    vectorClock?: VectorClock,
  ): void {
    assertClientId(clientId);
    assertDocumentRef(collection, documentId);
    assertSeq(lastSeq, 'lastSeq');
    if (vectorClock !== undefined) assertVectorClock(vectorClock);
    const key = keyOf(clientId, collection, documentId);
    const noted = this.#pending.get(key);
    if (noted && noted.lastSeq >= lastSeq) return;
    const ack: Acknowledgement = { clientId, collection, documentId, lastSeq, updatedAt: Date.now() };
    if (vectorClock !== undefined) ack.vectorClock = { ...vectorClock };
    this.#pending.set(key, ack);
    this.#schedule();
  }

  /** Notes a registration (idempotent), written with the next flush; `isRegistered` sees it at once. */
  register(clientId: string): void {
    assertClientId(clientId);
    if (this.#known.has(clientId)) return;
    this.#remember(clientId, undefined);
    this.#pendingClients.add(clientId);
    this.#schedule();
  }

  async isRegistered(clientId: string): Promise<boolean> {
    assertClientId(clientId);
    if (this.#known.has(clientId)) return true;
    const registered = await this.backend.isRegistered(clientId);
    if (registered) this.#remember(clientId, undefined);
    return registered;
  }

  /**
   * Whether `principal` may use `clientId`: it owns it, or nobody did and now it does (see
   * `EventBackend.claimClient`). One statement the first time this instance sees the pair,
   * none after.
   */
  async claim(clientId: string, principal: string): Promise<boolean> {
    assertClientId(clientId);
    const known = this.#known.get(clientId);
    if (known !== undefined) return known === principal;
    const owner = await this.backend.claimClient(clientId, principal);
    this.#remember(clientId, owner);
    return owner === principal;
  }

  /** Forgets everything the client acknowledged (and the client itself: see `EventBackend.unregisterClient`). */
  async forget(clientId: string): Promise<void> {
    assertClientId(clientId);
    // A write in flight may carry the client: let it land first, so the delete comes after it.
    await this.#flushing;
    this.#known.delete(clientId);
    this.#pendingClients.delete(clientId);
    for (const [key, ack] of this.#pending) if (ack.clientId === clientId) this.#pending.delete(key);
    return this.backend.unregisterClient(clientId);
  }

  /** Writes what is noted now, in one step; resolves when written (or failed: `onFlushError`). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const previous = this.#flushing ?? Promise.resolve();
    const run = previous.then(() => this.#write());
    this.#flushing = run;
    void run.finally(() => {
      if (this.#flushing === run) this.#flushing = undefined;
    });
    return run;
  }

  /** Writes what is noted and stops writing on a timer (later notes are written by `flush` only). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  #schedule(): void {
    if (this.#flushMs === 0) {
      void this.flush();
      return;
    }
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(() => void this.flush(), this.#flushMs);
    // Noted acknowledgements don't keep a process alive: `close` writes them on a clean exit.
    this.#timer.unref?.();
  }

  async #write(): Promise<void> {
    if (this.#pending.size === 0 && this.#pendingClients.size === 0) return;
    const acks = [...this.#pending.values()];
    const clients = [...this.#pendingClients];
    this.#pending = new Map();
    this.#pendingClients = new Set();
    try {
      await this.backend.putStateVectors(acks, clients);
    } catch (error) {
      this.#onFlushError(error);
      // A closed database takes nothing any more; anything else is tried again with the next write.
      if (ClosedError.is(error)) return;
      for (const ack of acks) {
        const key = keyOf(ack.clientId, ack.collection, ack.documentId);
        const newer = this.#pending.get(key);
        if (!newer || newer.lastSeq < ack.lastSeq) this.#pending.set(key, ack);
      }
      for (const clientId of clients) this.#pendingClients.add(clientId);
      this.#schedule();
    }
  }

  #remember(clientId: string, owner: string | undefined): void {
    owner ??= this.#known.get(clientId);
    this.#known.delete(clientId);
    this.#known.set(clientId, owner);
    if (this.#known.size > MAX_KNOWN_CLIENTS) this.#known.delete(this.#known.keys().next().value!);
  }

  /** The document's clock at `seq` for a read (the write looks it up itself). */
  async #clockAt(ack: Acknowledgement): Promise<VectorClock> {
    const range = { afterSeq: ack.lastSeq - 1, toSeq: ack.lastSeq };
    const [event] = await this.backend.list(ack.collection, ack.documentId, range);
    return event?.seq === ack.lastSeq ? event.vectorClock : {};
  }
}
