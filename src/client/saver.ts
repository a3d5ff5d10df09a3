/**
 * When a client saves: replicas that changed are collected and saved together, at most every
 * `persistDelayMs`, one save after another, through the client's `ReplicaStore`
 * (persistence.ts). Also loads what was stored, once.
 */
import { documentKey, parseDocumentKey } from '../protocol/wire.js';
import { EventSyncClientError } from './errors.js';
import type { ReplicaStore, StoredMeta, StoredReplica, StoredState } from './persistence.js';
import type { Replica } from './replica.js';

/** What is saved of a document handle: its replica as it is when saving (a handle may change replicas). */
interface Saved {
  readonly replica: Replica;
}

export class ReplicaSaver {
  /** What was loaded or saved last, by document key: a handle made later starts from it. */
  readonly stored = new Map<string, StoredReplica>();
  readonly #store: ReplicaStore | undefined;
  readonly #delayMs: number;
  readonly #report: (error: EventSyncClientError) => void;
  /** Document keys to save (`null`: to remove). */
  readonly #dirty = new Map<string, Saved | null>();
  /** The client id to save with the next batch. */
  #clientId: string | undefined;
  #loaded: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #saving: Promise<void> = Promise.resolve();
  readonly #meta: () => StoredMeta;
  /** The meta changed since the last save; it is saved only once the stored one was loaded (not to lose its counter). */
  #metaDirty = false;
  #metaLoaded = false;

  /** Without a store nothing is kept; `clientId` is saved with the first batch; `meta` says what to save of it. */
  constructor(
    store: ReplicaStore | undefined,
    options: {
      delayMs: number;
      clientId: string;
      meta: () => StoredMeta;
      report(error: EventSyncClientError): void;
    },
  ) {
    this.#store = store;
    this.#delayMs = options.delayMs;
    this.#report = options.report;
    this.#meta = options.meta;
    this.#clientId = store && options.clientId;
  }

  /** Loads what the store holds, once; `onLoaded` sees it after `stored` has it. */
  load(onLoaded: (state: StoredState) => void): Promise<void> {
    const store = this.#store;
    if (!store) return Promise.resolve();
    this.#loaded ??= store.load().then(
      (state) => {
        for (const r of state.replicas) this.stored.set(documentKey(r.collection, r.documentId), r);
        onLoaded(state);
        this.#metaLoaded = true;
        if (this.#metaDirty) this.#schedule();
      },
      (error: unknown) => {
        this.#report(
          new EventSyncClientError('internal', `loading persisted replicas failed: ${String(error)}`),
        );
      },
    );
    return this.#loaded;
  }

  /** Saves `clientId` with the next batch (`undefined`: the stored one is right). */
  saveClientId(clientId: string | undefined): void {
    this.#clientId = clientId;
    if (clientId !== undefined) this.#schedule();
  }

  /** The mutation queue or a collection handle's documents changed: save the meta with the next batch. */
  metaChanged(): void {
    if (!this.#store) return;
    this.#metaDirty = true;
    if (this.#metaLoaded) this.#schedule();
  }

  /** The replica of a document handle changed: save it with the next batch. */
  changed(key: string, saved: Saved): void {
    if (!this.#store) return;
    this.#dirty.set(key, saved);
    this.#schedule();
  }

  /** A document handle closed: forget its replica, in the store too. */
  removed(key: string): void {
    this.stored.delete(key);
    if (!this.#store) return;
    this.#dirty.set(key, null);
    this.#schedule();
  }

  /** Saves what is pending now; resolves once every save so far is done. */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const store = this.#store;
    if (!store) return Promise.resolve();
    const meta = this.#metaDirty && this.#metaLoaded ? this.#meta() : undefined;
    if (this.#dirty.size === 0 && this.#clientId === undefined && !meta) return this.#saving;
    this.#metaDirty &&= !meta;
    const put: StoredReplica[] = [];
    const remove: { collection: string; documentId: string }[] = [];
    for (const [key, saved] of this.#dirty) {
      if (saved === null) {
        remove.push(parseDocumentKey(key)!);
        continue;
      }
      const r = saved.replica;
      if (!r.based || r.broken) continue;
      const stored: StoredReplica = {
        collection: r.collection,
        documentId: r.documentId,
        seq: r.seq,
        version: r.version,
        state: r.state,
        vectorClock: r.vectorClock,
      };
      put.push(stored);
      this.stored.set(key, stored);
    }
    this.#dirty.clear();
    const clientId = this.#clientId;
    this.#clientId = undefined;
    this.#saving = this.#saving
      .then(() =>
        store.save({
          ...(clientId === undefined ? {} : { clientId }),
          put,
          remove,
          ...(meta ? { meta } : {}),
        }),
      )
      .catch((error: unknown) => {
        this.#report(new EventSyncClientError('internal', `saving replicas failed: ${String(error)}`));
      });
    return this.#saving;
  }

  #schedule(): void {
    if (!this.#store || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.flush();
    }, this.#delayMs);
  }
}
