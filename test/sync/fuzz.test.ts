/**
 * Fuzz: misbehaving clients send at least 10,000 malformed frames over real
 * WebSockets on loopback (invalid JSON, wrong types, strings near and over the size limit, deep
 * nesting, unknown types, `__proto__`/`constructor` keys, bad ids, valid shapes with bad values,
 * binary frames). Every frame must be answered: an `error` frame, or a close with a code that says
 * why; a closed client is replaced. Meanwhile a well-behaved client keeps receiving the events of
 * writes made during the fuzzing, all of them, in order; and nothing stored changes but those writes.
 *
 * Reproduce a failure with FUZZ_SEED=<seed printed on failure>; FUZZ_FRAMES raises the count.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Database } from '../../src/core/collection-backend.js';
import { applyEvent, type JsonObject, type SyncEvent } from '../../src/index.js';
import { ClientMessage, type ServerMessage } from '../../src/protocol/messages.js';
import { attachWebSocket } from '../../src/server/ws.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { defaultLimits } from '../../src/sync/types.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { TestClient } from '../support/ws-client.js';

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 10_000);
const SEED =
  process.env.FUZZ_SEED === undefined
    ? Date.now() ^ (Math.random() * 2 ** 31)
    : Number(process.env.FUZZ_SEED);
const FUZZERS = 4;
const BATCH = 40; // frames per property run, split over the fuzzers
const LIMIT = defaultLimits.maxMessageBytes;
const DEPTH = defaultLimits.maxMessageDepth;
const GOOD_TOKEN = 'good-token';
/** The collection of these tests: a name no other file uses (PostgreSQL is shared by all). */
const GAMES = uniqueCollection('games');

interface Game {
  _id: string;
  version?: number;
  name: string;
  n: number;
}

// The server of the backend under test (each describe.each block starts its own).
let db: Database;
let server: Server;
let engine: SyncEngine;
let url: string;
let closeTransport: () => Promise<void>;
/** What the server logged as errors: a failure it did not expect. */
const logged: string[] = [];

async function startServer(open: () => Promise<Database>): Promise<void> {
  db = await open();
  logged.length = 0;
  stats = emptyStats();
  engine = await SyncEngine.create({
    db,
    authenticate: ({ token }) => (token === GOOD_TOKEN ? { id: 'user' } : undefined),
    authorize: (_principal, action, _collection, documentId) =>
      action !== 'read' || !documentId?.startsWith('secret'),
    // Frames should reach validation, not the rate limiter (tested in limits.test.ts).
    limits: { maxMessagesPerSecond: 20_000 },
    logger: {
      error: (details, message) => logged.push(`${message}: ${String((details as { err?: unknown }).err)}`),
      warn: () => {},
      info: () => {},
      debug: () => {},
    },
  });
  server = createServer();
  closeTransport = attachWebSocket(server, engine).close;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/sync`;
}

async function stopServer(): Promise<void> {
  await closeTransport();
  await engine.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await db.close();
}

afterAll(closeSharedPglite);

// ---- frames ------------------------------------------------------------------------------------

interface Frame {
  kind: string;
  data: string | Buffer;
}

const text = (kind: string) => (data: string) => ({ kind, data });
const knownTypes = new Set(['hello', 'subscribe', 'unsubscribe', 'ack']);
const docIds = ['live', 'g1', 'g2', 'secret1', 'missing', '__proto__', 'constructor', 'toString'];

const templates: Record<string, unknown>[] = [
  { type: 'hello', protocol: 1, clientId: 'fuzzer', token: GOOD_TOKEN },
  { type: 'subscribe', sub: 's1', collection: GAMES, documentId: 'g1', afterSeq: 0 },
  { type: 'subscribe', sub: 's2', collection: GAMES, documentId: 'g2', vectorClock: { server: 1 } },
  { type: 'subscribe', sub: 's3', collection: GAMES, filter: { n: { $gte: 0 } } },
  { type: 'unsubscribe', sub: 's1' },
  { type: 'ack', collection: GAMES, documentId: 'g1', seq: 1 },
];
const template = fc.constantFrom(...templates).map((t) => structuredClone(t));
const fieldOf = (t: Record<string, unknown>) => fc.constantFrom(...Object.keys(t));

const badString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '../etc/passwd',
    'a/b',
    '.x',
    '-x',
    '@x',
    'A B',
    'x'.repeat(129),
    'é',
    '\u0000',
    '$where',
  ),
);
const badNumber = fc.oneof(
  fc.integer({ max: -1 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Number.isInteger(d)),
  fc.constantFrom(2 ** 53, 1e308, -0.5, 0.1),
  fc.integer().map(String),
);

/** Not JSON at all, or JSON with a flaw. */
const invalidJson = fc
  .oneof(
    fc.string({ maxLength: 60 }),
    fc.string({ unit: 'binary', maxLength: 60 }),
    template.chain((t) => {
      const s = JSON.stringify(t);
      return fc.integer({ min: 0, max: s.length - 1 }).map((k) => s.slice(0, k));
    }),
    template.map((t) => JSON.stringify(t).replace(/"/g, "'")),
    template.map((t) => `${JSON.stringify(t).slice(0, -1)},}`),
    template.map((t) => `${JSON.stringify(t)}${JSON.stringify(t)}`),
    template.map((t) => `\uFEFF${JSON.stringify(t)}`),
    template.map((t) => `/* c */${JSON.stringify(t)}`),
    fc.constantFrom(
      'NaN',
      'Infinity',
      '{"type":NaN}',
      '{"seq":1e}',
      'undefined',
      '{"type":"hello"',
      '\u0000',
    ),
  )
  .filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  })
  .map(text('invalid JSON'));

/** JSON, but not a message: any value, or a message with a field replaced, missing or added. */
const wrongTypes = fc
  .oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    template.chain((t) =>
      fc.tuple(fieldOf(t), fc.jsonValue({ maxDepth: 3 })).map(([k, v]) => JSON.stringify({ ...t, [k]: v })),
    ),
    template.chain((t) =>
      fieldOf(t).map((k) => {
        delete t[k];
        return JSON.stringify(t);
      }),
    ),
    template.chain((t) =>
      fc
        .tuple(fc.string({ minLength: 1, maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }))
        .filter(([k]) => !(k in t))
        .map(([k, v]) => JSON.stringify({ ...t, [k]: v })),
    ),
  )
  .map(text('wrong types'));

/** Frames of exactly n bytes around the size limit: over it the connection closes (1009). */
const huge = fc
  .tuple(fc.integer({ min: LIMIT - 300, max: LIMIT + 300 }), fc.constantFrom('ascii', 'multibyte', 'type'))
  .map(([n, how]) => {
    if (how === 'type') return `{"type":"${'h'.repeat(n - 11)}"}`;
    const head = '{"type":"hello","protocol":1,"clientId":"fuzzer","token":"';
    const room = n - head.length - 2;
    const pad =
      how === 'ascii' ? 'a'.repeat(room) : `${'é'.repeat(Math.floor(room / 2))}${'a'.repeat(room % 2)}`;
    return `${head}${pad}"}`;
  })
  .map(text('huge string'));

/** Nesting around and far past the depth limit, alone or inside a message. */
const deep = fc
  .tuple(
    fc.integer({ min: DEPTH - 4, max: 3000 }),
    fc.constantFrom('array', 'object', 'filter', 'unbalanced'),
  )
  .map(([d, how]) => {
    if (how === 'array') return `${'['.repeat(d)}1${']'.repeat(d)}`;
    if (how === 'object') return `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`;
    if (how === 'unbalanced') return `{"type":"hello","x":${'['.repeat(d)}`;
    return `{"type":"subscribe","sub":"deep","collection":"${GAMES}","filter":${'{"a":'.repeat(d)}1${'}'.repeat(d)}}`;
  })
  .map(text('deep nesting'));

const unknownType = fc
  .tuple(
    fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.constantFrom(
        'Hello',
        'HELLO',
        ' hello',
        'hello ',
        'hello\u0000',
        'subscribed',
        'event',
        'error',
        'welcome',
        'snapshot',
      ),
    ),
    template,
  )
  .filter(([type]) => !knownTypes.has(type))
  .map(([type, t]) => JSON.stringify({ ...t, type }))
  .map(text('unknown type'));

/** `__proto__`, `constructor`, `prototype` as keys, written as JSON text so they are own keys. */
const protoKeys = fc
  .tuple(template, fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.jsonValue({ maxDepth: 2 }))
  .chain(([t, key, v]) =>
    fc.constantFrom(
      `{"${key}":${JSON.stringify(v)},${JSON.stringify(t).slice(1)}`,
      `{"${key}":${JSON.stringify(t)}}`,
      `{"type":"subscribe","sub":"p","collection":"${GAMES}","filter":{"${key}":{"n":{"$gte":0}}}}`,
      `{"type":"subscribe","sub":"p","collection":"${GAMES}","filter":{"n":{"${key}":{"$gt":0}}}}`,
      `{"type":"subscribe","sub":"p","collection":"${GAMES}","documentId":"g1","vectorClock":{"${key}":1}}`,
      `{"type":"hello","protocol":1,"clientId":"fuzzer","token":"${GOOD_TOKEN}","${key}":{"admin":true}}`,
    ),
  )
  .map(text('__proto__ keys'));

const badIds = template
  .chain((t) => {
    const fields = Object.keys(t).filter((k) => ['documentId', 'clientId', 'collection', 'sub'].includes(k));
    return fields.length === 0
      ? fc.constant(JSON.stringify({ ...t, documentId: 'a/b' }))
      : fc.tuple(fc.constantFrom(...fields), badString).map(([k, v]) => JSON.stringify({ ...t, [k]: v }));
  })
  .map(text('bad ids'));

/** The right shape, bad values: some fail the schema, some only the server's checks. */
const badValues = fc
  .oneof(
    template.chain((t) => {
      const fields = Object.keys(t).filter((k) => ['afterSeq', 'seq', 'protocol'].includes(k));
      return fields.length === 0
        ? fc.constant(JSON.stringify({ ...t, seq: -1 }))
        : fc.tuple(fc.constantFrom(...fields), badNumber).map(([k, v]) => JSON.stringify({ ...t, [k]: v }));
    }),
    fc
      .tuple(fc.constantFrom(0, 2, 99, 1.5), fc.constantFrom(GOOD_TOKEN, 'bad', undefined))
      .map(([protocol, token]) => JSON.stringify({ type: 'hello', protocol, clientId: 'fuzzer', token })),
    fc
      .constantFrom('bad', '', 'x'.repeat(5000))
      .map((token) => JSON.stringify({ type: 'hello', protocol: 1, clientId: 'fuzzer', token })),
    fc
      .tuple(fc.constantFrom(...docIds), fc.nat(1000), fc.constantFrom('ack', 'subscribe'))
      .map(([documentId, seq, type]) =>
        JSON.stringify(
          type === 'ack'
            ? { type, collection: GAMES, documentId, seq }
            : { type, sub: `v${seq}`, collection: GAMES, documentId, afterSeq: seq },
        ),
      ),
    fc
      .constantFrom(
        { $where: 'while(true){}' },
        { $function: { body: 'x', args: [], lang: 'js' } },
        { $expr: { $gt: ['$n', 0] } },
        { n: { $regex: '(a+)+$' } },
        { n: { $unknown: 1 } },
        { $or: [] },
        { n: { $in: 5 } },
      )
      .map((filter) => JSON.stringify({ type: 'subscribe', sub: 'f', collection: GAMES, filter })),
    fc
      .constantFrom(GAMES, 'secret', 'players', '_x')
      .chain((collection) =>
        fc.constantFrom(
          JSON.stringify({ type: 'subscribe', sub: 'dup', collection, filter: {} }),
          JSON.stringify({ type: 'unsubscribe', sub: 'never-subscribed' }),
        ),
      ),
  )
  .map(text('bad values'));

const binary = fc
  .uint8Array({ maxLength: 200 })
  .map((bytes) => ({ kind: 'binary', data: Buffer.from(bytes) }));

const frame: fc.Arbitrary<Frame> = fc.oneof(
  { arbitrary: invalidJson, weight: 12 },
  { arbitrary: wrongTypes, weight: 16 },
  { arbitrary: huge, weight: 2 },
  { arbitrary: deep, weight: 6 },
  { arbitrary: unknownType, weight: 8 },
  { arbitrary: protoKeys, weight: 10 },
  { arbitrary: badIds, weight: 14 },
  { arbitrary: badValues, weight: 14 },
  { arbitrary: binary, weight: 2 },
);

// ---- what the server must answer ---------------------------------------------------------------

type Expected =
  | { kind: 'close'; code: number }
  | { kind: 'error' }
  | { kind: 'valid'; message: ClientMessage };

function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let max = 0;
  for (const child of Object.values(value)) max = Math.max(max, depthOf(child));
  return max + 1;
}

/** The frame through the server's checks as the protocol describes them. */
function expected(data: string | Buffer): Expected {
  if (typeof data !== 'string') return { kind: 'close', code: 1003 };
  if (Buffer.byteLength(data) > LIMIT) return { kind: 'close', code: 1009 };
  let value: unknown;
  let protoKey = false;
  try {
    value = JSON.parse(data, (key, v) => {
      if (key === '__proto__') protoKey = true;
      return v;
    });
  } catch {
    return { kind: 'error' };
  }
  if (depthOf(value) > DEPTH) return { kind: 'error' };
  // The session refuses `__proto__` keys before the schema sees them (zod would drop them silently).
  if (protoKey) return { kind: 'error' };
  const parsed = ClientMessage.safeParse(value);
  return parsed.success ? { kind: 'valid', message: parsed.data } : { kind: 'error' };
}

// ---- the misbehaving clients -------------------------------------------------------------------

class Fuzzer {
  received: ServerMessage[] = [];
  closed: { code: number; reason: string } | undefined;
  authenticated = false;
  #wake: (() => void) | undefined;

  private constructor(
    readonly ws: WebSocket,
    readonly role: 'anonymous' | 'authenticated',
  ) {
    ws.on('message', (data) => {
      this.received.push(JSON.parse(data.toString()) as ServerMessage);
      this.#wake?.();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake?.();
    });
    ws.on('error', () => {});
  }

  static async open(role: Fuzzer['role']): Promise<Fuzzer> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const f = new Fuzzer(ws, role);
    if (role === 'authenticated') {
      ws.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'fuzzer', token: GOOD_TOKEN }));
      await f.until(() => f.received.some((m) => m.type === 'welcome'), 'welcome');
      f.authenticated = true;
      f.received = [];
    }
    return f;
  }

  /** Waits until `done()` or the socket closed. */
  async until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done() && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer (${what}) within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}

const emptyStats = () => ({
  frames: 0,
  sentinels: 0,
  answeredByError: 0,
  answeredByClose: 0,
  answeredOtherwise: 0,
  validShaped: 0,
  reconnects: 0,
  byKind: {} as Record<string, number>,
  errorCodes: {} as Record<string, number>,
  closeCodes: {} as Record<string, number>,
  answersToValid: {} as Record<string, number>,
});
let stats = emptyStats();
const bump = (table: Record<string, number>, key: string) => {
  table[key] = (table[key] ?? 0) + 1;
};
let sentinelId = 0;

const show = (f: Frame) =>
  typeof f.data === 'string'
    ? `${f.kind}: ${JSON.stringify(f.data.length > 300 ? `${f.data.slice(0, 300)}… (${f.data.length} chars)` : f.data)}`
    : `${f.kind}: <${f.data.length} binary bytes>`;

/** Sends one frame and waits for its answer; throws when there is none, or a wrong one. */
async function fuzzOne(f: Fuzzer, frame: Frame): Promise<void> {
  const expect_ = expected(frame.data);
  f.received = f.received.filter((m) => m.type === 'error' && m.code === 'internal'); // keep evidence only
  const start = f.received.length;
  const newErrors = () => f.received.slice(start).filter((m) => m.type === 'error');
  stats.frames++;
  bump(stats.byKind, frame.kind);
  f.ws.send(frame.data, { binary: typeof frame.data !== 'string' });

  if (expect_.kind === 'close') {
    await f.until(() => false, `close ${expect_.code} for ${show(frame)}`);
    if (f.closed?.code !== expect_.code) {
      throw new Error(`expected close ${expect_.code}, got ${JSON.stringify(f.closed)} for ${show(frame)}`);
    }
  } else if (expect_.kind === 'error') {
    await f.until(() => newErrors().length > 0, `error for ${show(frame)}`);
    const [error] = newErrors();
    if (!error)
      throw new Error(`closed ${JSON.stringify(f.closed)} instead of an error frame for ${show(frame)}`);
    if (error.type === 'error' && error.code !== 'bad_message' && error.code !== 'rate_limited') {
      throw new Error(`expected bad_message, got ${JSON.stringify(error)} for ${show(frame)}`);
    }
  } else {
    stats.validShaped++;
    const message = expect_.message;
    if (!f.authenticated) {
      // Before hello: a hello is judged (welcome, or error + close); anything else is unauthorized.
      await f.until(
        () => f.received.slice(start).some((m) => m.type === 'welcome' || m.type === 'error'),
        `answer to ${show(frame)}`,
      );
      if (f.received.slice(start).some((m) => m.type === 'welcome')) f.authenticated = true;
      if (
        message.type !== 'hello' &&
        !newErrors().some((e) => e.type === 'error' && e.code === 'unauthorized')
      ) {
        throw new Error(`expected unauthorized before hello, got ${JSON.stringify(f.received.slice(start))}`);
      }
      if (message.type === 'hello' && !f.authenticated)
        await f.until(() => false, 'close after a refused hello');
    } else {
      // Handled in order: a sentinel behind it marks the end of its answers.
      const sentinel = `zz-sentinel-${++sentinelId}`;
      stats.sentinels++;
      f.ws.send(JSON.stringify({ type: 'unsubscribe', sub: sentinel }));
      await f.until(
        () => f.received.slice(start).some((m) => m.type === 'error' && m.ref === sentinel),
        `sentinel after ${show(frame)}`,
      );
    }
    const answers = f.received
      .slice(start)
      .filter((m) => !(m.type === 'error' && m.ref?.startsWith('zz-sentinel-')))
      .filter((m) => m.type !== 'event' && m.type !== 'snapshot' && m.type !== 'leave');
    bump(
      stats.answersToValid,
      `${message.type} → ${answers.map((a) => (a.type === 'error' ? `error ${a.code}` : a.type)).join(', ') || (f.closed ? `close ${f.closed.code}` : 'nothing')}`,
    );
  }

  for (const e of f.received.slice(start)) if (e.type === 'error') bump(stats.errorCodes, e.code);
  const internal = f.received.find((m) => m.type === 'error' && m.code === 'internal');
  if (internal) throw new Error(`internal error ${JSON.stringify(internal)} after ${show(frame)}`);
  if (f.closed) {
    bump(stats.closeCodes, `${f.closed.code} ${JSON.stringify(f.closed.reason)}`);
    stats.answeredByClose++;
  } else if (newErrors().length > 0) stats.answeredByError++;
  else stats.answeredOtherwise++;
}

describe.each(syncBackends)('fuzz on %s', (_backend, open) => {
  beforeAll(() => startServer(open));
  afterAll(stopServer);

  it(`answers ${FRAMES}+ malformed frames from misbehaving clients while a well-behaved client keeps its events and nothing stored changes`, async () => {
    const started = Date.now();
    const games = await engine.collection<Game>(GAMES);
    for (const [_id, n] of [
      ['live', 0],
      ['g1', 1],
      ['g2', 2],
      ['secret1', 3],
      ['__proto__', 4],
    ] as const) {
      await games.findOneAndUpsert({ _id, name: _id, n });
    }
    await games.updateOne('g1', { $inc: { n: 1 } });
    const docsBefore = await games.findMany({}, { sort: { _id: 1 } });
    const log = () => engine.events.backend.listAfterServerSeq(GAMES, 0, 1_000_000);
    const eventsBefore = await log();

    // The well-behaved client, and writes through the server during the fuzzing.
    const good = await TestClient.connect(url);
    good.send({ type: 'hello', protocol: 1, clientId: 'good', token: GOOD_TOKEN });
    await good.next('welcome');
    good.send({ type: 'subscribe', sub: 'live', collection: GAMES, documentId: 'live', afterSeq: 0 });
    await good.next('synced');
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      while (writing) {
        await games.updateOne('live', { $inc: { n: 1 } });
        writes++;
        await sleep(3);
      }
    })();

    // The misbehaving clients: half never say hello, half do.
    const roles = Array.from({ length: FUZZERS }, (_, i): Fuzzer['role'] =>
      i % 2 === 0 ? 'anonymous' : 'authenticated',
    );
    const fuzzers = await Promise.all(roles.map((role) => Fuzzer.open(role)));
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(frame, { minLength: BATCH, maxLength: BATCH }), async (frames) => {
          await Promise.all(
            fuzzers.map(async (_, i) => {
              for (let k = i; k < frames.length; k += FUZZERS) {
                await fuzzOne(fuzzers[i]!, frames[k]!);
                if (fuzzers[i]!.closed) {
                  fuzzers[i]!.ws.terminate();
                  fuzzers[i] = await Fuzzer.open(roles[i]!);
                  stats.reconnects++;
                }
              }
            }),
          );
        }),
        // A few frames turn out well-formed and acceptable (a hello that is welcomed, an ack): 5% more
        // frames make sure at least FRAMES of them needed an error or a close.
        { numRuns: Math.ceil((FRAMES * 1.05) / BATCH), seed: SEED, endOnFailure: true },
      );
    } finally {
      writing = false;
      await writer;
      for (const f of fuzzers) f.ws.terminate();
    }

    // The well-behaved client has every event of 'live', in order, no gap, and converges.
    await good.until(() => good.of('event').length === 1 + writes, 10_000);
    expect(good.closed).toBeUndefined();
    expect(good.of('error')).toEqual([]);
    const seqs = good.of('event').map((m) => m.event.seq);
    expect(seqs).toEqual(Array.from({ length: 1 + writes }, (_, i) => i + 1));
    let replica: JsonObject | null = null;
    for (const m of good.of('event')) replica = applyEvent(replica, m.event as SyncEvent);
    expect(replica).toEqual(await games.findOne('live'));

    // Nothing stored changed but the writes: the same documents, the same events plus the writes'.
    const docsAfter = await games.findMany({}, { sort: { _id: 1 } });
    const live = (docs: typeof docsBefore) => docs.find((d) => d._id === 'live');
    expect(docsAfter.filter((d) => d._id !== 'live')).toEqual(docsBefore.filter((d) => d._id !== 'live'));
    expect(live(docsAfter)?.n).toBe(writes);
    const eventsAfter = await log();
    expect(eventsAfter.slice(0, eventsBefore.length)).toEqual(eventsBefore);
    const added = eventsAfter.slice(eventsBefore.length);
    expect(added).toHaveLength(writes);
    expect(added.every((e) => e.documentId === 'live' && e.operation === 'update')).toBe(true);
    good.close();

    const seconds = (Date.now() - started) / 1000;
    console.log(
      [
        `fuzz: seed ${SEED}, ${stats.frames} frames (+${stats.sentinels} sentinels) from ${FUZZERS} clients in ${seconds.toFixed(1)} s; ${writes} writes delivered in order`,
        `answers: ${stats.answeredByError} error frames, ${stats.answeredByClose} closes, ${stats.answeredOtherwise} well-formed and accepted (welcome, ack); ${stats.reconnects} reconnects; ${stats.validShaped} frames passed the schema`,
        `frames by kind: ${JSON.stringify(stats.byKind)}`,
        `error codes: ${JSON.stringify(stats.errorCodes)}`,
        `close codes: ${JSON.stringify(stats.closeCodes)}`,
        `answers to valid-shaped frames: ${JSON.stringify(stats.answersToValid, null, 1)}`,
      ].join('\n'),
    );
    expect(stats.answeredByError + stats.answeredByClose).toBeGreaterThanOrEqual(FRAMES);
    expect(stats.answeredByError + stats.answeredByClose + stats.answeredOtherwise).toBe(stats.frames);
    expect(logged).toEqual([]);
  });
});
