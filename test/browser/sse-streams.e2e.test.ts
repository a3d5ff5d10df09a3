/**
 * Issue 19 in a real browser: a page follows 20 documents over SSE. Browsers open at most 6
 * HTTP/1.1 connections per origin, so one stream per document would leave the seventh waiting
 * forever (and every `fetch` of the page behind it). The SDK holds one client stream and adds the
 * subscriptions to it by requests: the page opens one SSE stream, all 20 replicas converge under
 * REST edits, and the page's own `fetch` still answers.
 *
 * The page is served by a plain `node:http` server with `attach` (the SDK bundled by esbuild,
 * as an app would). Without any Chromium the test is skipped with the reason, except in CI.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryDatabase } from '../../src/backends/memory/memory-database.js';
import { type Attached, attach } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { haveChromium, launchChromium, requireChromium } from '../support/chromium.js';

const DOCUMENTS = 20;
const WAIT_MS = 20_000;
const ids = Array.from({ length: DOCUMENTS }, (_, i) => `d${i}`);

const PAGE = `<!doctype html><meta charset="utf-8"><title>20 documents over SSE</title>
<script type="module">
  import { EventSyncClient } from '/client.js';
  const client = new EventSyncClient({ serverUrl: location.origin, transport: 'sse', token: 'alice' });
  const handles = ${JSON.stringify(ids)}.map((id) => client.document('games', id));
  window.golds = () => handles.map((h) => h.state?.gold ?? null);
  window.connected = client.connect().then(() => Promise.all(handles.map((h) => h.whenSynced())));
</script>`;

let engine: SyncEngine;
let server: Server;
let attached: Attached;
let base: string;
let browser: Browser | undefined;
let clientJs: string;
/** Server-side: the SSE streams open now and ever opened, and the TCP connections the browser made. */
const streams = { open: 0, opened: 0 };
const browserSockets = new Set<Socket>();

beforeAll(async () => {
  if (!haveChromium) return;
  const bundle = await build({
    entryPoints: ['src/client.ts'],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
  });
  clientJs = bundle.outputFiles[0]!.text;
  engine = await SyncEngine.create({
    db: memoryDatabase(),
    authenticate: ({ token }) => (token ? { id: token } : undefined),
    authorize: 'allow-all',
  });
  server = createServer(servePage);
  attached = attach(server, engine);
  // `attach` takes its requests before the server's `request` listeners: see them first.
  const emit = server.emit;
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]) {
    if (event === 'request') seen(args[0] as IncomingMessage, args[1] as ServerResponse);
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  } as Server['emit'];
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (!server) return;
  await attached.close();
  await engine.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function servePage(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/client.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' }).end(clientJs);
  } else if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
  } else res.writeHead(404).end();
}

/** Counts the browser's connections, and the SSE streams (an EventSource asks for `text/event-stream`). */
function seen(req: IncomingMessage, res: ServerResponse): void {
  if (req.headers['user-agent']?.includes('Chrome')) browserSockets.add(req.socket);
  if (!req.headers.accept?.includes('text/event-stream')) return;
  streams.open++;
  streams.opened++;
  res.once('close', () => streams.open--);
}

describe('SSE in Chromium', () => {
  it('one page follows 20 documents over one SSE stream; they converge under REST edits; its fetch answers', async (context) => {
    requireChromium(context, 'sse-streams.e2e');
    const games = await engine.collection<{ _id: string; version: number; gold: number }>('games');
    for (const id of ids) await games.findOneAndUpsert({ _id: id, gold: 0 });

    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const eventSources: string[] = [];
    page.on('request', (request) => {
      if (request.resourceType() === 'eventsource') eventSources.push(request.url());
    });
    await page.goto(base);
    await page.evaluate(() => (globalThis as unknown as { connected: Promise<void> }).connected);
    const golds = () => page.evaluate(() => (globalThis as unknown as { golds(): number[] }).golds());
    expect(await golds()).toEqual(ids.map(() => 0));

    // REST edits, several per document, interleaved across documents.
    for (let round = 1; round <= 3; round++) {
      await Promise.all(
        ids.map((id, i) =>
          fetch(`${base}/api/games/${id}`, {
            method: 'PATCH',
            headers: { authorization: 'Bearer bob', 'content-type': 'application/json' },
            body: JSON.stringify({ $inc: { gold: i + round } }),
          }).then((res) => expect(res.status).toBe(200)),
        ),
      );
    }
    const stored = await Promise.all(ids.map(async (id) => (await games.findOne(id))!.gold));
    await expect.poll(golds, { timeout: WAIT_MS }).toEqual(stored);

    // The page's own requests are not stuck behind streams.
    const answered = await page.evaluate(async () => {
      const res = await fetch('/api/games/d7', { headers: { authorization: 'Bearer alice' } });
      return { status: res.status, gold: ((await res.json()) as { gold: number }).gold };
    });
    expect(answered).toEqual({ status: 200, gold: stored[7] });

    expect(eventSources).toHaveLength(1);
    expect(new URL(eventSources[0]!).pathname).toBe('/sse');
    expect(streams).toEqual({ open: 1, opened: 1 });
    // One stream and the requests that subscribed: within the 6 connections per origin.
    expect(browserSockets.size).toBeLessThanOrEqual(6);
    expect(errors).toEqual([]);
    await page.close();
  }, 90_000);
});
