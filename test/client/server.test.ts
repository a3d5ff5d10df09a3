/** EventSyncClient against a real sync server on loopback: WebSocket, SSE, reconnects, persistence. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConnectionState,
  EventSyncClient,
  type EventSyncClientOptions,
  fileStore,
  type SyncEvent,
} from '../../src/client.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import {
  FetchEventSource,
  faultyWebSocket,
  NodeWebSocket,
  rest,
  startServer,
  type TestServer,
  until,
} from './support.js';

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
}

// The collections of these tests: names no other file uses (PostgreSQL is shared by all).
const GAMES = uniqueCollection('games');
const RICH = uniqueCollection('rich');
const ARENA = uniqueCollection('arena');
const MANY = uniqueCollection('many');

// The server of the backend under test (each describe.each block starts its own).
let server: TestServer;
const clients: EventSyncClient[] = [];
let dir: string;

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.disconnect()));
});
afterAll(closeSharedPglite);

function client(options: Partial<EventSyncClientOptions> = {}) {
  const snapshots: number[] = [];
  const events: SyncEvent[] = [];
  const states: ConnectionState[] = [];
  const c = new EventSyncClient({
    serverUrl: server.base,
    WebSocket: NodeWebSocket,
    EventSource: FetchEventSource,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    onSnapshot: (s) => snapshots.push(s.seq),
    onEvent: (e) => events.push(e),
    onState: (s) => states.push(s),
    ...options,
  });
  clients.push(c);
  return { c, snapshots, events, states };
}

const game = (id: string, gold = 0) =>
  rest(server.base, 'POST', `/api/${GAMES}`, { _id: id, name: id, gold });
const inc = (id: string, gold = 1) => rest(server.base, 'PATCH', `/api/${GAMES}/${id}`, { $inc: { gold } });
const current = async (id: string) => (await server.engine.collection<Game>(GAMES)).findOne(id);

describe.each(syncBackends)('EventSyncClient on a real server on %s', (_backend, open) => {
  beforeAll(async () => {
    server = await startServer(open);
    dir = await mkdtemp(join(tmpdir(), 'eventsync-client-'));
  });
  afterAll(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('connects, follows a document, and REST writes arrive in order', async () => {
    await game('w1');
    const { c, states, events } = client();
    const doc = c.document<Game>(GAMES, 'w1');
    await c.connect();
    expect(c.state).toBe('connected');
    expect(states).toEqual(['connecting', 'connected']);
    await doc.whenSynced();
    expect(doc.state).toMatchObject({ _id: 'w1', gold: 0 });
    for (let i = 0; i < 5; i++) await inc('w1');
    await until(() => doc.seq === 6);
    expect(doc.state).toEqual(await current('w1'));
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(doc.vectorClock).toEqual(
      (await server.engine.events.getEvents(GAMES, 'w1', 5, 1))[0]!.vectorClock,
    );
  });

  it('follows a document created after the subscription, and its deletion', async () => {
    const { c } = client();
    await c.connect();
    const doc = c.document<Game>(GAMES, 'late1');
    await doc.whenSynced();
    expect(doc.state).toBeNull();
    await game('late1', 7);
    await until(() => doc.state?.gold === 7);
    await rest(server.base, 'DELETE', `/api/${GAMES}/late1`);
    await until(() => doc.seq === 2);
    expect(doc.state).toBeNull();
  });

  it('reconnects after a server-side socket destroy and resumes with afterSeq: no snapshot', async () => {
    await game('r1');
    const ws = faultyWebSocket('r1-client', { duplicate: 0, delay: 0, random: Math.random });
    const { c, snapshots, states } = client({ WebSocket: ws.WebSocket });
    const doc = c.document<Game>(GAMES, 'r1');
    await c.connect();
    await until(() => doc.seq === 1);
    const [socket] = ws.sockets;
    for (const s of server.syncSockets('r1-client')) s.destroy();
    await until(() => states.includes('reconnecting'));
    await inc('r1');
    await inc('r1');
    await until(() => c.state === 'connected' && doc.seq === 3);
    expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    expect(snapshots).toEqual([]);
    expect(doc.state).toEqual(await current('r1'));
    // The new socket subscribed after the last seq applied.
    const [again] = ws.sockets;
    expect(again).not.toBe(socket);
    const subscribe = again!.sent.map((f) => JSON.parse(f)).find((m) => m.type === 'subscribe');
    expect(subscribe).toMatchObject({ collection: GAMES, documentId: 'r1', afterSeq: 1 });
  });

  it('acks what it applied: the server records the state vector', async () => {
    await game('a1');
    const { c } = client({ ackDelayMs: 5, clientId: 'acker' });
    const doc = c.document<Game>(GAMES, 'a1');
    await c.connect();
    await inc('a1');
    await until(() => doc.seq === 2);
    const deadline = Date.now() + 5_000;
    let vector = await server.engine.service.stateVectors.get('acker', GAMES, 'a1');
    while (vector?.lastSeq !== 2 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      vector = await server.engine.service.stateVectors.get('acker', GAMES, 'a1');
    }
    expect(vector?.lastSeq).toBe(2);
  });

  it('follows a collection with a filter: members enter and leave', async () => {
    await rest(server.base, 'POST', `/api/${RICH}`, { _id: 'p1', gold: 10 });
    await rest(server.base, 'POST', `/api/${RICH}`, { _id: 'p2', gold: 500 });
    const { c } = client();
    const rich = c.collection<Game>(RICH, { gold: { $gte: 100 } });
    const all = c.collection<Game>(RICH);
    await c.connect();
    await rich.whenSynced();
    await all.whenSynced();
    expect([...rich.docs.keys()]).toEqual(['p2']);
    expect([...all.docs.keys()].sort()).toEqual(['p1', 'p2']);
    await rest(server.base, 'PATCH', `/api/${RICH}/p1`, { $inc: { gold: 200 } });
    await until(() => rich.docs.has('p1'));
    await rest(server.base, 'PATCH', `/api/${RICH}/p2`, { $set: { gold: 1 } });
    await until(() => !rich.docs.has('p2'));
    await rest(server.base, 'DELETE', `/api/${RICH}/p1`);
    await until(() => rich.docs.size === 0 && all.docs.size === 1);
    expect(all.docs.get('p2')?.gold).toBe(1);
  });

  it('works over SSE: snapshot or events, live events, reconnect with afterSeq', async () => {
    await game('s1');
    await inc('s1');
    const { c, snapshots, states } = client({ transport: 'sse', clientId: 'sse-client' });
    const doc = c.document<Game>(GAMES, 's1');
    const all = c.collection<Game>(GAMES, { _id: 's1' });
    await c.connect();
    await doc.whenSynced();
    await all.whenSynced();
    expect(doc.seq).toBe(2);
    expect(all.docs.get('s1')).toEqual(doc.state);
    await inc('s1');
    await until(() => doc.seq === 3 && all.positionOf('s1')?.seq === 3);
    const before = snapshots.length;
    for (const s of server.syncSockets('sse-client')) s.destroy();
    await until(() => states.includes('reconnecting'));
    await inc('s1');
    await until(() => c.state === 'connected' && doc.seq === 4 && all.positionOf('s1')?.seq === 4);
    expect(states.slice(0, 4)).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    // The collection stream starts over with a snapshot; the document stream resumes with events.
    expect(snapshots.length - before).toBe(1);
    expect(doc.state).toEqual(await current('s1'));
  });

  it('over SSE, document handles share one client stream: added and closed while connected, acked, resumed', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `m${i}`);
    for (const id of ids) await game(id);
    const { c } = client({ transport: 'sse', clientId: 'sse-many', ackDelayMs: 10 });
    const docs = ids.slice(0, 5).map((id) => c.document<Game>(GAMES, id));
    await c.connect();
    docs.push(...ids.slice(5).map((id) => c.document<Game>(GAMES, id)));
    await Promise.all(docs.map((d) => d.whenSynced()));
    expect(server.syncSockets('sse-many')).toHaveLength(1);
    const subscribed = server.engine.metrics.subscriptions;
    docs[0]!.close(); // an unsubscribe request on the stream
    await until(() => server.engine.metrics.subscriptions === subscribed - 1);
    for (const id of ids) await inc(id);
    await until(() => docs.slice(1).every((d) => d.seq === 2));
    // Acks reach the server: a catch-up without a position starts after them.
    await expect
      .poll(async () => (await server.engine.missingEvents('sse-many', GAMES, 'm9')).events.length)
      .toBe(0);
    for (const s of server.syncSockets('sse-many')) s.destroy();
    await until(() => c.state === 'reconnecting');
    await inc('m9');
    await until(() => c.state === 'connected' && docs[9]!.seq === 3);
    expect(docs[9]!.state).toEqual(await current('m9'));
    expect(server.syncSockets('sse-many')).toHaveLength(1);
  });

  it('over SSE, document handles ride on an unfiltered collection stream, and learn of deletes missed while down', async () => {
    await rest(server.base, 'POST', `/api/${ARENA}`, { _id: 'x1', gold: 1 });
    await rest(server.base, 'POST', `/api/${ARENA}`, { _id: 'x2', gold: 1 });
    const { c } = client({ transport: 'sse', clientId: 'sse-shared' });
    c.collection<Game>(ARENA);
    const [x1, x2, x3] = ['x1', 'x2', 'x3'].map((id) => c.document<Game>(ARENA, id));
    await c.connect();
    await x1!.whenSynced();
    expect(server.syncSockets('sse-shared')).toHaveLength(1); // one stream, not four
    expect(x1!.state).toMatchObject({ gold: 1 });
    await rest(server.base, 'PATCH', `/api/${ARENA}/x1`, { $inc: { gold: 1 } });
    await rest(server.base, 'POST', `/api/${ARENA}`, { _id: 'x3', gold: 3 });
    await until(() => x1!.state?.gold === 2 && x3!.state?.gold === 3);
    for (const s of server.syncSockets('sse-shared')) s.destroy();
    await rest(server.base, 'DELETE', `/api/${ARENA}/x2`);
    await until(() => x2!.state === null && x2!.seq === 2);
    expect(x1!.seq).toBe(2);
  });

  it('fileStore: a new client instance resumes after the persisted seq, with the same client id', async () => {
    await game('f1');
    const path = join(dir, 'replicas.json');
    const first = client({ persistence: fileStore(path), persistDelayMs: 5 });
    const doc = first.c.document<Game>(GAMES, 'f1');
    await first.c.connect();
    await inc('f1');
    await until(() => doc.seq === 2);
    await first.c.disconnect();
    const saved = JSON.parse(await readFile(path, 'utf8'));
    expect(saved.clientId).toBe(first.c.clientId);
    expect(saved.replicas[0]).toMatchObject({ collection: GAMES, documentId: 'f1', seq: 2 });

    await inc('f1');
    const second = client({ persistence: fileStore(path) });
    const again = second.c.document<Game>(GAMES, 'f1');
    await second.c.connect();
    expect(second.c.clientId).toBe(first.c.clientId);
    await until(() => again.seq === 3);
    expect(second.snapshots).toEqual([2]); // the persisted state it started from; none from the server
    expect(second.events.map((e) => e.seq)).toEqual([3]);
    expect(again.state).toEqual(await current('f1'));
  });

  it('a collection over the server maxSubscriptionDocuments fails once with too_large, without subscribing again', async () => {
    const capped = await startServer(open, { limits: { maxSubscriptionDocuments: 2 } });
    try {
      for (const id of ['a', 'b', 'c']) await rest(capped.base, 'POST', `/api/${MANY}`, { _id: id, gold: 1 });
      const errors: string[] = [];
      const c = new EventSyncClient({
        serverUrl: capped.base,
        WebSocket: NodeWebSocket,
        onError: (e) => errors.push(e.code),
        reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
      });
      clients.push(c);
      const many = c.collection<Game>(MANY);
      const few = c.collection<Game>(MANY, { _id: { $in: ['a', 'b'] } });
      await c.connect();
      await expect(many.whenSynced()).rejects.toMatchObject({ code: 'too_large' });
      await few.whenSynced();
      expect([...few.docs.keys()].sort()).toEqual(['a', 'b']);
      // A retry would fail again every backoff: none comes.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(errors).toEqual(['too_large']);
      expect(c.state).toBe('connected');
    } finally {
      await capped.stop();
    }
  });

  it('an unauthorized hello closes the client and rejects connect()', async () => {
    const locked = await startServer(open, {
      authenticate: ({ token }) => (token === 'ok' ? { id: 'u' } : undefined),
      authorize: 'allow-all',
    });
    try {
      const errors: string[] = [];
      const c = new EventSyncClient({
        serverUrl: locked.base,
        WebSocket: NodeWebSocket,
        token: 'nope',
        onError: (e) => errors.push(e.code),
      });
      await expect(c.connect()).rejects.toMatchObject({ code: 'unauthorized' });
      expect(c.state).toBe('closed');
      expect(errors).toEqual(['unauthorized']);
    } finally {
      await locked.stop();
    }
  });
});
