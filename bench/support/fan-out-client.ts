/**
 * The fan-out benchmark's clients, in their own process (`bench/fan-out.ts` forks this file).
 * Opens sets of WebSockets or SSE streams on command, records when each event frame arrives, and
 * reports over IPC. A WebSocket set with `subscribe` speaks the protocol (hello, subscribe to one
 * document, wait for `synced`); an SSE set with `sync` waits for the stream's `synced` frame (the
 * URL names the document); bare sets only connect. Latency = arrival (this process's clock) −
 * `event.timestamp` (the server's clock): one machine, one clock.
 */
import { type ClientRequest, request } from 'node:http';
import WebSocket from 'ws';

export type Command =
  | {
      type: 'open';
      set: string;
      /** `ws://…` for WebSockets, `http://…` for SSE streams. */
      url: string;
      count: number;
      /** WebSocket protocol clients: hello, then subscribe to this document from `afterSeq`. */
      subscribe?: Subscribe;
      /** SSE clients of eventsync: ready at the stream's `synced` frame (else at the response). */
      sync?: boolean;
    }
  | { type: 'expect'; set: string; tag: number; perClient: number; timeoutMs: number }
  | { type: 'close'; set: string }
  | { type: 'exit' };

export type Report =
  | { type: 'opened'; set: string; count: number; ms: number }
  | { type: 'failed'; message: string }
  | { type: 'armed'; tag: number }
  | {
      type: 'received';
      tag: number;
      set: string;
      expected: number;
      received: number;
      p50: number;
      p99: number;
      max: number;
      /** Epoch ms (sub-ms) of the last arrival. */
      lastArrival: number;
      /** Fewest and most event frames one client got. */
      minPerClient: number;
      maxPerClient: number;
      /** Frames whose seq was not above the client's previous one. */
      outOfOrder: number;
      /** This process's CPU time while receiving, ms. */
      cpuMs: number;
    }
  | { type: 'closed'; set: string };

interface Subscribe {
  collection: string;
  documentId: string;
  afterSeq: number;
}

const OPEN_CONCURRENCY = 200;
const OPEN_TIMEOUT_MS = 120_000;
const epochNow = () => performance.timeOrigin + performance.now();

interface Expecting {
  tag: number;
  expected: number;
  received: number;
  latencies: Float64Array;
  perClient: Uint32Array;
  lastSeq: Float64Array;
  outOfOrder: number;
  lastArrival: number;
  cpu: NodeJS.CpuUsage;
  timer: NodeJS.Timeout;
}

/** An open client of either transport. */
interface Connection {
  /** Ends it without a goodbye; resolves once it is closed. */
  terminate(): Promise<void>;
}

interface ClientSet {
  sockets: Connection[];
  expecting: Expecting | undefined;
}

const sets = new Map<string, ClientSet>();

function send(report: Report): void {
  process.send?.(report);
}

function finish(name: string, set: ClientSet): void {
  const e = set.expecting;
  if (!e) return;
  set.expecting = undefined;
  clearTimeout(e.timer);
  const cpu = process.cpuUsage(e.cpu);
  const sorted = e.latencies.subarray(0, e.received).sort();
  const at = (p: number) =>
    sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]!;
  let min = Number.POSITIVE_INFINITY;
  let max = 0;
  for (const n of e.perClient) {
    min = Math.min(min, n);
    max = Math.max(max, n);
  }
  send({
    type: 'received',
    tag: e.tag,
    set: name,
    expected: e.expected,
    received: e.received,
    p50: at(0.5),
    p99: at(0.99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
    lastArrival: e.lastArrival,
    minPerClient: min,
    maxPerClient: max,
    outOfOrder: e.outOfOrder,
    cpuMs: (cpu.user + cpu.system) / 1000,
  });
}

/** One frame (its JSON text) that arrived at client `index` of `set` after it was ready. */
function onFrame(text: string, index: number, set: ClientSet): ClientSet['expecting'] {
  const e = set.expecting;
  if (!e) return undefined;
  const arrival = epochNow();
  const message = JSON.parse(text) as { type: string; event?: { seq: number; timestamp: number } };
  if (message.type !== 'event' || !message.event) return e;
  if (e.received < e.latencies.length) e.latencies[e.received] = arrival - message.event.timestamp;
  e.received++;
  e.perClient[index]!++;
  if (message.event.seq <= e.lastSeq[index]!) e.outOfOrder++;
  e.lastSeq[index] = message.event.seq;
  e.lastArrival = arrival;
  return e;
}

/** Before a client is ready: resolves at `synced`, rejects at an `error` frame. */
function handshake(text: string, ready: () => void, fail: (error: Error) => void): void {
  const message = JSON.parse(text) as { type: string; message?: string };
  if (message.type === 'synced') ready();
  else if (message.type === 'error') fail(new Error(`server error: ${message.message}`));
}

function openWebSocket(
  url: string,
  index: number,
  set: ClientSet,
  name: string,
  subscribe: Subscribe | undefined,
): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    const connection: Connection = {
      terminate: () =>
        new Promise<void>((done) => {
          if (ws.readyState === WebSocket.CLOSED) return done();
          ws.once('close', () => done());
          ws.terminate();
        }),
    };
    let ready = false;
    const becomeReady = () => {
      ready = true;
      resolve(connection);
    };
    ws.once('error', (error) => {
      if (!ready) reject(error);
    });
    ws.on('close', () => {
      if (!ready) reject(new Error('closed while opening'));
    });
    ws.once('open', () => {
      if (!subscribe) return becomeReady();
      ws.send(JSON.stringify({ type: 'hello', protocol: 1, clientId: `fan-${name}-${index}` }));
      ws.send(JSON.stringify({ type: 'subscribe', sub: 's', ...subscribe }));
    });
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      if (!ready) return handshake(text, becomeReady, reject);
      const e = onFrame(text, index, set);
      if (e && e.received >= e.expected) finish(name, set);
    });
  });
}

/** The `data:` line of one SSE message (frames here are one line each), if it has one. */
function dataOf(message: string): string | undefined {
  if (message.startsWith('data: ')) return message.slice(6);
  const at = message.indexOf('\ndata: ');
  return at === -1 ? undefined : message.slice(at + 7);
}

/**
 * One SSE stream: a GET on its own socket, read as `text/event-stream` (messages end at a blank
 * line; only `data:` lines matter here, comments and `id:` lines are skipped).
 */
function openSse(
  url: string,
  index: number,
  set: ClientSet,
  name: string,
  sync: boolean,
): Promise<Connection> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest | undefined;
    const connection: Connection = {
      terminate: () =>
        new Promise<void>((done) => {
          if (!req || req.destroyed) return done();
          req.once('close', () => done());
          req.destroy();
        }),
    };
    let ready = false;
    const becomeReady = () => {
      ready = true;
      resolve(connection);
    };
    req = request(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`SSE ${url}: HTTP ${res.statusCode}`));
        res.resume();
        return;
      }
      if (!sync) becomeReady();
      res.setEncoding('utf8');
      let pending = '';
      res.on('data', (chunk: string) => {
        pending += chunk;
        let end = pending.indexOf('\n\n');
        while (end !== -1) {
          const text = dataOf(pending.slice(0, end));
          pending = pending.slice(end + 2);
          end = pending.indexOf('\n\n');
          if (text === undefined) continue; // a comment (the opening line, a ping)
          if (!ready) {
            handshake(text, becomeReady, reject);
            continue;
          }
          const e = onFrame(text, index, set);
          if (e && e.received >= e.expected) finish(name, set);
        }
      });
      res.on('close', () => {
        if (!ready) reject(new Error('closed while opening'));
      });
    });
    req.once('error', (error) => {
      if (!ready) reject(error);
    });
    req.end();
  });
}

async function open(command: Extract<Command, { type: 'open' }>): Promise<void> {
  const set: ClientSet = { sockets: new Array(command.count), expecting: undefined };
  sets.set(command.set, set);
  const started = performance.now();
  let next = 0;
  const deadline = Date.now() + OPEN_TIMEOUT_MS;
  await Promise.all(
    Array.from({ length: Math.min(OPEN_CONCURRENCY, command.count) }, async () => {
      while (next < command.count) {
        if (Date.now() > deadline) throw new Error(`opening ${command.count} sockets took over 120 s`);
        const i = next++;
        set.sockets[i] = command.url.startsWith('http')
          ? await openSse(command.url, i, set, command.set, command.sync ?? false)
          : await openWebSocket(command.url, i, set, command.set, command.subscribe);
      }
    }),
  );
  send({ type: 'opened', set: command.set, count: command.count, ms: performance.now() - started });
}

function expect(command: Extract<Command, { type: 'expect' }>): void {
  const set = sets.get(command.set);
  if (!set) throw new Error(`no set ${command.set}`);
  const n = set.sockets.length;
  const expected = n * command.perClient;
  set.expecting = {
    tag: command.tag,
    expected,
    received: 0,
    latencies: new Float64Array(expected),
    perClient: new Uint32Array(n),
    lastSeq: new Float64Array(n).fill(-1),
    outOfOrder: 0,
    lastArrival: Number.NaN,
    cpu: process.cpuUsage(),
    timer: setTimeout(() => finish(command.set, set), command.timeoutMs),
  };
  send({ type: 'armed', tag: command.tag });
}

async function close(name: string): Promise<void> {
  const set = sets.get(name);
  sets.delete(name);
  if (set) {
    await Promise.all(set.sockets.map((connection) => connection?.terminate()));
  }
  send({ type: 'closed', set: name });
}

process.on('message', (command: Command) => {
  const run = async () => {
    switch (command.type) {
      case 'open':
        return open(command);
      case 'expect':
        return expect(command);
      case 'close':
        return close(command.set);
      case 'exit':
        process.exit(0);
    }
  };
  run().catch((error: unknown) =>
    send({ type: 'failed', message: String((error as Error)?.stack ?? error) }),
  );
});
// The parent going away ends us too.
process.on('disconnect', () => process.exit(0));
