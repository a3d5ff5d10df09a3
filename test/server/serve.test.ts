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
  isLoopback,
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
      auth: { mode: 'none' },
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
        '--auth',
        'none',
      ]),
    ).toEqual({
      command: 'serve',
      db: 'postgres://u:p@h/db',
      port: 0,
      host: '0.0.0.0',
      logLevel: 'warn',
      auth: { mode: 'none' },
    });
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

  it('refuses --auth none beyond loopback unless it is written out', () => {
    for (const host of ['0.0.0.0', '192.168.1.5', '::', '127.evil.example']) {
      expect(() => parseCommand(['serve', '--host', host]), host).toThrow(
        /not a loopback address.*anyone who reaches it may act as anyone: pass --auth jwt …, or --auth none/,
      );
      expect(parseCommand(['serve', '--host', host, '--auth', 'none'])).toMatchObject({
        auth: { mode: 'none' },
      });
    }
    for (const host of ['127.0.0.1', '127.0.0.2', 'localhost', '::1']) {
      expect(parseCommand(['serve', '--host', host]), host).toMatchObject({ host, auth: { mode: 'none' } });
    }
    expect(parseCommand(['serve', '--rules', './r.js'])).toMatchObject({
      auth: { mode: 'none', rules: './r.js' },
    });
  });

  it('reads --auth jwt with a secret or a JWKS URL, audience, issuer and rules', () => {
    const secret = 's'.repeat(32);
    expect(
      parseCommand([
        'serve',
        '--host=0.0.0.0',
        '--auth=jwt',
        `--jwt-secret=${secret}`,
        '--jwt-audience=app',
        '--jwt-issuer=https://id.example',
        '--rules=./rules.js',
      ]),
    ).toMatchObject({
      host: '0.0.0.0',
      auth: { mode: 'jwt', secret, audience: 'app', issuer: 'https://id.example', rules: './rules.js' },
    });
    for (const jwksUrl of ['https://id.example/jwks.json', 'http://127.0.0.1:9/jwks', 'http://localhost/k']) {
      expect(
        parseCommand(['serve', '--auth', 'jwt', '--jwks-url', jwksUrl, '--rules', 'allow-all']),
      ).toMatchObject({
        auth: { mode: 'jwt', jwksUrl, rules: 'allow-all' },
      });
    }
  });

  it('refuses --auth jwt without a key, with two, with a short secret, an http JWKS elsewhere, or no rules', () => {
    const key = ['--jwt-secret', 's'.repeat(32)];
    for (const [argv, message] of [
      [['--auth', 'jwt', '--rules', 'allow-all'], /needs one of --jwt-secret/],
      [['--auth', 'jwt', ...key, '--jwks-url', 'https://x/k', '--rules', 'allow-all'], /needs one of/],
      [['--auth', 'jwt', '--jwt-secret', 'short', '--rules', 'allow-all'], /at least 32 bytes/],
      [['--auth', 'jwt', '--jwks-url', 'http://id.example/k', '--rules', 'allow-all'], /must be https/],
      [['--auth', 'jwt', '--jwks-url', 'not a url', '--rules', 'allow-all'], /must be a URL/],
      [['--auth', 'jwt', ...key], /needs --rules .*--rules allow-all/],
      [['--auth', 'jwt', ...key, '--rules', ''], /--rules must not be empty/],
      [['--auth', 'none', ...key], /--jwt-secret needs --auth jwt/],
      [['--jwt-audience', 'app'], /--jwt-audience needs --auth jwt/],
      [['--auth', 'basic'], /--auth must be none or jwt/],
    ] as const) {
      expect(() => parseCommand(['serve', ...argv]), argv.join(' ')).toThrow(UsageError);
      expect(() => parseCommand(['serve', ...argv]), argv.join(' ')).toThrow(message);
    }
  });

  it('tells loopback addresses from others', () => {
    for (const host of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]'])
      expect(isLoopback(host), host).toBe(true);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '127.example.com', 'localhost.example.com', ''])
      expect(isLoopback(host), host).toBe(false);
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
