/**
 * The real binary: package.json's `bin` (built by `npm run build`, which `npm start` runs; rebuilt
 * here when a source is newer), started on a fresh PGlite data directory, used over WebSocket and REST,
 * stopped with SIGTERM, started again on the same directory.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../src/events/types.js';
import { ensureBuilt, killAll, startServe } from '../support/serve-process.js';
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

describe('eventsync serve (the built binary)', () => {
  it('serves WebSocket and REST on PGlite, exits 0 on SIGTERM, and reopens its data directory', async () => {
    const dataDir = join(dir, 'data');
    const first = await start(dataDir);
    const listening = first.logs.find((l) => l.msg === 'eventsync: listening')!;
    expect(listening).toMatchObject({ db: `pglite:${dataDir}` });
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
});
