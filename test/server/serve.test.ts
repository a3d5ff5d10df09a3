import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { memoryDatabase } from '../../src/backends/memory/memory-database.js';
import { EventSyncError } from '../../src/core/errors.js';
import type { Logger } from '../../src/events/logger.js';
import { databaseSpec, describeDatabase } from '../../src/server/database.js';
import { serve } from '../../src/server/serve.js';
import { createServeApp } from '../../src/server/serve-app.js';
import { StartupError } from '../../src/server/startup-errors.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { databaseUrl, uniqueCollection } from '../support/databases.js';
import { freePort } from '../support/serve-process.js';
import { TestClient } from '../support/ws-client.js';
import { http, SseClient } from './http-client.js';

function recordingLogger() {
  const lines: { level: string; details: object; message?: string }[] = [];
  const at =
    (level: string) =>
    (details: object, message?: string): void => {
      lines.push({ level, details, message });
    };
  const logger: Logger = { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
  return { logger, lines };
}

describe('eventsync serve: the server', () => {
  it('serves /healthz, /metrics, a placeholder page, 404 elsewhere; logs start time and RSS', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger, demoDir: false });
    try {
      const health = await http(running.url, 'GET', '/healthz');
      expect([health.status, health.text]).toEqual([200, 'ok\n']);
      const ws = await TestClient.connect(`${running.url.replace('http', 'ws')}/sync`);
      ws.send({ type: 'hello', protocol: 1, clientId: 'm1' });
      await ws.next('welcome');
      const metrics = await http(running.url, 'GET', '/metrics');
      expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(metrics.text).toMatch(/^eventsync_connections 1$/m);
      expect(metrics.text).toMatch(/^eventsync_commit_to_send_ms_bucket\{le="\+Inf"\} \d+$/m);
      expect(metrics.text).toMatch(/^process_resident_memory_bytes \d+$/m);
      ws.close();
      const page = await http(running.url, 'GET', '/');
      expect(page.headers['content-type']).toMatch(/^text\/html/);
      expect(page.text).toContain('/sse/:collection/:id');
      expect((await http(running.url, 'GET', '/nothing')).status).toBe(404);
      expect((await http(running.url, 'POST', '/healthz')).status).toBe(405);
      const listening = lines.find((l) => l.message === 'eventsync: listening');
      expect(listening?.details).toMatchObject({ url: running.url, db: 'memory' });
      expect(listening?.details).toHaveProperty('startupMs');
      expect(listening?.details).toHaveProperty('rssMB');
    } finally {
      await running.close();
    }
  });

  it('serves the demo directory at / with content types, only the files directly in it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'eventsync-demo-'));
    try {
      await writeFile(join(dir, 'index.html'), '<!doctype html><title>demo</title>');
      await writeFile(join(dir, 'main.js'), 'console.log(1);');
      await writeFile(join(dir, 'style.css'), 'body{}');
      await writeFile(join(dir, 'notes.txt'), 'not served');
      await mkdir(join(dir, 'sub'));
      await writeFile(join(dir, 'sub', 'x.js'), 'nested');
      const { logger } = recordingLogger();
      const running = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger, demoDir: dir });
      try {
        const page = await http(running.url, 'GET', '/');
        expect([page.status, page.headers['content-type'], page.text]).toEqual([
          200,
          'text/html; charset=utf-8',
          '<!doctype html><title>demo</title>',
        ]);
        expect((await http(running.url, 'GET', '/index.html')).text).toBe(page.text);
        const script = await http(running.url, 'GET', '/main.js');
        expect([script.headers['content-type'], script.text]).toEqual([
          'text/javascript; charset=utf-8',
          'console.log(1);',
        ]);
        expect((await http(running.url, 'GET', '/style.css')).headers['content-type']).toBe(
          'text/css; charset=utf-8',
        );
        for (const path of ['/notes.txt', '/sub/x.js', '/../package.json', '/%2e%2e/package.json']) {
          expect((await http(running.url, 'GET', path)).status, path).toBe(404);
        }
        const head = await http(running.url, 'HEAD', '/main.js');
        expect([head.status, head.headers['content-length'], head.text]).toEqual([200, '15', '']);
        expect((await http(running.url, 'GET', '/healthz')).text).toBe('ok\n');
      } finally {
        await running.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('shuts down gracefully: WebSockets and SSE streams get 1001, then the port is closed', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger });
    const ws = await TestClient.connect(`${running.url.replace('http', 'ws')}/sync`);
    ws.send({ type: 'hello', protocol: 1, clientId: 'g1' });
    ws.send({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'x' });
    await ws.next('synced');
    const stream = await SseClient.open(running.url, '/sse/games/x');
    await stream.until((c) => c.of('synced').length === 1);

    await running.close();
    await running.close(); // idempotent
    await ws.until(() => ws.closed !== undefined).catch(() => {});
    expect(ws.closed).toEqual({ code: 1001, reason: 'server shutting down' });
    await stream.closed();
    expect(JSON.parse(stream.events.find((e) => e.type === 'close')!.data)).toEqual({
      code: 1001,
      reason: 'server shutting down',
    });
    await expect(http(running.url, 'GET', '/healthz')).rejects.toThrow(/ECONNREFUSED/);
    expect(lines.at(-1)?.message).toBe('eventsync: stopped');
  });

  it('says on the listening line that anyone on this machine may act as anyone (--auth none)', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger, demoDir: false });
    await running.close();
    const listening = lines.find((l) => l.message === 'eventsync: listening');
    expect(listening?.details).toMatchObject({
      auth: expect.stringMatching(/anyone on this machine may act as anyone/),
    });
  });

  it('refuses a non-loopback host without auth, before opening anything', async () => {
    const { logger, lines } = recordingLogger();
    await expect(serve({ db: 'memory', port: 0, host: '0.0.0.0', logger })).rejects.toThrow(
      /not a loopback address.*pass auth: \{ mode: 'none' \}/,
    );
    expect(lines).toEqual([]); // refused before opening anything
  });

  it('warns when it listens beyond loopback without authentication', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '0.0.0.0', logger, auth: { mode: 'none' } });
    await running.close();
    expect(lines.some((l) => l.level === 'warn' && /no authentication/.test(l.message ?? ''))).toBe(true);
  });

  it('runs on PostgreSQL with a postgres:// URL', async () => {
    const { logger } = recordingLogger();
    const running = await serve({ db: databaseUrl(), port: 0, host: '127.0.0.1', logger });
    try {
      const c = uniqueCollection('serve');
      const ws = await TestClient.connect(`${running.url.replace('http', 'ws')}/sync`);
      ws.send({ type: 'hello', protocol: 1, clientId: 'pg1' });
      ws.send({ type: 'subscribe', sub: 's', collection: c, documentId: 'd' });
      await ws.next('synced');
      expect((await http(running.url, 'POST', `/api/${c}`, { body: { _id: 'd', n: 1 } })).status).toBe(201);
      const event = await ws.next('event');
      expect(event.event).toMatchObject({ collection: c, documentId: 'd', seq: 1, operation: 'create' });
      ws.close();
    } finally {
      await running.close();
    }
  });
});

describe('eventsync serve: starting', () => {
  it('reads db: a directory (made absolute), memory, a postgres:// URL; shows it without a password', () => {
    expect(databaseSpec('./data')).toEqual({ kind: 'pglite', dataDir: join(process.cwd(), 'data') });
    expect(databaseSpec('memory')).toEqual({ kind: 'memory' });
    expect(databaseSpec('postgresql://x/y')).toEqual({ kind: 'postgres', url: 'postgresql://x/y' });
    expect(databaseSpec('POSTGRES://x/y')).toEqual({ kind: 'postgres', url: 'POSTGRES://x/y' });
    expect(describeDatabase(databaseSpec('postgres://me:secret@db:5432/app'))).toBe(
      'postgres://me:***@db:5432/app',
    );
    expect(describeDatabase(databaseSpec('/var/lib/es'))).toBe('pglite:/var/lib/es');
  });

  it("refuses a URL that is not PostgreSQL's, instead of taking it as a directory, without its password", () => {
    for (const db of [
      'postgress://me:s3cret@db/app',
      'mysql://me:s3cret@db/app',
      'postgres://me:s3cret@[db/app',
    ]) {
      let refused: unknown;
      try {
        databaseSpec(db);
      } catch (error) {
        refused = error;
      }
      expect(EventSyncError.is(refused, 'validation'), db).toBe(true);
      const message = (refused as Error).message;
      expect(message, db).toMatch(/postgres:\/\/|percent-encode/);
      expect(message, db).toContain('me:***@');
      expect(message, db).not.toContain('s3cret');
    }
  });

  it('refuses a port in use in one sentence, before it creates the database directory', async () => {
    const { logger, lines } = recordingLogger();
    const first = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger, demoDir: false });
    const dir = await mkdtemp(join(tmpdir(), 'eventsync-port-'));
    try {
      const dataDir = join(dir, 'data');
      const refused = serve({ db: dataDir, port: first.port, host: '127.0.0.1', logger, demoDir: false });
      await expect(refused).rejects.toThrow(StartupError);
      await expect(refused).rejects.toMatchObject({
        code: 'EADDRINUSE',
        message: `port ${first.port} on 127.0.0.1 is already in use: stop the program that listens there, or choose another port (0 picks a free one)`,
      });
      expect(existsSync(dataDir)).toBe(false);
      expect(lines.map((l) => l.message)).not.toContainEqual(expect.stringMatching(/creating the embedded/));
    } finally {
      await first.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('says a PostgreSQL connection was refused without the password, and frees its port', async () => {
    const { logger } = recordingLogger();
    const closed = await freePort(); // nobody listens there
    const port = await freePort();
    const db = `postgres://me:s3cret@127.0.0.1:${closed}/app`;
    const refused = serve({ db, port, host: '127.0.0.1', logger, demoDir: false });
    await expect(refused).rejects.toMatchObject({
      name: 'StartupError',
      code: 'ECONNREFUSED',
      message: `could not connect to PostgreSQL at postgres://me:***@127.0.0.1:${closed}/app: the connection was refused; start PostgreSQL there, or correct the URL's host and port`,
    });
    // The listener it bound first is closed again: the port can be taken.
    const again = await serve({ db: 'memory', port, host: '127.0.0.1', logger, demoDir: false });
    await again.close();
  });

  it('answers 503 while starting, to requests and WebSocket upgrades alike', async () => {
    const app = createServeApp(false);
    await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const engine = await SyncEngine.create({ db: memoryDatabase() });
    try {
      for (const path of ['/healthz', '/api/games', '/']) {
        const answer = await http(url, 'GET', path);
        expect([answer.status, answer.text], path).toEqual([503, 'starting\n']);
      }
      await expect(TestClient.connect(`${url.replace('http', 'ws')}/sync`)).rejects.toThrow(/503/);
      app.ready(engine);
      expect((await http(url, 'GET', '/healthz')).text).toBe('ok\n');
    } finally {
      await app.closeListener();
      await engine.close();
    }
  });

  it('logs requests (no query, no token) and WebSockets at debug, with the principal', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger, demoDir: false });
    try {
      const created = await http(running.url, 'POST', '/api/games?token=alice-secret-token', {
        body: { _id: 'g' },
      });
      expect(created.status).toBe(201);
      await http(running.url, 'GET', '/healthz', { headers: { authorization: 'Bearer bob' } });
      const ws = await TestClient.connect(`${running.url.replace('http', 'ws')}/sync`);
      ws.send({ type: 'hello', protocol: 1, clientId: 'c1', token: 'carol' });
      await ws.next('welcome');
      ws.close();
      await vi.waitFor(() => expect(lines.map((l) => l.message)).toContain('eventsync: websocket closed'));
    } finally {
      await running.close();
    }
    const debug = lines.filter((l) => l.level === 'debug');
    expect(debug.find((l) => l.message === 'eventsync: request')?.details).toMatchObject({
      method: 'POST',
      path: '/api/games',
      status: 201,
      ms: expect.any(Number),
      principal: 'alice-secret-token',
    });
    // /healthz authenticates nobody.
    expect(debug.filter((l) => l.message === 'eventsync: request')[1]?.details).toMatchObject({
      path: '/healthz',
      status: 200,
      principal: undefined,
    });
    expect(debug.find((l) => l.message === 'eventsync: websocket connected')?.details).toMatchObject({
      session: expect.any(String),
    });
    expect(debug.find((l) => l.message === 'eventsync: websocket closed')?.details).toMatchObject({
      principal: 'carol',
      code: 1005,
    });
    expect(JSON.stringify(debug)).not.toContain('?token');
  });
});
