/**
 * A client id is bound to the principal that first used it (issue 15, item 8). The attack: alice
 * said `hello` as `bob-phone` and acknowledged the last seq, and bob's position-less
 * `POST /api/sync` (what is bob's phone missing?) went from the events after his acknowledgement
 * to none. Now alice naming bob's client id is refused over WebSocket (`error forbidden`, close
 * 4003), SSE and REST (403), and changes nothing; her own client ids work; with no
 * `authenticate` (everyone `anonymous`) every client id is anonymous's and all works as before.
 * On memory and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventSyncClient } from '../../src/client.js';
import type { Database } from '../../src/core/collection-backend.js';
import { memoryDatabase } from '../../src/index.js';
import { SyncEngine, type SyncEngineOptions } from '../../src/sync/engine.js';
import { NodeWebSocket } from '../client/support.js';
import { http, SseClient } from '../server/http-client.js';
import { openPg, uniqueCollection } from '../support/databases.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';
import { TestClient } from '../support/ws-client.js';

const authenticate = ({ token }: { token?: string }) =>
  token === 'alice' || token === 'bob' ? { id: token } : undefined;

interface Game {
  _id: string;
  version: number;
  gold: number;
  [key: string]: unknown;
}

interface Setup {
  base: string;
  ws: string;
  collection: string;
}

/** A document with six events: a create and five updates. */
async function sixEvents(engine: SyncEngine, collection: string): Promise<void> {
  const docs = await engine.collection<Game>(collection);
  await docs.findOneAndUpsert({ _id: 'g1', gold: 0 });
  for (let i = 0; i < 5; i++) await docs.updateOne('g1', { $inc: { gold: 1 } });
}

/** A WebSocket client welcomed as `clientId`, following g1 from the start, having acknowledged `seq`. */
async function follow(s: Setup, clientId: string, token: string | undefined, seq: number): Promise<void> {
  const c = await TestClient.connect(s.ws);
  try {
    c.send({ type: 'hello', protocol: 1, clientId, ...(token === undefined ? {} : { token }) });
    await c.next('welcome');
    c.send({ type: 'subscribe', sub: 's', collection: s.collection, documentId: 'g1', afterSeq: 0 });
    await c.next('synced');
    c.send({ type: 'ack', collection: s.collection, documentId: 'g1', seq });
    // An ack has no answer: a second subscribe's answer says the ack was handled before it.
    c.send({ type: 'subscribe', sub: 't', collection: s.collection, documentId: 'g1' });
    await c.until((r) => r.some((m) => m.type === 'synced' && m.sub === 't'));
    expect(c.of('error')).toEqual([]);
  } finally {
    c.close();
  }
}

/** The seqs a position-less `POST /api/sync` answers for `clientId` (the status when refused). */
async function missing(s: Setup, clientId: string | undefined, token?: string): Promise<number[] | number> {
  const res = await http(s.base, 'POST', `/api/sync/${s.collection}/g1`, {
    body: clientId === undefined ? {} : { clientId },
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) return res.status;
  return res.body.events.map((e: { seq: number }) => e.seq);
}

async function sseStatus(s: Setup, clientId: string, token: string): Promise<number> {
  const stream = await SseClient.open(s.base, `/sse/${s.collection}/g1?clientId=${clientId}&token=${token}`);
  try {
    if (stream.status === 200) await stream.until((c) => c.messages.some((m) => m.type === 'synced'));
    else expect(JSON.parse(stream.refusal!).error.code).toBe('forbidden');
    return stream.status;
  } finally {
    stream.destroy();
  }
}

async function start(db: Database, options: Partial<SyncEngineOptions>) {
  const engine = await SyncEngine.create({ db, ...options });
  const server = await loopbackServer(engine);
  const collection = uniqueCollection('client_ids');
  await sixEvents(engine, collection);
  const s: Setup = {
    base: `http://127.0.0.1:${server.port}`,
    ws: `ws://127.0.0.1:${server.port}/sync`,
    collection,
  };
  return { server, s };
}

const backends: Record<string, () => Promise<Database>> = {
  memory: async () => memoryDatabase(),
  postgresql: () => openPg(),
};

for (const [backend, open] of Object.entries(backends)) {
  describe(`client ids are bound to principals, ${backend}`, () => {
    let db: Database;
    let server: LoopbackServer;
    let s: Setup;

    beforeAll(async () => {
      db = await open();
      ({ server, s } = await start(db, { authenticate, authorize: 'allow-all' }));
      // bob's phone applied up to seq 2: it is missing 3..6.
      await follow(s, 'bob-phone', 'bob', 2);
    });
    afterAll(async () => {
      await server.close();
      await db.close();
    });

    it('bob, before any attempt: his phone misses 3..6, over REST and SSE', async () => {
      expect(await missing(s, 'bob-phone', 'bob')).toEqual([3, 4, 5, 6]);
      expect(await sseStatus(s, 'bob-phone', 'bob')).toBe(200);
    });

    it('WebSocket: alice cannot hello as bob-phone (forbidden, close 4003), so cannot ack as it', async () => {
      const c = await TestClient.connect(s.ws);
      // Pipelined: nothing after the refused hello is handled.
      c.send({ type: 'hello', protocol: 1, clientId: 'bob-phone', token: 'alice' });
      c.send({ type: 'subscribe', sub: 's', collection: s.collection, documentId: 'g1' });
      c.send({ type: 'ack', collection: s.collection, documentId: 'g1', seq: 6 });
      await expect(c.until(() => false)).rejects.toThrow(/closed \(4003 /);
      expect(c.received).toEqual([
        {
          type: 'error',
          code: 'forbidden',
          message: 'client id "bob-phone" belongs to another principal; use one of your own',
          ref: 'hello',
        },
      ]);
      expect(c.closed).toEqual({ code: 4003, reason: 'client id belongs to another principal' });
      expect(await missing(s, 'bob-phone', 'bob')).toEqual([3, 4, 5, 6]);
    });

    it('SSE and REST: alice naming bob-phone is 403 forbidden', async () => {
      expect(await sseStatus(s, 'bob-phone', 'alice')).toBe(403);
      expect(await missing(s, 'bob-phone', 'alice')).toBe(403);
      const withPosition = await http(s.base, 'POST', `/api/sync/${s.collection}/g1`, {
        body: { afterSeq: 0, clientId: 'bob-phone' },
        headers: { authorization: 'Bearer alice' },
      });
      expect([withPosition.status, withPosition.body.error.code]).toEqual([403, 'forbidden']);
    });

    it("alice's own new client ids work, and move only her own position", async () => {
      await follow(s, 'alice-laptop', 'alice', 6);
      expect(await missing(s, 'alice-laptop', 'alice')).toEqual([]);
      expect(await sseStatus(s, 'alice-sse', 'alice')).toBe(200);
      // Without a clientId, REST uses the principal's own id.
      expect(await missing(s, undefined, 'alice')).toEqual([1, 2, 3, 4, 5, 6]);
      // Now hers: bob cannot use them either.
      expect(await missing(s, 'alice-laptop', 'bob')).toBe(403);
      expect(await sseStatus(s, 'alice-sse', 'bob')).toBe(403);
    });

    it("bob's answer is unchanged after all of alice's attempts", async () => {
      expect(await missing(s, 'bob-phone', 'bob')).toEqual([3, 4, 5, 6]);
      await follow(s, 'bob-phone', 'bob', 4);
      expect(await missing(s, 'bob-phone', 'bob')).toEqual([5, 6]);
    });

    it('the SDK given another principal’s client id fails for good (no reconnect loop)', async () => {
      const errors: string[] = [];
      const c = new EventSyncClient({
        serverUrl: s.base,
        WebSocket: NodeWebSocket,
        token: 'alice',
        clientId: 'bob-phone',
        onError: (e) => errors.push(e.code),
      });
      await expect(c.connect()).rejects.toMatchObject({ code: 'forbidden' });
      expect(c.state).toBe('closed');
      expect(errors).toEqual(['forbidden']);
    });
  });
}

describe('client ids without authenticate: everyone is anonymous, all works as before', () => {
  let server: LoopbackServer;
  let s: Setup;

  beforeAll(async () => {
    ({ server, s } = await start(memoryDatabase(), {}));
  });
  afterAll(() => server.close());

  it('any client id may be used by any connection and request', async () => {
    await follow(s, 'phone', undefined, 2);
    expect(await missing(s, 'phone')).toEqual([3, 4, 5, 6]);
    await follow(s, 'phone', undefined, 5);
    expect(await missing(s, 'phone')).toEqual([6]);
    const stream = await SseClient.open(s.base, `/sse/${s.collection}/g1?clientId=phone`);
    try {
      expect(stream.status).toBe(200);
    } finally {
      stream.destroy();
    }
    expect(await missing(s, undefined)).toEqual([1, 2, 3, 4, 5, 6]);
  });
});
