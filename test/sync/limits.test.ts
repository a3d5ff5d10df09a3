/**
 * The limits of a sync connection, each with a small configured value, over real WebSockets on
 * loopback: frame size, frames per second, subscriptions per connection, the send buffer of a
 * client too slow to read, heartbeats, and the time a connection has to say hello.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { connect } from 'node:net';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Database } from '../../src/core/collection-backend.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { HELLO_TIMEOUT } from '../../src/protocol/wire.js';
import { attachWebSocket } from '../../src/server/ws.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { SyncLimits } from '../../src/sync/types.js';
import { SseClient } from '../server/http-client.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { loopbackServer } from '../support/loopback-server.js';
import { TestClient } from '../support/ws-client.js';

interface Running {
  engine: SyncEngine;
  server: Server;
  port: number;
  url: string;
  /** The server side of every TCP connection, by the client's port. */
  serverSockets: Map<number, Socket>;
}

/** The collection of these tests: a name no other file uses (PostgreSQL is shared by all). */
const GAMES = uniqueCollection('games');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(closeSharedPglite);

/** A database of the backend under test, closed after the test. */
async function database(open: () => Promise<Database>): Promise<Database> {
  const db = await open();
  cleanups.push(() => db.close());
  return db;
}

async function start(open: () => Promise<Database>, limits: Partial<SyncLimits>): Promise<Running> {
  const engine = await SyncEngine.create({ db: await database(open), limits });
  const { server, port, serverSockets, close } = await loopbackServer(engine, (s) =>
    attachWebSocket(s, engine),
  );
  cleanups.push(close);
  return { engine, server, port, url: `ws://127.0.0.1:${port}/sync`, serverSockets };
}

/**
 * Client ids of this file's clients: PostgreSQL is shared by every test file, and a client id is
 * its first principal's (here `anonymous`), so a plain `reader` would be taken from another file's
 * principal `reader`.
 */
const RUN = uniqueCollection('limits');

async function client(url: string, clientId = 'c'): Promise<TestClient> {
  const c = await TestClient.connect(url);
  cleanups.push(() => c.terminate());
  c.send({ type: 'hello', protocol: 1, clientId: `${clientId}-${RUN}` });
  await c.next('welcome');
  return c;
}

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const errors = (c: TestClient, code: string) => c.of('error').filter((e) => e.code === code);

describe.each(syncBackends)('frame size on %s', (_backend, open) => {
  it('a frame over maxMessageBytes gets too_large and a close 1009 with a reason', async () => {
    const { url, engine } = await start(open, { maxMessageBytes: 1024 });
    const c = await client(url);
    c.send({ type: 'unsubscribe', sub: 'x'.repeat(900) }); // under the limit: answered, not closed
    await c.until(() => c.of('error').length === 1);
    expect(c.of('error')[0]?.code).toBe('bad_message');
    c.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'c', token: 'x'.repeat(1100) }));
    await c.until(() => c.closed !== undefined).catch(() => {});
    expect(c.of('error').map((e) => e.code)).toEqual(['bad_message', 'too_large']);
    expect(c.closed).toEqual({ code: 1009, reason: 'message too large' });
    await until(() => engine.metrics.connections === 0, 'the session to close');
  });

  it('a frame far over maxMessageBytes is refused by ws from its header (close 1009)', async () => {
    const { url, engine } = await start(open, { maxMessageBytes: 1024 });
    const c = await client(url);
    c.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'c', token: 'x'.repeat(10_000) }));
    await c.until(() => c.closed !== undefined).catch(() => {});
    expect(c.closed?.code).toBe(1009);
    await until(() => engine.metrics.connections === 0, 'the session to close');
  });

  it('counts bytes, not characters', async () => {
    const { url } = await start(open, { maxMessageBytes: 1024 });
    const c = await client(url);
    c.send(JSON.stringify({ type: 'unsubscribe', sub: 'é'.repeat(600) })); // 600 characters, 1,200+ bytes
    await c.until(() => c.closed !== undefined).catch(() => {});
    expect(c.closed?.code).toBe(1009);
  });

  it('a session handed an oversized frame by its transport answers too_large and closes 1009 with a reason', async () => {
    const { engine } = await start(open, { maxMessageBytes: 1024 });
    const frames: ServerMessage[] = [];
    let closed: { code: number; reason: string } | undefined;
    const session = engine.connect(
      { headers: {}, url: '/sync' },
      {
        send: (frame) => frames.push(JSON.parse(frame) as ServerMessage),
        close: (code, reason) => {
          closed = { code, reason };
        },
      },
    );
    await session.receive('x'.repeat(1025));
    expect(frames).toEqual([{ type: 'error', code: 'too_large', message: expect.any(String) }]);
    expect(closed).toEqual({ code: 1009, reason: 'message too large' });
    expect(session.closed).toBe(true);
  });
});

describe.each(syncBackends)('frames per second on %s', (_backend, open) => {
  it('answers frames over maxMessagesPerSecond with rate_limited, keeps the connection, lets frames through again later', async () => {
    const { url } = await start(open, { maxMessagesPerSecond: 5 });
    const c = await client(url); // hello took one token
    for (let i = 0; i < 20; i++) c.send({ type: 'unsubscribe', sub: `nope${i}` });
    c.send({ type: 'unsubscribe', sub: 'last' });
    await c.until(() => errors(c, 'rate_limited').length === 1);
    // One rate_limited answer per burst (a flood is not answered with a flood); the rest are dropped.
    await sleep(100);
    expect(errors(c, 'rate_limited')).toHaveLength(1);
    expect(errors(c, 'not_found').length).toBeGreaterThanOrEqual(3);
    expect(errors(c, 'not_found').length).toBeLessThanOrEqual(6);
    expect(c.closed).toBeUndefined();
    await sleep(1100); // the bucket refills
    c.send({ type: 'unsubscribe', sub: 'later' });
    await c.until(() => c.of('error').some((e) => e.ref === 'later'));
    expect(c.of('error').find((e) => e.ref === 'later')?.code).toBe('not_found');
  });
});

describe.each(syncBackends)('subscriptions per connection on %s', (_backend, open) => {
  it('refuses a subscription over maxSubscriptions with rate_limited; one more fits after an unsubscribe', async () => {
    const { url, engine } = await start(open, { maxSubscriptions: 3 });
    const c = await client(url);
    for (const sub of ['s1', 's2', 's3', 's4']) {
      c.send({ type: 'subscribe', sub, collection: GAMES, documentId: `doc-${sub}` });
    }
    await c.until((r) => r.some((m) => m.type === 'error' && m.ref === 's4'));
    await c.until(() => c.of('synced').length === 3);
    expect(c.of('error').find((e) => e.ref === 's4')?.code).toBe('rate_limited');
    expect(c.of('subscribed').map((s) => s.sub)).toEqual(['s1', 's2', 's3']);
    expect(engine.metrics.subscriptions).toBe(3);
    c.send({ type: 'unsubscribe', sub: 's1' });
    c.send({ type: 'subscribe', sub: 's5', collection: GAMES, filter: {} });
    await c.until(() => c.of('synced').some((s) => s.sub === 's5'));
    expect(engine.metrics.subscriptions).toBe(3);
  });
});

// ---- a client that completes the handshake and never reads -------------------------------------

/** A WebSocket client on a bare TCP socket: it sends frames, and reads nothing after the handshake. */
async function deafClient(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  cleanups.push(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  socket.write(
    'GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let head = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause(); // from now on nothing is read: the kernel buffers fill, then the server's
      resolve();
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
  expect(head.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
  return socket;
}

/** A client → server text frame (masked, as RFC 6455 requires of clients). */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  let header: Buffer;
  if (payload.length < 126) header = Buffer.from([0x81, 0x80 | payload.length]);
  else if (payload.length < 65536) {
    header = Buffer.from([0x81, 0x80 | 126, 0, 0]);
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  const masked = Buffer.alloc(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, mask, masked]);
}

describe.each(syncBackends)('a client too slow to read on %s', (_backend, open) => {
  it('is disconnected once maxBufferedBytes wait for it; what the server holds for it stays bounded; others keep their events', async () => {
    const maxBufferedBytes = 256 * 1024;
    const { engine, port, url, serverSockets } = await start(open, { maxBufferedBytes });
    const games = await engine.collection<{ _id: string; blob: string }>(GAMES);
    await games.findOneAndUpsert({ _id: 'big', blob: '' });

    const reader = await client(url, 'reader');
    reader.send({ type: 'subscribe', sub: 'big', collection: GAMES, documentId: 'big' });
    await reader.next('synced');

    const deaf = await deafClient(port);
    deaf.write(clientFrame(JSON.stringify({ type: 'hello', protocol: 1, clientId: `deaf-${RUN}` })));
    deaf.write(
      clientFrame(JSON.stringify({ type: 'subscribe', sub: 'big', collection: GAMES, documentId: 'big' })),
    );
    await until(() => engine.metrics.subscriptions === 2, 'the deaf client to subscribe');
    const serverSide = serverSockets.get(deaf.localPort!);
    expect(serverSide).toBeDefined();

    // Each event carries the 16 KiB string three times (jsonPatch, mergePatch, mongoUpdate): ~48 KiB a frame.
    const frameBytes = 3 * 16 * 1024 + 1024;
    let updates = 0;
    let maxHeld = 0;
    while (engine.metrics.connections === 2 && updates < 1000) {
      await games.updateOne('big', { $set: { blob: randomBytes(8 * 1024).toString('hex') } });
      updates++;
      // Lets the reader read (after the poll phase). Not sleep(0): on PGlite, a 1 ms timer loop
      // here starved every socket of this process, and the reader was cut off as too slow too.
      await setImmediate();
      maxHeld = Math.max(maxHeld, serverSide!.writableLength);
    }
    expect(engine.metrics.connections, `still connected after ${updates} events`).toBe(1);
    const heldAtClose = serverSide!.writableLength;
    // More events after the disconnect: nothing more is queued for the deaf client.
    for (let i = 0; i < 20; i++) {
      await games.updateOne('big', { $set: { blob: randomBytes(8 * 1024).toString('hex') } });
      updates++;
    }
    await sleep(50);
    console.log(
      `slow client: disconnected after ${updates - 20} events of ~${frameBytes} bytes; ` +
        `server held at most ${maxHeld} bytes for it (limit ${maxBufferedBytes})`,
    );
    expect(maxHeld).toBeLessThanOrEqual(maxBufferedBytes + 2 * frameBytes);
    expect(serverSide!.writableLength).toBeLessThanOrEqual(heldAtClose);

    // The reader got every event, in order.
    await reader.until(() => reader.of('event').length === updates + 1, 10_000);
    expect(reader.of('event').map((e) => e.event.seq)).toEqual(
      Array.from({ length: updates + 1 }, (_, i) => i + 1),
    );
  });
});

describe.each(syncBackends)('heartbeat on %s', (_backend, open) => {
  it('terminates a connection that stops answering pings after about two intervals; one that answers stays', async () => {
    const heartbeatMs = 100;
    const { url, engine } = await start(open, { heartbeatMs });
    const answering = await client(url, 'answering');
    const silent = new WebSocket(url, { autoPong: false });
    cleanups.push(() => silent.terminate());
    await once(silent, 'open');
    const opened = Date.now();
    let pings = 0;
    silent.on('ping', () => pings++);
    const [code] = (await Promise.race([
      once(silent, 'close'),
      sleep(20 * heartbeatMs).then(() => {
        throw new Error('the silent client was not terminated');
      }),
    ])) as [number, Buffer];
    const elapsed = Date.now() - opened;
    console.log(
      `heartbeat ${heartbeatMs} ms: silent client terminated after ${elapsed} ms, ${pings} ping(s)`,
    );
    expect(code).toBe(1006); // terminated: no close frame
    expect(pings).toBeGreaterThanOrEqual(1);
    await until(() => engine.metrics.connections === 1, 'the silent session to close');
    await sleep(5 * heartbeatMs);
    expect(answering.closed).toBeUndefined();
    answering.send({ type: 'unsubscribe', sub: 'still-here' });
    await answering.until(() => answering.of('error').some((e) => e.ref === 'still-here'));
  });
});

describe.each(syncBackends)('helloTimeoutMs on %s', (_backend, open) => {
  it('closes a WebSocket that sends no hello with 4408 and a reason; one that did, and SSE streams, stay', async () => {
    // WebSocket and SSE on one server (SSE streams are authenticated on their request).
    const engine = await SyncEngine.create({ db: await database(open), limits: { helloTimeoutMs: 200 } });
    const { port, close } = await loopbackServer(engine);
    cleanups.push(close);
    const games = await engine.collection<{ _id: string; version: number; gold: number }>(GAMES);
    await games.findOneAndUpsert({ _id: 'g1', gold: 0 });

    const silent = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
    cleanups.push(() => silent.terminate());
    // Frames other than hello do not count.
    silent.send({ type: 'subscribe', sub: 's', collection: GAMES });
    const greeted = await client(`ws://127.0.0.1:${port}/sync`, 'greeted');
    const stream = await SseClient.open(`http://127.0.0.1:${port}`, `/sse/${GAMES}`);
    cleanups.push(() => stream.destroy());

    await until(() => silent.closed !== undefined, 'the silent connection to close');
    expect(silent.closed).toEqual({ code: HELLO_TIMEOUT.code, reason: 'no hello within 200 ms' });
    expect(silent.received.map((m) => m.type)).toEqual(['error']); // unauthorized: send hello first
    await sleep(300);
    expect(greeted.closed).toBeUndefined();
    expect(stream.ended).toBe(false);
    await games.updateOne('g1', { $inc: { gold: 1 } });
    await stream.until((s) => s.of('event').length === 1);
    greeted.send({ type: 'subscribe', sub: 'g', collection: GAMES, documentId: 'g1' });
    await greeted.next('synced');
  });
});
