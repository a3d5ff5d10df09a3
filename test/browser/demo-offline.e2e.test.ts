/**
 * The demo's mutators offline, in Chromium (see demo.e2e.test.ts for the setup): page A goes
 * offline (`context.setOffline(true)`), makes 10 mutations that it shows at once (predicted, the
 * pending badge counting them) while page B and the server still have the old values; back online,
 * B and the server have all 10, each once. Then a `levelUp` that A predicts to succeed (it is
 * offline while a REST edit takes the game's XP to 0) is refused by the server and visibly rolled
 * back on A. A screenshot of that goes to test-output/demo-offline.png.
 *
 * Chromium's offline mode does not close an open WebSocket or EventSource: the SDK hears the
 * page's `offline` event and drops its connections itself (src/client/network.ts). The test waits
 * for page A's state to leave `connected`, so a client that did not would fail here.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemo } from '../../scripts/build-demo.js';
import { haveChromium, launchChromium, requireChromium } from '../support/chromium.js';
import { ensureBuilt, freePort, killAll, startServe } from '../support/serve-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SCREENSHOT = join(root, 'test-output', 'demo-offline.png');
const WAIT_MS = 15_000;
const START_MS = 60_000;

let dir: string;
let browser: Browser | undefined;
let url: string;

beforeAll(async () => {
  if (!haveChromium) return;
  await ensureBuilt();
  await buildDemo();
  dir = await mkdtemp(join(tmpdir(), 'eventsync-demo-offline-e2e-'));
  browser = await launchChromium();
  const port = await freePort();
  await startServe(['--db', join(dir, 'data'), '--host', '127.0.0.1', '--port', String(port)], START_MS);
  url = `http://127.0.0.1:${port}`;
}, START_MS + 30_000);

afterAll(async () => {
  await browser?.close();
  await killAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function open(path: string): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser!.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url + path);
  await page.locator('#status[data-state="connected"]').waitFor({ timeout: WAIT_MS });
  return { context, page, errors };
}

const state = (page: Page) => page.locator('#status').getAttribute('data-state');
const pendingCount = (page: Page) => page.locator('#pending').getAttribute('data-count');

async function stats(page: Page, id: string): Promise<{ gold: string; experience: string; level: string }> {
  const card = page.locator(`[data-game-id="${id}"]`);
  const text = async (selector: string) =>
    (await card.locator(selector).textContent({ timeout: WAIT_MS })) ?? '';
  return { gold: await text('.gold'), experience: await text('.experience'), level: await text('.level') };
}

async function click(page: Page, id: string, action: string): Promise<void> {
  await page.locator(`[data-game-id="${id}"] [data-action="${action}"]`).click({ timeout: WAIT_MS });
}

async function stored(id: string): Promise<Record<string, unknown>> {
  return (await (await fetch(`${url}/api/games/${id}`)).json()) as Record<string, unknown>;
}

describe('the demo offline, in Chromium', () => {
  it.for(['websocket', 'sse'])(
    'queues mutations offline, applies each once, rolls back a refusal (%s)',
    { timeout: 120_000 },
    async (transport, context) => {
      requireChromium(context, 'demo offline e2e');
      const a = await open(`/?transport=${transport}`);
      const b = await open('/');
      const name = `Offline Quest ${transport}`;
      await a.page.locator('#name').fill(name);
      await a.page.locator('#create button[type="submit"]').click();
      const card = a.page.locator('.game', { has: a.page.locator('h3', { hasText: name }) });
      const id = (await card.getAttribute('data-game-id', { timeout: WAIT_MS }))!;
      const start = { gold: '0', experience: '0', level: '1' };
      await expect.poll(() => stats(b.page, id), { timeout: WAIT_MS }).toEqual(start);

      // Offline: A's client hears the page's offline event and drops its connection.
      await a.context.setOffline(true);
      await expect.poll(() => state(a.page), { timeout: WAIT_MS }).not.toBe('connected');
      for (let i = 0; i < 5; i++) {
        await click(a.page, id, 'gold');
        await click(a.page, id, 'experience');
      }
      // Shown at once on A, predicted; B and the server have none of them.
      expect(await stats(a.page, id)).toEqual({ gold: '250', experience: '500', level: '1' });
      expect(await pendingCount(a.page)).toBe('10');
      expect(await a.page.locator(`[data-game-id="${id}"] .pending`).textContent()).toBe('pending: 10');
      expect(await stats(b.page, id)).toEqual(start);
      expect(await stored(id)).toMatchObject({ gold: 0, experience: 0, version: 1 });

      // Online again: the queue goes out; B and the server have all 10, each once.
      await a.context.setOffline(false);
      await a.page.locator('#status[data-state="connected"]').waitFor({ timeout: 30_000 });
      await expect.poll(() => pendingCount(a.page), { timeout: WAIT_MS }).toBe('0');
      const after = { gold: '250', experience: '500', level: '1' };
      await expect.poll(() => stats(b.page, id), { timeout: WAIT_MS }).toEqual(after);
      expect(await stats(a.page, id)).toEqual(after);
      expect(await stored(id)).toMatchObject({ gold: 250, experience: 500, level: 1, version: 11 });
      const logged = b.page.locator(`#events li[data-document-id="${id}"]`);
      await expect.poll(() => logged.count(), { timeout: WAIT_MS }).toBe(11);
      const mutations = await logged.locator('.event-mutation').allTextContents();
      expect(mutations.filter((text) => /^add(Gold|Xp) #\d+$/.test(text))).toHaveLength(10);
      expect(new Set(mutations.filter(Boolean)).size).toBe(10);

      // A refusal: A, offline, predicts levelUp (500 XP ≥ 100) while a REST edit takes XP to 0.
      await a.context.setOffline(true);
      await expect.poll(() => state(a.page), { timeout: WAIT_MS }).not.toBe('connected');
      const edit = await fetch(`${url}/api/games/${id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', authorization: 'Bearer test-editor' },
        body: JSON.stringify({ $set: { experience: 0 } }),
      });
      expect(edit.status).toBe(200);
      await click(a.page, id, 'level');
      expect(await stats(a.page, id)).toEqual({ gold: '250', experience: '500', level: '2' });
      expect(await pendingCount(a.page)).toBe('1');
      await a.context.setOffline(false);
      // The server refuses; A rolls back to the server's game, marks the card and says why.
      await a.page.locator(`[data-game-id="${id}"][data-refused="levelUp"]`).waitFor({ timeout: 30_000 });
      await expect
        .poll(() => stats(a.page, id), { timeout: WAIT_MS })
        .toEqual({ gold: '250', experience: '0', level: '1' });
      expect(await a.page.locator('#notice').textContent()).toContain('levelUp refused');
      expect(await pendingCount(a.page)).toBe('0');
      await mkdir(join(root, 'test-output'), { recursive: true });
      if (transport === 'websocket') await a.page.screenshot({ path: SCREENSHOT, fullPage: true });
      expect(await stored(id)).toMatchObject({ experience: 0, level: 1, version: 12 });
      await expect
        .poll(() => stats(b.page, id), { timeout: WAIT_MS })
        .toEqual({ gold: '250', experience: '0', level: '1' });
      expect([...a.errors, ...b.errors]).toEqual([]);
      await a.context.close();
      await b.context.close();
    },
  );
});
