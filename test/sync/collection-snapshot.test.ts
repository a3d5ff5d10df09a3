import type { Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Database } from '../../src/core/collection-backend.js';
import type { SyncEvent } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';
import { applyEvent } from '../../src/events/apply.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { attach } from '../../src/server/attach.js';
import type { Filter } from '../../src/storage/types.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { SyncLimits } from '../../src/sync/types.js';
import { SseClient } from '../server/http-client.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { feedCaughtUp } from '../support/engine-feed.js';
import { loopbackServer } from '../support/loopback-server.js';
import { TestClient } from '../support/ws-client.js';

interface Game {
  _id: string;
  version: number;
  kind: 'in' | 'out';
  n: number;
  pad: string;
}

const MAX_BUFFERED = 64 * 1024;
/** Every 11th document does not match the filter: 5,000 of 5,500 do. */
const DOCS = 5500;
/** ~2.1 KiB a snapshot frame: ~10 MiB of snapshot, far more than MAX_BUFFERED and loopback's buffers. */
const PAD_CHARS = 2000;
const FILTER = { kind: 'in' } as const;
/**
 * Seeding 5,500 documents and pacing ~10 MiB through a 64 KiB window takes 6-30 s alone on PGlite
 * and passed 60 s once in a loaded CI run (PostgreSQL, two workers); the assertions bound bytes, not time.
 */
const HEAVY_TIMEOUT_MS = 180_000;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(closeSharedPglite);

async function start(open: () => Promise<Database>, limits: Partial<SyncLimits> = {}) {
  const db = await open();
  const engine = await SyncEngine.create({ db, limits: { maxBufferedBytes: MAX_BUFFERED, ...limits } });
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

const id = (i: number) => `d${String(i).padStart(4, '0')}`;

async function seed(games: Games, count: number, pad = 'x'.repeat(PAD_CHARS)): Promise<void> {
  for (let i = 0; i < count; i++) {
    await games.findOneAndUpsert({ _id: id(i), kind: i % 11 === 0 ? 'out' : 'in', n: i, pad });
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A transport's client of one collection subscription: frames as they arrive, reading paused and resumed. */
interface Reader {
  frames(): ServerMessage[];
  /** How many snapshot frames arrived (cheap enough to poll). */
  snapshots(): number;
  synced(): boolean;
  closed(): boolean;
  pause(): void;
  resume(): void;
  localPort: number;
}

async function wsReader(port: number, collection: string): Promise<Reader> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/sync`);
  cleanups.push(() => ws.terminate());
  const frames: ServerMessage[] = [];
  let snapshots = 0;
  let closed = false;
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as ServerMessage;
    if (m.type === 'snapshot') snapshots++;
    frames.push(m);
  });
  ws.on('close', () => {
    closed = true;
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'reader-ws' }));
  ws.send(JSON.stringify({ type: 'subscribe', sub: 'in', collection, filter: FILTER }));
  const localPort = (ws as unknown as { _socket: Socket })._socket.localPort!;
  return {
    frames: () => frames,
    snapshots: () => snapshots,
    synced: () => frames.some((m) => m.type === 'synced'),
    closed: () => closed,
    pause: () => ws.pause(),
    resume: () => ws.resume(),
    localPort,
  };
}

async function sseReader(port: number, collection: string): Promise<Reader> {
  const filter = encodeURIComponent(JSON.stringify(FILTER));
  const c = await SseClient.open(`http://127.0.0.1:${port}`, `/sse/${collection}?filter=${filter}`);
  cleanups.push(() => c.destroy());
  expect(c.status).toBe(200);
  const count = (needle: string) => c.events.filter((e) => e.data.includes(needle)).length;
  return {
    frames: () => c.messages,
    snapshots: () => count('"type":"snapshot"'),
    synced: () => count('"type":"synced"') > 0,
    closed: () => c.ended,
    pause: () => c.pause(),
    resume: () => c.resume(),
    localPort: c.localPort,
  };
}

/**
 * Replays what a client received, failing at the first frame a correct client could not take: a
 * second snapshot of a document it has, a snapshot whose state is not the one at its seq, an
 * event that does not follow the document's seq (a duplicate or a gap), an event of a document
 * it never got. Returns the documents it holds.
 */
function replay(frames: ServerMessage[]): Map<string, JsonObject> {
  const docs = new Map<string, { state: JsonObject | null; seq: number }>();
  const snapshotted = new Set<string>();
  for (const m of frames) {
    if (m.type === 'snapshot') {
      expect(docs.has(m.documentId), `a second snapshot of ${m.documentId}`).toBe(false);
      expect(snapshotted.has(m.documentId), `${m.documentId} snapshotted twice`).toBe(false);
      snapshotted.add(m.documentId);
      // A snapshot's state is the one at its seq. Every document here is created once (never
      // deleted and re-created), so its version counts its events: version = seq.
      expect([m.version, m.state?.version], `${m.documentId}: snapshot at seq ${m.seq}`).toEqual([
        m.seq,
        m.seq,
      ]);
      docs.set(m.documentId, { state: m.state, seq: m.seq });
    } else if (m.type === 'event') {
      const event = m.event as SyncEvent;
      const doc = docs.get(event.documentId);
      if (!doc) {
        expect(event.operation, `an event of ${event.documentId} before its state`).toBe('create');
        docs.set(event.documentId, { state: applyEvent(null, event), seq: event.seq });
        continue;
      }
      expect(event.fromSeq ?? event.seq, `${event.documentId}: seq ${event.seq} after ${doc.seq}`).toBe(
        doc.seq + 1,
      );
      docs.set(event.documentId, { state: applyEvent(doc.state, event), seq: event.seq });
    } else if (m.type === 'leave') {
      docs.delete(m.documentId);
    }
  }
  const out = new Map<string, JsonObject>();
  for (const [documentId, { state }] of docs) if (state) out.set(documentId, state);
  return out;
}

async function matching(games: Games): Promise<Map<string, JsonObject>> {
  const docs = (await games.findMany(FILTER)) as unknown as JsonObject[];
  return new Map(docs.map((d) => [d._id as string, d]));
}

const transports: [string, (port: number, collection: string) => Promise<Reader>][] = [
  ['WebSocket', wsReader],
  ['SSE', sseReader],
];
/** Each transport on each backend. */
const cases = transports.flatMap(([transport, reader]) =>
  syncBackends.map(([backend, open]) => [transport, backend, reader, open] as const),
);

describe.each(cases)('a collection snapshot over %s on %s', (_transport, _backend, openReader, open) => {
  // On PostgreSQL this once held 99-174 KB for the paused client: its snapshot had run further
  // into loopback's buffers, so the writes below hit documents ahead of it, which entered the
  // subscription and had their snapshots sent at once, outside the catch-up pacing (now queued).
  it(
    'of 5,000 documents to a client that stops reading: bounded on the server, others served; then every document once, and the writes committed meanwhile each once and in order',
    async () => {
      const { engine, games, collection, port, serverSockets } = await start(open);
      await seed(games, DOCS);
      const reader = await openReader(port, collection);
      await until(() => reader.snapshots() >= 3, 'the first snapshots');
      reader.pause();
      const serverSide = serverSockets.get(reader.localPort)!;
      await until(() => serverSide.writableLength > 0, 'the server to hold data for the paused client');
      let maxHeld = 0;
      const held = setInterval(() => {
        maxHeld = Math.max(maxHeld, serverSide.writableLength);
      }, 5);
      cleanups.push(() => clearInterval(held));
      await sleep(100);
      expect(reader.synced()).toBe(false);
      expect(reader.closed()).toBe(false);

      // A bystander is served while the snapshot waits for its client.
      const res = await fetch(`http://127.0.0.1:${port}/api/${collection}/${id(1)}`, {
        signal: AbortSignal.timeout(5000),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as JsonObject)._id).toBe(id(1));

      // Writes while the snapshot waits: to documents the client has, to the next ones (queued,
      // or followed and waiting to be sent), to some not reached yet, creates, deletes, and
      // documents that enter and leave the filter.
      const got = reader
        .frames()
        .flatMap((m) => (m.type === 'snapshot' ? [m.documentId] : []))
        .slice(0, 3);
      // Where the snapshot stands: what the server wrote (into loopback's buffers) and holds, in
      // frames of about the first one's size. Documents around there are the ones read, being sent
      // and waiting to be sent with their live events held.
      const frameBytes = JSON.stringify(reader.frames().find((m) => m.type === 'snapshot')).length + 20;
      const written = Math.round((serverSide.bytesWritten + serverSide.writableLength) / frameBytes);
      const at = Math.round((written * 11) / 10);
      const around = Array.from({ length: 60 }, (_, k) => at - 30 + k).filter((i) => i > 3 && i % 11 !== 0);
      for (let round = 0; round < 2; round++) {
        await games.updateOne(got[0]!, { $inc: { n: 1 } });
        for (const i of around)
          if (round === 0 || i % 3 === 0) await games.updateOne(id(i), { $inc: { n: 1 } });
        await games.updateOne(id(5400), { $inc: { n: 1 } });
      }
      await games.updateOne(got[1]!, { $set: { kind: 'out' } }); // leaves
      await games.deleteOne(got[2]!); // leaves
      await games.deleteOne(id(5000)); // never sent
      await games.updateOne(id(5001), { $set: { kind: 'out' } }); // never sent
      await games.updateOne(id(0), { $set: { kind: 'in' } }); // enters behind
      await games.updateOne(id(5390), { $set: { kind: 'in' } }); // enters ahead
      await games.findOneAndUpsert({ _id: `${id(2)}a`, kind: 'in', n: -1, pad: '' }); // created behind
      await games.findOneAndUpsert({ _id: id(5600), kind: 'in', n: -1, pad: '' }); // created ahead
      await sleep(100);
      expect(reader.synced()).toBe(false);
      expect(reader.closed(), 'cut off while the snapshot waited').toBe(false);
      expect(engine.metrics.connections).toBe(1);
      // What waits for the paused client stays about the catch-up window (half the limit) and the live frames.
      expect(maxHeld).toBeLessThanOrEqual(MAX_BUFFERED);

      reader.resume();
      await until(() => reader.synced() || reader.closed(), 'synced', 60_000);
      expect(reader.closed()).toBe(false);
      // One more write after synced: live, once.
      await games.updateOne(id(1), { $inc: { n: 1 } });
      await until(
        () => reader.frames().some((m) => m.type === 'event' && m.event.documentId === id(1)),
        'the last live event',
      );
      await sleep(100);

      const frames = reader.frames();
      const expected = await matching(games);
      expect(expected.size).toBe(5000);
      const received = replay(frames);
      expect([...received.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [documentId, doc] of expected) expect(received.get(documentId), documentId).toEqual(doc);
      expect(
        frames.filter((m) => m.type === 'leave').map((m) => (m as { documentId: string }).documentId),
      ).toEqual([got[1], got[2]]);
      expect(frames.filter((m) => m.type === 'synced')).toHaveLength(1);
    },
    HEAVY_TIMEOUT_MS,
  );

  it(
    'documents entering the subscription of a client that stops reading: their snapshots wait for it (bounded), then each comes once, before its later events',
    async () => {
      const { games, collection, port, serverSockets } = await start(open);
      // ~5 MiB of snapshots entering at once: more than loopback's buffers take.
      const entering = 2500;
      const pad = 'x'.repeat(PAD_CHARS);
      for (let i = 0; i < entering; i++) await games.findOneAndUpsert({ _id: id(i), kind: 'out', n: i, pad });
      const reader = await openReader(port, collection);
      await until(() => reader.synced(), 'synced (nothing matches yet)');
      reader.pause();
      const serverSide = serverSockets.get(reader.localPort)!;
      let maxHeld = 0;
      const held = setInterval(() => {
        maxHeld = Math.max(maxHeld, serverSide.writableLength);
      }, 5);
      cleanups.push(() => clearInterval(held));
      for (let i = 0; i < entering; i++) await games.updateOne(id(i), { $set: { kind: 'in' } });
      await games.updateOne(id(0), { $inc: { n: 1 } }); // after its entry: held behind its snapshot
      await sleep(100);
      expect(reader.closed(), 'cut off while the entries waited').toBe(false);
      expect(maxHeld).toBeLessThanOrEqual(MAX_BUFFERED);

      reader.resume();
      await until(() => reader.snapshots() >= entering || reader.closed(), 'every entered document', 60_000);
      await until(
        () => reader.frames().some((m) => m.type === 'event' && m.event.documentId === id(0)),
        'the event after the entry',
      );
      const expected = await matching(games);
      const received = replay(reader.frames());
      expect(received.size).toBe(entering);
      for (const [documentId, doc] of expected) expect(received.get(documentId), documentId).toEqual(doc);
    },
    HEAVY_TIMEOUT_MS,
  );
});

describe.each(syncBackends)('a page of a collection snapshot read slowly, on %s', (_backend, open) => {
  it('holds the live events of its documents committed meanwhile and sends them after their snapshots, each once and in order', async () => {
    const { games, collection, port } = await start(open, { maxBufferedBytes: 4 * 1024 * 1024 });
    await seed(games, 300, '');
    // The second page's documents are read (at one seq each) only once the test says so.
    const read = games.findMany.bind(games);
    let pages = 0;
    let paused: string[] | undefined;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    games.findMany = async (filter?: Filter, options?: Parameters<Games['findMany']>[1]) => {
      const ids = (filter as { _id?: { $in?: string[] } } | undefined)?._id?.$in;
      if (ids && ++pages === 2) {
        paused = ids;
        await gate;
      }
      return read(filter, options);
    };
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
    cleanups.push(() => c.terminate());
    c.send({ type: 'hello', protocol: 1, clientId: 'slow-page' });
    c.send({ type: 'subscribe', sub: 'in', collection, filter: FILTER });
    await until(() => paused !== undefined, 'the second page to be read', 10_000);
    const page = paused!;
    expect(page.length).toBeGreaterThan(10);
    // Writes to the page's documents while it is read: updates, one leaving, one deleted; and
    // to documents of the first page (sent) and of later pages (not read yet).
    await c.until((r) => r.some((m) => m.type === 'snapshot'));
    const sent = c.received.flatMap((m) => (m.type === 'snapshot' ? [m.documentId] : []));
    for (let round = 0; round < 3; round++) {
      for (const d of page.slice(0, 6)) await games.updateOne(d, { $inc: { n: 1 } });
      await games.updateOne(sent[0]!, { $inc: { n: 1 } });
      await games.updateOne(id(290), { $inc: { n: 1 } });
    }
    await games.updateOne(page[6]!, { $set: { kind: 'out' } });
    await games.deleteOne(page[7]!);
    await sleep(50);
    expect(c.received.some((m) => m.type === 'synced')).toBe(false);
    release();
    await c.next('synced');
    await sleep(100);

    const received = replay(c.received);
    const expected = await matching(games);
    expect([...received.keys()].sort()).toEqual([...expected.keys()].sort());
    for (const [documentId, doc] of expected) expect(received.get(documentId), documentId).toEqual(doc);
    // The page's documents arrive as their snapshot (at the seq of the state it carries), then the events after it.
    for (const d of page.slice(0, 6)) {
      const first = c.received.find(
        (m) =>
          (m.type === 'snapshot' && m.documentId === d) || (m.type === 'event' && m.event.documentId === d),
      );
      expect(first?.type, d).toBe('snapshot');
    }
  });
});

describe.each(syncBackends)('maxSubscriptionDocuments on %s', (_backend, open) => {
  async function subscriber(port: number): Promise<TestClient> {
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
    cleanups.push(() => c.terminate());
    c.send({ type: 'hello', protocol: 1, clientId: 'capped' });
    await c.next('welcome');
    return c;
  }

  it('a subscription whose filter matches more ends with too_large once its snapshot reaches the cap', async () => {
    const { games, collection, port } = await start(open, { maxSubscriptionDocuments: 50 });
    await seed(games, 200, '');
    const c = await subscriber(port);
    c.send({ type: 'subscribe', sub: 'all', collection, filter: FILTER });
    const error = await c.next('error');
    expect(error).toMatchObject({ code: 'too_large', ref: 'all' });
    expect(error.message).toContain('50');
    expect(c.received.filter((m) => m.type === 'synced')).toEqual([]);
    expect(c.received.filter((m) => m.type === 'snapshot').length).toBeLessThanOrEqual(50);
    // The subscription is gone: writes reach the client no more; the connection goes on.
    await games.updateOne(id(1), { $inc: { n: 1 } });
    c.send({ type: 'subscribe', sub: 'few', collection, filter: { n: { $lt: 10 } } });
    await c.next('synced');
    c.send({ type: 'unsubscribe', sub: 'all' });
    expect(await c.next('error', c.received.length)).toMatchObject({ code: 'not_found', ref: 'all' });
    expect(c.received.filter((m) => m.type === 'event')).toEqual([]);
  });

  it('a subscription at the cap is served; a document entering past it ends it with too_large', async () => {
    const { engine, games, collection, port } = await start(open, { maxSubscriptionDocuments: 50 });
    // 55 documents, 50 of them match, all in the snapshot.
    await seed(games, 55, '');
    await feedCaughtUp(engine);
    const c = await subscriber(port);
    c.send({ type: 'subscribe', sub: 'all', collection, filter: FILTER });
    await c.next('synced');
    expect(c.received.filter((m) => m.type === 'snapshot')).toHaveLength(50);
    // Leaving makes room: one leaves, another enters.
    await games.updateOne(id(1), { $set: { kind: 'out' } });
    await games.updateOne(id(0), { $set: { kind: 'in' } });
    await c.until((r) => r.some((m) => m.type === 'snapshot' && m.documentId === id(0)));
    expect(c.received.filter((m) => m.type === 'error')).toEqual([]);
    // One more is one too many.
    await games.findOneAndUpsert({ _id: 'new', kind: 'in', n: 0, pad: '' });
    expect(await c.next('error')).toMatchObject({ code: 'too_large', ref: 'all' });
    const after = c.received.length;
    await games.updateOne(id(2), { $inc: { n: 1 } });
    await sleep(100);
    expect(c.received.slice(after)).toEqual([]);
  });
});

describe.each(syncBackends)('a subscriber reading a large snapshot on %s', (_backend, open) => {
  it('does not hold the event loop: a request sent with the subscribe is answered before synced', {
    timeout: HEAVY_TIMEOUT_MS,
  }, async () => {
    const { engine, games, collection, port } = await start(open, { maxBufferedBytes: 4 * 1024 * 1024 });
    await seed(games, DOCS, '');
    // All 5,000 as snapshots: on PostgreSQL the last creates may otherwise reach the subscription
    // live, as their create events (seen in CI: 4,999 snapshots and d5499's create).
    await feedCaughtUp(engine);
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
    cleanups.push(() => c.terminate());
    c.send({ type: 'hello', protocol: 1, clientId: 'fast' });
    await c.next('welcome');
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    c.send({ type: 'subscribe', sub: 'all', collection, filter: FILTER });
    await c.next('subscribed');
    const res = await fetch(`http://127.0.0.1:${port}/api/${collection}/${id(1)}`);
    expect(res.status).toBe(200);
    const beforeSynced = !c.received.some((m) => m.type === 'synced');
    // 5,000 snapshots take seconds on PGlite in a loaded run (one failed at next's 5 s).
    await c.until((r) => r.some((m) => m.type === 'synced'), HEAVY_TIMEOUT_MS - 30_000);
    delay.disable();
    console.log(
      `5,000-document snapshot: event-loop delay max ${(delay.max / 1e6).toFixed(0)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(0)} ms`,
    );
    expect(beforeSynced, 'the request waited for the whole snapshot').toBe(true);
    expect(c.received.filter((m) => m.type === 'snapshot')).toHaveLength(5000);
  });
});

describe.each(syncBackends)(
  'a collection subscription resumed with known documents on %s',
  (_backend, open) => {
    it('sends snapshots only of what changed, leave for what the subscription no longer covers, then live events', async () => {
      const { games, collection, port } = await start(open);
      await seed(games, 6, '');
      const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
      cleanups.push(() => c.terminate());
      c.send({ type: 'hello', protocol: 1, clientId: 'resumer' });
      await c.next('welcome');
      // d0000 is 'out'; the client held d0001..d0005 at seq 1, and d0099 (never there).
      await games.updateOne(id(2), { $inc: { n: 10 } }); // changed: seq 2
      await games.updateOne(id(3), { $set: { kind: 'out' } }); // no longer matching
      await games.deleteOne(id(4)); // gone
      const known = { [id(1)]: 1, [id(2)]: 1, [id(3)]: 1, [id(4)]: 1, [id(5)]: 1, d0099: 1 };
      c.send({ type: 'subscribe', sub: 'in', collection, filter: FILTER, known });
      await c.next('synced');
      const frames = c.received.filter((m) => m.type === 'snapshot' || m.type === 'leave');
      expect(frames.filter((m) => m.type === 'snapshot')).toEqual([
        expect.objectContaining({ documentId: id(2), seq: 2, state: expect.objectContaining({ n: 12 }) }),
      ]);
      const leaves = frames.filter((m) => m.type === 'leave');
      expect(leaves.map((m) => m.documentId).sort()).toEqual([id(3), id(4), 'd0099']);
      expect(leaves.every((m) => m.sub === 'in' && m.reason === 'unmatched')).toBe(true);
      // A document kept without a snapshot is followed from the seq the client holds.
      const before = c.received.length;
      await games.updateOne(id(1), { $inc: { n: 1 } });
      const event = await c.next('event', before);
      expect(event.event).toMatchObject({ documentId: id(1), seq: 2 });
      expect(c.received.filter((m) => m.type === 'error')).toEqual([]);
    });

    it('answers a known list filling a frame (~50 KiB) with a leave each, stores nothing, serves others', async () => {
      const { games, collection, port } = await start(open, { maxBufferedBytes: 4 * 1024 * 1024 });
      await seed(games, 2, '');
      const known = Object.fromEntries(
        Array.from({ length: 5000 }, (_, i) => [`g${String(i).padStart(4, '0')}`, 1]),
      );
      expect(JSON.stringify(known).length).toBeGreaterThan(45_000);
      const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
      cleanups.push(() => c.terminate());
      c.send({ type: 'hello', protocol: 1, clientId: 'flood' });
      await c.next('welcome');
      c.send({ type: 'subscribe', sub: 'all', collection, known });
      await c.until((r) => r.some((m) => m.type === 'synced'), 30_000);
      expect(c.received.filter((m) => m.type === 'leave')).toHaveLength(5000);
      expect(c.received.filter((m) => m.type === 'snapshot')).toHaveLength(2);
      expect(await games.findMany({})).toHaveLength(2);
      // The server goes on serving others.
      const other = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
      cleanups.push(() => other.terminate());
      other.send({ type: 'hello', protocol: 1, clientId: 'other' });
      await other.next('welcome');
      other.send({ type: 'subscribe', sub: 'all', collection });
      await other.next('synced');
      expect(other.received.filter((m) => m.type === 'snapshot')).toHaveLength(2);
    });

    it('refuses more known documents than a subscription may cover, and the session goes on', async () => {
      const { games, collection, port } = await start(open, { maxSubscriptionDocuments: 3 });
      await seed(games, 2, '');
      const c = await TestClient.connect(`ws://127.0.0.1:${port}/sync`);
      cleanups.push(() => c.terminate());
      c.send({ type: 'hello', protocol: 1, clientId: 'greedy' });
      await c.next('welcome');
      const known = Object.fromEntries(Array.from({ length: 4 }, (_, i) => [id(i), 1]));
      c.send({ type: 'subscribe', sub: 'big', collection, filter: FILTER, known });
      expect(await c.next('error')).toMatchObject({ code: 'validation', ref: 'big' });
      c.send({ type: 'subscribe', sub: 'small', collection, filter: FILTER, known: { [id(1)]: 1 } });
      await c.next('synced');
      expect(c.received.filter((m) => m.type === 'snapshot')).toEqual([]);
    });
  },
);
