/**
 * Issue 15 item 2 in a real browser (Chromium through playwright-core, see test/support/chromium.ts): a page on another
 * origin can neither read nor write an eventsync server, over WebSocket, SSE or REST, with fetch
 * in CORS and no-cors mode or with a plain HTML form.
 *
 * The server is `serve` on 127.0.0.1 (memory) with cookie-based authentication: the browser holds
 * the victim's `session=alice` cookie, and `authenticate` also takes any token, as `--auth none`
 * does, so an attacker has credentials and only the origin check can stop it. The attacker's page
 * (test/browser/cross-origin-probe.html) is served by a second server on another port, and opened
 * both as http://127.0.0.1:<port> (same site: the cookie goes along) and http://localhost:<port>.
 * The page reads nothing, the server answers each of its requests 403 before `authenticate` is
 * asked (the cookie is never used), and the storage is unchanged. The control: the same page,
 * served by eventsync itself, reads the document over each transport and writes with JSON as
 * the cookie's principal, so what stops the attacker is the origin and nothing else.
 *
 * Without any Chromium the test is skipped with the reason, except in CI (see test/support/chromium.ts).
 */
import { randomUUID } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../src/core/events.js';
import { type RunningServer, serve } from '../../src/server/serve.js';
import type { SyncEngine } from '../../src/sync/engine.js';
import type { Authenticate } from '../../src/sync/types.js';
import { haveChromium, launchChromium, requireChromium } from '../support/chromium.js';

const PROBE_PAGE = fileURLToPath(new URL('./cross-origin-probe.html', import.meta.url));
const COLLECTION = 'notes';
const DOCUMENT = 'n1';
/** In the document only: any text of a page's that contains it was read from the server. */
const SECRET = `crown-jewels-${randomUUID()}`;
/** Page loads and page.evaluate calls; each probe gives up by itself after 3 s (PROBE_MS). */
const WAIT_MS = 15_000;
const quiet = { error() {}, warn() {}, info() {}, debug() {} };

/** What one probe of the page saw: see cross-origin-probe.html. */
interface Observation {
  outcome: string;
  read: string[];
}

const PROBES = [
  'websocket',
  'eventSource',
  'getDocument',
  'jsonPost',
  'noCorsTextPost',
  'formPost',
  'patch',
  'remove',
] as const;
type Probe = (typeof PROBES)[number];

let pageDir: string;
let victim: RunningServer;
let attacker: { port: number; close(): Promise<void> };
let browser: Browser | undefined;
/** Every principal `authenticate` let in, in order. */
const authenticated: string[] = [];

beforeAll(async () => {
  if (!haveChromium) return;
  pageDir = await mkdtemp(join(tmpdir(), 'eventsync-xorigin-'));
  await copyFile(PROBE_PAGE, join(pageDir, 'index.html'));
  victim = await startVictim(pageDir);
  attacker = await startAttacker();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await attacker?.close();
  await victim?.close();
  if (pageDir) await rm(pageDir, { recursive: true, force: true });
});

/** A cookie `session=<id>` names the principal; failing that, any token does (`--auth none`). */
function cookieOrToken(): Authenticate {
  return ({ headers, token }) => {
    const cookie = /(?:^|;\s*)session=([\w-]+)/.exec(String(headers.cookie ?? ''))?.[1];
    const id = cookie ?? token;
    if (id) authenticated.push(id);
    return id ? { id } : undefined;
  };
}

/** `serve` on 127.0.0.1 with the probe page as its app at `/` and one document holding SECRET. */
async function startVictim(appDir: string): Promise<RunningServer> {
  const running = await serve({
    db: 'memory',
    port: 0,
    host: '127.0.0.1',
    logger: quiet,
    demoDir: appDir,
    drainMs: 2_000,
    engine: { authenticate: cookieOrToken(), authorize: 'allow-all' },
  });
  const notes = await running.engine.collection<{ _id: string; owner: string; secret: string }>(COLLECTION);
  await notes.findOneAndUpsert({ _id: DOCUMENT, owner: 'alice', secret: SECRET });
  return running;
}

/** The attacker's site: the probe page at every path, on a port of its own. */
async function startAttacker(): Promise<{ port: number; close(): Promise<void> }> {
  const page = await readFile(PROBE_PAGE);
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** Everything stored: the collection's documents and the whole event log. */
async function stored(engine: SyncEngine): Promise<{ documents: unknown[]; events: SyncEvent[] }> {
  const documents = await (await engine.collection(COLLECTION)).findMany();
  const events = await engine.events.backend.listAfterServerSeq(undefined, 0, 1000);
  return { documents, events };
}

/** The probe page at `origin`, in a fresh browser context holding the victim's session cookie. */
async function openProbePage(origin: string): Promise<Page> {
  const context = await browser!.newContext();
  await context.addCookies([{ name: 'session', value: 'alice', url: victim.url, sameSite: 'Lax' }]);
  const page = await context.newPage();
  await page.goto(`${origin}/`, { timeout: WAIT_MS });
  return page;
}

/** Runs one probe of the page against the victim (the page bounds it; WAIT_MS bounds the call). */
function runProbe(page: Page, probe: Probe, documentId: string): Promise<Observation> {
  const call = `window.probes.${probe}(${JSON.stringify(victim.url)}, '${COLLECTION}', '${documentId}')`;
  return withTimeout(page.evaluate(call) as Promise<Observation>, `${probe} in ${page.url()}`);
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * What the victim answers, as `METHOD /path → status`, to each request and WebSocket upgrade that
 * carries `Origin: origin`: seen from the server, so a request the browser never sent cannot pass
 * for a refused one. Wraps the server's `emit` outside the wrapper `attach` put there.
 */
function recordAnswers(server: Server, origin: string): { answers: string[]; stop(): void } {
  const answers: string[] = [];
  const emit = server.emit;
  const tap = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    const req = args[0] as IncomingMessage;
    if ((event === 'request' || event === 'upgrade') && req.headers.origin === origin) {
      const name = `${event === 'upgrade' ? 'UPGRADE' : req.method} ${req.url?.split('?')[0]}`;
      if (event === 'request') {
        const res = args[1] as ServerResponse;
        res.once('finish', () => answers.push(`${name} → ${res.statusCode}`));
      } else {
        // An upgrade is answered by writing to the socket: its first write is the status line.
        const socket = args[1] as Duplex;
        const write = socket.write;
        socket.write = function (this: Duplex, ...writeArgs: Parameters<Duplex['write']>) {
          socket.write = write;
          answers.push(`${name} → ${/^HTTP\/1\.1 (\d{3})/.exec(String(writeArgs[0]))?.[1]}`);
          return write.apply(this, writeArgs);
        } as Duplex['write'];
      }
    }
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  };
  server.emit = tap as Server['emit'];
  const stop = () => {
    server.emit = emit;
  };
  return { answers, stop };
}

/** Every probe at once, each against the document or, for the creating POSTs, a new id. */
async function attack(page: Page): Promise<Record<Probe, Observation>> {
  const seen = await Promise.all(
    PROBES.map(async (probe) => {
      const id = probe.endsWith('Post') ? `pwned-${probe}` : DOCUMENT;
      return [probe, await runProbe(page, probe, id)] as const;
    }),
  );
  return Object.fromEntries(seen) as Record<Probe, Observation>;
}

describe('a page on another origin', () => {
  it.for([
    { host: '127.0.0.1', why: 'another port: same site, so the cookie goes along' },
    { host: 'localhost', why: 'another host name: another site' },
  ])('served as http://$host:<port> ($why) reads nothing and writes nothing', async ({ host }, context) => {
    requireChromium(context, 'cross-origin e2e');
    const before = await stored(victim.engine);
    authenticated.length = 0;
    const origin = `http://${host}:${attacker.port}`;
    const page = await openProbePage(origin);
    const tap = recordAnswers(victim.server, origin);
    const seen = await attack(page).finally(tap.stop);
    await page.context().close();

    // The page saw every attempt fail, and read nothing at all.
    const refused = (outcome: string) => ({ outcome, read: [] });
    expect(seen).toEqual({
      websocket: refused('refused 1006'), // the handshake got no 101
      eventSource: refused('refused'),
      getDocument: refused('error TypeError'), // CORS: no Access-Control-Allow-Origin
      jsonPost: refused('error TypeError'), // the preflight was refused, the POST never sent
      noCorsTextPost: refused('opaque'), // sent, but its answer is hidden from the page
      formPost: refused('submitted'), // sent, into a frame the page may not read
      patch: refused('error TypeError'),
      remove: refused('error TypeError'),
    });
    expect(JSON.stringify(seen)).not.toContain(SECRET);
    // Each request reached the server, carrying the page's origin, and was refused at once: no
    // principal was authenticated (the cookie was not used) and nothing was stored.
    expect(tap.answers.sort()).toEqual([
      'GET /api/notes/n1 → 403',
      'GET /sse/notes/n1 → 403',
      'OPTIONS /api/notes → 403',
      'OPTIONS /api/notes/n1 → 403',
      'OPTIONS /api/notes/n1 → 403',
      'POST /api/notes → 403',
      'POST /api/notes → 403',
      'UPGRADE /sync → 403',
    ]);
    expect(authenticated).toEqual([]);
    expect(await stored(victim.engine)).toEqual(before);
  });
});

describe('the same page served by eventsync itself (the control)', () => {
  it("reads the document over each transport and writes with JSON, as the cookie's principal", async (context) => {
    requireChromium(context, 'cross-origin e2e');
    const before = await stored(victim.engine);
    authenticated.length = 0;
    const page = await openProbePage(victim.url);
    const tap = recordAnswers(victim.server, victim.url);

    for (const probe of ['websocket', 'eventSource', 'getDocument'] as const) {
      const { outcome, read } = await runProbe(page, probe, DOCUMENT);
      expect(outcome, probe).toBe(probe === 'getDocument' ? 'status 200' : 'synced');
      expect(read.join('\n'), probe).toContain(SECRET);
    }
    // One after the other: the patch and the delete need the created document.
    const writes: [Probe, string, string][] = [
      ['jsonPost', 'mine', 'status 201'],
      ['noCorsTextPost', 'mine-text', 'status 415'], // same origin, still not JSON
      ['formPost', 'mine-form', 'submitted'], // answered 415 too: nothing stored below
      ['patch', 'mine', 'status 200'],
      ['remove', 'mine', 'status 200'],
    ];
    for (const [probe, id, outcome] of writes) {
      expect((await runProbe(page, probe, id)).outcome, probe).toBe(outcome);
    }
    tap.stop();
    await page.context().close();

    // Same-origin GETs may carry no Origin; the upgrade and the writes do.
    expect(tap.answers).toEqual(
      expect.arrayContaining([
        'UPGRADE /sync → 101',
        'POST /api/notes → 201',
        'POST /api/notes → 415',
        'POST /api/notes → 415',
        'PATCH /api/notes/mine → 200',
        'DELETE /api/notes/mine → 200',
      ]),
    );

    const after = await stored(victim.engine);
    expect(after.documents).toEqual(before.documents);
    const newEvents = after.events.slice(before.events.length);
    expect(newEvents.map((e) => [e.documentId, e.operation, e.clientId])).toEqual([
      ['mine', 'create', 'alice'],
      ['mine', 'update', 'alice'],
      ['mine', 'delete', 'alice'],
    ]);
    expect(new Set(authenticated)).toEqual(new Set(['alice']));
  });
});
