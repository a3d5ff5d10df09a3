/**
 * `eventsync serve` as a function: opens the database, starts the engine, attaches the
 * transports to a new `http.Server` with `/healthz`, `/metrics` and the demo app at `/` (the
 * files `npm run build` puts in `dist/demo/`; a placeholder page when they are missing), listens,
 * and returns a handle whose `close()` shuts down gracefully.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { memoryDatabase } from '../backends/memory/memory-database.js';
import type { Logger } from '../events/logger.js';
import { ValidationError } from '../protocol/errors.js';
import { LOOPBACK_HOSTS } from '../server/access.js';
import { type Attached, type AttachOptions, attach } from '../server/attach.js';
import { requestUrl } from '../server/http.js';
import type { Database } from '../storage/backend.js';
import { SyncEngine, type SyncEngineOptions } from '../sync/engine.js';
import {
  type AuthSpec,
  type DatabaseSpec,
  databaseSpec,
  describeDatabase,
  isLoopback,
  unauthenticatedHostProblem,
} from './args.js';
import { serveAuth } from './auth.js';

export interface ServeOptions {
  /** A PGlite data directory, a `postgres://` URL, or `memory`. */
  db: string;
  port: number;
  host: string;
  logger: Logger;
  /**
   * Who requests come from and what they may do, as the CLI's `--auth` and `--rules` say. Default
   * `{ mode: 'none' }` (a token names the actor), which a non-loopback `host` needs written out.
   * Not with `engine.authenticate`; `engine.authorize` may stand in for `rules`.
   */
  auth?: AuthSpec;
  /** Engine options besides the database and logger (authenticate, authorize, limits, …). */
  engine?: Omit<SyncEngineOptions, 'db' | 'logger'>;
  /** Transport options (paths, heartbeats). */
  transports?: AttachOptions;
  /** On close, requests still running after this many ms are cut off. Default 10,000. */
  drainMs?: number;
  /**
   * The demo app's directory (`index.html` and what it loads), served at `/`; `false` serves the
   * placeholder page. Default: `dist/demo` when it has been built.
   */
  demoDir?: string | false;
}

export interface RunningServer {
  /** `http://host:port` */
  url: string;
  port: number;
  server: Server;
  engine: SyncEngine;
  /** Graceful shutdown: stop accepting, close sessions (1001), drain requests, close the database. */
  close(): Promise<void>;
}

const PAGE = `<!doctype html>
<html lang="en"><meta charset="utf-8"><title>eventsync</title>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>eventsync</h1>
<p>The sync server is running. The demo app is not built (<code>npm run build</code> puts it in <code>dist/demo</code>); the endpoints:</p>
<ul>
<li>WebSocket: <code>/sync</code></li>
<li>SSE: <code>/sse/:collection/:id</code>, <code>/sse/:collection?filter=…</code></li>
<li>REST: <code>/api/:collection</code>, <code>/api/:collection/:id</code>, <code>/api/:collection/:id/events</code>, <code>POST /api/sync/:collection/:id</code></li>
<li><a href="/healthz">/healthz</a>, <a href="/metrics">/metrics</a></li>
</ul>
</body></html>
`;

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const { logger } = options;
  // Before the database opens: a refused host or a broken rules module should cost nothing.
  const auth = await chooseAuth(options);
  const given = databaseSpec(options.db);
  const spec: DatabaseSpec =
    given.kind === 'pglite' ? { kind: 'pglite', dataDir: resolve(given.dataDir) } : given;
  const openedAt = performance.now();
  const db = await openDatabase(spec);
  const openDbMs = Math.round(performance.now() - openedAt);

  let engine: SyncEngine;
  try {
    // On a loopback address, answer only to loopback names: a DNS-rebound page cannot reach it.
    const access = isLoopback(options.host) ? { allowedHosts: LOOPBACK_HOSTS } : {};
    engine = await SyncEngine.create({ ...auth.hooks, access, ...options.engine, db, logger });
  } catch (error) {
    await db.close().catch(() => {});
    throw error;
  }

  const demo = loadStaticFiles(options.demoDir ?? defaultDemoDir());
  let closing = false;
  const server = createServer((req, res) => {
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') =>
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    let pathname: string;
    try {
      pathname = requestUrl(req).pathname;
    } catch {
      return text(400, 'the request target is not a valid URL\n');
    }
    if (closing) {
      res.setHeader('connection', 'close');
      return text(503, 'shutting down\n');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (pathname === '/healthz') return text(200, 'ok\n');
    if (pathname === '/metrics') {
      return text(
        200,
        engine.metrics.render() + processMetrics(),
        'text/plain; version=0.0.4; charset=utf-8',
      );
    }
    const file = demo?.get(pathname === '/' ? '/index.html' : pathname);
    if (file) {
      return res
        .writeHead(200, {
          'content-type': file.type,
          'content-length': file.body.length,
          'cache-control': 'no-cache',
          'x-content-type-options': 'nosniff',
        })
        .end(file.body);
    }
    if (pathname === '/') return text(200, PAGE, 'text/html; charset=utf-8');
    return text(404, 'not found\n');
  });
  // A client gets 10 s to send its headers and 30 s for a whole request (bodies are ≤ 64 KiB);
  // SSE streams and WebSockets are responses and upgrades, which these do not cut.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const sockets = trackSockets(server);
  const attached: Attached = attach(server, engine, options.transports);
  const inFlight = trackRequests(server);

  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  } catch (error) {
    await attached.close();
    await engine.close();
    await db.close().catch(() => {});
    throw error;
  }
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${host}:${port}`;
  logger.info(
    {
      url,
      db: describeDatabase(spec),
      auth: auth.summary,
      openDbMs,
      startupMs: Math.round(process.uptime() * 1000),
      rssMB: Math.round(process.memoryUsage().rss / 2 ** 20),
    },
    'eventsync: listening',
  );
  if (auth.anyone && !isLoopback(options.host)) {
    logger.warn(
      { host: options.host },
      'eventsync: no authentication is configured (--auth none: a token only names the actor): anyone who reaches this address can act as anyone',
    );
  }

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    server,
    engine,
    close() {
      closed ??= (async () => {
        // New requests get 503 (so a load balancer's /healthz sees the drain) until the listener closes.
        closing = true;
        try {
          await attached.close(); // WebSockets and SSE streams get 1001
          await inFlight.drained(options.drainMs ?? 10_000); // still listening: new requests get 503
          await closeListener(server, sockets);
          await engine.close(1001, 'server shutting down');
        } finally {
          await db.close();
        }
        logger.info({}, 'eventsync: stopped');
      })();
      return closed;
    },
  };
}

/**
 * The engine's `authenticate`/`authorize` and the `listening` line's summary of them: the
 * caller's own `engine.authenticate`, else `options.auth` (default `--auth none`). `anyone`:
 * nothing is authenticated.
 */
async function chooseAuth(
  options: ServeOptions,
): Promise<{ hooks: Partial<SyncEngineOptions>; summary: string; anyone: boolean }> {
  const { auth, engine, host } = options;
  if (engine?.authenticate) {
    if (auth) throw new ValidationError('serve: pass auth or engine.authenticate, not both', '/auth');
    return { hooks: {}, summary: 'the authenticate hook given', anyone: false };
  }
  const problem = unauthenticatedHostProblem(host, auth !== undefined);
  if (problem)
    throw new ValidationError(`serve: ${problem}; pass auth: { mode: 'none' } to accept that`, '/auth');
  if (auth?.rules !== undefined && engine?.authorize) {
    throw new ValidationError('serve: pass auth.rules or engine.authorize, not both', '/auth/rules');
  }
  const { summary, ...hooks } = await serveAuth(auth ?? { mode: 'none' }, host, options.logger);
  return { hooks, summary, anyone: auth?.mode !== 'jwt' };
}

/**
 * Every socket the server accepted, upgraded ones included: `closeAllConnections` only knows
 * the sockets HTTP still owns, and a leaked upgrade socket would hold `server.close()` forever.
 */
function trackSockets(server: Server): Set<Socket> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

/** Counts requests whose answer has not finished, so a shutdown can wait for them. */
function trackRequests(server: Server): { drained(maxMs: number): Promise<void> } {
  let open = 0;
  let onIdle: (() => void) | undefined;
  // Wraps emit (after `attach` did), because the transports take their requests before any listener.
  const emit = server.emit;
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'request') {
      open++;
      (args[1] as ServerResponse).once('close', () => {
        open--;
        if (open === 0) onIdle?.();
      });
    }
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  } as Server['emit'];
  return {
    async drained(maxMs) {
      if (open === 0) return;
      await new Promise<void>((resolveIdle) => {
        const cutOff = setTimeout(resolveIdle, maxMs);
        onIdle = () => {
          clearTimeout(cutOff);
          resolveIdle();
        };
      });
    },
  };
}

/** Stops listening and closes every socket still open (requests were drained or cut off by then). */
async function closeListener(server: Server, sockets: Set<Socket>): Promise<void> {
  const stopped = new Promise<void>((resolveClose) => server.close(() => resolveClose()));
  server.closeAllConnections();
  for (const socket of sockets) socket.destroy();
  await stopped;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** `dist/demo` next to the built CLI (`dist/cli`), or from the sources (`src/cli`, under tsx). */
function defaultDemoDir(): string | false {
  for (const candidate of ['../demo/', '../../dist/demo/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return false;
}

/**
 * The files directly in `dir` with a known type, read once at start: `/name` → body. Only these
 * exact paths are served, so no request can reach outside the directory.
 */
function loadStaticFiles(dir: string | false): Map<string, { type: string; body: Buffer }> | undefined {
  if (dir === false || !existsSync(join(dir, 'index.html'))) return undefined;
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = CONTENT_TYPES[extname(entry.name)];
    if (entry.isFile() && type)
      files.set(`/${entry.name}`, { type, body: readFileSync(join(dir, entry.name)) });
  }
  return files;
}

async function openDatabase(spec: DatabaseSpec): Promise<Database> {
  if (spec.kind === 'memory') return memoryDatabase();
  if (spec.kind === 'postgres') {
    const { pgDatabase } = await importPeer(() => import('../pg.js'), 'pg');
    return pgDatabase({ connectionString: spec.url });
  }
  const { pgliteDatabase } = await importPeer(() => import('../pglite.js'), '@electric-sql/pglite');
  return pgliteDatabase({ dataDir: spec.dataDir });
}

/** Loads a backend whose driver is an optional peer dependency, saying what to install when it is missing. */
async function importPeer<T>(load: () => Promise<T>, pkg: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String(error).includes(pkg)) {
      throw new Error(`this database needs the package ${pkg}: npm install ${pkg}`, { cause: error });
    }
    throw error;
  }
}

function processMetrics(): string {
  return [
    '# HELP process_resident_memory_bytes Resident memory size in bytes.',
    '# TYPE process_resident_memory_bytes gauge',
    `process_resident_memory_bytes ${process.memoryUsage().rss}`,
    '# HELP process_uptime_seconds Seconds since the process started.',
    '# TYPE process_uptime_seconds gauge',
    `process_uptime_seconds ${process.uptime().toFixed(3)}`,
    '',
  ].join('\n');
}
