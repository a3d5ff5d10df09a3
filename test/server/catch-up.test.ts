/**
 * A catch-up far longer than the send buffer, over real WebSocket and SSE connections on
 * loopback: with a small `maxBufferedBytes` and no snapshots, a client thousands of events
 * behind gets them all (the session paces catch-up to the socket instead of writing it at once
 * and tripping the too-slow rule), and live events that commit while the catch-up waits for the
 * client follow it exactly once, in order. A client that stops reading in the middle of a
 * catch-up is still disconnected once its live events pass the limit.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Database } from '../../src/core/collection-backend.js';
import type { JsonObject } from '../../src/core/json.js';
import { applyEvents } from '../../src/events/apply.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { TOO_SLOW } from '../../src/protocol/wire.js';
import { attach } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { loopbackServer } from '../support/loopback-server.js';
import { SseClient } from './http-client.js';

interface Game {
  _id: string;
  version: number;
  pad: string;
}

const MAX_BUFFERED = 64 * 1024;
/** Each event carries its 1,300-character pad three times (three diff notations): ~4 KiB a frame. */
const PAD_CHARS = 1300;
/** ~12 MiB of catch-up: about 190 times MAX_BUFFERED, and more than loopback's kernel buffers hold. */
const BEHIND = 3000;
/** Live events while the catch-up waits: ~43 KiB, under MAX_BUFFERED (held ones count against it). */
const LIVE = 10;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(closeSharedPglite);

async function start(open: () => Promise<Database>) {
  const db = await open();
  // No snapshots: the whole tail is sent as events, however long.
  const engine = await SyncEngine.create({
    db,
    limits: { maxBufferedBytes: MAX_BUFFERED },
    snapshotEvery: 0,
  });
  const { port, serverSockets, close } = await loopbackServer(engine, (server) =>
    attach(server, engine, { sse: { lingerMs: 500 } }),
  );
  cleanups.push(async () => {
    await close();
    await db.close();
  });
  // Its own collection: the backend's database may be shared (PGlite by this file, PostgreSQL by all).
  const collection = uniqueCollection('games');
  const games = await engine.collection<Game>(collection);
  return { engine, games, collection, port, serverSockets };
}

type Games = Awaited<ReturnType<typeof start>>['games'];

async function writeHistory(games: Games, events: number): Promise<void> {
  await games.findOneAndUpsert({ _id: 'far', pad: '' });
  for (let i = 1; i < events; i++) await games.updateOne('far', { $set: { pad: pad() } });
}

const pad = () => randomBytes(PAD_CHARS / 2).toString('hex');

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** What a transport's client does here: read frames, stop and resume reading. */
interface Reader {
  frames: ServerMessage[];
  closed(): boolean;
  pause(): void;
  resume(): void;
  /** The client's local port: the key of the server's side of the connection. */
  localPort: number;
}

async function wsReader(port: number, collection: string): Promise<Reader> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/sync`);
  cleanups.push(() => ws.terminate());
  const frames: ServerMessage[] = [];
  let closed = false;
  ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as ServerMessage));
  ws.on('close', () => {
    closed = true;
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'far-ws' }));
  ws.send(JSON.stringify({ type: 'subscribe', sub: 'far', collection, documentId: 'far', afterSeq: 0 }));
  const localPort = (ws as unknown as { _socket: Socket })._socket.localPort!;
  return { frames, closed: () => closed, pause: () => ws.pause(), resume: () => ws.resume(), localPort };
}

async function sseReader(port: number, collection: string): Promise<Reader> {
  const c = await SseClient.open(`http://127.0.0.1:${port}`, `/sse/${collection}/far?afterSeq=0`);
  cleanups.push(() => c.destroy());
  expect(c.status).toBe(200);
  const reader: Reader & { client: SseClient } = {
    client: c,
    get frames() {
      return c.messages;
    },
    closed: () => c.ended,
    pause: () => c.pause(),
    resume: () => c.resume(),
    localPort: c.localPort,
  };
  return reader;
}

const transports: [string, (port: number, collection: string) => Promise<Reader>][] = [
  ['WebSocket', wsReader],
  ['SSE', sseReader],
];
/** Each transport on each backend. */
const cases = transports.flatMap(([transport, reader]) =>
  syncBackends.map(([backend, open]) => [transport, backend, reader, open] as const),
);

describe.each(cases)('a client far behind, over %s on %s', (_transport, _backend, openReader, open) => {
  it('gets every event of a catch-up ~190× maxBufferedBytes, then the live events that committed meanwhile, each once and in order', async () => {
    const { engine, games, collection, port, serverSockets } = await start(open);
    await writeHistory(games, BEHIND);
    const reader = await openReader(port, collection);
    // Stop reading as soon as the catch-up flows: the server's buffers fill and the catch-up waits.
    await until(() => reader.frames.some((m) => m.type === 'event'), 'the first event');
    reader.pause();
    const serverSide = serverSockets.get(reader.localPort)!;
    expect(serverSide).toBeDefined();
    await until(
      () => serverSide.writableLength > 0 || reader.closed(),
      'the server to hold data for the paused client',
    );
    expect(reader.closed(), 'cut off during the catch-up').toBe(false);

    // Live events while the catch-up waits for the client: held, not sent ahead of it or lost.
    let maxHeld = 0;
    for (let i = 0; i < LIVE; i++) {
      await games.updateOne('far', { $set: { pad: pad() } });
      maxHeld = Math.max(maxHeld, serverSide.writableLength);
    }
    await sleep(50);
    maxHeld = Math.max(maxHeld, serverSide.writableLength);
    expect(reader.frames.some((m) => m.type === 'synced')).toBe(false);
    expect(engine.metrics.connections).toBe(1);
    // Catch-up is paced: the server holds at most half the limit of it (plus the frame that crossed it).
    expect(maxHeld).toBeLessThanOrEqual(MAX_BUFFERED / 2 + 8 * 1024);

    reader.resume();
    const total = BEHIND + LIVE;
    const seqs = () => reader.frames.flatMap((m) => (m.type === 'event' ? [m.event.seq] : []));
    await until(() => seqs().length >= total || reader.closed(), `${total} events`, 60_000);
    expect(reader.closed()).toBe(false);
    expect(seqs()).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    await until(() => reader.frames.some((m) => m.type === 'synced'), 'synced');

    // One more live event after synced: still exactly once, after the rest.
    await games.updateOne('far', { $set: { pad: pad() } });
    await until(() => seqs().length === total + 1, 'the last live event');
    expect(seqs().at(-1)).toBe(total + 1);
    await sleep(50);
    expect(seqs()).toHaveLength(total + 1);

    const events = reader.frames.flatMap((m) => (m.type === 'event' ? [m.event] : []));
    const replica = applyEvents(null, events, 0) as JsonObject;
    expect(replica).toEqual(await games.findOne('far'));
  });

  it('is still disconnected as too slow when it stops reading mid-catch-up and its live events pass maxBufferedBytes', async () => {
    const { engine, games, collection, port } = await start(open);
    await writeHistory(games, BEHIND);
    const reader = await openReader(port, collection);
    await until(() => reader.frames.some((m) => m.type === 'event'), 'the first event');
    reader.pause();
    // Each live event is ~4 KiB: well within 200 of them, the held ones pass 64 KiB.
    let updates = 0;
    while (engine.metrics.connections === 1 && updates < 200) {
      await games.updateOne('far', { $set: { pad: pad() } });
      updates++;
      // Yields as writes from other clients would: on PGlite the feed runs only when the event loop does.
      await setImmediate();
    }
    expect(engine.metrics.connections, `still connected after ${updates} live events`).toBe(0);
    expect(updates).toBeGreaterThan(MAX_BUFFERED / (8 * 1024));
    reader.resume();
    await until(() => reader.closed(), 'the connection to end');
  });
});

describe.each(syncBackends)('the too-slow close of a stalled catch-up on %s', (_backend, open) => {
  it('tells an SSE client why (event close 1013)', async () => {
    const { engine, games, collection, port } = await start(open);
    await writeHistory(games, BEHIND);
    const reader = (await sseReader(port, collection)) as Reader & { client: SseClient };
    await until(() => reader.frames.some((m) => m.type === 'event'), 'the first event');
    reader.pause();
    for (let i = 0; i < 200 && engine.metrics.connections === 1; i++) {
      await games.updateOne('far', { $set: { pad: pad() } });
      // Yields as writes from other clients would: on PGlite the feed runs only when the event loop does.
      await setImmediate();
    }
    expect(engine.metrics.connections).toBe(0);
    reader.resume();
    await reader.client.closed(20_000);
    const close = reader.client.events.find((e) => e.type === 'close');
    expect(close && JSON.parse(close.data)).toEqual({ code: TOO_SLOW.code, reason: TOO_SLOW.reason });
  });
});
