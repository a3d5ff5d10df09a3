import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import { attach, createHandler } from '../../src/server/attach.js';
import { attachWebSocket } from '../../src/server/ws.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { TestClient } from '../support/ws-client.js';
import { http, SseClient } from './http-client.js';

/** A stand-in for an Express/Fastify app: it answers every request it sees (as a catch-all route would). */
function app(seen: string[], name = 'app') {
  return (req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function shut(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

// The collections of these tests: names no other file uses (PostgreSQL is shared by all).
const ATTACHED = uniqueCollection('attached');
const PREFIXED = uniqueCollection('prefixed');
const MOUNTED = uniqueCollection('mounted');
const LIVE = uniqueCollection('live');

// The engine of the backend under test (each describe.each block starts its own).
let db: Database;
let engine: SyncEngine;

afterAll(closeSharedPglite);

describe.each(syncBackends)('attach on %s', (_backend, open) => {
  beforeAll(async () => {
    db = await open();
    engine = await SyncEngine.create({ db });
  });
  afterAll(async () => {
    await engine.close();
    await db.close();
  });

  it('answers /api and /sse itself (the app never sees them) and leaves every other request to the app', async () => {
    const seen: string[] = [];
    const server = createServer(app(seen));
    const attached = attach(server, engine);
    const lateSeen: string[] = [];
    // A listener added after attach does not see eventsync's requests either.
    server.on('request', (req: IncomingMessage) => lateSeen.push(req.url ?? ''));
    const host = await listen(server);
    const base = `http://${host}`;
    try {
      const created = await http(base, 'POST', `/api/${ATTACHED}`, { body: { _id: 'a1', n: 1 } });
      expect(created.status).toBe(201);
      expect((await http(base, 'GET', `/api/${ATTACHED}/a1`)).body).toMatchObject({ _id: 'a1', n: 1 });
      expect((await http(base, 'GET', '/api/nope/x')).body.error.code).toBe('not_found');
      const stream = await SseClient.open(base, `/sse/${ATTACHED}/a1`);
      await stream.until((c) => c.of('synced').length === 1);
      stream.destroy();
      const ws = await TestClient.connect(`ws://${host}/sync`);
      ws.send({ type: 'hello', protocol: 1, clientId: 'w1' });
      await ws.next('welcome');
      ws.close();

      const other = await http(base, 'GET', '/dashboard?x=1');
      expect(other.text).toBe('app');
      // Paths that only start like ours are the app's.
      expect((await http(base, 'GET', '/apiary')).text).toBe('app');
      expect((await http(base, 'GET', '/ssefoo')).text).toBe('app');
      expect(seen).toEqual(['/dashboard?x=1', '/apiary', '/ssefoo']);
      expect(lateSeen).toEqual(seen);

      await attached.close();
      expect((await http(base, 'GET', `/api/${ATTACHED}/a1`)).text).toBe('app');
    } finally {
      await attached.close();
      await shut(server);
    }
  });

  it('answers 404 for other paths when the server has no other request listener', async () => {
    const server = createServer();
    const attached = attach(server, engine, { ws: false });
    const base = `http://${await listen(server)}`;
    try {
      expect((await http(base, 'GET', '/elsewhere')).status).toBe(404);
      expect((await http(base, 'GET', '/api/attached_404/x')).body.error.code).toBe('not_found');
    } finally {
      await attached.close();
      await shut(server);
    }
  });

  it('takes other prefixes, and can leave out transports', async () => {
    const seen: string[] = [];
    const server = createServer(app(seen));
    const attached = attach(server, engine, { rest: { prefix: '/v1/data/' }, sse: false, ws: false });
    const base = `http://${await listen(server)}`;
    try {
      expect((await http(base, 'POST', `/v1/data/${PREFIXED}`, { body: { _id: 'p' } })).status).toBe(201);
      expect((await http(base, 'GET', `/sse/${PREFIXED}/p`)).text).toBe('app');
      expect((await http(base, 'GET', `/api/${PREFIXED}/p`)).text).toBe('app');
    } finally {
      await attached.close();
      await shut(server);
    }
  });

  it('createHandler mounts inside an app: handle() returns true for what it takes', async () => {
    const seen: string[] = [];
    const handler = createHandler(engine);
    const fallback = app(seen);
    const server = createServer((req, res) => {
      if (!handler.handle(req, res)) fallback(req, res);
    });
    const ws = attachWebSocket(server, engine);
    const host = await listen(server);
    try {
      expect((await http(`http://${host}`, 'POST', `/api/${MOUNTED}`, { body: { _id: 'm' } })).status).toBe(
        201,
      );
      expect((await http(`http://${host}`, 'GET', '/home')).text).toBe('app');
      expect(seen).toEqual(['/home']);
    } finally {
      await handler.close();
      await ws.close();
      await shut(server);
    }
  });

  it('a change made over REST reaches WebSocket and SSE subscribers of the same server', async () => {
    const server = createServer(app([]));
    const attached = attach(server, engine);
    const host = await listen(server);
    const base = `http://${host}`;
    try {
      await http(base, 'POST', `/api/${LIVE}`, { body: { _id: 'l1', score: 0 } });
      const ws = await TestClient.connect(`ws://${host}/sync`);
      ws.send({ type: 'hello', protocol: 1, clientId: 'w2' });
      ws.send({ type: 'subscribe', sub: 's', collection: LIVE, documentId: 'l1' });
      await ws.next('synced');
      const stream = await SseClient.open(base, `/sse/${LIVE}/l1`);
      await stream.until((c) => c.of('synced').length === 1);

      const patched = await http(base, 'PATCH', `/api/${LIVE}/l1`, { body: { $inc: { score: 5 } } });
      expect(patched.body.score).toBe(5);
      await ws.until((r) => r.filter((m) => m.type === 'event').length === 2);
      await stream.until((c) => c.seqs('l1').length === 2);
      const wsEvent = ws.of('event')[1]!.event;
      expect(wsEvent).toMatchObject({ seq: 2, clientId: 'anonymous', operation: 'update' });
      expect(stream.of('event')[1]!.event).toEqual(wsEvent);
      ws.close();
      stream.destroy();
    } finally {
      await attached.close();
      await shut(server);
    }
  });
});
