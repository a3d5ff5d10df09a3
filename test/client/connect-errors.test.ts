/**
 * Mistakes reach the developer (issue 19): a wrong URL, a server that never answers, a refused
 * stream reject `connect()` and reach `onError` (once), while the client keeps trying in the
 * background where the cause may pass. Against a real server on loopback (memory backend).
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Socket, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventSyncClient, type EventSyncClientError } from '../../src/client.js';
import { memoryDatabase } from '../../src/index.js';
import { type Attached, attach } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { FetchEventSource, NodeWebSocket, rest, until } from './support.js';

// A server as `eventsync serve` has it, the sync transports its only upgrade listener (support.ts'
// servers add one of their own to find sockets, and an upgrade to another path is then left to it:
// the client hears `timeout` there, as it would beside another app's WebSocket server).
const http: Server = createServer();
let engine: SyncEngine;
let attached: Attached;
let base = '';
const clients: EventSyncClient[] = [];

beforeAll(async () => {
  engine = await SyncEngine.create({ db: memoryDatabase() });
  attached = attach(http, engine);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  await rest(base, 'POST', '/api/games', { _id: 'g1', gold: 1 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.disconnect()));
  await attached.close();
  await engine.close();
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
});

function client(options: Partial<ConstructorParameters<typeof EventSyncClient>[0]> & { serverUrl: string }) {
  const errors: EventSyncClientError[] = [];
  const c = new EventSyncClient({
    WebSocket: NodeWebSocket,
    EventSource: FetchEventSource,
    reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    onError: (error) => errors.push(error),
    ...options,
  });
  clients.push(c);
  return { c, errors };
}

describe('connect() and onError hear why a client cannot connect', () => {
  it('a plain request to the WebSocket path is answered 426, naming the endpoint', async () => {
    const res = await fetch(`${base}/sync`);
    expect(res.status).toBe(426);
    expect(res.headers.get('upgrade')).toBe('websocket');
    expect(await res.json()).toMatchObject({ error: { code: 'bad_message' } });
  });

  it('WebSocket: an upgrade answered 404 (a wrong path) rejects connect() with not_found, told once, retried', async () => {
    const { c, errors } = client({ serverUrl: base, paths: { sync: '/nosuch' } });
    const error = await c.connect().then(
      () => undefined,
      (e: EventSyncClientError) => e,
    );
    expect(error).toMatchObject({ code: 'not_found', name: 'EventSyncClientError' });
    expect(error?.message).toContain('/nosuch');
    expect(error?.message).toContain('check serverUrl and paths.sync');
    // It keeps trying (the server may be deployed meanwhile), without telling onError again.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(['connecting', 'reconnecting']).toContain(c.state);
    expect(errors.map((e) => e.code)).toEqual(['not_found']);
  });

  it('a server that accepts and never answers rejects connect() with timeout after connectTimeoutMs; it keeps trying', async () => {
    const sockets = new Set<Socket>();
    const silent: TcpServer = createTcpServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      for (const transport of ['websocket', 'sse'] as const) {
        const { c, errors } = client({
          serverUrl: `http://127.0.0.1:${port}`,
          transport,
          connectTimeoutMs: 300,
        });
        if (transport === 'sse') c.document('games', 'g1');
        const error = await c.connect().then(
          () => undefined,
          (e: EventSyncClientError) => e,
        );
        expect(error, transport).toMatchObject({ code: 'timeout' });
        expect(error?.message).toContain(`127.0.0.1:${port}`);
        expect(errors.map((e) => e.code)).toContain('timeout');
        expect(c.state).not.toBe('closed');
        await c.disconnect();
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('SSE: a stream answered 404 (a wrong path) rejects connect() and whenSynced() with not_found', async () => {
    const { c, errors } = client({ serverUrl: base, transport: 'sse', paths: { sse: '/nosuch' } });
    const doc = c.document('games', 'g1');
    await expect(c.connect()).rejects.toMatchObject({ code: 'not_found' });
    await expect(doc.whenSynced()).rejects.toMatchObject({ code: 'not_found' });
    expect(doc.error?.code).toBe('not_found');
    await until(() => errors.length > 0);
    expect(errors[0]?.code).toBe('not_found');
  });
});

describe('a refused subscription reaches its handle (issue 19)', () => {
  it.for(['websocket', 'sse'] as const)(
    '%s: a bad collection name and a bad filter reject whenSynced() with a typed code and set handle.error; the others sync',
    async (transport) => {
      const { c } = client({ serverUrl: base, transport });
      const bad = c.document('Bad Name', 'x');
      const badFilter = c.collection('games', { $where: 'sleep(1)' } as never);
      const good = c.document('games', 'g1');
      await c.connect();
      await good.whenSynced();
      expect(good.state).toMatchObject({ _id: 'g1', gold: 1 });
      for (const handle of [bad, badFilter]) {
        const error = await handle.whenSynced().then(
          () => undefined,
          (e: EventSyncClientError) => e,
        );
        expect(error?.name, transport).toBe('EventSyncClientError');
        expect(['validation', 'bad_message']).toContain(error?.code);
        expect(handle.error).toBe(error);
      }
      expect(c.state).toBe('connected');
      await c.disconnect();
    },
  );
});
