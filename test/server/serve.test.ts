import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DB,
  DEFAULT_HOST,
  DEFAULT_PORT,
  databaseSpec,
  describeDatabase,
  parseCommand,
  UsageError,
} from '../../src/cli/args.js';
import { serve } from '../../src/cli/serve.js';
import type { Logger } from '../../src/events/logger.js';
import { databaseUrl, uniqueCollection } from '../support/databases.js';
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

describe('eventsync serve: arguments', () => {
  it('defaults to PGlite in ./data on 127.0.0.1:8080', () => {
    expect(parseCommand(['serve'])).toEqual({
      command: 'serve',
      db: DEFAULT_DB,
      port: DEFAULT_PORT,
      host: DEFAULT_HOST,
      logLevel: 'info',
    });
    expect([DEFAULT_DB, DEFAULT_PORT, DEFAULT_HOST]).toEqual(['./data', 8080, '127.0.0.1']);
  });

  it('reads --db, --port, --host, --log-level (also as --flag=value)', () => {
    expect(
      parseCommand([
        'serve',
        '--db',
        'postgres://u:p@h/db',
        '--port=0',
        '--host',
        '0.0.0.0',
        '--log-level',
        'warn',
      ]),
    ).toEqual({ command: 'serve', db: 'postgres://u:p@h/db', port: 0, host: '0.0.0.0', logLevel: 'warn' });
    expect(parseCommand(['--help'])).toEqual({ command: 'help' });
    expect(parseCommand(['serve', '-h'])).toEqual({ command: 'help' });
    expect(parseCommand(['-v'])).toEqual({ command: 'version' });
  });

  it('refuses mistakes with a UsageError', () => {
    for (const argv of [
      [],
      ['start'],
      ['serve', 'extra'],
      ['serve', '--port', 'eighty'],
      ['serve', '--port', '70000'],
      ['serve', '--port', '-1'],
      ['serve', '--verbose'],
      ['serve', '--log-level', 'loud'],
      ['serve', '--db='],
    ]) {
      expect(() => parseCommand(argv), argv.join(' ')).toThrow(UsageError);
    }
  });

  it('picks the database by --db, and logs it without a password', () => {
    expect(databaseSpec('./data')).toEqual({ kind: 'pglite', dataDir: './data' });
    expect(databaseSpec('memory')).toEqual({ kind: 'memory' });
    expect(databaseSpec('postgresql://x/y')).toEqual({ kind: 'postgres', url: 'postgresql://x/y' });
    expect(describeDatabase(databaseSpec('postgres://me:secret@db:5432/app'))).toBe(
      'postgres://me:***@db:5432/app',
    );
    expect(describeDatabase(databaseSpec('/var/lib/es'))).toBe('pglite:/var/lib/es');
  });
});

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

  it('warns when it listens beyond loopback without authentication', async () => {
    const { logger, lines } = recordingLogger();
    const running = await serve({ db: 'memory', port: 0, host: '0.0.0.0', logger });
    await running.close();
    expect(lines.some((l) => l.level === 'warn' && /no authentication/.test(l.message ?? ''))).toBe(true);
  });

  it('fails to start, closing what it opened, when the port is taken', async () => {
    const { logger } = recordingLogger();
    const first = await serve({ db: 'memory', port: 0, host: '127.0.0.1', logger });
    try {
      await expect(serve({ db: 'memory', port: first.port, host: '127.0.0.1', logger })).rejects.toThrow(
        /EADDRINUSE/,
      );
    } finally {
      await first.close();
    }
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
