/**
 * Other web pages cannot use a local server through their visitors' browsers: upgrades, SSE
 * streams and REST requests from another `Origin` are refused (403), writes take JSON only (a
 * no-cors `text/plain` POST is 415), and `serve` on loopback answers only to loopback host names
 * (a DNS-rebound name is 403).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from '../server/http-client.js';
import { rawRequest, startTarget, type Target } from './support.js';

let target: Target;
beforeAll(async () => {
  target = await startTarget('memory');
});
afterAll(() => target.close());

const upgrade = (host: string, origin?: string) =>
  `GET /sync HTTP/1.1\r\nHost: ${host}\r\n${origin ? `Origin: ${origin}\r\n` : ''}Upgrade: websocket\r\n` +
  'Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

describe('access from other origins and hosts', () => {
  it('upgrades: same origin and no origin pass, another origin and another host are refused', async () => {
    const host = `127.0.0.1:${target.port}`;
    expect((await rawRequest(target.port, upgrade(host), { end: false, firstByte: true })).status).toBe(101);
    expect(
      (await rawRequest(target.port, upgrade(host, `http://${host}`), { end: false, firstByte: true }))
        .status,
    ).toBe(101);
    expect(
      (await rawRequest(target.port, upgrade(host, 'https://evil.example'), { end: false })).status,
    ).toBe(403);
    expect((await rawRequest(target.port, upgrade(host, 'null'), { end: false })).status).toBe(403);
    const rebound = `evil.example:${target.port}`;
    expect(
      (await rawRequest(target.port, upgrade(rebound, `http://${rebound}`), { end: false })).status,
    ).toBe(403);
  });

  it('SSE and REST from another origin are 403 forbidden; nothing is written', async () => {
    const origin = { origin: 'https://evil.example' };
    const sse = await http(target.url, 'GET', '/sse/games', { headers: origin });
    expect([sse.status, sse.body.error.code]).toEqual([403, 'forbidden']);
    const post = await http(target.url, 'POST', '/api/games', {
      body: { _id: 'x1' },
      headers: { ...origin, 'content-type': 'application/json' },
    });
    expect([post.status, post.body.error.code]).toEqual([403, 'forbidden']);
    expect((await http(target.url, 'GET', '/api/games/x1')).status).toBe(404);
  });

  it('a no-cors text/plain write is 415 unsupported_media_type; nothing is written', async () => {
    const post = await http(target.url, 'POST', '/api/games', {
      body: '{"_id":"x2"}',
      headers: { 'content-type': 'text/plain' },
    });
    expect([post.status, post.body.error.code]).toEqual([415, 'unsupported_media_type']);
    expect((await http(target.url, 'GET', '/api/games/x2')).status).toBe(404);
  });
});
