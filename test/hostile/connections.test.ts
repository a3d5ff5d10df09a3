/**
 * Connections as a resource: caps per address and in total (WebSocket and SSE share them), and a
 * shutdown that answers 503 while it drains, closes every socket it accepted (stuck ones too)
 * and always closes the database.
 */
import { get, type IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { http } from '../server/http-client.js';
import { rawRequest, startTarget } from './support.js';

const UPGRADE =
  'GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

function open(url: string): Promise<WebSocket> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/sync`);
  return new Promise((resolve, reject) => ws.once('open', () => resolve(ws)).once('error', reject));
}

/** An SSE stream left open (its response is never read to the end). */
function openStream(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => get(url, { agent: false }, resolve).once('error', reject));
}

describe('connection caps', () => {
  it('refuses the connection past maxConnectionsPerAddress with 429 (WebSocket and SSE alike), and takes one again once a slot is free', async () => {
    const target = await startTarget('memory', { maxConnectionsPerAddress: 3 });
    try {
      const sockets = [await open(target.url), await open(target.url)];
      const sse = await openStream(`${target.url}/sse/games`);
      expect(sse.statusCode).toBe(200); // the third: still within the cap
      const refused = await rawRequest(target.port, UPGRADE, { end: false });
      expect([refused.status, refused.closed]).toEqual([429, true]);
      const refusedSse = await http(target.url, 'GET', '/sse/games');
      expect([refusedSse.status, refusedSse.body.error.code]).toEqual([429, 'rate_limited']);

      sockets[0]!.close();
      await new Promise((resolve) => sockets[0]!.once('close', resolve));
      const deadline = Date.now() + 5000;
      while (target.running.engine.connections.open >= 3 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const again = await open(target.url);
      again.close();
      sockets[1]!.close();
      sse.destroy();
    } finally {
      await target.close();
    }
  });

  it('refuses past maxConnections with 503', async () => {
    const target = await startTarget('memory', { maxConnections: 1 });
    try {
      const first = await open(target.url);
      const refused = await rawRequest(target.port, UPGRADE, { end: false });
      expect([refused.status, refused.closed]).toEqual([503, true]);
      first.close();
    } finally {
      await target.close();
    }
  });
});

describe('shutdown', () => {
  it('answers 503 to new requests while a request drains, then closes every socket and the database', async () => {
    const target = await startTarget('memory', {}, 1500);
    let closed = false;
    // A request in flight: headers and half a body, the rest never comes.
    const inFlight = rawRequest(
      target.port,
      'POST /api/games HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"_id":',
      { end: false, waitMs: 10_000 },
    );
    // Stuck sockets: half a request line, and a WebSocket that never says hello.
    const stuck = rawRequest(target.port, 'GET /api/ga', { end: false, waitMs: 10_000 });
    const silent = await open(target.url);
    await new Promise((resolve) => setTimeout(resolve, 100));

    const started = performance.now();
    const closing = target.running.close().then(() => {
      closed = true; // close() resolves after db.close(), which runs whatever failed before it
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const during = await http(target.url, 'GET', '/healthz');
    expect(during.status).toBe(503);

    await closing;
    const tookMs = performance.now() - started;
    expect(closed).toBe(true);
    expect(tookMs).toBeLessThan(1500 + 3000); // the drain, plus the WebSockets' close handshake at most
    expect((await inFlight).closed).toBe(true);
    expect((await stuck).closed).toBe(true);
    expect(silent.readyState).toBeGreaterThanOrEqual(WebSocket.CLOSING);
  });
});
