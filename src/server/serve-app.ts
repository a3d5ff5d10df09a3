/**
 * The `http.Server` of `serve`: `/healthz`, `/metrics` and the demo app at `/`, beside the
 * transports `attach` adds. It listens before the database opens, so it has three states:
 * starting (every request and upgrade gets 503), ready, and closing (503 again, so a load
 * balancer's `/healthz` sees the drain). It also keeps what a graceful shutdown needs (every
 * socket, the requests in flight) and logs each request at `debug`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../events/logger.js';
import type { SyncEngine } from '../sync/engine.js';
import { refuseUpgrade, requestPrincipal, requestUrl } from './http.js';
import { loadStaticFiles, PLACEHOLDER_PAGE, type StaticFile } from './static-files.js';

export interface ServeApp {
  server: Server;
  /** From now on `/metrics` reads `engine`, and requests are answered; call before `attach`. */
  ready(engine: SyncEngine): void;
  /** New requests get 503 from now on. */
  closing(): void;
  /** Counts and logs requests from now on (after `attach`, whose requests it must see too). */
  trackRequests(logger: Logger): { drained(maxMs: number): Promise<void> };
  /** Stops listening and closes every socket still open. */
  closeListener(): Promise<void>;
}

export function createServeApp(demoDir: string | false): ServeApp {
  const demo = loadStaticFiles(demoDir);
  let engine: SyncEngine | undefined;
  let closing = false;
  const server = createServer((req, res) => {
    if (engine !== undefined && !closing) return send(res, answer(req, engine, demo));
    if (closing) res.setHeader('connection', 'close');
    send(res, text(503, closing ? 'shutting down\n' : 'starting\n'));
  });
  // A client gets 10 s to send its headers and 30 s for a whole request (bodies are ≤ 64 KiB);
  // SSE streams and WebSockets are responses and upgrades, which these do not cut.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  const refuseWhileStarting = (_req: IncomingMessage, socket: Duplex) =>
    refuseUpgrade(socket, 503, 'the server is starting');
  server.on('upgrade', refuseWhileStarting);
  const sockets = trackSockets(server);
  return {
    server,
    ready(started) {
      engine = started;
      server.off('upgrade', refuseWhileStarting);
    },
    closing() {
      closing = true;
    },
    trackRequests: (logger) => trackRequests(server, logger),
    closeListener: () => closeListener(server, sockets),
  };
}

interface Answer {
  status: number;
  body: string | Buffer;
  headers: Record<string, string | number>;
}

function text(status: number, body: string, type = 'text/plain; charset=utf-8'): Answer {
  return { status, body, headers: { 'content-type': type, 'cache-control': 'no-store' } };
}

function send(res: ServerResponse, { status, body, headers }: Answer): void {
  res.writeHead(status, headers).end(body);
}

/** A request the transports did not take: health, metrics, the demo's files, or 404. */
function answer(req: IncomingMessage, engine: SyncEngine, demo: Map<string, StaticFile> | undefined): Answer {
  let pathname: string;
  try {
    pathname = requestUrl(req).pathname;
  } catch {
    return text(400, 'the request target is not a valid URL\n');
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
  if (pathname === '/healthz') return text(200, 'ok\n');
  if (pathname === '/metrics') {
    return text(200, engine.metrics.render() + processMetrics(), 'text/plain; version=0.0.4; charset=utf-8');
  }
  const file = demo?.get(pathname === '/' ? '/index.html' : pathname);
  if (file) {
    const headers = {
      'content-type': file.type,
      'content-length': file.body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    };
    return { status: 200, body: file.body, headers };
  }
  if (pathname === '/') return text(200, PLACEHOLDER_PAGE, 'text/html; charset=utf-8');
  return text(404, 'not found\n');
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

/**
 * Counts requests whose answer has not finished, so a shutdown can wait for them, and logs each
 * at `debug` when it ends: method, path (never the query, which may hold `?token=`), status,
 * duration and the principal REST or SSE authenticated. Wraps `emit` (after `attach` did),
 * because the transports take their requests before any listener.
 */
function trackRequests(server: Server, logger: Logger): { drained(maxMs: number): Promise<void> } {
  let open = 0;
  let onIdle: (() => void) | undefined;
  const emit = server.emit;
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'request') {
      const [req, res] = args as [IncomingMessage, ServerResponse];
      const started = performance.now();
      open++;
      res.once('close', () => {
        open--;
        logger.debug(
          {
            method: req.method,
            path: (req.url ?? '').split('?', 1)[0],
            status: res.statusCode,
            ms: Math.round(performance.now() - started),
            principal: requestPrincipal(req),
          },
          'eventsync: request',
        );
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
