/**
 * The in-process backend: unit tests, ephemeral use, and the reference model for property tests.
 * Documents are cloned in and out, so callers can never change stored state by accident.
 * Several storages opened on one `MemoryDatabase` see one another's writes and changes, like
 * several server instances on one PostgreSQL.
 */
import type {
  CollectionBackend,
  CommittedChange,
  Database,
  SectionWrite,
  StoredDocument,
} from '../../storage/backend.js';
import type { Diff, Filter, JsonObject } from '../../storage/types.js';

type Rows = Map<string, StoredDocument>;
type Listener = (change: CommittedChange) => void;

const clone = <V>(value: V): V => structuredClone(value);

/** A one-slot async lock: transactions hold it for their whole run; single writes wait for it. */
class Lock {
  #tail: Promise<void> = Promise.resolve();
  #held = false;

  get held(): boolean {
    return this.#held;
  }

  async acquire(): Promise<() => void> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = () => {
        this.#held = false;
        resolve();
      };
    });
    await previous;
    this.#held = true;
    return release;
  }

  /** Runs a synchronous write as soon as no transaction holds the lock, with no await in between. */
  async whenFree<R>(write: () => R): Promise<R> {
    while (this.#held) await this.#tail;
    return write();
  }
}

interface CollectionState {
  rows: Rows;
  lock: Lock;
  listeners: Set<Listener>;
}

export class MemoryDatabase implements Database {
  readonly kind = 'memory' as const;
  readonly #collections = new Map<string, CollectionState>();

  async collection(name: string): Promise<CollectionBackend> {
    let state = this.#collections.get(name);
    if (!state) {
      state = { rows: new Map(), lock: new Lock(), listeners: new Set() };
      this.#collections.set(name, state);
    }
    return new MemoryCollection(name, state);
  }

  async close(): Promise<void> {}
}

export function memoryDatabase(): MemoryDatabase {
  return new MemoryDatabase();
}

/** Applies one write to `rows` and reports the change; shared by plain writes and transactions. */
class Writer {
  constructor(
    readonly collection: string,
    readonly read: (id: string) => StoredDocument | undefined,
    readonly write: (id: string, doc: StoredDocument | undefined) => void,
    readonly announce: (change: CommittedChange) => void,
  ) {}

  insert(doc: StoredDocument): boolean {
    if (this.read(doc.id)) return false;
    this.write(doc.id, clone(doc));
    this.announce({
      collection: this.collection,
      id: doc.id,
      operation: 'create',
      version: doc.version,
      data: clone(doc.data),
    });
    return true;
  }

  replace(doc: StoredDocument, expectedVersion: number, diff: Diff): boolean {
    if (this.read(doc.id)?.version !== expectedVersion) return false;
    this.write(doc.id, clone(doc));
    this.announce({
      collection: this.collection,
      id: doc.id,
      operation: 'update',
      version: doc.version,
      data: clone(doc.data),
      diff,
    });
    return true;
  }

  replaceSection(w: SectionWrite): StoredDocument | undefined {
    const current = this.read(w.id);
    if (!current) return undefined;
    let parent: JsonObject = current.data;
    for (const key of w.path.slice(0, -1)) parent = parent[key] as JsonObject;
    const section = parent?.[w.path[w.path.length - 1]!] as JsonObject | undefined;
    const found = section === undefined ? undefined : Number(section[w.versionField] ?? 0);
    if (found !== w.expectedSectionVersion) return undefined;
    const version = current.version + 1;
    const data = clone(current.data);
    let node = data;
    for (const key of w.path.slice(0, -1)) node = node[key] as JsonObject;
    node[w.path[w.path.length - 1]!] = clone(w.section);
    data[w.versionField] = version;
    const next = { id: w.id, version, data };
    this.write(w.id, next);
    this.announce({
      collection: this.collection,
      id: w.id,
      operation: 'update',
      version,
      data: clone(data),
      diff: w.diff(version),
    });
    return clone(next);
  }

  delete(id: string): StoredDocument | undefined {
    const current = this.read(id);
    if (!current) return undefined;
    this.write(id, undefined);
    this.announce({
      collection: this.collection,
      id,
      operation: 'delete',
      version: current.version,
      data: clone(current.data),
    });
    return clone(current);
  }
}

class MemoryCollection implements CollectionBackend {
  readonly #writer: Writer;

  constructor(
    readonly collection: string,
    private readonly state: CollectionState,
  ) {
    this.#writer = new Writer(
      collection,
      (id) => state.rows.get(id),
      (id, doc) => (doc ? state.rows.set(id, doc) : state.rows.delete(id)),
      (change) => {
        for (const listener of state.listeners) listener(change);
      },
    );
  }

  async get(id: string): Promise<StoredDocument | undefined> {
    const row = this.state.rows.get(id);
    return row && clone(row);
  }

  async find(_filter: Filter): Promise<JsonObject[]> {
    return [...this.state.rows.values()].map((row) => clone(row.data));
  }

  async insert(doc: StoredDocument): Promise<boolean> {
    return this.state.lock.whenFree(() => this.#writer.insert(doc));
  }

  async replace(doc: StoredDocument, expectedVersion: number, diff: Diff): Promise<boolean> {
    return this.state.lock.whenFree(() => this.#writer.replace(doc, expectedVersion, diff));
  }

  async replaceSection(write: SectionWrite): Promise<StoredDocument | undefined> {
    return this.state.lock.whenFree(() => this.#writer.replaceSection(write));
  }

  async delete(id: string): Promise<StoredDocument | undefined> {
    return this.state.lock.whenFree(() => this.#writer.delete(id));
  }

  async transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    const release = await this.state.lock.acquire();
    const tx = new MemoryTransaction(this.collection, this.state.rows);
    try {
      const result = await fn(tx);
      tx.commit(this.state);
      return result;
    } finally {
      tx.done = true;
      release();
    }
  }

  async subscribe(listener: Listener): Promise<() => Promise<void>> {
    this.state.listeners.add(listener);
    return async () => {
      this.state.listeners.delete(listener);
    };
  }
}

/** Writes go to an overlay that becomes visible, with its changes announced, only on commit. */
class MemoryTransaction implements CollectionBackend {
  readonly #overlay = new Map<string, StoredDocument | undefined>();
  readonly #changes: CommittedChange[] = [];
  readonly #writer: Writer;
  done = false;

  constructor(
    readonly collection: string,
    private readonly rows: Rows,
  ) {
    this.#writer = new Writer(
      collection,
      (id) => (this.#overlay.has(id) ? this.#overlay.get(id) : rows.get(id)),
      (id, doc) => this.#overlay.set(id, doc),
      (change) => this.#changes.push(change),
    );
  }

  #active(): void {
    if (this.done)
      throw new Error(
        'this transaction has already ended; use the tx passed to withTransaction only inside it',
      );
  }

  async get(id: string): Promise<StoredDocument | undefined> {
    this.#active();
    const row = this.#writer.read(id);
    return row && clone(row);
  }

  async find(_filter: Filter): Promise<JsonObject[]> {
    this.#active();
    const ids = new Set([...this.rows.keys(), ...this.#overlay.keys()]);
    return [...ids].flatMap((id) => {
      const row = this.#writer.read(id);
      return row ? [clone(row.data)] : [];
    });
  }

  async insert(doc: StoredDocument): Promise<boolean> {
    this.#active();
    return this.#writer.insert(doc);
  }

  async replace(doc: StoredDocument, expectedVersion: number, diff: Diff): Promise<boolean> {
    this.#active();
    return this.#writer.replace(doc, expectedVersion, diff);
  }

  async replaceSection(write: SectionWrite): Promise<StoredDocument | undefined> {
    this.#active();
    return this.#writer.replaceSection(write);
  }

  async delete(id: string): Promise<StoredDocument | undefined> {
    this.#active();
    return this.#writer.delete(id);
  }

  async transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    return fn(this);
  }

  async subscribe(_listener: Listener): Promise<() => Promise<void>> {
    throw new Error('watch() the storage itself, not the transaction');
  }

  commit(state: CollectionState): void {
    for (const [id, doc] of this.#overlay) {
      if (doc) state.rows.set(id, doc);
      else state.rows.delete(id);
    }
    for (const change of this.#changes) for (const listener of state.listeners) listener(change);
  }
}
