/**
 * `eventsync/react` in a real browser: the React example (demo/react/, built with esbuild, in
 * StrictMode) served by `serve` on memory, two pages (one on WebSocket, one on SSE). An item
 * added in one shows up in the other; checked in the other, it shows done in the first; a server
 * write of the title document and of an item reaches both; both pages agree with the server.
 * `useClientState` shows `connected`; a checkbox runs a mutator through `useMutation`. A screenshot goes to test-output/react.png.
 *
 * Without any Chromium the test is skipped with the reason, except in CI (see test/support/chromium.ts).
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { todoMutators } from '../../demo/react/todo-mutators.js';
import { buildReactExample } from '../../scripts/build-demo.js';
import { type RunningServer, serve } from '../../src/server/serve.js';
import { haveChromium, launchChromium, requireChromium } from '../support/chromium.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SCREENSHOT = join(root, 'test-output', 'react.png');
const WAIT_MS = 15_000;
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

interface Todo {
  _id: string;
  version: number;
  text: string;
  done: boolean;
}

let appDir: string;
let server: RunningServer;
let browser: Browser | undefined;

beforeAll(async () => {
  if (!haveChromium) return;
  appDir = await mkdtemp(join(tmpdir(), 'eventsync-react-'));
  await buildReactExample(appDir);
  server = await serve({
    db: 'memory',
    port: 0,
    host: '127.0.0.1',
    logger: quiet,
    demoDir: appDir,
    drainMs: 1_000,
    engine: {
      authenticate: ({ token }) => (token ? { id: token } : undefined),
      authorize: 'allow-all',
      mutators: { todos: todoMutators },
    },
  });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  if (appDir) await rm(appDir, { recursive: true, force: true });
});

/** The items a page shows, as `text` (or `text ✓` when done), in order. */
function shownItems(page: Page): Promise<string[]> {
  return page.$$eval('#items li', (items) =>
    items.map((li) => `${li.querySelector('span')?.textContent ?? ''}${li.className === 'done' ? ' ✓' : ''}`),
  );
}

async function until(page: Page, wanted: string[]): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const items = await shownItems(page);
    if (JSON.stringify(items) === JSON.stringify(wanted)) return;
    if (Date.now() > deadline)
      throw new Error(`the page shows ${JSON.stringify(items)}, not ${JSON.stringify(wanted)}`);
    await page.waitForTimeout(50);
  }
}

async function open(transport: 'websocket' | 'sse'): Promise<Page> {
  const page = await browser!.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`http://127.0.0.1:${server.port}/?transport=${transport}`);
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT_MS });
  await page.locator('#items[data-synced="true"]').waitFor({ timeout: WAIT_MS });
  expect(errors).toEqual([]);
  return page;
}

describe('eventsync/react in Chromium', () => {
  it('two pages (WebSocket and SSE) stay in sync through useCollection, useDocument and useClientState', async (context) => {
    requireChromium(context, 'react.e2e');
    const todos = await server.engine.collection<Todo>('todos');
    await todos.findOneAndUpsert({ _id: '0a', text: 'milk', done: false });
    const ws = await open('websocket');
    const sse = await open('sse');
    await until(ws, ['milk']);
    await until(sse, ['milk']);

    await ws.fill('#new-text', 'bread');
    await ws.click('#add');
    await until(sse, ['milk', 'bread']);
    await until(ws, ['milk', 'bread']);

    // A checkbox runs the `toggle` mutator (useMutation): predicted on the page, applied by the server.
    await sse.click('#todo-0a input');
    await until(ws, ['milk ✓', 'bread']);
    await until(sse, ['milk ✓', 'bread']);
    const [toggled] = (await server.engine.events.getEvents('todos', '0a')).slice(-1);
    expect(toggled?.metadata).toMatchObject({ mutation: { name: 'toggle', mid: 1 } });

    await todos.updateOne('0a', { $set: { text: 'oat milk' } });
    const lists = await server.engine.collection<{ _id: string; version: number; title: string }>('lists');
    await lists.findOneAndUpsert({ _id: 'main', title: 'Shopping' });
    for (const page of [ws, sse]) {
      await until(page, ['oat milk ✓', 'bread']);
      await page.locator('#title', { hasText: 'Shopping' }).waitFor({ timeout: WAIT_MS });
    }
    const stored = (await todos.findMany({}, { sort: { _id: 1 } })).map(
      (t) => `${t.text}${t.done ? ' ✓' : ''}`,
    );
    expect(await shownItems(ws)).toEqual(stored);
    expect(await shownItems(sse)).toEqual(stored);

    await mkdir(join(root, 'test-output'), { recursive: true });
    await ws.screenshot({ path: SCREENSHOT });
    context.annotate('screenshot', { path: SCREENSHOT, contentType: 'image/png' });
  }, 90_000);
});
