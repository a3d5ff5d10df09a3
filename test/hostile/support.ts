/**
 * What every hostile-input case shares: a server under attack (in this process, so its event
 * loop and heap can be watched), raw sockets that send exactly the bytes a case wants, and the
 * checks after each attack: the server is alive and `/healthz` answers within 100 ms, the heap
 * came back to within 20% of before, nothing stored changed, and the event loop was never held
 * more than 100 ms by one request.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { memoryDatabase } from '../../src/backends/memory/memory-database.js';
import type { Logger } from '../../src/events/logger.js';
import { type RunningServer, serve } from '../../src/server/serve.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { SyncLimits } from '../../src/sync/types.js';
import { http } from '../server/http-client.js';
import { loopbackServer } from '../support/loopback-server.js';

export type Backend = 'memory' | 'pglite';

export const quietLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };

setFlagsFromString('--expose-gc');
/** A full collection, so heap figures compare live objects and not garbage. */
export const gc = runInNewContext('gc') as () => void;

export interface Target {
  url: string;
  port: number;
  running: RunningServer;
  close(): Promise<void>;
}

/** `eventsync serve` as a function, on memory or on a fresh PGlite directory. */
export async function startTarget(
  backend: Backend,
  limits: Partial<SyncLimits> = {},
  drainMs = 2_000,
): Promise<Target> {
  const dir = backend === 'pglite' ? await mkdtemp(join(tmpdir(), 'eventsync-hostile-')) : undefined;
  const running = await serve({
    db: dir ?? 'memory',
    port: 0,
    host: '127.0.0.1',
    logger: quietLogger,
    demoDir: false,
    drainMs,
    engine: { limits },
  });
  return {
    url: running.url,
    port: running.port,
    running,
    async close() {
      await running.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A host app of its own (answers `app` to anything) with the transports attached, on memory. */
export async function startAttachHost(): Promise<{
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}> {
  const db = memoryDatabase();
  const engine = await SyncEngine.create({ db, logger: quietLogger });
  const { server, port, close } = await loopbackServer(engine);
  server.on('request', (_req, res) => res.end('app'));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    async close() {
      await close();
      await db.close();
    },
  };
}

export interface RawAnswer {
  /** The status code of the first response line, or undefined when the socket closed without one. */
  status: number | undefined;
  /** Everything the server sent. */
  text: string;
  /** True when the server closed (or reset) the connection. */
  closed: boolean;
}

/**
 * Sends `bytes` on a new connection and collects the answer until the server closes it or
 * `waitMs` passes. `end` half-closes after writing (a client that is done), so an incomplete
 * request is judged at once instead of waiting for the server's header timeout. `firstByte`
 * stops at the first bytes of the answer (a stream or an upgrade would stay open).
 */
export function rawRequest(
  port: number,
  bytes: string | Buffer,
  options: { waitMs?: number; end?: boolean; firstByte?: boolean } = {},
): Promise<RawAnswer> {
  const { waitMs = 2000, end = true, firstByte = false } = options;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: match ? Number(match[1]) : undefined, text, closed });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (firstByte) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('connect', () => {
      if (end) socket.end(bytes);
      else socket.write(bytes);
    });
  });
}

/** Milliseconds `/healthz` takes to answer 200 (the quickest of up to three tries). */
export async function healthzMs(url: string): Promise<number> {
  // The best of three, as for loop delays: one sample measures the machine's scheduler as much as
  // the server (a CI runner or a loaded laptop can park the process for longer than the bound).
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3 && best >= 100; round++) {
    const started = performance.now();
    const answer = await http(url, 'GET', '/healthz');
    if (answer.status !== 200) throw new Error(`/healthz answered ${answer.status}`);
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

/** The longest the event loop was held while `attack` ran, in ms (10 ms resolution). */
export async function loopDelayDuring(attack: () => Promise<unknown>): Promise<number> {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  try {
    await attack();
  } finally {
    histogram.disable();
  }
  // The histogram counts the resolution itself as delay.
  return Math.max(0, histogram.max / 1e6 - 10);
}

/** The worst loop delay of each case, for the suite's report. */
export const loopDelays = new Map<string, number>();

/**
 * Runs `attack` and measures the loop delay it caused; a case that shows more than 100 ms runs
 * again (up to 3 times) and the smallest figure counts: a request that holds the loop does so
 * every time, a GC pause or a neighbour's burst on this 2-core machine does not.
 */
export async function worstLoopDelay(name: string, attack: () => Promise<unknown>): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 3 && best > 100; round++) {
    best = Math.min(best, await loopDelayDuring(attack));
  }
  loopDelays.set(name, best);
  return best;
}

/** The heap after a full collection, in bytes. */
export function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
