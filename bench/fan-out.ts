/**
 * Fan-out: one document, N WebSocket subscribers in a separate process, edits committed in this
 * process; against a bare `ws` broadcast of the same bytes to the same client process.
 *
 * - **eventsync**: `SyncEngine` + `attachWebSocket` on `memoryDatabase()`; clients `hello` and
 *   `subscribe` to the document; edits go through `engine.collection(…).findOneAndUpdate`, and
 *   the engine's feed serializes each event once and sends the frame to every subscriber.
 * - **bare**: a plain `ws` server in this process; for each "edit" it serializes one event frame
 *   of the same shape and size (a real event of this document with its seq and timestamp
 *   replaced) and sends it to every client.
 *
 * Scenarios, alternating between the two servers, a few rounds each: a steady **rate** of 20
 * changes per second (commit-to-client latency: client arrival time minus `event.timestamp`,
 * one machine clock; `event.timestamp` has 1 ms resolution) and a **burst** of K changes as fast
 * as they go (delivered messages per second: N × K over the time from the first change to the
 * last arrival). Server RSS per connection: this process's RSS after opening and subscribing N
 * clients, minus before, over N.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { type WebSocket, WebSocketServer } from 'ws';
import { memoryDatabase, type SyncEvent } from '../src/index.js';
import { attachWebSocket, SyncEngine } from '../src/server.js';
import {
  type BenchModule,
  type BenchOptions,
  formatBytes,
  formatNumber,
  type Section,
  table,
} from './harness.js';
import type { Command, Report } from './support/fan-out-client.js';
import { atLeast, epochNow, machineLine, median, ms, ratio, rotate, spread } from './support/stats.js';

const COLLECTION = 'fan';
const DOCUMENT = 'doc';
const RATE_PER_SEC = 20;
/** No scenario waits longer than this for its frames to arrive. */
const RECEIVE_TIMEOUT_MS = 60_000;

interface Doc {
  _id: string;
  title: string;
  counter: number;
  last: number;
  players: Record<string, { name: string; score: number }>;
  [key: string]: unknown;
}

/** The parent's side of the client process: commands out, reports in. */
class Clients {
  readonly #child: ChildProcess;
  readonly #reports: Report[] = [];
  #wake: (() => void) | undefined;
  #exited = false;

  constructor() {
    const script = fileURLToPath(new URL('./support/fan-out-client.ts', import.meta.url));
    this.#child = fork(script, [], {
      execArgv: ['--import', 'tsx'],
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#child.on('message', (report: Report) => {
      this.#reports.push(report);
      this.#wake?.();
    });
    this.#child.on('exit', () => {
      this.#exited = true;
      this.#wake?.();
    });
  }

  send(command: Command): void {
    this.#child.send(command);
  }

  /** The next report matching `match`, failing on a `failed` report, an exit, or after `timeoutMs`. */
  async next<T extends Report>(match: (r: Report) => r is T, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const failed = this.#reports.find((r) => r.type === 'failed');
      if (failed) throw new Error(`client process: ${(failed as { message: string }).message}`);
      const i = this.#reports.findIndex(match);
      if (i !== -1) return this.#reports.splice(i, 1)[0] as T;
      if (this.#exited) throw new Error('the client process exited');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('the client process did not answer in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#exited) return;
    this.send({ type: 'exit' });
    await Promise.race([once(this.#child, 'exit'), sleep(5000)]);
    if (!this.#exited) this.#child.kill('SIGKILL');
  }
}

type Received = Extract<Report, { type: 'received' }>;

interface Target {
  name: 'eventsync' | 'bare';
  set: string;
  /** Makes change number `i` (commits it, or broadcasts its frame). */
  change(i: number): Promise<void>;
}

interface Measured {
  rate: { p50: number[]; p99: number[] };
  /** Server (this process) CPU µs per delivered message, per burst. */
  burst: { msgsPerSec: number[]; p99: number[]; cpuUsPerMsg: number[] };
  /** Bytes per connection: RSS growth, and JS heap + external growth (both after a GC). */
  rssPerConn: number;
  heapPerConn: number;
  problems: string[];
}

/** Runs `count` changes on `target`, either paced at RATE_PER_SEC or back to back; returns the client's report. */
async function scenario(
  clients: Clients,
  target: Target,
  count: number,
  paced: boolean,
  tag: number,
): Promise<{ report: Received; started: number; serverCpuMs: number }> {
  clients.send({ type: 'expect', set: target.set, tag, perClient: count, timeoutMs: RECEIVE_TIMEOUT_MS });
  await clients.next(
    (r): r is Extract<Report, { type: 'armed' }> => r.type === 'armed' && r.tag === tag,
    10_000,
  );
  const started = epochNow();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (paced) {
      const wait = t0 + (i * 1000) / RATE_PER_SEC - performance.now();
      if (wait > 0) await sleep(wait);
    }
    await target.change(i);
  }
  const report = await clients.next(
    (r): r is Received => r.type === 'received' && r.tag === tag,
    RECEIVE_TIMEOUT_MS + 10_000,
  );
  const cpu = process.cpuUsage(cpu0);
  return { report, started, serverCpuMs: (cpu.user + cpu.system) / 1000 };
}

function problemsOf(report: Received, what: string): string[] {
  const out: string[] = [];
  if (report.received !== report.expected) {
    out.push(
      `${what}: ${report.received} of ${report.expected} frames arrived within ${RECEIVE_TIMEOUT_MS / 1000} s`,
    );
  } else if (report.minPerClient !== report.maxPerClient) {
    out.push(`${what}: clients got between ${report.minPerClient} and ${report.maxPerClient} frames`);
  }
  if (report.outOfOrder > 0) out.push(`${what}: ${report.outOfOrder} frames out of seq order`);
  return out;
}

/** `global.gc`, without starting Node with --expose-gc. */
function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** RSS and JS heap + external memory after the garbage is collected and the process has settled. */
async function memorySettled(): Promise<{ rss: number; heap: number }> {
  const gc = collector();
  gc();
  await sleep(500);
  gc();
  await sleep(500);
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed + m.external };
}

interface SizeResult {
  subscribers: number;
  burst: number;
  rateChanges: number;
  eventsync: Measured;
  bare: Measured;
  /** Per round: eventsync msg/s over bare msg/s. */
  burstRatios: number[];
  frameBytes: number;
  clientCpuShare: number[];
  skipped?: string;
}

async function runSize(
  opts: BenchOptions,
  clients: Clients,
  subscribers: number,
  servers: { syncUrl: string; bareUrl: string; engine: SyncEngine; bareClients: Set<WebSocket> },
): Promise<SizeResult> {
  const storage = await servers.engine.collection<Doc>(COLLECTION);
  const rounds = opts.quick ? 3 : 5;
  const burst = Math.round(Math.max(20, Math.min(200, 200_000 / subscribers)) / (opts.quick ? 2 : 1));
  const rateChanges = Math.round(RATE_PER_SEC * (opts.quick ? 1.5 : 3));
  const tagBase = subscribers * 1000;

  // A real event of this document: the template of the bare server's frames.
  const template = (
    await storage.findOneAndUpdate(DOCUMENT, (d) => {
      d.counter += 1;
    })
  ).event as SyncEvent;
  const frameBytes = Buffer.byteLength(JSON.stringify({ type: 'event', event: template }));

  const sets = { eventsync: `sync-${subscribers}`, bare: `bare-${subscribers}` };
  const before = await memorySettled();
  clients.send({
    type: 'open',
    set: sets.eventsync,
    url: servers.syncUrl,
    count: subscribers,
    // From the current seq: no catch-up of the events earlier sizes wrote.
    subscribe: { collection: COLLECTION, documentId: DOCUMENT, afterSeq: template.seq },
  });
  const openedSync = await clients.next(
    (r): r is Extract<Report, { type: 'opened' }> => r.type === 'opened' && r.set === sets.eventsync,
    180_000,
  );
  const afterSync = await memorySettled();
  clients.send({ type: 'open', set: sets.bare, url: servers.bareUrl, count: subscribers });
  const openedBare = await clients.next(
    (r): r is Extract<Report, { type: 'opened' }> => r.type === 'opened' && r.set === sets.bare,
    180_000,
  );
  const afterBare = await memorySettled();
  opts.progress(
    `fan-out: ${subscribers} subscribers open (eventsync ${formatNumber(openedSync.ms)} ms incl. hello/subscribe, bare ${formatNumber(openedBare.ms)} ms)`,
  );

  const targets: Target[] = [
    {
      name: 'eventsync',
      set: sets.eventsync,
      async change(i) {
        await storage.findOneAndUpdate(DOCUMENT, (d) => {
          d.counter += 1;
          d.last = i;
        });
      },
    },
    {
      name: 'bare',
      set: sets.bare,
      async change(i) {
        const frame = JSON.stringify({
          type: 'event',
          event: {
            ...template,
            seq: template.seq + i,
            serverSeq: template.serverSeq + i,
            timestamp: Date.now(),
          },
        });
        for (const ws of servers.bareClients) ws.send(frame);
      },
    },
  ];
  const measured: Record<'eventsync' | 'bare', Measured> = {
    eventsync: {
      rate: { p50: [], p99: [] },
      burst: { msgsPerSec: [], p99: [], cpuUsPerMsg: [] },
      rssPerConn: (afterSync.rss - before.rss) / subscribers,
      heapPerConn: (afterSync.heap - before.heap) / subscribers,
      problems: [],
    },
    bare: {
      rate: { p50: [], p99: [] },
      burst: { msgsPerSec: [], p99: [], cpuUsPerMsg: [] },
      rssPerConn: (afterBare.rss - afterSync.rss) / subscribers,
      heapPerConn: (afterBare.heap - afterSync.heap) / subscribers,
      problems: [],
    },
  };
  const burstRatios: number[] = [];
  const clientCpuShare: number[] = [];
  let tag = tagBase;
  // Warm-up: a short burst each (JIT, socket buffers).
  for (const t of targets) await scenario(clients, t, 10, false, ++tag);
  const [eventsync, bare] = targets as [Target, Target];
  const runRate = async (t: Target, round: number) => {
    const rate = await scenario(clients, t, rateChanges, true, ++tag);
    measured[t.name].rate.p50.push(rate.report.p50);
    measured[t.name].rate.p99.push(rate.report.p99);
    measured[t.name].problems.push(...problemsOf(rate.report, `rate, round ${round + 1}`));
    opts.progress(
      `fan-out: ${subscribers} subscribers, round ${round + 1}/${rounds}, ${t.name} rate: p50 ${ms(rate.report.p50)} ms, p99 ${ms(rate.report.p99)} ms`,
    );
  };
  const runBurst = async (t: Target, round: number) => {
    const b = await scenario(clients, t, burst, false, ++tag);
    const msgsPerSec = (b.report.received / (b.report.lastArrival - b.started)) * 1000;
    measured[t.name].burst.msgsPerSec.push(msgsPerSec);
    measured[t.name].burst.p99.push(b.report.p99);
    measured[t.name].burst.cpuUsPerMsg.push((b.serverCpuMs * 1000) / b.report.received);
    measured[t.name].problems.push(...problemsOf(b.report, `burst, round ${round + 1}`));
    if (t.name === 'eventsync') clientCpuShare.push(b.report.cpuMs / (b.report.lastArrival - b.started));
    opts.progress(
      `fan-out: ${subscribers} subscribers, round ${round + 1}/${rounds}, ${t.name} burst: ${formatNumber(msgsPerSec)} msg/s`,
    );
    return msgsPerSec;
  };
  // Each round: the rate scenario on both (order alternating), then bursts bare, eventsync,
  // bare: eventsync's ratio is over the mean of the two bare bursts around it.
  let bareBefore = Number.NaN;
  for (let round = 0; round < rounds; round++) {
    for (const t of rotate(targets, round)) await runRate(t, round);
    if (round === 0) bareBefore = await runBurst(bare, round);
    const ours = await runBurst(eventsync, round);
    const bareAfter = await runBurst(bare, round);
    burstRatios.push(ours / ((bareBefore + bareAfter) / 2));
    bareBefore = bareAfter;
  }
  for (const set of Object.values(sets)) {
    clients.send({ type: 'close', set });
    await clients.next(
      (r): r is Extract<Report, { type: 'closed' }> => r.type === 'closed' && r.set === set,
      60_000,
    );
  }
  return {
    subscribers,
    burst,
    rateChanges,
    eventsync: measured.eventsync,
    bare: measured.bare,
    burstRatios,
    frameBytes,
    clientCpuShare,
  };
}

async function run(opts: BenchOptions): Promise<Section> {
  const sizes = opts.quick ? [100, 1000] : [100, 1000, 5000];
  const db = memoryDatabase();
  const engine = await SyncEngine.create({ db });
  const storage = await engine.collection<Doc>(COLLECTION);
  const players: Doc['players'] = {};
  for (let p = 0; p < 4; p++) players[`p${p}`] = { name: `player ${p}`, score: 0 };
  await storage.findOneAndUpsert({ _id: DOCUMENT, title: 'fan-out bench', counter: 0, last: 0, players });

  const syncHttp: Server = createServer();
  const transport = attachWebSocket(syncHttp, engine);
  syncHttp.listen(0, '127.0.0.1');
  await once(syncHttp, 'listening');
  const bareHttp: Server = createServer();
  const wss = new WebSocketServer({ server: bareHttp });
  const bareClients = new Set<WebSocket>();
  wss.on('connection', (ws) => {
    bareClients.add(ws);
    ws.on('close', () => bareClients.delete(ws));
    ws.on('error', () => bareClients.delete(ws));
  });
  bareHttp.listen(0, '127.0.0.1');
  await once(bareHttp, 'listening');
  const servers = {
    syncUrl: `ws://127.0.0.1:${(syncHttp.address() as AddressInfo).port}/sync`,
    bareUrl: `ws://127.0.0.1:${(bareHttp.address() as AddressInfo).port}/`,
    engine,
    bareClients,
  };
  const clients = new Clients();
  const results: SizeResult[] = [];
  try {
    for (const subscribers of sizes) {
      try {
        results.push(await runSize(opts, clients, subscribers, servers));
      } catch (error) {
        if (subscribers < 5000) throw error;
        // The largest size is best effort: say why it is missing instead of failing the run.
        opts.progress(`fan-out: ${subscribers} subscribers failed: ${(error as Error).message}`);
        results.push({
          subscribers,
          burst: 0,
          rateChanges: 0,
          eventsync: {
            rate: { p50: [], p99: [] },
            burst: { msgsPerSec: [], p99: [], cpuUsPerMsg: [] },
            rssPerConn: 0,
            heapPerConn: 0,
            problems: [],
          },
          bare: {
            rate: { p50: [], p99: [] },
            burst: { msgsPerSec: [], p99: [], cpuUsPerMsg: [] },
            rssPerConn: 0,
            heapPerConn: 0,
            problems: [],
          },
          burstRatios: [],
          frameBytes: 0,
          clientCpuShare: [],
          skipped: (error as Error).message,
        });
        break;
      }
    }
  } finally {
    await clients.close();
    await transport.close();
    for (const ws of bareClients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    syncHttp.close();
    bareHttp.close();
    await engine.close();
    await db.close();
  }
  return { markdown: render(opts, results) };
}

const kib = (bytes: number) => (bytes > 0 ? formatBytes(Math.round(bytes)) : '≤ 0');
const perConn = (m: Measured) => `${kib(m.rssPerConn)} / ${kib(m.heapPerConn)}`;
/** What the aim is judged on: the larger of the two growths. */
const perConnBytes = (m: Measured) => Math.max(m.rssPerConn, m.heapPerConn);

function render(opts: BenchOptions, results: SizeResult[]): string {
  const rows: string[][] = [];
  for (const r of results) {
    if (r.skipped) {
      rows.push([r.subscribers.toLocaleString('en-US'), `not measured: ${r.skipped}`, '', '', '', '']);
      continue;
    }
    const n = r.subscribers.toLocaleString('en-US');
    const is1000 = r.subscribers === 1000;
    const p99 = median(r.eventsync.rate.p99);
    const burstRatio = median(r.burstRatios);
    rows.push(
      [
        n,
        `rate ${RATE_PER_SEC}/s (${r.rateChanges} changes): p50 ms`,
        spread(r.eventsync.rate.p50, ms),
        spread(r.bare.rate.p50, ms),
        '',
        '',
      ],
      [
        n,
        `rate ${RATE_PER_SEC}/s: p99 ms`,
        spread(r.eventsync.rate.p99, ms),
        spread(r.bare.rate.p99, ms),
        '',
        is1000 ? `< 50 ms: **${p99 < 50 ? 'met' : 'missed'}**` : '',
      ],
      [
        n,
        `burst of ${r.burst}: delivered msg/s`,
        spread(r.eventsync.burst.msgsPerSec),
        spread(r.bare.burst.msgsPerSec),
        spread(r.burstRatios, ratio),
        `≥ 0.7× (aim 0.9×): **${atLeast(burstRatio, 0.7)}**`,
      ],
      [
        n,
        `burst of ${r.burst}: p99 ms`,
        spread(r.eventsync.burst.p99, ms),
        spread(r.bare.burst.p99, ms),
        '',
        '',
      ],
      [
        n,
        `burst of ${r.burst}: server CPU µs per message`,
        spread(r.eventsync.burst.cpuUsPerMsg),
        spread(r.bare.burst.cpuUsPerMsg),
        spread(
          r.eventsync.burst.cpuUsPerMsg.map((v, i) => v / (r.bare.burst.cpuUsPerMsg[i] ?? Number.NaN)),
          ratio,
        ),
        '',
      ],
      [
        n,
        'server memory per connection: RSS Δ / heap+external Δ',
        perConn(r.eventsync),
        perConn(r.bare),
        '',
        r.subscribers >= 1000
          ? `aim ≤ 20 KiB: ${perConnBytes(r.eventsync) <= 20 * 1024 ? 'met' : 'missed'}`
          : '',
      ],
    );
  }
  const problems = results.flatMap((r) => [
    ...r.eventsync.problems.map((p) => `${r.subscribers} subscribers, eventsync, ${p}`),
    ...r.bare.problems.map((p) => `${r.subscribers} subscribers, bare, ${p}`),
  ]);
  const at1000 = results.find((r) => r.subscribers === 1000 && !r.skipped);
  const frameBytes = results.find((r) => r.frameBytes > 0)?.frameBytes ?? 0;
  const lines = [
    '## Fan-out (`bench/fan-out.ts`)',
    '',
    machineLine(['`SyncEngine` on `memoryDatabase()`']),
    `- ${opts.quick ? '**quick**: ' : ''}${opts.quick ? 3 : 5} rounds after a warm-up; in each, the rate scenario on both servers (order alternating per round), then bursts bare, eventsync, bare (the last bare burst of a round opens the next); figures are median (min–max) over runs; the burst ratio is the median over rounds of eventsync over the mean of the two bare bursts around it`,
    '',
    'One document (~300 bytes), N subscribers on loopback, all in one client process (forked:',
    "`bench/support/fan-out-client.ts`), the server in this one; both share the machine's 2 cores.",
    `**eventsync**: \`SyncEngine\` + \`attachWebSocket\` on \`memoryDatabase()\`, clients \`hello\` and subscribe`,
    'to the document; each change is a `findOneAndUpdate` through `engine.collection()`, and the',
    "engine's feed serializes its event once and sends that frame to every subscriber. **bare**: a",
    'plain `ws` server in this process that serializes one frame of the same shape per change',
    `(a real event of the document, seq and timestamp replaced; ${frameBytes} bytes) and sends it to`,
    'every client. **rate**: 20 changes per second; latency = arrival in the client process −',
    '`event.timestamp` (same machine clock; the timestamp has 1 ms resolution). **burst**: K',
    'changes back to back (eventsync: awaited one after another; bare: the broadcasts in one',
    'synchronous loop); delivered msg/s = N × K / (last arrival − first change). Every scenario',
    'checks that each client got every frame once, in seq order. Server memory per connection:',
    'growth of RSS, and of JS heap used + external, from before to after opening (and',
    'subscribing) the N clients, over N, each read after a forced GC. RSS moves in steps (freed',
    'pages are reused before new ones are taken), so its growth can read low or ≤ 0; the aim is',
    'judged on the larger of the two.',
    '',
    table(['subscribers', 'measure', 'eventsync', 'bare ws', 'eventsync / bare', 'target'], rows, [
      'r',
      'l',
      'r',
      'r',
      'r',
      'l',
    ]),
    '',
  ];
  if (at1000) {
    const p99 = median(at1000.eventsync.rate.p99);
    const burstRatio = median(at1000.burstRatios);
    lines.push(
      `**Targets** (DESIGN.md) at 1,000 subscribers: p99 commit-to-client < 50 ms — ${ms(p99)} ms, ${p99 < 50 ? 'met' : 'missed'}; delivered msg/s ≥ 0.7× the bare broadcast (aim 0.9×) — ${ratio(burstRatio)}, ${atLeast(burstRatio, 0.7)}; ≤ 20 KiB per connection (aim) — ${kib(perConnBytes(at1000.eventsync))}.`,
    );
    const share = median(at1000.clientCpuShare);
    lines.push(
      '',
      `The client process used ${Math.round(share * 100)}% of a core during the eventsync bursts at 1,000: with both processes on two cores shared with other work, the figures are a ceiling of this machine, not of the server alone.`,
    );
    const bareP99 = median(at1000.bare.rate.p99);
    if (p99 >= 50) {
      lines.push(
        '',
        bareP99 >= 50
          ? `Why the p99 miss: the bare broadcast of the same frames misses it too (${ms(bareP99)} ms): at 20 changes/s × 1,000 clients the server makes 20,000 sends a second (~10 µs of CPU each, DEPENDENCY-NOTES) and the client process parses as many frames, on two cores shared with other work; the tail is queueing on this machine. What would close it here: fewer sends — the coalescing subscription mode in DESIGN.md (one composed patch per client per tick) — or a machine with cores to spare; to separate our cost from the machine's, compare with the bare column, not with the target alone.`
          : `Why the p99 miss: the bare broadcast stays under it (${ms(bareP99)} ms), so the difference is ours: per event the feed reads the log after its position (woken by the commit), each session checks the seq and its collection subscriptions, and one \`send\` per subscriber follows. What would close it: a per-document array of sinks on the hot path instead of per-session work, and the coalescing subscription mode in DESIGN.md (one composed patch per client per tick).`,
      );
    }
  }
  const slow = results.filter((r) => !r.skipped && median(r.burstRatios) < 0.7);
  if (slow.length > 0) {
    const cpu = slow
      .map(
        (r) =>
          `${r.subscribers.toLocaleString('en-US')} subscribers ${ratio(median(r.burstRatios))}: server CPU per delivered message ${formatNumber(median(r.eventsync.burst.cpuUsPerMsg))} µs against the bare loop's ${formatNumber(median(r.bare.burst.cpuUsPerMsg))} µs`,
      )
      .join('; ');
    lines.push(
      '',
      `Why the throughput misses (${cpu}). ws's \`send\` (one \`writev\` system call per frame) is most of both; on top of it the engine pays per subscriber each session's \`deliver\` (a document key string built per session, the scan for collection subscriptions, an SSE event id string, the send-buffer check) and per event the write itself, the feed's read of the log and a copy of the follower set — which is why the gap is widest with few subscribers, where per-event costs are shared by fewer messages. What would close it: the key and event id built once per event, a per-document array of sinks on the hot path; and the frames of one feed batch written to each socket under \`cork()\`/\`uncork()\` (one system call per client per batch instead of per frame, which a per-broadcast loop cannot do), or the coalescing mode in DESIGN.md.`,
    );
  }
  if (problems.length > 0) lines.push('', `**Delivery problems**: ${problems.join('; ')}.`);
  else lines.push('', 'Every client received every frame exactly once and in seq order, in every scenario.');
  return lines.join('\n');
}

export const fanOut: BenchModule = { name: 'fan-out', run };
