/**
 * Where a client keeps its replicas and its client id between runs, so that a reload resumes
 * each document after the last seq it applied instead of starting over.
 *
 * A store is two calls: `load()` once at start, `save(changes)` with batches of changes (the
 * client coalesces them). Four come with the SDK: memory, localStorage and IndexedDB (browsers),
 * a JSON file (Node). The module is browser-safe: the file store loads `node:fs` only when used.
 */
import type { Snapshot } from '../core/events.js';
import type { JsonValue } from '../core/json.js';
import { isPlainObject } from '../core/values.js';
import { documentKey } from '../protocol/wire.js';

/**
 * One replica as persisted: a snapshot of the document at `seq` (`state` null when it does not
 * exist, yet or any more), without the server's `createdAt`.
 */
export type StoredReplica = Omit<Snapshot, 'createdAt'>;

/** A mutation the server has not confirmed yet, as queued and persisted. */
export interface StoredMutation {
  mid: number;
  collection: string;
  documentId: string;
  name: string;
  args?: JsonValue;
}

/** What a client keeps besides replicas: its mutation counter and queue, and each collection handle's documents. */
export interface StoredMeta {
  /** The last mutation id assigned: never used again. */
  lastMid: number;
  mutations: StoredMutation[];
  /** By collection handle (`collection?filter`): the ids of its documents. */
  collections: Record<string, string[]>;
}

export interface StoredState {
  clientId?: string;
  replicas: StoredReplica[];
  meta?: StoredMeta;
}

export interface StoreChanges {
  clientId?: string;
  put: StoredReplica[];
  remove: { collection: string; documentId: string }[];
  /** Replaces the stored one whole. */
  meta?: StoredMeta;
}

export interface ReplicaStore {
  load(): Promise<StoredState>;
  save(changes: StoreChanges): Promise<void>;
}

const keyOf = (r: { collection: string; documentId: string }) => documentKey(r.collection, r.documentId);

/** Whether each of `keys` of `o` is a string. */
const strings = (o: Record<string, unknown>, ...keys: string[]) =>
  keys.every((k) => typeof o[k] === 'string');
const isCount = (n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0;

function isStoredReplica(value: unknown): value is StoredReplica {
  return (
    isPlainObject(value) &&
    strings(value, 'collection', 'documentId') &&
    isCount(value.seq) &&
    typeof value.version === 'number' &&
    (value.state === null || isPlainObject(value.state)) &&
    isPlainObject(value.vectorClock)
  );
}

function isStoredMeta(value: unknown): value is StoredMeta {
  return (
    isPlainObject(value) &&
    isCount(value.lastMid) &&
    Array.isArray(value.mutations) &&
    value.mutations.every(
      (u) => isPlainObject(u) && isCount(u.mid) && strings(u, 'collection', 'documentId', 'name'),
    ) &&
    isPlainObject(value.collections) &&
    Object.values(value.collections).every(
      (ids) => Array.isArray(ids) && ids.every((id) => typeof id === 'string'),
    )
  );
}

/** `{ meta }` when `value` is a stored meta, else nothing (a damaged one is dropped). */
const metaOf = (value: unknown): { meta?: StoredMeta } => (isStoredMeta(value) ? { meta: value } : {});

/** Keeps everything in memory: survives a new client instance in the same process, not a reload. */
export function memoryStore(): ReplicaStore & { readonly data: StoredState } {
  let clientId: string | undefined;
  let meta: StoredMeta | undefined;
  const replicas = new Map<string, StoredReplica>();
  const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
  return {
    get data() {
      return { clientId, replicas: copy([...replicas.values()]), meta: meta && copy(meta) } as StoredState;
    },
    async load() {
      return this.data;
    },
    async save(changes) {
      if (changes.clientId !== undefined) clientId = changes.clientId;
      if (changes.meta !== undefined) meta = copy(changes.meta);
      for (const r of changes.remove) replicas.delete(keyOf(r));
      for (const r of changes.put) replicas.set(keyOf(r), copy(r));
    },
  };
}

/** The part of the Web Storage API the store uses (`localStorage`, `sessionStorage`, a test double). */
export interface WebStorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/**
 * One localStorage item per replica (`<prefix>:doc:<collection>/<id>`) and one for the client id.
 * localStorage holds a few MB per origin: use IndexedDB for large documents.
 */
export function localStorageStore(options: { prefix?: string; storage?: WebStorageLike } = {}): ReplicaStore {
  const prefix = options.prefix ?? 'eventsync';
  const storage = (): WebStorageLike => {
    const s = options.storage ?? (globalThis as { localStorage?: WebStorageLike }).localStorage;
    if (!s) throw new Error('localStorageStore: no localStorage here; pass { storage }');
    return s;
  };
  const docPrefix = `${prefix}:doc:`;
  return {
    async load() {
      const s = storage();
      const replicas: StoredReplica[] = [];
      for (let i = 0; i < s.length; i++) {
        const key = s.key(i);
        if (!key?.startsWith(docPrefix)) continue;
        try {
          const value: unknown = JSON.parse(s.getItem(key) ?? 'null');
          if (isStoredReplica(value)) replicas.push(value);
        } catch {
          // a damaged item is skipped: that document starts over
        }
      }
      const clientId = s.getItem(`${prefix}:clientId`) ?? undefined;
      let meta: unknown;
      try {
        meta = JSON.parse(s.getItem(`${prefix}:meta`) ?? 'null');
      } catch {
        // damaged: the queue starts empty
      }
      return { clientId, replicas, ...metaOf(meta) } as StoredState;
    },
    async save(changes) {
      const s = storage();
      if (changes.clientId !== undefined) s.setItem(`${prefix}:clientId`, changes.clientId);
      if (changes.meta !== undefined) s.setItem(`${prefix}:meta`, JSON.stringify(changes.meta));
      for (const r of changes.remove) s.removeItem(docPrefix + keyOf(r));
      for (const r of changes.put) s.setItem(docPrefix + keyOf(r), JSON.stringify(r));
    },
  };
}

// ---- IndexedDB (the few calls used, typed here: the client compiles without the DOM library) ----

interface IdbRequest<T = unknown> {
  readonly result: T;
  readonly error: unknown;
  onsuccess: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: ((event: unknown) => void) | null;
}
export interface IdbFactoryLike {
  open(name: string, version?: number): IdbOpenRequest;
}
interface IdbDatabase {
  readonly objectStoreNames: { contains(name: string): boolean };
  createObjectStore(name: string): unknown;
  transaction(stores: string[], mode: 'readonly' | 'readwrite'): IdbTransaction;
  close(): void;
}
interface IdbTransaction {
  objectStore(name: string): IdbObjectStore;
  readonly error: unknown;
  oncomplete: ((event: unknown) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onabort: ((event: unknown) => void) | null;
}
interface IdbObjectStore {
  put(value: unknown, key: string): IdbRequest;
  delete(key: string): IdbRequest;
  get(key: string): IdbRequest;
  getAll(): IdbRequest<unknown[]>;
}

const REPLICAS = 'replicas';
const META = 'meta';

/** One IndexedDB database (default name `eventsync`): a `replicas` object store and a `meta` one. */
export function indexedDbStore(options: { name?: string; indexedDB?: IdbFactoryLike } = {}): ReplicaStore {
  const name = options.name ?? 'eventsync';
  let db: Promise<IdbDatabase> | undefined;
  const open = (): Promise<IdbDatabase> => {
    db ??= new Promise<IdbDatabase>((resolve, reject) => {
      const factory = options.indexedDB ?? (globalThis as { indexedDB?: IdbFactoryLike }).indexedDB;
      if (!factory) throw new Error('indexedDbStore: no indexedDB here; pass { indexedDB }');
      const request = factory.open(name, 1);
      request.onupgradeneeded = () => {
        const d = request.result;
        if (!d.objectStoreNames.contains(REPLICAS)) d.createObjectStore(REPLICAS);
        if (!d.objectStoreNames.contains(META)) d.createObjectStore(META);
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return db;
  };
  const done = (tx: IdbTransaction) =>
    new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('indexedDbStore: transaction aborted'));
    });
  const result = <T>(request: IdbRequest<T>) =>
    new Promise<T>((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  return {
    async load() {
      const tx = (await open()).transaction([REPLICAS, META], 'readonly');
      const [all, clientId, meta] = await Promise.all([
        result(tx.objectStore(REPLICAS).getAll()),
        result(tx.objectStore(META).get('clientId')),
        result(tx.objectStore(META).get('meta')),
        done(tx),
      ]);
      return {
        ...(typeof clientId === 'string' ? { clientId } : {}),
        replicas: all.filter(isStoredReplica),
        ...metaOf(meta),
      };
    },
    async save(changes) {
      const tx = (await open()).transaction([REPLICAS, META], 'readwrite');
      const completed = done(tx);
      const replicas = tx.objectStore(REPLICAS);
      if (changes.clientId !== undefined) tx.objectStore(META).put(changes.clientId, 'clientId');
      if (changes.meta !== undefined) tx.objectStore(META).put(changes.meta, 'meta');
      for (const r of changes.remove) replicas.delete(keyOf(r));
      for (const r of changes.put) replicas.put(r, keyOf(r));
      await completed;
    },
  };
}

// ---- a JSON file (Node) ----------------------------------------------------------------------

interface NodeFs {
  readFile(path: string, encoding: 'utf8'): Promise<string>;
  writeFile(path: string, data: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  mkdir(path: string, options: { recursive: true }): Promise<unknown>;
}

/**
 * One JSON file holding every replica and the client id (Node). Each save rewrites it whole
 * through a temporary file and a rename, so a crash leaves the old file or the new one.
 * `node:fs` is imported on first use, so browser bundles that never call this carry no Node import.
 */
export function fileStore(path: string): ReplicaStore {
  // A computed specifier: bundlers leave it alone, Node resolves it at run time.
  const fsModule = ['node', 'fs/promises'].join(':');
  let fs: Promise<NodeFs> | undefined;
  const load = () => {
    fs ??= import(/* @vite-ignore */ fsModule) as Promise<NodeFs>;
    return fs;
  };
  let current: StoredState | undefined;
  const read = async (): Promise<StoredState> => {
    if (current) return current;
    const f = await load();
    let text: string | undefined;
    try {
      text = await f.readFile(path, 'utf8');
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
    }
    const parsed = text === undefined ? undefined : (JSON.parse(text) as Partial<StoredState>);
    current = {
      ...(typeof parsed?.clientId === 'string' ? { clientId: parsed.clientId } : {}),
      replicas: Array.isArray(parsed?.replicas) ? parsed.replicas.filter(isStoredReplica) : [],
      ...metaOf(parsed?.meta),
    };
    return current;
  };
  let writing: Promise<void> = Promise.resolve();
  return {
    async load() {
      const state = await read();
      return { ...state, replicas: [...state.replicas] };
    },
    save(changes) {
      // One write at a time, each after the previous one settled (a failed write does not block the next).
      writing = writing
        .catch(() => undefined)
        .then(async () => {
          const state = await read();
          const byKey = new Map(state.replicas.map((r) => [keyOf(r), r]));
          for (const r of changes.remove) byKey.delete(keyOf(r));
          for (const r of changes.put) byKey.set(keyOf(r), r);
          const clientId = changes.clientId ?? state.clientId;
          const meta = changes.meta ?? state.meta;
          // Undefined fields stay out of the file (JSON leaves them out).
          current = { clientId, replicas: [...byKey.values()], meta } as StoredState;
          const f = await load();
          const dir = path.replace(/[\\/][^\\/]*$/, '');
          if (dir !== path && dir !== '') await f.mkdir(dir, { recursive: true });
          const tmp = `${path}.${Date.now().toString(36)}.tmp`;
          await f.writeFile(tmp, JSON.stringify(current));
          await f.rename(tmp, path);
        });
      return writing;
    },
  };
}
