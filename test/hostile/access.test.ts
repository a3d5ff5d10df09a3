/**
 * Other web pages cannot use a local server through their visitors' browsers: upgrades, SSE
 * streams and REST requests from another `Origin` are refused (403), writes take JSON only (a
 * no-cors `text/plain` POST is 415), and `serve` on loopback answers only to loopback host names
 * (a DNS-rebound name is 403). Origins `allowedOrigins` names get CORS headers, so their pages
 * can read REST answers and SSE streams too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryDatabase } from '../../src/index.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { http, SseClient } from '../server/http-client.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';
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

describe('CORS for the origins allowedOrigins names', () => {
  let engine: SyncEngine;
  let server: LoopbackServer;
  const app = { origin: 'https://app.example' };
  beforeAll(async () => {
    engine = await SyncEngine.create({
      db: memoryDatabase(),
      access: { allowedOrigins: ['https://app.example'] },
    });
    server = await loopbackServer(engine);
    await (await engine.collection<{ _id: string; version: number; gold: number }>('games')).findOneAndUpsert(
      { _id: 'g1', gold: 1 },
    );
  });
  afterAll(() => server.close());
  const base = () => `http://127.0.0.1:${server.port}`;

  it('answers a preflight, and lets the page read REST answers and their ETag, with credentials', async () => {
    const preflight = await http(base(), 'OPTIONS', '/api/games/g1', {
      headers: {
        ...app,
        'access-control-request-method': 'PATCH',
        'access-control-request-headers': 'if-match',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers).toMatchObject({
      'access-control-allow-origin': 'https://app.example',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, POST, PATCH, DELETE',
    });
    expect(preflight.headers['access-control-allow-headers']).toMatch(/If-Match/);
    const get = await http(base(), 'GET', '/api/games/g1', { headers: app });
    expect(get.status).toBe(200);
    expect(get.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(get.headers['access-control-expose-headers']).toMatch(/ETag/);
    expect(get.headers.vary).toBe('Origin');
  });

  it('lets the page open an SSE stream; other origins get no CORS headers and 403, same origin none', async () => {
    const sse = await SseClient.open(base(), '/sse/games/g1', app);
    try {
      expect(sse.status).toBe(200);
      expect(sse.headers['access-control-allow-origin']).toBe('https://app.example');
    } finally {
      sse.destroy();
    }
    const evil = await http(base(), 'OPTIONS', '/api/games/g1', {
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'PATCH' },
    });
    expect(evil.status).toBe(403);
    expect(evil.headers['access-control-allow-origin']).toBeUndefined();
    const same = await http(base(), 'GET', '/api/games/g1', { headers: { origin: base() } });
    expect(same.headers['access-control-allow-origin']).toBeUndefined();
  });
});
