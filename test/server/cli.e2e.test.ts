/**
 * The real binary: package.json's `bin` (built by `npm run build`, which `npm start` runs; rebuilt
 * here when a source is newer), started on a fresh PGlite data directory, used over WebSocket and
 * REST, stopped with SIGTERM, started again on the same directory; its help, its environment, and
 * how it says it cannot start (exit 1, one sentence, never a password).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVE_USAGE, USAGE } from '../../src/cli/args.js';
import type { SyncEvent } from '../../src/core/events.js';
import { ensureBuilt, freePort, killAll, runEventsync, startServe } from '../support/serve-process.js';
import { TestClient } from '../support/ws-client.js';
import { http } from './http-client.js';

/** The binary on a PGlite data directory, on a port the OS picks. */
const start = (dataDir: string) => startServe(['--db', dataDir, '--port', '0']);

let dir: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'eventsync-cli-'));
});

afterAll(async () => {
  await killAll();
  await rm(dir, { recursive: true, force: true });
});

// Each test may start PGlite more than once: a loaded machine needs more than the default 60 s.
describe('eventsync serve (the built binary)', { timeout: 180_000 }, () => {
  it('serves WebSocket and REST on PGlite, exits 0 on SIGTERM, and reopens its data directory', async () => {
    const dataDir = join(dir, 'data');
    const first = await start(dataDir);
    const listening = first.logs.find((l) => l.msg === 'eventsync: listening')!;
    expect(listening).toMatchObject({ db: `pglite:${dataDir}` });
    // A first start says what takes its seconds.
    expect(first.logs.map((l) => l.msg).filter((m) => m.startsWith('eventsync: '))[0]).toBe(
      `eventsync: creating the embedded database in ${dataDir} (a first start takes a few seconds) …`,
    );
    expect(listening.startupMs).toBeGreaterThan(0);
    expect(listening.rssMB).toBeGreaterThan(0);
    expect((await http(first.url, 'GET', '/healthz')).text).toBe('ok\n');

    const ws = await TestClient.connect(`${first.url.replace('http', 'ws')}/sync`);
    ws.send({ type: 'hello', protocol: 1, clientId: 'e2e' });
    ws.send({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g1' });
    await ws.next('synced');
    const created = await http(first.url, 'POST', '/api/games', {
      body: { _id: 'g1', name: 'Quest', gold: 0 },
    });
    expect(created.status).toBe(201);
    const patched = await http(first.url, 'PATCH', '/api/games/g1', { body: { $inc: { gold: 5 } } });
    expect(patched.body).toMatchObject({ gold: 5, version: 2 });
    await ws.until((r) => r.filter((m) => m.type === 'event').length === 2);
    expect(ws.of('event').map((m) => [m.event.seq, m.event.operation])).toEqual([
      [1, 'create'],
      [2, 'update'],
    ]);

    first.child.kill('SIGTERM');
    expect(await first.exit).toEqual({ code: 0, signal: null });
    await ws.until(() => ws.closed !== undefined).catch(() => {});
    expect(ws.closed?.code).toBe(1001);
    expect(first.logs.map((l) => l.msg)).toContain('eventsync: stopped');

    const second = await start(dataDir);
    expect(second.logs.map((l) => l.msg)).toContain(`eventsync: opening the database pglite:${dataDir} …`);
    const doc = await http(second.url, 'GET', '/api/games/g1');
    expect(doc.body).toEqual({ _id: 'g1', name: 'Quest', gold: 5, version: 2 });
    const events = await http<{ events: SyncEvent[] }>(second.url, 'GET', '/api/games/g1/events');
    expect(events.body.events.map((e) => e.seq)).toEqual([1, 2]);
    second.child.kill('SIGINT');
    expect(await second.exit).toEqual({ code: 0, signal: null });
  });

  it('refuses a second process on the same data directory, and takes over the lock of a killed one', async () => {
    const dataDir = join(dir, 'locked');
    const first = await start(dataDir);
    expect((await http(first.url, 'POST', '/api/games', { body: { _id: 'kept' } })).status).toBe(201);

    await expect(start(dataDir)).rejects.toThrow(new RegExp(`in use by process ${first.child.pid}`));
    // The first one never noticed: it still serves, and has every write.
    expect((await http(first.url, 'POST', '/api/games', { body: { _id: 'after' } })).status).toBe(201);

    first.child.kill('SIGKILL');
    await first.exit;
    const restarted = await start(dataDir);
    const ids = await http<{ _id: string }[]>(restarted.url, 'GET', '/api/games?sort={"_id":1}');
    expect(ids.body.map((d) => d._id)).toEqual(['after', 'kept']);
    restarted.child.kill('SIGTERM');
    expect((await restarted.exit).code).toBe(0);
  });

  it('--auth jwt verifies bearer tokens and asks --rules; --auth none beyond loopback must be written out', async () => {
    const secret = 'a-test-secret-of-at-least-32-bytes!';
    const rules = join(dir, 'rules.mjs');
    await writeFile(
      rules,
      "export default (principal, action) => action !== 'write' || principal.id === 'alice';\n",
    );
    const server = await startServe(
      [
        '--db',
        'memory',
        '--port',
        '0',
        '--auth',
        'jwt',
        '--jwt-secret',
        secret,
        '--jwt-audience',
        'app',
      ].concat(['--rules', rules]),
    );
    expect(server.logs.find((l) => l.msg === 'eventsync: listening')).toMatchObject({
      auth: `jwt (HS256 secret), rules ${rules}`,
    });
    const sign = (sub: string, exp: number) =>
      new SignJWT({ sub, aud: 'app', exp })
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(secret));
    const inAnHour = Math.floor(Date.now() / 1000) + 3600;
    const post = async (token: string) =>
      (
        await http(server.url, 'POST', '/api/games', {
          body: {},
          headers: { authorization: `Bearer ${token}` },
        })
      ).status;
    expect(await post(await sign('alice', inAnHour))).toBe(201);
    expect(await post(await sign('bob', inAnHour))).toBe(403);
    expect(await post(await sign('alice', inAnHour - 7200))).toBe(401);
    expect(await post('alice')).toBe(401); // --auth none's way of naming oneself
    server.child.kill('SIGTERM');
    expect((await server.exit).code).toBe(0);

    // Refused before it opens or binds anything: exit 2 with the usage.
    await expect(startServe(['--db', 'memory', '--port', '0', '--host', '0.0.0.0'])).rejects.toThrow(
      /exited \(2\) before listening:[\s\S]*not a loopback address/,
    );
  });

  it('answers --help, and takes its options from the environment, where flags win', async () => {
    const help = await runEventsync(['--help']);
    expect(help).toEqual({ code: 0, stdout: USAGE, stderr: '' });
    expect(await runEventsync(['serve', '--help'])).toEqual({ code: 0, stdout: SERVE_USAGE, stderr: '' });
    const wrong = await runEventsync(['serve', '--port', 'eighty']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(
      /^eventsync: --port must be a number .*\n\(eventsync serve --help lists the options\)\n$/,
    );

    // PORT=1 would need privileges: --port 0 wins over it.
    const env = { DATABASE_URL: 'memory', PORT: '1', EVENTSYNC_LOG_LEVEL: 'debug' };
    const server = await startServe(['--port', '0'], 20_000, env);
    expect(server.logs.find((l) => l.msg === 'eventsync: listening')).toMatchObject({ db: 'memory' });
    expect((await http(server.url, 'GET', '/healthz?token=hidden')).status).toBe(200);
    server.child.kill('SIGTERM');
    expect((await server.exit).code).toBe(0);
    expect(server.logs.find((l) => l.msg === 'eventsync: request')).toMatchObject({
      level: 20,
      method: 'GET',
      path: '/healthz',
      status: 200,
    });
    expect(JSON.stringify(server.logs)).not.toContain('hidden');
  });

  it('refuses a port in use in one sentence (exit 1, no stack), before it creates the data directory', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const dataDir = join(dir, 'never-created');
      const run = await runEventsync(['serve', '--db', dataDir, '--port', String(port)]);
      expect(run.code).toBe(1);
      expect(run.stderr).toBe(
        `eventsync: could not start: port ${port} on 127.0.0.1 is already in use: stop the program that listens there, or choose another port (0 picks a free one)\n`,
      );
      const fatal = run.stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line))
        .at(-1);
      expect(fatal).toMatchObject({ level: 60, msg: 'eventsync: could not start' });
      expect(fatal).not.toHaveProperty('err'); // the stack is for --log-level debug
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('says what is wrong with a mistyped URL or a refused connection, never with the password', async () => {
    const cwd = await mkdtemp(join(dir, 'cwd-'));
    const typo = await runEventsync(['serve', '--db', 'postgress://me:s3cret@127.0.0.1/app', '--port', '0'], {
      cwd,
    });
    expect(typo.code).toBe(1);
    expect(typo.stderr).toMatch(
      /^eventsync: could not start: the database postgress:\/\/me:\*\*\*@127\.0\.0\.1\/app is not a postgres:\/\/ URL: write a postgres:\/\/ \(or postgresql:\/\/\) URL for PostgreSQL, a directory path for the embedded database, or memory\n$/,
    );
    expect(await readdir(cwd)).toEqual([]); // not taken as a directory

    const closed = await freePort();
    const db = `postgres://me:s3cret@127.0.0.1:${closed}/app`;
    const sentence = `eventsync: could not start: could not connect to PostgreSQL at postgres://me:***@127.0.0.1:${closed}/app: the connection was refused; start PostgreSQL there, or correct the URL's host and port\n`;
    const refused = await runEventsync(['serve', '--db', db, '--port', '0', '--log-format', 'pretty']);
    expect(refused).toMatchObject({ code: 1, stderr: sentence });
    // At debug, the stack (with its causes) follows: in the fatal JSON line, or below the sentence.
    const json = await runEventsync(['serve', '--port', '0', '--log-level', 'debug'], {
      env: { DATABASE_URL: db },
    });
    expect(json).toMatchObject({ code: 1, stderr: sentence });
    const fatal = json.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line))
      .at(-1);
    expect(fatal.err.stack).toMatch(/StartupError: could not connect[\s\S]*\n {4}at /);
    const pretty = await runEventsync([
      'serve',
      '--db',
      db,
      '--port',
      '0',
      '--log-format',
      'pretty',
      '--log-level',
      'debug',
    ]);
    expect(pretty.stderr.startsWith(sentence)).toBe(true);
    expect(pretty.stderr).toMatch(/ECONNREFUSED[\s\S]*\n {4}at /);
    for (const run of [typo, refused, json, pretty]) {
      expect(run.stdout + run.stderr).not.toContain('s3cret');
    }
    expect(json.stdout).toContain('me:***@');
  });
});
