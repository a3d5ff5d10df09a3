/**
 * EventSyncClient with a fake transport: the test plays the server frame by frame, so order,
 * duplicates, early events, gap repair, snapshots, leave, acks and reconnects are exact.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ConnectionEvent,
  type ConnectionState,
  EventSyncClient,
  localStorageStore,
  memoryStore,
  nextState,
  transitions,
  type WebStorageLike,
} from '../../src/client.js';
import { created, history, setGold, stateAt } from './events.js';
import { clients, disconnectAll, event, fakeServer, setUp, tick } from './fake-server.js';
import { until } from './support.js';

afterEach(disconnectAll);

describe('EventSyncClient replica handling (fake transport)', () => {
  it('sends hello, subscribes with afterSeq, applies events in order and drops duplicates', async () => {
    const { server, client, applied } = setUp();
    const doc = client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    expect(ws.url).toBe('ws://127.0.0.1:9/sync');
    expect(ws.sent[0]).toEqual({ type: 'hello', protocol: 2, clientId: 'tester' });
    const [sub] = ws.subscribes();
    expect(sub).toMatchObject({ collection: 'games', documentId: 'd1', afterSeq: 0 });
    const [e1, e2, e3] = history(3);
    ws.push({ type: 'subscribed', sub: sub!.sub });
    ws.push(event(e1!));
    ws.push(event(e1!));
    ws.push(event(e2!));
    ws.push({ type: 'synced', sub: sub!.sub });
    ws.push(event(e2!));
    ws.push(event(e3!));
    expect(doc.synced).toBe(true);
    expect(doc.state).toEqual(stateAt(3));
    expect(applied).toEqual([1, 2, 3]);
  });

  it('buffers early events; a gap that fills in time asks the server nothing', async () => {
    const { server, client, http } = setUp();
    const doc = client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    const [e1, e2, e3, e4] = history(4);
    ws.push(event(e1!));
    ws.push(event(e4!));
    ws.push(event(e3!));
    expect(doc.seq).toBe(1);
    ws.push(event(e2!));
    expect(doc.seq).toBe(4);
    await tick(40);
    expect(http.calls).toEqual([]);
  });

  it('a gap still open after gapTimeoutMs is repaired with POST /api/sync (afterSeq)', async () => {
    const events = history(5);
    const { server, client, http, applied } = setUp({}, () => ({ events: events.slice(1, 3) }));
    const doc = client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    ws.push(event(events[0]!));
    ws.push(event(events[3]!));
    ws.push(event(events[4]!));
    await until(() => doc.seq === 5, 1000);
    expect(http.calls).toEqual([
      { url: 'http://127.0.0.1:9/api/sync/games/d1', body: { afterSeq: 1, clientId: 'tester' } },
    ]);
    expect(applied).toEqual([1, 2, 3, 4, 5]);
    expect(doc.state).toEqual(stateAt(5));
  });

  it('a snapshot replaces the replica; listeners see it without an event', async () => {
    const { server, client } = setUp();
    const doc = client.document('games', 'd1');
    const seen: [unknown, number | undefined][] = [];
    doc.on('change', (state, e) => seen.push([state, e?.seq]));
    await client.connect();
    const ws = server.last();
    ws.push(event(created(1, { gold: 0 })));
    ws.push({
      type: 'snapshot',
      collection: 'games',
      documentId: 'd1',
      seq: 7,
      version: 7,
      state: stateAt(7),
      vectorClock: { writer: 7 },
    });
    ws.push(event(setGold(8, 70)));
    expect(doc.seq).toBe(8);
    expect(doc.vectorClock).toEqual({ writer: 8 });
    expect(seen.map(([, s]) => s)).toEqual([1, undefined, 8]);
    expect(seen[1]![0]).toEqual(stateAt(7));
  });

  it('a replica whose events do not apply is rebuilt from seq 0', async () => {
    const events = history(3);
    const { server, client, http, errors } = setUp({}, () => ({ events }));
    const doc = client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    ws.push(event(setGold(1, 5))); // an update of a document the replica does not have
    await until(() => doc.seq === 3, 1000);
    expect(http.calls[0]!.body).toEqual({ afterSeq: 0, clientId: 'tester' });
    expect(doc.state).toEqual(stateAt(3));
    expect(errors).toEqual([]);
  });

  it('collection: snapshots bring members, leave removes one, a reconnect drops those not brought back', async () => {
    const { server, client } = setUp();
    const rich = client.collection('games', { gold: { $gte: 10 } });
    const changes: string[] = [];
    rich.on('change', (_docs, c) => changes.push(`${c.type}:${c.documentId}`));
    await client.connect();
    await until(() => server.sockets.length === 2); // documents, and the collection's own connection
    const ws = server.sockets.find((s) => s.subscribes().length > 0)!;
    const [sub] = ws.subscribes();
    expect(sub).toEqual({
      type: 'subscribe',
      sub: sub!.sub,
      collection: 'games',
      filter: { gold: { $gte: 10 } },
    });
    const snap = (id: string, gold: number) =>
      ({
        type: 'snapshot',
        collection: 'games',
        documentId: id,
        seq: 2,
        version: 2,
        state: { _id: id, version: 2, gold },
        vectorClock: {},
      }) as const;
    ws.push({ type: 'subscribed', sub: sub!.sub });
    ws.push(snap('a', 10));
    ws.push(snap('b', 20));
    ws.push(snap('c', 30));
    ws.push({ type: 'synced', sub: sub!.sub });
    expect([...rich.docs.keys()]).toEqual(['a', 'b', 'c']);
    ws.push({ type: 'leave', sub: sub!.sub, collection: 'games', documentId: 'a', reason: 'unmatched' });
    expect([...rich.docs.keys()]).toEqual(['b', 'c']);

    ws.drop();
    await until(() => server.sockets.filter((s) => s.subscribes().length > 0).length === 2, 1000);
    const again = server.last();
    const [sub2] = again.subscribes();
    again.push({ type: 'subscribed', sub: sub2!.sub });
    again.push(snap('c', 31));
    expect(rich.synced).toBe(false);
    again.push({ type: 'synced', sub: sub2!.sub });
    expect(rich.synced).toBe(true);
    expect([...rich.docs.keys()]).toEqual(['c']);
    expect(rich.docs.get('c')).toMatchObject({ gold: 31 });
    expect(changes).toEqual(['snapshot:a', 'snapshot:b', 'snapshot:c', 'leave:a', 'snapshot:c', 'leave:b']);
  });

  it('reconnects after a drop with backoff and resubscribes after the last applied seq', async () => {
    const states: ConnectionState[] = [];
    const disconnects: string[] = [];
    const { server, client } = setUp({
      onState: (s) => states.push(s),
      onDisconnect: (r) => disconnects.push(r),
    });
    const doc = client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    for (const e of history(4)) ws.push(event(e));
    ws.drop(1011);
    expect(client.state).toBe('reconnecting');
    await until(() => client.state === 'connected', 1000);
    const again = server.last();
    expect(again).not.toBe(ws);
    expect(again.subscribes()[0]).toMatchObject({ documentId: 'd1', afterSeq: 4 });
    expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    expect(disconnects).toEqual(['1011']);
    expect(doc.seq).toBe(4);
  });

  it('acks the applied seq, debounced: one ack for a burst', async () => {
    const { server, client } = setUp();
    client.document('games', 'd1');
    await client.connect();
    const ws = server.last();
    for (const e of history(5)) ws.push(event(e));
    await until(() => ws.sent.some((m) => m.type === 'ack'), 1000);
    await tick(20);
    expect(ws.sent.filter((m) => m.type === 'ack')).toEqual([
      { type: 'ack', collection: 'games', documentId: 'd1', seq: 5 },
    ]);
  });

  it('a refused subscription sets the handle error and rejects whenSynced; others go on', async () => {
    const { server, client, errors } = setUp();
    const secret = client.document('games', 'secret');
    const open = client.document('games', 'open');
    await client.connect();
    const ws = server.last();
    const [s1, s2] = ws.subscribes();
    const waiting = secret.whenSynced();
    ws.push({ type: 'error', code: 'forbidden', message: 'no', ref: s1!.sub });
    ws.push({ type: 'subscribed', sub: s2!.sub });
    ws.push({ type: 'synced', sub: s2!.sub });
    await expect(waiting).rejects.toMatchObject({ code: 'forbidden' });
    expect(secret.error?.code).toBe('forbidden');
    expect(open.synced).toBe(true);
    expect(errors).toEqual(['forbidden']);
    expect(client.state).toBe('connected');
  });

  // Seen on PostgreSQL under load (server.test.ts): the first collection's connection was welcomed
  // and its subscription refused (too_large) before the second connection was up, and connect()
  // rejected with that handle's error.
  it('a subscription refused before every connection is up fails its handle, not connect()', async () => {
    const server = fakeServer();
    let made = 0;
    // Sockets: the document channel's, then one per collection handle; the first collection's
    // hello goes unanswered until the test welcomes it.
    class FirstCollectionHeld extends server.WebSocket {
      constructor(url: string) {
        super(url);
        if (++made === 2) this.send = () => undefined;
      }
    }
    const { client, errors } = setUp({ WebSocket: FirstCollectionHeld });
    client.collection('games');
    const refused = client.collection('games', { gold: 1 });
    let settled: string | undefined;
    const connecting = client.connect().then(
      () => {
        settled = 'resolved';
      },
      (error: { code: string }) => {
        settled = error.code;
      },
    );
    await until(() => server.sockets[2]?.subscribes().length === 1, 1000);
    const [, held, welcomed] = server.sockets;
    welcomed!.push({
      type: 'error',
      code: 'too_large',
      message: 'narrow it',
      ref: welcomed!.subscribes()[0]!.sub,
    });
    await expect(refused.whenSynced()).rejects.toMatchObject({ code: 'too_large' });
    await tick(20);
    expect(settled).toBeUndefined();
    held!.push({ type: 'welcome', protocol: 2, clientId: 'tester', serverTime: 0, lastMid: 0 });
    await connecting;
    expect(settled).toBe('resolved');
    expect(errors).toEqual(['too_large']);
  });

  it('without a WebSocket to use, connect() fails at once with closed', async () => {
    const errors: string[] = [];
    const client = new EventSyncClient({
      serverUrl: 'http://127.0.0.1:9',
      onError: (e) => errors.push(e.code),
    });
    clients.push(client);
    const hadWebSocket = 'WebSocket' in globalThis;
    const saved = (globalThis as { WebSocket?: unknown }).WebSocket;
    delete (globalThis as { WebSocket?: unknown }).WebSocket;
    try {
      await expect(client.connect()).rejects.toMatchObject({ code: 'closed' });
    } finally {
      if (hadWebSocket) (globalThis as { WebSocket?: unknown }).WebSocket = saved;
    }
    expect(client.state).toBe('closed');
    expect(errors).toEqual(['closed']);
  });

  it('the single-document shortcut subscribes on connect; onEvent gets the document after the event', async () => {
    const got: unknown[] = [];
    const { server, client } = setUp({
      collection: 'games',
      documentId: 'd1',
      onEvent: (_e, doc) => got.push(doc),
    });
    await client.connect();
    const ws = server.last();
    expect(ws.subscribes()[0]).toMatchObject({ collection: 'games', documentId: 'd1' });
    const [e1, e2] = history(2);
    ws.push(event(e2!));
    ws.push(event(e1!));
    expect(got).toEqual([stateAt(1), stateAt(2)]);
    expect(() => new EventSyncClient({ serverUrl: 'http://x', documentId: 'd1' })).toThrow(/collection/);
  });

  it('persistence: replicas and the client id are saved and seed the next client', async () => {
    const store = memoryStore();
    const first = setUp({ clientId: undefined, persistence: store, persistDelayMs: 1 });
    first.client.document('games', 'd1');
    await first.client.connect();
    for (const e of history(3)) first.server.last().push(event(e));
    await first.client.disconnect();
    expect(store.data.clientId).toMatch(/^client-/);
    expect(store.data.replicas).toEqual([
      {
        collection: 'games',
        documentId: 'd1',
        seq: 3,
        version: 3,
        state: stateAt(3),
        vectorClock: { writer: 3 },
      },
    ]);

    const second = setUp({ clientId: undefined, persistence: store });
    const doc = second.client.document('games', 'd1');
    await second.client.connect();
    expect(second.client.clientId).toBe(store.data.clientId);
    expect(doc.state).toEqual(stateAt(3));
    expect(second.server.last().subscribes()[0]).toMatchObject({ afterSeq: 3 });
    expect(second.server.last().sent[0]).toMatchObject({ type: 'hello', clientId: store.data.clientId });
  });

  it('localStorageStore round-trips replicas and the client id', async () => {
    const items = new Map<string, string>();
    const storage: WebStorageLike = {
      get length() {
        return items.size;
      },
      key: (i) => [...items.keys()][i] ?? null,
      getItem: (k) => items.get(k) ?? null,
      setItem: (k, v) => void items.set(k, v),
      removeItem: (k) => void items.delete(k),
    };
    const store = localStorageStore({ storage, prefix: 'app' });
    const replica = {
      collection: 'games',
      documentId: 'd1',
      seq: 2,
      version: 2,
      state: stateAt(2),
      vectorClock: {},
    };
    await store.save({ clientId: 'me', put: [replica, { ...replica, documentId: 'd2' }], remove: [] });
    await store.save({ put: [], remove: [{ collection: 'games', documentId: 'd2' }] });
    items.set('app:doc:games/broken', '{not json');
    expect(await store.load()).toEqual({ clientId: 'me', replicas: [replica] });
  });
});

describe('connection state table', () => {
  const states = Object.keys(transitions) as ConnectionState[];
  const events: ConnectionEvent[] = ['connect', 'open', 'drop', 'retry', 'disconnect', 'fatal'];

  it('names every event in every state, and every target is a state', () => {
    for (const s of states) {
      expect(Object.keys(transitions[s]).sort()).toEqual([...events].sort());
      for (const e of events) {
        const next = nextState(s, e);
        if (next !== undefined) expect(states).toContain(next);
      }
    }
  });

  it('reconnects through connecting, and only disconnect or fatal close', () => {
    expect(nextState('connected', 'drop')).toBe('reconnecting');
    expect(nextState('reconnecting', 'retry')).toBe('connecting');
    expect(nextState('connecting', 'open')).toBe('connected');
    for (const s of states) {
      for (const e of events) {
        if (nextState(s, e) === 'closed') expect(['disconnect', 'fatal']).toContain(e);
      }
    }
    expect(nextState('closed', 'connect')).toBe('connecting');
  });
});
