/**
 * `eventsync serve` as a function: listens (before the database opens, so a port in use costs
 * nothing), opens the database, starts the engine, attaches the transports beside `/healthz`,
 * `/metrics` and the demo app at `/` (see `serve-app.ts`), and returns a handle whose `close()`
 * shuts down gracefully. What it cannot do it says in one sentence (`StartupError`).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Database } from '../core/collection-backend.js';
import { DEMO_COLLECTION, gameMutators } from '../core/demo-games.js';
import { ValidationError } from '../core/errors.js';
import type { Logger } from '../events/logger.js';
import { SyncEngine, type SyncEngineOptions } from '../sync/engine.js';
import { isLoopback, LOOPBACK_HOSTS } from './access.js';
import { type Attached, type AttachOptions, attach } from './attach.js';
import { databaseSpec, describeDatabase, openDatabase } from './database.js';
import { createServeApp, type ServeApp } from './serve-app.js';
import { type AuthSpec, serveAuth, unauthenticatedHostProblem } from './serve-auth.js';
import { listenProblem, StartupError } from './startup-errors.js';
import { defaultDemoDir } from './static-files.js';

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
  /**
   * Engine options besides the database and logger (authenticate, authorize, limits, …). Without
   * `mutators`, the demo's (`addGold`, `addXp`, `levelUp` on `games`: see `core/demo-games.ts`).
   */
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

export async function serve(options: ServeOptions): Promise<RunningServer> {
  const { logger, host } = options;
  // Before anything opens: a refused host, a broken rules module or a mistyped URL cost nothing.
  const auth = await chooseAuth(options);
  const spec = databaseSpec(options.db);
  const app = createServeApp(options.demoDir ?? defaultDemoDir());
  const port = await listen(app.server, options.port, host);

  const openedAt = performance.now();
  let db: Database | undefined;
  let engine: SyncEngine;
  try {
    db = await openDatabase(spec, logger);
    // On a loopback address, answer only to loopback names: a DNS-rebound page cannot reach it.
    const access = isLoopback(host) ? { allowedHosts: LOOPBACK_HOSTS } : {};
    const mutators = { [DEMO_COLLECTION]: gameMutators };
    engine = await SyncEngine.create({ ...auth.hooks, access, mutators, ...options.engine, db, logger });
  } catch (error) {
    await app.closeListener();
    await db?.close().catch(() => {});
    throw error;
  }
  const openDbMs = Math.round(performance.now() - openedAt);
  app.ready(engine);
  const attached = attach(app.server, engine, options.transports);
  const inFlight = app.trackRequests(logger);

  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
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
  if (auth.anyone && !isLoopback(host)) {
    logger.warn(
      { host },
      'eventsync: no authentication is configured (--auth none: a token only names the actor): anyone who reaches this address can act as anyone',
    );
  }
  const stop = {
    app,
    attached,
    engine,
    db,
    logger,
    drain: () => inFlight.drained(options.drainMs ?? 10_000),
  };
  let closed: Promise<void> | undefined;
  return { url, port, server: app.server, engine, close: () => (closed ??= shutDown(stop)) };
}

/** Binds `port` on `host`; the port it got (the one asked for, or a free one for 0). */
async function listen(server: Server, port: number, host: string): Promise<number> {
  try {
    await new Promise<void>((resolveListen, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolveListen();
      });
    });
  } catch (error) {
    throw new StartupError(listenProblem(error, host, port), { cause: error });
  }
  return (server.address() as AddressInfo).port;
}

/** What `close()` stops, in order. */
interface Stoppable {
  app: ServeApp;
  attached: Attached;
  engine: SyncEngine;
  db: Database;
  logger: Logger;
  drain(): Promise<void>;
}

async function shutDown({ app, attached, engine, db, logger, drain }: Stoppable): Promise<void> {
  // New requests get 503 (so a load balancer's /healthz sees the drain) until the listener closes.
  app.closing();
  try {
    await attached.close(); // WebSockets and SSE streams get 1001
    await drain(); // still listening: new requests get 503
    await app.closeListener();
    await engine.close();
  } finally {
    await db.close();
  }
  logger.info({}, 'eventsync: stopped');
}

/**
 * The engine's `authenticate`/`authorize` and the `listening` line's summary of them: the
 * caller's own `engine.authenticate`, else `options.auth` (default `{ mode: 'none' }`).
 * `anyone`: nothing is authenticated.
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
