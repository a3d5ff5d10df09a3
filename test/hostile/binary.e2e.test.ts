/**
 * The attacks that once killed the process, against the built `eventsync serve` binary (a
 * crash there is an exit, which an in-process server would hide as a test error): after all of
 * them the process is still running and `/healthz` answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from '../server/http-client.js';
import { ensureBuilt, killAll, startServe } from '../support/serve-process.js';
import { rawRequest } from './support.js';

beforeAll(ensureBuilt, 120_000);
afterAll(killAll);

const UPGRADE =
  'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n';

describe('eventsync serve (the built binary) under the attacks that once crashed it', () => {
  it('stays up: malformed targets, as requests and upgrades, and filters that would abort V8', async () => {
    const server = await startServe(['--db', 'memory', '--port', '0']);
    const port = Number(new URL(server.url).port);
    let exited = false;
    void server.exit.then(() => {
      exited = true;
    });

    expect((await rawRequest(port, 'GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n')).status).toBe(400);
    const upgrade = await rawRequest(port, `GET http://[::1 HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`, {
      end: false,
    });
    expect([upgrade.status, upgrade.closed]).toEqual([400, true]);
    expect((await http(server.url, 'POST', '/api/c', { body: { _id: 'one' } })).status).toBe(201);
    const range = { $expr: { $gt: [{ $size: { $range: [0, 150_000_000] } }, 0] } };
    const refused = await http(
      server.url,
      'GET',
      `/api/c?filter=${encodeURIComponent(JSON.stringify(range))}`,
    );
    expect([refused.status, refused.body.error.code]).toEqual([400, 'validation']);
    const other = await rawRequest(port, `GET /elsewhere HTTP/1.1\r\nHost: x\r\n${UPGRADE}\r\n`, {
      end: false,
    });
    expect([other.status, other.closed]).toEqual([404, true]);

    expect((await http(server.url, 'GET', '/healthz')).text).toBe('ok\n');
    expect(exited).toBe(false);
    server.child.kill('SIGTERM');
    expect((await server.exit).code).toBe(0);
  });
});
