/**
 * Revoked rights stop streaming (issue 15, item 3). alice and bob follow the same documents;
 * `authorize` then starts refusing alice. With `authorizationTtlMs` the refusal shows at the
 * first event after the answer expired: alice gets `leave` (reason `forbidden`) instead of that
 * event and nothing of the document after it, a document subscription ends (`error forbidden`),
 * a collection subscription goes on without the document, or ends when `'subscribe'` is refused.
 * `engine.revoke` does the same at once, without waiting for an event; `engine.disconnect`
 * closes alice's connections (4010). bob keeps receiving throughout. WebSocket and SSE alike.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventSyncClient } from '../../src/client.js';
import type { Database } from '../../src/core/collection-backend.js';
import { memoryDatabase } from '../../src/index.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { DISCONNECTED } from '../../src/protocol/wire.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { Authorize } from '../../src/sync/types.js';
import { FetchEventSource, NodeWebSocket, until } from '../client/support.js';
import { SseClient } from '../server/http-client.js';
import { openPg, uniqueCollection } from '../support/databases.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';
import { TestClient } from '../support/ws-client.js';

const TTL_MS = 50;

/** `alice` refuses alice everything; `alice:d1` refuses her document d1 (of any collection). */
const denied = new Set<string>();
const authorize: Authorize = (p, _action, _collection, id) =>
  !denied.has(p.id) && (id === undefined || !denied.has(`${p.id}:${id}`));
const authenticate = ({ token }: { token?: string }) =>
  token === 'alice' || token === 'bob' ? { id: token } : undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Transport = 'websocket' | 'sse';

/** One principal's connection with one subscription (and, on WebSocket, a `fence` document). */
interface Subscriber {
  sub: string;
  messages(): ServerMessage[];
  until(predicate: (messages: ServerMessage[]) => boolean): Promise<void>;
  /** The close code and reason the server sent, if it closed. */
  closed(): { code: number; reason: string } | undefined;
  end(): void;
}

interface World {
  engine: SyncEngine;
  server: LoopbackServer;
  close(): Promise<void>;
}

async function world(db: Database, authorizationTtlMs?: number): Promise<World> {
  const engine = await SyncEngine.create({
    db,
    authenticate,
    authorize,
    ...(authorizationTtlMs === undefined ? {} : { authorizationTtlMs }),
  });
  const server = await loopbackServer(engine);
  return {
    engine,
    server,
    async close() {
      await server.close();
      await db.close();
    },
  };
}

/** A collection of its own per test, with documents d1, d2 and fence. */
async function seed(w: World): Promise<{ collection: string; touch(id: string): Promise<void> }> {
  const collection = uniqueCollection('revoked');
  const docs = await w.engine.collection<{ _id: string; version: number; n: number }>(collection);
  for (const _id of ['d1', 'd2', 'fence']) await docs.findOneAndUpsert({ _id, n: 0 });
  return { collection, touch: async (id) => void (await docs.updateOne(id, { $inc: { n: 1 } })) };
}

const open: Subscriber[] = [];

async function subscribe(
  w: World,
  transport: Transport,
  token: string,
  collection: string,
  documentId?: string,
): Promise<Subscriber> {
  const s =
    transport === 'websocket'
      ? await overWebSocket(w, token, collection, documentId)
      : await overSse(w, token, collection, documentId);
  open.push(s);
  return s;
}

async function overWebSocket(
  w: World,
  token: string,
  collection: string,
  documentId?: string,
): Promise<Subscriber> {
  const c = await TestClient.connect(`ws://127.0.0.1:${w.server.port}/sync`);
  c.send({ type: 'hello', protocol: 1, clientId: `${token}-ws`, token });
  await c.next('welcome');
  const sub = documentId ?? 'all';
  c.send({ type: 'subscribe', sub, collection, ...(documentId ? { documentId } : {}) });
  // The fence: a document alice may still read, on the same connection; its event arriving
  // means every frame sent before it has arrived too.
  if (documentId) c.send({ type: 'subscribe', sub: 'fence', collection, documentId: 'fence' });
  await c.until((r) => r.filter((m) => m.type === 'synced').length === (documentId ? 2 : 1));
  return {
    sub,
    messages: () => c.received,
    until: async (predicate) => void (await c.until(predicate)),
    closed: () => c.closed,
    end: () => c.terminate(),
  };
}

async function overSse(
  w: World,
  token: string,
  collection: string,
  documentId?: string,
): Promise<Subscriber> {
  const path = `/sse/${collection}${documentId ? `/${documentId}` : ''}?token=${token}`;
  const stream = await SseClient.open(`http://127.0.0.1:${w.server.port}`, path);
  expect(stream.status).toBe(200);
  await stream.until((s) => s.of('synced').length === 1);
  const closed = () => {
    const close = stream.events.find((e) => e.type === 'close');
    return close ? (JSON.parse(close.data) as { code: number; reason: string }) : undefined;
  };
  return {
    sub: 'sse',
    messages: () => stream.messages,
    until: async (predicate) => {
      // An SSE stream that ended says so by `event: close`; a predicate about it must still be checked.
      if (predicate(stream.messages)) return;
      await stream.until((s) => predicate(s.messages) || s.ended);
      if (!predicate(stream.messages)) throw new Error(`stream ended; ${JSON.stringify(stream.messages)}`);
    },
    closed,
    end: () => stream.destroy(),
  };
}

/** Events of `documentId` after its create (seq 1, which a document subscription's catch-up includes). */
const eventsOf = (messages: ServerMessage[], documentId: string) =>
  messages.filter((m) => m.type === 'event' && m.event.documentId === documentId && m.event.seq > 1).length;
const leaveOf = (messages: ServerMessage[], documentId: string) =>
  messages.findIndex((m) => m.type === 'leave' && m.documentId === documentId);

/**
 * Whatever alice was sent of d1 has arrived: bob has d1's latest event, and alice an event of
 * `fence` (which she may read, on the same connection) written after it, unless she was closed.
 */
async function settled(
  alice: Subscriber,
  bob: Subscriber,
  touch: (id: string) => Promise<void>,
  bobEvents: number,
) {
  await bob.until((m) => eventsOf(m, 'd1') === bobEvents);
  if (alice.closed()) return;
  const fences = eventsOf(alice.messages(), 'fence');
  await touch('fence');
  await alice.until((m) => eventsOf(m, 'fence') > fences);
}

/** The engines of the running tests: one with authorizationTtlMs 50 ms, one with the default (60 s). */
let ttl: World | undefined;
let revocable: World | undefined;
afterEach(async () => {
  denied.clear();
  for (const s of open.splice(0)) s.end();
  for (const w of [ttl, revocable]) if (w) await expect.poll(() => w.engine.metrics.connections).toBe(0);
});

const backends: Record<string, () => Promise<Database>> = {
  memory: async () => memoryDatabase(),
  postgresql: () => openPg(),
};

for (const [backend, openDb] of Object.entries(backends)) {
  describe(backend, () => {
    beforeAll(async () => {
      ttl = await world(await openDb(), TTL_MS);
      revocable = await world(await openDb());
    });
    afterAll(async () => {
      await ttl?.close();
      await revocable?.close();
      ttl = revocable = undefined;
    });

    for (const transport of ['websocket', 'sse'] as const) {
      describe(`revocation over ${transport}`, () => {
        it('document subscription: leave arrives within authorizationTtlMs + one event, then nothing; bob goes on', async () => {
          const { collection, touch } = await seed(ttl!);
          const alice = await subscribe(ttl!, transport, 'alice', collection, 'd1');
          const bob = await subscribe(ttl!, transport, 'bob', collection, 'd1');
          await touch('d1');
          await alice.until((m) => eventsOf(m, 'd1') === 1);

          denied.add('alice:d1');
          await sleep(TTL_MS + 20);
          await touch('d1'); // the one event: asked again before it is sent, refused
          await alice.until((m) => leaveOf(m, 'd1') >= 0);
          const messages = alice.messages();
          const leave = leaveOf(messages, 'd1');
          expect(messages[leave]).toEqual({
            type: 'leave',
            sub: alice.sub,
            collection,
            documentId: 'd1',
            reason: 'forbidden',
          });
          expect(messages[leave + 1]).toMatchObject({ type: 'error', code: 'forbidden', ref: alice.sub });
          expect(eventsOf(messages, 'd1')).toBe(1);
          // Over SSE the stream was that subscription: it closes.
          if (transport === 'sse') await alice.until(() => alice.closed() !== undefined);
          if (transport === 'sse') expect(alice.closed()?.code).toBe(1000);

          await touch('d1');
          await settled(alice, bob, touch, 3);
          expect(eventsOf(alice.messages(), 'd1')).toBe(1);
          expect(eventsOf(bob.messages(), 'd1')).toBe(3);
        });

        it('collection subscription: the document leaves, the subscription goes on; refused subscribe ends it', async () => {
          const { collection, touch } = await seed(ttl!);
          const alice = await subscribe(ttl!, transport, 'alice', collection);
          const bob = await subscribe(ttl!, transport, 'bob', collection);

          denied.add('alice:d1');
          await sleep(TTL_MS + 20);
          await touch('d1');
          await alice.until((m) => leaveOf(m, 'd1') >= 0);
          expect(alice.messages()[leaveOf(alice.messages(), 'd1')]).toEqual({
            type: 'leave',
            sub: alice.sub,
            collection,
            documentId: 'd1',
            reason: 'forbidden',
          });
          await touch('d2');
          await alice.until((m) => eventsOf(m, 'd2') === 1); // still subscribed to the rest
          await touch('d1');
          await settled(alice, bob, touch, 2);
          expect(eventsOf(alice.messages(), 'd1')).toBe(0);
          expect(alice.messages().some((m) => m.type === 'error')).toBe(false);

          denied.add('alice');
          await sleep(TTL_MS + 20);
          await touch('d2');
          await alice.until((m) => m.some((x) => x.type === 'error'));
          expect(alice.messages().find((m) => m.type === 'error')).toMatchObject({
            code: 'forbidden',
            ref: alice.sub,
          });
          expect(eventsOf(alice.messages(), 'd2')).toBe(1);
          await bob.until((m) => eventsOf(m, 'd2') === 2);
        });

        it('engine.revoke: leave at once, without waiting for an event; the document subscription ends', async () => {
          const { collection, touch } = await seed(revocable!);
          const alice = await subscribe(revocable!, transport, 'alice', collection, 'd1');
          const bob = await subscribe(revocable!, transport, 'bob', collection, 'd1');
          denied.add('alice:d1');
          // Within the TTL (60 s) alice would keep her answer; revoke takes it back now.
          expect(await revocable!.engine.revoke('alice')).toBe(1);
          await alice.until((m) => m.some((x) => x.type === 'error'));
          const messages = alice.messages();
          expect(messages[leaveOf(messages, 'd1')]).toMatchObject({ type: 'leave', reason: 'forbidden' });
          expect(messages.find((m) => m.type === 'error')).toMatchObject({
            code: 'forbidden',
            ref: alice.sub,
          });
          expect(await revocable!.engine.revoke('bob')).toBe(0);

          await touch('d1');
          await settled(alice, bob, touch, 1);
          expect(eventsOf(alice.messages(), 'd1')).toBe(0);
        });

        it('engine.revoke: a collection subscription loses the document now, and ends when subscribe is refused', async () => {
          const { collection, touch } = await seed(revocable!);
          const alice = await subscribe(revocable!, transport, 'alice', collection);
          const bob = await subscribe(revocable!, transport, 'bob', collection);
          denied.add('alice:d1');
          expect(await revocable!.engine.revoke('alice')).toBe(1);
          await alice.until((m) => leaveOf(m, 'd1') >= 0);
          await touch('d1');
          await touch('d2');
          await alice.until((m) => eventsOf(m, 'd2') === 1);
          expect(eventsOf(alice.messages(), 'd1')).toBe(0);

          denied.add('alice');
          expect(await revocable!.engine.revoke('alice')).toBe(1);
          await alice.until((m) => m.some((x) => x.type === 'error'));
          expect(alice.messages().find((m) => m.type === 'error')).toMatchObject({
            code: 'forbidden',
            ref: alice.sub,
          });
          await bob.until((m) => eventsOf(m, 'd1') === 1 && eventsOf(m, 'd2') === 1);
        });

        it('engine.disconnect: closes alice with 4010 and the reason given; bob keeps receiving', async () => {
          const { collection, touch } = await seed(revocable!);
          const alice = await subscribe(revocable!, transport, 'alice', collection, 'd1');
          const bob = await subscribe(revocable!, transport, 'bob', collection, 'd1');
          expect(revocable!.engine.disconnect('alice', 'account closed')).toBe(1);
          await expect
            .poll(() => alice.closed())
            .toEqual({ code: DISCONNECTED.code, reason: 'account closed' });
          expect(revocable!.engine.disconnect('alice')).toBe(0);
          await touch('d1');
          await bob.until((m) => eventsOf(m, 'd1') === 1);
        });
      });
    }
  });
}

describe('the client SDK', () => {
  beforeAll(async () => {
    revocable = await world(memoryDatabase());
  });
  afterAll(async () => {
    await revocable?.close();
    revocable = undefined;
  });
  const cases = [
    ['WebSocket', 'websocket', false],
    ['SSE', 'sse', false],
    ['SSE, riding on a collection stream', 'sse', true],
  ] as const;
  for (const [name, transport, viaCollection] of cases) {
    it(`a revoked document handle ends with error forbidden and does not try again (${name})`, async () => {
      const { collection, touch } = await seed(revocable!);
      const reported: string[] = [];
      const client = new EventSyncClient({
        serverUrl: `http://127.0.0.1:${revocable!.server.port}`,
        WebSocket: NodeWebSocket,
        EventSource: FetchEventSource,
        token: 'alice',
        transport,
        reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
        onError: (error) => reported.push(error.code),
      });
      try {
        const all = viaCollection ? client.collection(collection) : undefined;
        const doc = client.document<{ n: number }>(collection, 'd1');
        await client.connect();
        await doc.whenSynced();
        denied.add('alice:d1');
        expect(await revocable!.engine.revoke('alice')).toBe(1);
        await until(() => doc.error !== undefined);
        expect(doc.error?.code).toBe('forbidden');
        await expect(doc.whenSynced()).rejects.toMatchObject({ code: 'forbidden' });
        await touch('d1');
        await touch('d2');
        if (all) await until(() => all.docs.get('d2')?.n === 1);
        else await sleep(100);
        expect(doc.state?.n).toBe(0);
        expect(reported).toEqual(['forbidden']);
        expect(all?.docs.has('d1') ?? false).toBe(false);
      } finally {
        await client.disconnect();
      }
    });
  }
});

describe('authorizationTtlMs', () => {
  it('must be a number of ms, 0 or more', async () => {
    for (const bad of [-1, Number.NaN, '60s']) {
      await expect(
        SyncEngine.create({ db: memoryDatabase(), authorizationTtlMs: bad as number }),
      ).rejects.toMatchObject({ code: 'validation' });
    }
  });

  it('0 asks at every event', async () => {
    const w = await world(memoryDatabase(), 0);
    try {
      const { collection, touch } = await seed(w);
      const alice = await subscribe(w, 'websocket', 'alice', collection, 'd1');
      denied.add('alice:d1');
      await touch('d1'); // no wait: nothing was kept
      await alice.until((m) => leaveOf(m, 'd1') >= 0);
      expect(eventsOf(alice.messages(), 'd1')).toBe(0);
    } finally {
      for (const s of open.splice(0)) s.end();
      await w.close();
    }
  });
});
