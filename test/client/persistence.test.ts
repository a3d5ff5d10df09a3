/** The replica stores on their own: memory, localStorage (a Web Storage double), IndexedDB (a small in-memory double), file. */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fileStore,
  type IdbFactoryLike,
  indexedDbStore,
  memoryStore,
  type ReplicaStore,
  type StoredMeta,
  type StoredReplica,
} from '../../src/client.js';

const replica = (documentId: string, seq: number): StoredReplica => ({
  collection: 'games',
  documentId,
  seq,
  version: seq,
  state:
    seq === 0 ? null : { _id: documentId, version: seq, gold: seq * 10, nested: { list: [1, null, 'x'] } },
  vectorClock: { writer: seq },
});

/** The few IndexedDB calls the store makes, in memory, asynchronous like the real thing. */
function fakeIndexedDb(): IdbFactoryLike & { opened: number } {
  const databases = new Map<string, Map<string, Map<string, unknown>>>();
  const later = (fn: () => void) => setTimeout(fn, 0);
  type Handler = ((event: unknown) => void) | null;
  const request = <T>(run: () => T) => {
    const req = {
      result: undefined as T | undefined,
      error: null as unknown,
      onsuccess: null as Handler,
      onerror: null as Handler,
    };
    later(() => {
      try {
        req.result = run();
        req.onsuccess?.({});
      } catch (error) {
        req.error = error;
        req.onerror?.({});
      }
    });
    return req;
  };
  const factory = {
    opened: 0,
    open(name: string) {
      factory.opened++;
      const stores = databases.get(name) ?? new Map<string, Map<string, unknown>>();
      const fresh = !databases.has(name);
      databases.set(name, stores);
      const db = {
        objectStoreNames: { contains: (n: string) => stores.has(n) },
        createObjectStore: (n: string) => stores.set(n, new Map()),
        close() {},
        transaction(names: string[]) {
          let pending = 0;
          const tx = {
            error: null,
            oncomplete: null as Handler,
            onerror: null as Handler,
            onabort: null as Handler,
          };
          const settle = () => later(() => pending === 0 && tx.oncomplete?.({}));
          const op = <T>(run: () => T) => {
            pending++;
            const r = request(() => {
              pending--;
              const value = run();
              settle();
              return value;
            });
            return r;
          };
          settle();
          return {
            ...tx,
            get oncomplete() {
              return tx.oncomplete;
            },
            set oncomplete(h: Handler) {
              tx.oncomplete = h;
            },
            objectStore(n: string) {
              if (!names.includes(n)) throw new Error(`store ${n} is not in the transaction`);
              const store = stores.get(n)!;
              return {
                put: (value: unknown, key: string) => op(() => void store.set(key, structuredClone(value))),
                delete: (key: string) => op(() => void store.delete(key)),
                get: (key: string) => op(() => structuredClone(store.get(key))),
                getAll: () => op(() => [...store.values()].map((v) => structuredClone(v))),
              };
            },
          };
        },
      };
      const req = {
        result: db,
        error: null,
        onsuccess: null as Handler,
        onerror: null as Handler,
        onupgradeneeded: null as Handler,
      };
      later(() => {
        if (fresh) req.onupgradeneeded?.({}); // before success, as IndexedDB does
        req.onsuccess?.({});
      });
      return req;
    },
  };
  return factory as unknown as IdbFactoryLike & { opened: number };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eventsync-stores-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function roundTrip(open: () => ReplicaStore): Promise<void> {
  const store = open();
  expect(await store.load()).toEqual({ replicas: [] });
  const meta = (lastMid: number): StoredMeta => ({
    lastMid,
    mutations: [{ mid: lastMid, collection: 'games', documentId: 'a', name: 'addGold', args: { amount: 5 } }],
    collections: { 'games?': ['a', 'c'] },
  });
  await store.save({ clientId: 'me', put: [replica('a', 1), replica('b', 2)], remove: [], meta: meta(1) });
  await store.save({
    put: [replica('a', 3), replica('c', 0)],
    remove: [{ collection: 'games', documentId: 'b' }],
    meta: meta(2),
  });
  await store.save({ put: [], remove: [] }); // no meta: the stored one stays
  const again = open(); // a new instance over the same storage: what a reload sees
  const loaded = await again.load();
  expect(loaded.clientId).toBe('me');
  expect(loaded.meta).toEqual(meta(2));
  expect(loaded.replicas.sort((x, y) => x.documentId.localeCompare(y.documentId))).toEqual([
    replica('a', 3),
    replica('c', 0),
  ]);
}

describe('replica stores', () => {
  it('memoryStore', async () => {
    const store = memoryStore();
    await roundTrip(() => store);
  });

  it('indexedDbStore', async () => {
    const idb = fakeIndexedDb();
    await roundTrip(() => indexedDbStore({ indexedDB: idb, name: 'test' }));
  });

  it('fileStore: round trip, a file written whole, damaged entries skipped', async () => {
    const path = join(dir, 'nested', 'replicas.json');
    await roundTrip(() => fileStore(path));
    const written = JSON.parse(await readFile(path, 'utf8'));
    expect(written.replicas).toHaveLength(2);
    await writeFile(path, JSON.stringify({ clientId: 'me', replicas: [replica('a', 1), { documentId: 5 }] }));
    expect((await fileStore(path).load()).replicas).toEqual([replica('a', 1)]);
  });

  it('fileStore: a failed write does not block the next one', async () => {
    const path = join(dir, 'missing-parent-is-a-file', 'x.json');
    await writeFile(join(dir, 'missing-parent-is-a-file'), 'not a directory');
    const store = fileStore(path);
    await expect(store.save({ put: [replica('a', 1)], remove: [] })).rejects.toThrow();
    const ok = fileStore(join(dir, 'ok.json'));
    await ok.save({ put: [replica('a', 1)], remove: [] });
    await ok.save({ put: [replica('b', 1)], remove: [] });
    expect((await fileStore(join(dir, 'ok.json')).load()).replicas).toHaveLength(2);
  });
});
