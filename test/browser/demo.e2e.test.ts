/**
 * The demo app in a real browser: Chromium (Debian's, or the one `@sparticuz/chromium` ships: see
 * test/support/chromium.ts) driven by playwright-core, against the real `eventsync serve` binary
 * on a fresh PGlite data directory.
 * Two pages (one on WebSocket, one on SSE): a game created and updated in one shows up in the
 * other; the server is stopped with SIGTERM and started again on the same directory and port; both
 * pages get back to `connected` and converge on further updates from either page, and agree with
 * the server. A screenshot goes to test-output/demo.png and is attached to the test's result.
 *
 * Without any Chromium the test is skipped with the reason, except in CI (`CI` set), where it fails.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemo } from '../../scripts/build-demo.js';
import { haveChromium, launchChromium, requireChromium } from '../support/chromium.js';
import { ensureBuilt, freePort, killAll, type ServeProcess, startServe } from '../support/serve-process.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SCREENSHOT = join(root, 'test-output', 'demo.png');

const WAIT_MS = 15_000;
/** How long the server may take to log `listening` (a cold start on a loaded machine). */
const START_MS = 60_000;

interface ShownGame {
  gold: string;
  experience: string;
  level: string;
  seq: string;
}

async function waitForState(page: Page, state: string): Promise<void> {
  await page.locator(`#status[data-state="${state}"]`).waitFor({ timeout: WAIT_MS });
}

async function shown(page: Page, id: string): Promise<ShownGame> {
  const card = page.locator(`[data-game-id="${id}"]`);
  const text = async (selector: string) =>
    (await card.locator(selector).textContent({ timeout: WAIT_MS })) ?? '';
  return {
    gold: await text('.gold'),
    experience: await text('.experience'),
    level: await text('.level'),
    seq: await text('.seq'),
  };
}

async function click(page: Page, id: string, action: string): Promise<void> {
  await page.locator(`[data-game-id="${id}"] [data-action="${action}"]`).click({ timeout: WAIT_MS });
}

async function createGame(page: Page, name: string): Promise<string> {
  await page.locator('#name').fill(name);
  await page.locator('#create button[type="submit"]').click();
  const card = page.locator('.game', { has: page.locator('h3', { hasText: name }) });
  const id = await card.getAttribute('data-game-id', { timeout: WAIT_MS });
  if (!id) throw new Error(`no card for ${name}`);
  return id;
}

let dir: string;
let browser: Browser | undefined;
const servers: ServeProcess[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!haveChromium) return;
  await ensureBuilt();
  await buildDemo();
  dir = await mkdtemp(join(tmpdir(), 'eventsync-demo-e2e-'));
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await killAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('the demo app in Chromium', () => {
  it('two pages stay in sync through a server restart', async (context) => {
    requireChromium(context, 'demo e2e');
    const started = performance.now();
    const phases: string[] = [];
    let phaseStart = started;
    const phase = (name: string) => {
      const now = performance.now();
      phases.push(`${name} ${Math.round(now - phaseStart)}`);
      phaseStart = now;
    };
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const args = ['--db', dataDir, '--host', '127.0.0.1', '--port', String(port)];
    servers.push(await startServe(args, START_MS));
    phase('start');
    const url = `http://127.0.0.1:${port}`;

    const desktop = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };
    const pages: Page[] = [];
    for (const path of ['/', '/?transport=sse']) {
      const page = await (await browser!.newContext(desktop)).newPage();
      page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.message}`));
      await page.goto(url + path);
      pages.push(page);
    }
    const [one, two] = pages as [Page, Page];
    await waitForState(one, 'connected');
    await waitForState(two, 'connected');
    expect(await one.locator('[data-transport="websocket"]').getAttribute('aria-pressed')).toBe('true');
    expect(await two.locator('[data-transport="sse"]').getAttribute('aria-pressed')).toBe('true');
    phase('pages');

    // Created and updated in page one, shown in page two.
    const quest = await createGame(one, 'Dragon Quest');
    await click(one, quest, 'gold');
    await click(one, quest, 'gold');
    const afterTwoUpdates = { gold: '100', experience: '0', level: '1', seq: 'seq 3' };
    await expect.poll(() => shown(two, quest), { timeout: WAIT_MS }).toEqual(afterTwoUpdates);
    await expect.poll(() => shown(one, quest), { timeout: WAIT_MS }).toEqual(afterTwoUpdates);
    // Page two's log has the three events, newest first, with their operations.
    const logTwo = two.locator(`#events li[data-document-id="${quest}"]`);
    await expect.poll(() => logTwo.count(), { timeout: WAIT_MS }).toBe(3);
    const seqs = await Promise.all([0, 1, 2].map((i) => logTwo.nth(i).getAttribute('data-seq')));
    expect(seqs).toEqual(['3', '2', '1']);
    expect(await logTwo.locator('.badge').allTextContents()).toEqual(['update', 'update', 'create']);
    expect(await logTwo.first().locator('.diff').textContent()).toContain('replace /gold 100');
    expect(await logTwo.first().locator('.event-actor').textContent()).toMatch(/\S/);

    phase('create+update');
    // Restart: SIGTERM, both pages notice, the same data directory and port again.
    const first = servers[0]!;
    first.child.kill('SIGTERM');
    expect(await first.exit).toEqual({ code: 0, signal: null });
    for (const page of pages) {
      await expect
        .poll(() => page.locator('#status').getAttribute('data-state'), { timeout: WAIT_MS })
        .not.toBe('connected');
    }
    phase('stop');
    servers.push(await startServe(args, START_MS));
    phase('restart');
    await waitForState(one, 'connected');
    await waitForState(two, 'connected');
    phase('reconnect');

    // Updates from either page after the restart; both converge, and agree with the server.
    await click(two, quest, 'experience');
    await click(one, quest, 'gold');
    await click(two, quest, 'level');
    const miners = await createGame(two, 'Space Miners');
    await click(one, miners, 'gold');
    const expected = { gold: '150', experience: '100', level: '2', seq: 'seq 6' };
    for (const page of pages) {
      await expect.poll(() => shown(page, quest), { timeout: WAIT_MS }).toEqual(expected);
      await expect
        .poll(() => shown(page, miners), { timeout: WAIT_MS })
        .toEqual({ gold: '50', experience: '0', level: '1', seq: 'seq 2' });
    }
    const stored = (await (await fetch(`${url}/api/games/${quest}`)).json()) as Record<string, unknown>;
    expect(stored).toMatchObject({ name: 'Dragon Quest', gold: 150, experience: 100, level: 2, version: 6 });

    phase('converge');
    // The transport switch: page two moves to WebSocket and still follows both games.
    await two.locator('[data-transport="websocket"]').click();
    await waitForState(two, 'connected');
    expect(new URL(two.url()).searchParams.get('transport')).toBe('websocket');
    await click(one, miners, 'experience');
    await expect
      .poll(() => shown(two, miners), { timeout: WAIT_MS })
      .toEqual({ gold: '50', experience: '100', level: '1', seq: 'seq 3' });
    await expect.poll(() => shown(one, miners), { timeout: WAIT_MS }).toEqual(await shown(two, miners));

    // A delete from one page removes the card from both and is logged.
    const goblins = await createGame(two, 'Goblin Cave');
    await one.locator(`[data-game-id="${goblins}"]`).waitFor({ timeout: WAIT_MS });
    await click(one, goblins, 'delete');
    for (const page of pages) {
      await page.locator(`[data-game-id="${goblins}"]`).waitFor({ state: 'detached', timeout: WAIT_MS });
      await page
        .locator(`#events li[data-document-id="${goblins}"][data-seq="2"] .badge`, { hasText: 'delete' })
        .waitFor({ timeout: WAIT_MS });
    }
    expect((await fetch(`${url}/api/games/${goblins}`)).status).toBe(404);
    phase('switch+delete');
    expect(pageErrors).toEqual([]);
    await mkdir(join(root, 'test-output'), { recursive: true });
    const png = await one.screenshot({ path: SCREENSHOT, fullPage: true });
    await context.annotate(`screenshot of page one: ${SCREENSHOT}`, 'screenshot', {
      body: new Uint8Array(png),
      contentType: 'image/png',
    });
    expect((await readFile(SCREENSHOT)).subarray(1, 4).toString()).toBe('PNG');
    phase('screenshot');
    process.stdout.write(
      `demo e2e: ${Math.round(performance.now() - started)} ms (${phases.join(', ')} ms); screenshot ${SCREENSHOT}\n`,
    );
  }, 90_000);
});
