import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import { attachWebSocket } from '../../src/server/ws.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { feedCaughtUp } from '../support/engine-feed.js';
import { TestClient } from '../support/ws-client.js';

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  owner?: string;
}

/** The collection of these tests: a name no other file uses (PostgreSQL is shared by all). */
const GAMES = uniqueCollection('games');
// The server of the backend under test (each describe.each block starts its own).
let db: Database;
let server: Server;
let engine: SyncEngine;
let url: string;
const clients: TestClient[] = [];

async function startServer(open: () => Promise<Database>): Promise<void> {
  db = await open();
  engine = await SyncEngine.create({
    db,
    authenticate: ({ token }) => (token ? { id: token } : undefined),
    authorize: (principal, action, _collection, documentId) =>
      action !== 'read' || !documentId?.startsWith('secret') || principal.id === 'admin',
  });
  server = createServer();
  attachWebSocket(server, engine);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/sync`;
}

async function stopServer(): Promise<void> {
  for (const c of clients.splice(0)) c.close();
  await engine.close();
  await new Promise((resolve) => server.close(resolve));
  await db.close();
}

afterAll(closeSharedPglite);

async function client(token = 'alice', clientId = `c${clients.length}`): Promise<TestClient> {
  const c = await TestClient.connect(url);
  clients.push(c);
  c.send({ type: 'hello', protocol: 1, clientId, token });
  await c.next('welcome');
  return c;
}

const games = () => engine.collection<Game>(GAMES);
const eventSeqs = (c: TestClient, documentId: string) =>
  c
    .of('event')
    .filter((m) => m.event.documentId === documentId)
    .map((m) => m.event.seq);

describe.each(syncBackends)('WebSocket sync on %s', (_backend, open) => {
  beforeAll(() => startServer(open));
  afterAll(stopServer);

  it('catches up, then streams live events in order with no gap or duplicate', async () => {
    const g = await games();
    await g.findOneAndUpsert({ _id: 'g1', name: 'one', gold: 0 });
    await g.updateOne('g1', { $inc: { gold: 1 } });
    const c = await client();
    c.send({ type: 'subscribe', sub: 's1', collection: GAMES, documentId: 'g1' });
    await c.next('synced');
    expect(eventSeqs(c, 'g1')).toEqual([1, 2]);
    for (let i = 0; i < 5; i++) await g.updateOne('g1', { $inc: { gold: 1 } });
    await c.until(() => eventSeqs(c, 'g1').length === 7);
    expect(eventSeqs(c, 'g1')).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('resumes from afterSeq with exactly the missing events', async () => {
    const g = await games();
    await g.findOneAndUpsert({ _id: 'g2', name: 'two', gold: 0 });
    for (let i = 0; i < 4; i++) await g.updateOne('g2', { $inc: { gold: 1 } });
    const c = await client();
    c.send({ type: 'subscribe', sub: 's', collection: GAMES, documentId: 'g2', afterSeq: 3 });
    await c.next('synced');
    expect(eventSeqs(c, 'g2')).toEqual([4, 5]);
    expect(c.of('snapshot')).toEqual([]);
  });

  it('collection subscriptions follow the filter: snapshot on enter, leave on exit', async () => {
    const g = await games();
    await g.findOneAndUpsert({ _id: 'rich', name: 'r', gold: 100 });
    await g.findOneAndUpsert({ _id: 'poor', name: 'p', gold: 1 });
    await feedCaughtUp(engine, 'alice'); // poor's create is history: poor enters by a snapshot
    const c = await client();
    c.send({ type: 'subscribe', sub: 'rich', collection: GAMES, filter: { gold: { $gte: 50 } } });
    await c.next('synced');
    const snapshots = c.of('snapshot').map((s) => s.documentId);
    expect(snapshots).toContain('rich');
    expect(snapshots).not.toContain('poor');
    await g.updateOne('poor', { $inc: { gold: 100 } });
    await c.until(() => c.of('snapshot').some((s) => s.documentId === 'poor'));
    await g.updateOne('rich', { $set: { gold: 0 } });
    await c.until(() => c.of('leave').some((l) => l.documentId === 'rich'));
    expect(eventSeqs(c, 'rich')).toEqual([2]);
  });

  it('never sends a document the principal may not read, also through collection subscriptions', async () => {
    const g = await games();
    await g.findOneAndUpsert({ _id: 'secret1', name: 's', gold: 1 });
    const c = await client('bob');
    c.send({ type: 'subscribe', sub: 'all', collection: GAMES });
    c.send({ type: 'subscribe', sub: 'one', collection: GAMES, documentId: 'secret1' });
    await c.until((r) => r.some((m) => m.type === 'error' && m.ref === 'one'));
    expect(c.of('error').find((e) => e.ref === 'one')?.code).toBe('forbidden');
    await g.updateOne('secret1', { $inc: { gold: 1 } });
    await g.findOneAndUpsert({ _id: 'secret2', name: 's2', gold: 1 });
    await g.findOneAndUpsert({ _id: 'marker', name: 'm', gold: 1 });
    await c.until(() => c.of('event').some((m) => m.event.documentId === 'marker'));
    const seen = [
      ...c.of('snapshot').map((s) => s.documentId),
      ...c.of('event').map((m) => m.event.documentId),
    ];
    expect(seen.filter((id) => id.startsWith('secret'))).toEqual([]);
  });

  it('answers bad frames with error frames and keeps serving', async () => {
    const c = await client();
    for (const bad of [
      'nope',
      '{}',
      '{"type":"subscribe"}',
      '{"type":"warp"}',
      '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
    ])
      c.send(bad);
    await c.until(() => c.of('error').length === 5);
    expect(c.of('error').map((e) => e.code)).toEqual(Array(5).fill('bad_message'));
    c.send({ type: 'subscribe', sub: 'ok', collection: GAMES, documentId: 'g1' });
    await c.next('synced');
  });

  it('refuses __proto__ keys and client filters that could stall the server', async () => {
    const c = await client();
    c.send(`{"type":"subscribe","sub":"p","collection":"${GAMES}","filter":{"__proto__":{"gold":1}}}`);
    c.send({ type: 'subscribe', sub: 'r', collection: GAMES, filter: { name: { $regex: '^(a+)+$' } } });
    c.send({ type: 'subscribe', sub: 'i', collection: GAMES, filter: { gold: { $in: 5 } } });
    await c.until(() => c.of('error').length === 3);
    expect(c.of('error').map((e) => [e.code, e.ref])).toEqual([
      ['bad_message', undefined],
      ['validation', 'r'],
      ['validation', 'i'],
    ]);
    expect(c.of('subscribed')).toEqual([]);
  });

  it('refuses to work before hello and refuses bad credentials', async () => {
    const c = await TestClient.connect(url);
    clients.push(c);
    c.send({ type: 'subscribe', sub: 's', collection: GAMES, documentId: 'g1' });
    expect((await c.next('error')).code).toBe('unauthorized');
    c.send({ type: 'hello', protocol: 1, clientId: 'x' });
    await c.until(() => c.closed !== undefined);
    expect(c.closed?.code).toBe(4001);
  });
});
