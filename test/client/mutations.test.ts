/**
 * Client mutations against the scripted server (fake-server.ts): prediction, rebase, rollback,
 * the queue leaving by event, by answer and by welcome, resend order, persistence across a
 * reload with every store, and the REST path of SSE clients.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  defineMutators,
  type EventSourceLike,
  EventSyncClient,
  fileStore,
  localStorageStore,
  MutationRefused,
  memoryStore,
  type ReplicaStore,
  type SyncEvent,
  type WebStorageLike,
} from '../../src/client.js';
import type { ClientMessage } from '../../src/protocol/messages.js';
import { syncBackends, uniqueCollection } from '../support/databases.js';
import { history, setGold, stateAt } from './events.js';
import { disconnectAll, event, HttpAnswer, setUp, tick } from './fake-server.js';
import { NodeWebSocket, rest, startServer, until } from './support.js';

afterEach(disconnectAll);

interface Game {
  gold: number;
}
const gameMutators = defineMutators<Game>({
  addGold: {
    args: { parse: (v) => v as { amount: number } },
    run(draft, { amount }) {
      draft.gold += amount;
    },
  },
  spend(draft) {
    if (draft.gold < 100) throw new MutationRefused('too_poor', 'not enough gold');
    draft.gold -= 100;
  },
});

type Mutate = Extract<ClientMessage, { type: 'mutate' }>;
const mutates = (sent: ClientMessage[]) => sent.filter((m): m is Mutate => m.type === 'mutate');

/** The event a mutation of ours wrote: `gold` set at `seq`, carrying `mid`. */
const ours = (seq: number, gold: number, mid: number): SyncEvent => ({
  ...setGold(seq, gold),
  clientId: 'tester',
  metadata: { mutation: { name: 'addGold', mid } },
});

/** A client following games/d1 at seq 3 (gold 20), connected, with the game mutators. */
async function following(options: Parameters<typeof setUp>[0] = {}) {
  const t = setUp(options);
  t.client.mutators('games', gameMutators);
  const doc = t.client.document<Game>('games', 'd1');
  await t.client.connect();
  for (const e of history(3)) t.server.last().push(event(e));
  return { ...t, doc, ws: t.server.last() };
}

describe('client mutations (WebSocket, scripted server)', () => {
  it('predicts at once, sends after welcome, and leaves the queue once the replica reaches the answered seq', async () => {
    const { doc, ws } = await following();
    const changes: (number | undefined)[] = [];
    doc.on('change', (state) => changes.push(state?.gold));
    const answer = doc.mutate('addGold', { amount: 5 });
    expect(doc.state?.gold).toBe(25); // same turn
    expect(doc.confirmed?.gold).toBe(20);
    expect(doc.pending).toEqual([
      { mid: 1, collection: 'games', documentId: 'd1', name: 'addGold', args: { amount: 5 } },
    ]);
    expect(changes).toEqual([25]);
    expect(mutates(ws.sent)).toEqual([
      { type: 'mutate', mid: 1, collection: 'games', documentId: 'd1', name: 'addGold', args: { amount: 5 } },
    ]);
    ws.push({ type: 'mutated', mid: 1, seq: 4, version: 4 });
    await expect(answer).resolves.toEqual({ mid: 1, seq: 4, version: 4 });
    expect(doc.pending).toHaveLength(1); // seq 4 not applied yet: still predicted
    ws.push(event(setGold(4, 25)));
    expect(doc.pending).toEqual([]);
    expect(doc.state).toEqual(doc.confirmed);
    expect(doc.state?.gold).toBe(25);
  });

  it('rebases on a server event under a pending mutation; the event carrying its mid removes it', async () => {
    const { doc, ws } = await following();
    void doc.mutate('addGold', { amount: 5 });
    ws.push(event(setGold(4, 100))); // someone else's write lands first
    expect(doc.confirmed?.gold).toBe(100);
    expect(doc.state?.gold).toBe(105);
    ws.push(event(ours(5, 105, 1)));
    expect(doc.pending).toEqual([]);
    expect(doc.state?.gold).toBe(105);
  });

  it('rolls back on mutation_error and rejects with the code and the reason', async () => {
    const { doc, ws } = await following();
    const seen: (number | undefined)[] = [];
    doc.on('change', (state) => seen.push(state?.gold));
    const spend = doc.mutate('addGold', { amount: 500 });
    expect(doc.state?.gold).toBe(520);
    ws.push({ type: 'mutation_error', mid: 1, code: 'mutation_refused', message: 'no', reason: 'too_poor' });
    await expect(spend).rejects.toMatchObject({ code: 'mutation_refused', reason: 'too_poor' });
    expect(doc.state?.gold).toBe(20);
    expect(doc.pending).toEqual([]);
    expect(seen).toEqual([520, 20]);
  });

  it('a mutator that throws while predicting is skipped; a malformed name, id or args are refused at once', async () => {
    const t = await following();
    const { doc, ws } = t;
    void doc.mutate('spend');
    void doc.mutate('addGold', { amount: 1 });
    expect(doc.state?.gold).toBe(21);
    expect(mutates(ws.sent).map((m) => m.mid)).toEqual([1, 2]);
    await expect(doc.mutate('not a name')).rejects.toMatchObject({ code: 'validation' });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await expect(doc.mutate('addGold', cyclic as never)).rejects.toMatchObject({ code: 'validation' });
    const bad = t.client.document('games', '.bad id');
    await expect(bad.mutate('addGold')).rejects.toMatchObject({ code: 'validation' });
    expect(mutates(ws.sent)).toHaveLength(2);
  });

  it('after a drop, resends what is still pending in mid order; welcome.lastMid drops what was applied', async () => {
    const { doc, ws, server } = await following();
    const first = doc.mutate('addGold', { amount: 1 });
    void doc.mutate('addGold', { amount: 2 });
    void doc.mutate('addGold', { amount: 3 });
    ws.push(event(ours(4, 21, 1))); // mid 1 applied, its answer lost with the connection
    ws.drop();
    void doc.mutate('addGold', { amount: 4 }); // offline: queued
    expect(doc.state?.gold).toBe(30);
    server.state.lastMid = 2; // the server applied mid 2 too
    await until(() => server.sockets.length === 2 && mutates(server.last().sent).length > 0, 1000);
    const again = server.last();
    // 1 and 2 are applied (no longer predicted) but go again for their lost answers (duplicates).
    expect(mutates(again.sent).map((m) => m.mid)).toEqual([1, 2, 3, 4]);
    expect(doc.pending.map((m) => m.mid)).toEqual([3, 4]);
    again.push({ type: 'mutated', mid: 1, duplicate: true });
    await expect(first).resolves.toEqual({ mid: 1, duplicate: true });
  });

  it('mutated without seq, or a duplicate, leaves the queue at once; a retryable refusal is sent again', async () => {
    const { doc, ws, errors } = await following();
    const noop = doc.mutate('addGold', { amount: 0 });
    void doc.mutate('addGold', { amount: 1 });
    void doc.mutate('addGold', { amount: 2 });
    ws.push({ type: 'mutated', mid: 1, result: 'nothing to do' });
    await expect(noop).resolves.toEqual({ mid: 1, result: 'nothing to do' });
    ws.push({ type: 'mutated', mid: 2, seq: 9, duplicate: true });
    expect(doc.pending.map((m) => m.mid)).toEqual([3]);
    ws.push({ type: 'mutation_error', mid: 3, code: 'rate_limited', message: 'slow down' });
    expect(doc.pending.map((m) => m.mid)).toEqual([3]);
    expect(errors).toEqual(['rate_limited']);
    await until(() => mutates(ws.sent).filter((m) => m.mid === 3).length === 2, 1000);
    expect(doc.state?.gold).toBe(22);
  });

  it('the rate limit: mutations go again after the error of dropped frames (no ref), not after a refused subscription', async () => {
    const { doc, ws } = await following();
    void doc.mutate('addGold', { amount: 5 }).catch(() => undefined);
    expect(mutates(ws.sent)).toHaveLength(1);
    // A subscription refused for its rate names it: that subscription retries, the queue stays put.
    ws.push({ type: 'error', code: 'rate_limited', message: 'too many', ref: ws.subscribes()[0]!.sub });
    await tick(60);
    expect(mutates(ws.sent)).toHaveLength(1);
    // Frames dropped over the limit get one error without a ref and no answers: the queue goes again.
    ws.push({ type: 'error', code: 'rate_limited', message: 'slow down' });
    await until(() => mutates(ws.sent).length === 2, 1000);
    expect(mutates(ws.sent)[1]).toEqual(mutates(ws.sent)[0]);
  });

  it('without persistence, a new mid comes after welcome.lastMid', async () => {
    const t = setUp();
    t.server.state.lastMid = 41;
    const doc = t.client.document('games', 'd1');
    await t.client.connect();
    void doc.mutate('addGold', { amount: 1 });
    expect(mutates(t.server.last().sent).map((m) => m.mid)).toEqual([42]);
  });

  it('a collection handle predicts its documents and mutates by id', async () => {
    const t = setUp();
    t.client.mutators('games', gameMutators);
    const games = t.client.collection<Game>('games');
    await t.client.connect();
    await until(() => t.server.sockets.length === 2);
    const ws = t.server.sockets.find((s) => s.subscribes().length > 0)!;
    for (const e of history(3)) ws.push(event(e));
    const kinds: string[] = [];
    games.on('change', (_docs, c) => kinds.push(c.type));
    void games.mutate('d1', 'addGold', { amount: 5 });
    expect(games.docs.get('d1')?.gold).toBe(25);
    expect(games.confirmed.get('d1')?.gold).toBe(20);
    expect(games.pending.map((m) => m.documentId)).toEqual(['d1']);
    expect(kinds).toEqual(['mutation']);
    // Mutations go on the document connection, whichever handle made them.
    expect(mutates(t.server.sockets[0]!.sent).map((m) => m.mid)).toEqual([1]);
  });
});

/** A Web Storage double (a reload keeps its items). */
function webStorage(): WebStorageLike {
  const items = new Map<string, string>();
  return {
    get length() {
      return items.size;
    },
    key: (i) => [...items.keys()][i] ?? null,
    getItem: (k) => items.get(k) ?? null,
    setItem: (k, v) => void items.set(k, v),
    removeItem: (k) => void items.delete(k),
  };
}

describe('client mutations across a reload', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'eventsync-mutations-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const stores: [string, () => () => ReplicaStore][] = [
    [
      'memoryStore',
      () => {
        const store = memoryStore();
        return () => store;
      },
    ],
    [
      'localStorageStore',
      () => {
        const storage = webStorage();
        return () => localStorageStore({ storage });
      },
    ],
    [
      'fileStore',
      () => {
        const path = join(dir, `${Math.random().toString(36).slice(2)}.json`);
        return () => fileStore(path);
      },
    ],
  ];

  for (const [name, make] of stores) {
    it(`${name}: the queue and the counter come back; the restored queue is resent; mids are not reused`, async () => {
      const open = make();
      const first = await following({ persistence: open(), persistDelayMs: 1 });
      void first.doc.mutate('addGold', { amount: 5 });
      first.ws.drop(); // offline from here on
      void first.doc.mutate('addGold', { amount: 7 });
      expect(first.doc.state?.gold).toBe(32);
      await first.client.disconnect();

      const second = setUp({ persistence: open(), persistDelayMs: 1 });
      second.client.mutators('games', gameMutators);
      const doc = second.client.document<Game>('games', 'd1');
      void doc.mutate('addGold', { amount: 1 }); // before the store is loaded
      await second.client.connect();
      expect(doc.confirmed?.gold).toBe(20);
      expect(doc.state?.gold).toBe(33);
      expect(doc.pending.map((m) => m.mid)).toEqual([1, 2, 3]);
      const ws = second.server.last();
      expect(mutates(ws.sent).map((m) => [m.mid, m.args])).toEqual([
        [1, { amount: 5 }],
        [2, { amount: 7 }],
        [3, { amount: 1 }],
      ]);
      void doc.mutate('addGold', { amount: 1 });
      expect(mutates(ws.sent).at(-1)?.mid).toBe(4);
    });
  }

  it('a collection handle reopened offline shows its documents and their pending mutations', async () => {
    const store = memoryStore();
    const first = setUp({ persistence: store, persistDelayMs: 1 });
    first.client.mutators('games', gameMutators);
    const games = first.client.collection<Game>('games');
    await first.client.connect();
    await until(() => first.server.sockets.length === 2);
    const ws = first.server.sockets.find((s) => s.subscribes().length > 0)!;
    for (const e of [...history(2), ...history(3, 'd2')]) ws.push(event(e));
    void games.mutate('d2', 'addGold', { amount: 1 });
    await first.client.disconnect();

    const second = setUp({ persistence: store, reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    second.client.mutators('games', gameMutators);
    const again = second.client.collection<Game>('games');
    second.client.connect().catch(() => undefined); // never answered: offline
    await until(() => again.docs.size === 2, 1000);
    expect(again.confirmed.get('d1')).toEqual(stateAt(2));
    expect(again.docs.get('d2')?.gold).toBe(21);
  });
});

/** An EventSource the test drives. */
function fakeEventSources() {
  const sources: FakeEventSource[] = [];
  class FakeEventSource implements EventSourceLike {
    readonly #listeners = new Map<string, ((e: never) => void)[]>();
    constructor(readonly url: string) {
      sources.push(this);
      setTimeout(() => this.emit('open', {}), 0);
    }
    addEventListener(type: string, listener: (e: never) => void): void {
      this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
    }
    close(): void {}
    emit(type: string, event: object): void {
      for (const l of this.#listeners.get(type) ?? []) (l as (e: object) => void)(event);
    }
    push(message: object): void {
      this.emit('message', { data: JSON.stringify(message) });
    }
  }
  return { EventSource: FakeEventSource, sources };
}

describe('client mutations over SSE (REST, fake fetch)', () => {
  it('posts each mutation after the stream welcome, one at a time, with the client and mutation ids', async () => {
    const es = fakeEventSources();
    let refuse = true;
    const t = setUp({ transport: 'sse', EventSource: es.EventSource, token: 't0k' }, (call) => {
      if (!call.url.includes('/mutate/')) return { events: [] };
      const mid = Number(call.headers?.['x-eventsync-mutation-id']);
      if (mid === 2 && refuse) {
        refuse = false;
        return new HttpAnswer(409, {
          error: { code: 'mutation_refused', message: 'no', reason: 'too_poor' },
        });
      }
      return { mid, seq: 3 + mid };
    });
    t.client.mutators('games', gameMutators);
    const doc = t.client.document<Game>('games', 'd1');
    // Connected once the stream is welcomed (its welcome names the stream).
    const connected = t.client.connect();
    await tick(5);
    const stream = es.sources[0]!;
    expect(stream.url).toContain('protocol=2');
    const one = doc.mutate('addGold', { amount: 5 });
    const two = doc.mutate('spend');
    await tick(5);
    expect(t.http.calls).toEqual([]); // no welcome yet
    const streamId = '0123456789abcdef0123456789abcdef';
    stream.push({ type: 'welcome', protocol: 2, clientId: 'tester', serverTime: 0, lastMid: 0, streamId });
    for (const e of history(3)) stream.push({ type: 'event', event: e });
    await connected;
    await expect(one).resolves.toEqual({ mid: 1, seq: 4 });
    await expect(two).rejects.toMatchObject({ code: 'mutation_refused', reason: 'too_poor' });
    const posts = t.http.calls.filter((c) => c.url.includes('/mutate/'));
    expect(posts.map((c) => c.url)).toEqual([
      'http://127.0.0.1:9/api/games/d1/mutate/addGold',
      'http://127.0.0.1:9/api/games/d1/mutate/spend',
    ]);
    expect(posts[0]!.body).toEqual({ amount: 5 });
    expect(posts[1]!.body).toBeUndefined();
    expect(doc.pending.map((m) => m.mid)).toEqual([1]); // answered seq 4, not applied yet
    expect(doc.state?.gold).toBe(25);
  });
});

describe('client mutations on a real server (memory backend)', () => {
  it('the server takes the frame as protocol 2 defines it and answers with mutation_error, rolled back', async () => {
    const server = await startServer(syncBackends[0]![1]);
    const collection = uniqueCollection('mut');
    const errors: string[] = [];
    const client = new EventSyncClient({
      serverUrl: server.base,
      WebSocket: NodeWebSocket,
      onError: (e) => errors.push(e.code),
    });
    try {
      await rest(server.base, 'POST', `/api/${collection}`, { _id: 'g1', gold: 1 });
      client.mutators(collection, gameMutators);
      const doc = client.document<Game>(collection, 'g1');
      await client.connect();
      await doc.whenSynced();
      // Whatever mutators the server defines, it defines none for a collection of this run.
      const answer = doc.mutate('addGold', { amount: 5 });
      expect(doc.state?.gold).toBe(6);
      await expect(answer).rejects.toMatchObject({ code: 'unknown_mutator' });
      expect(doc.state?.gold).toBe(1);
      expect(errors).toEqual([]); // no error frame: the mutate frame was well formed
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });
});
