/**
 * I4 Convergence, property-based: several clients (WebSocket and SSE) follow documents and
 * collections of a real server while fast-check drives random REST writes, connections
 * destroyed on either side, and event frames duplicated and reordered on the way in. Once the
 * writes stop, every client's replicas deep-equal the server's documents, and no client applied
 * an event twice or out of order.
 */
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CollectionHandle,
  type DocumentHandle,
  EventSyncClient,
  type JsonObject,
} from '../../src/client.js';
import type { Database } from '../../src/core/collection-backend.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import {
  type Faults,
  type FaultySocket,
  type FetchEventSource,
  faultyEventSource,
  faultyWebSocket,
  prng,
  rest,
  startServer,
  type TestServer,
  until,
} from './support.js';

const RUNS = Number(process.env.CONVERGENCE_RUNS ?? 300);
const DOCS = ['a', 'b'] as const;
type DocId = (typeof DOCS)[number];
const RICH = { gold: { $gte: 3 } };

type View = 'documents' | 'all' | 'rich';
interface ClientSpec {
  transport: 'websocket' | 'sse';
  views: View[];
  duplicate: number;
  delay: number;
  /** 1 ms: repairs over REST race the delayed frames. */
  gapTimeoutMs: number;
}
type Op =
  | { kind: 'create'; doc: DocId; gold: number }
  | { kind: 'inc'; doc: DocId; by: number }
  | { kind: 'rename'; doc: DocId; name: string }
  | { kind: 'push'; doc: DocId; item: number }
  | { kind: 'delete'; doc: DocId }
  | { kind: 'kill'; client: number; side: 'server' | 'client' }
  | { kind: 'pause'; ms: number };

const doc = fc.constantFrom(...DOCS);
const op: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({ kind: fc.constant('create' as const), doc, gold: fc.integer({ min: 0, max: 5 }) }),
    weight: 3,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('inc' as const), doc, by: fc.integer({ min: -3, max: 3 }) }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('rename' as const), doc, name: fc.string({ maxLength: 4 }) }),
    weight: 1,
  },
  { arbitrary: fc.record({ kind: fc.constant('push' as const), doc, item: fc.nat(9) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constant('delete' as const), doc }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('kill' as const),
      client: fc.nat(2),
      side: fc.constantFrom('server' as const, 'client' as const),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 6 }) }),
    weight: 1,
  },
);
const clientSpec: fc.Arbitrary<ClientSpec> = fc.record({
  transport: fc.constantFrom('websocket' as const, 'sse' as const),
  views: fc.subarray(['documents', 'all', 'rich'] as View[], { minLength: 1 }),
  duplicate: fc.constantFrom(0, 0.2, 0.5),
  delay: fc.constantFrom(0, 0.2, 0.5),
  gapTimeoutMs: fc.constantFrom(1, 30),
});
const scenario = fc.record({
  clients: fc.array(clientSpec, { minLength: 2, maxLength: 3 }),
  ops: fc.array(op, { minLength: 1, maxLength: 14 }),
  seed: fc.integer(),
});

/** What one client applied, per view and document, in order. */
type Entry =
  | { kind: 'event'; first: number; seq: number; deletes?: true }
  | { kind: 'snapshot'; seq: number }
  | { kind: 'leave' };

/** Returns a complaint when `entries` apply an event twice or out of order. */
function misordered(entries: Entry[]): string | undefined {
  let at: number | undefined;
  let afterLeave = false;
  for (const [i, e] of entries.entries()) {
    if (e.kind === 'leave') {
      afterLeave = true;
      continue;
    }
    if (e.kind === 'snapshot') {
      if (at !== undefined && e.seq < at) return `#${i}: snapshot at ${e.seq} after seq ${at}`;
      at = e.seq;
    } else {
      if (at !== undefined && e.seq <= at) return `#${i}: event ${e.seq} applied again (at ${at})`;
      if (at !== undefined && !afterLeave && e.first !== at + 1)
        return `#${i}: event ${e.first}..${e.seq} after ${at}`;
      at = e.seq;
      // A delete ends membership as a leave does: under a filter, the document may come back
      // (its create event) after events the view never saw (a re-creation that did not match).
      if (e.deletes) {
        afterLeave = true;
        continue;
      }
    }
    afterLeave = false;
  }
  return undefined;
}

interface RunningClient {
  spec: ClientSpec;
  client: EventSyncClient;
  documents: Map<DocId, DocumentHandle>;
  all?: CollectionHandle;
  rich?: CollectionHandle;
  log: Map<string, Entry[]>;
  sockets: Set<FaultySocket>;
  sources: Set<FetchEventSource>;
  errors: string[];
}

// The server of the backend under test (each describe.each block starts its own).
let server: TestServer;
let run = 0;
const emptyStats = () => ({ runs: 0, ops: 0, kills: 0, events: 0, snapshots: 0, repairs: 0, ms: 0 });
let stats = emptyStats();

async function startRuns(open: () => Promise<Database>): Promise<void> {
  server = await startServer(open);
  stats = emptyStats();
}

async function stopRuns(backend: string): Promise<void> {
  await server.stop();
  console.log(
    `convergence on ${backend}: ${stats.runs} runs, ${stats.ops} ops, ${stats.kills} connections destroyed, ` +
      `${stats.events} events and ${stats.snapshots} snapshots applied, ${stats.repairs} REST catch-ups (gap repairs, refreshes), ` +
      `${stats.ms} ms in runs`,
  );
}

afterAll(closeSharedPglite);

function startClient(
  spec: ClientSpec,
  index: number,
  collection: string,
  random: () => number,
): RunningClient {
  const clientId = `r${run}-c${index}`;
  const faults: Faults = { duplicate: spec.duplicate, delay: spec.delay, random };
  const ws = faultyWebSocket(clientId, faults);
  const es = faultyEventSource(faults);
  const errors: string[] = [];
  const client = new EventSyncClient({
    serverUrl: server.base,
    clientId,
    transport: spec.transport,
    WebSocket: ws.WebSocket,
    EventSource: es.EventSource,
    reconnect: { initialDelayMs: 2, maxDelayMs: 20 },
    gapTimeoutMs: spec.gapTimeoutMs,
    ackDelayMs: 10,
    fetch: async (url, init) => {
      if (url.includes('/api/sync/')) stats.repairs++;
      return fetch(url, init);
    },
    connectTimeoutMs: 3_000,
    onError: (e) => errors.push(`${e.code}: ${e.message}`),
  });
  const log = new Map<string, Entry[]>();
  const entries = (key: string) => {
    const list = log.get(key) ?? [];
    log.set(key, list);
    return list;
  };
  const running: RunningClient = {
    spec,
    client,
    documents: new Map(),
    log,
    sockets: ws.sockets,
    sources: es.sources,
    errors,
  };
  if (spec.views.includes('documents')) {
    for (const id of DOCS) {
      const handle = client.document(collection, id);
      handle.on('change', (_state, event) =>
        entries(`documents/${id}`).push(
          event
            ? { kind: 'event', first: event.fromSeq ?? event.seq, seq: event.seq }
            : { kind: 'snapshot', seq: handle.seq },
        ),
      );
      running.documents.set(id, handle);
    }
  }
  for (const view of ['all', 'rich'] as const) {
    if (!spec.views.includes(view)) continue;
    const handle = client.collection(collection, view === 'rich' ? RICH : undefined);
    handle.on('change', (_docs, change) => {
      const list = entries(`${view}/${change.documentId}`);
      if (change.type === 'event') {
        const { event } = change;
        const deletes = event.operation === 'delete' ? { deletes: true as const } : {};
        list.push({ kind: 'event', first: event.fromSeq ?? event.seq, seq: event.seq, ...deletes });
      } else if (change.type === 'snapshot') list.push({ kind: 'snapshot', seq: change.seq });
      else list.push({ kind: 'leave' });
    });
    running[view] = handle;
  }
  return running;
}

async function apply(o: Op, collection: string, clients: RunningClient[]): Promise<void> {
  const path = `/api/${collection}`;
  switch (o.kind) {
    case 'create':
      await rest(server.base, 'POST', path, { _id: o.doc, gold: o.gold, name: o.doc, log: [] });
      return;
    case 'inc':
      await rest(server.base, 'PATCH', `${path}/${o.doc}`, { $inc: { gold: o.by } });
      return;
    case 'rename':
      await rest(server.base, 'PATCH', `${path}/${o.doc}`, { name: o.name });
      return;
    case 'push':
      await rest(server.base, 'PATCH', `${path}/${o.doc}`, { $push: { log: o.item } });
      return;
    case 'delete':
      await rest(server.base, 'DELETE', `${path}/${o.doc}`);
      return;
    case 'kill': {
      const target = clients[o.client % clients.length]!;
      stats.kills++;
      if (o.side === 'server') {
        for (const socket of server.syncSockets(target.client.clientId)) socket.destroy();
      } else {
        for (const socket of target.sockets) socket.destroy();
        for (const source of target.sources) source.kill();
      }
      return;
    }
    case 'pause':
      await new Promise((resolve) => setTimeout(resolve, o.ms));
  }
}

/** The server's documents and seqs, and what each view of each client should hold. */
async function expected(collection: string) {
  const storage = await server.engine.collection(collection);
  const docs = new Map<DocId, { state: JsonObject | null; seq: number }>();
  for (const id of DOCS) {
    const state = ((await storage.findOne(id)) as unknown as JsonObject | undefined) ?? null;
    const seq = (await server.engine.events.backend.head(collection, id))?.lastSeq ?? 0;
    docs.set(id, { state, seq });
  }
  const members = (rich: boolean) =>
    Object.fromEntries(
      [...docs]
        .filter(([, d]) => d.state !== null && (!rich || (d.state.gold as number) >= 3))
        .map(([id, d]) => [id, d.state]),
    );
  return { docs, all: members(false), rich: members(true) };
}

function views(c: RunningClient) {
  return {
    state: c.client.state,
    documents: Object.fromEntries(
      [...c.documents].map(([id, h]) => [id, { state: h.state, seq: h.seq }] as const),
    ),
    ...(c.all ? { all: Object.fromEntries(c.all.docs) } : {}),
    ...(c.rich ? { rich: Object.fromEntries(c.rich.docs) } : {}),
  };
}

function wanted(c: RunningClient, e: Awaited<ReturnType<typeof expected>>) {
  return {
    state: 'connected',
    documents: Object.fromEntries([...c.documents].map(([id]) => [id, e.docs.get(id)!] as const)),
    ...(c.all ? { all: e.all } : {}),
    ...(c.rich ? { rich: e.rich } : {}),
  };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
/** JSON with sorted keys, so documents compare by value. */
const canonical = (v: unknown): unknown =>
  Array.isArray(v)
    ? v.map(canonical)
    : v && typeof v === 'object'
      ? Object.fromEntries(
          Object.entries(v)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(([k, x]) => [k, canonical(x)]),
        )
      : v;

describe.each(syncBackends)('I4 convergence (property) on %s', (backend, open) => {
  beforeAll(() => startRuns(open));
  afterAll(() => stopRuns(backend));

  it(`every replica ends equal to the server, no event applied twice or out of order (${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ({ clients: specs, ops, seed }) => {
        const started = Date.now();
        run++;
        const collection = uniqueCollection(`conv${run}`);
        const random = prng(seed);
        const clients = specs.map((spec, i) => startClient(spec, i, collection, random));
        try {
          await Promise.all(clients.map((c) => c.client.connect()));
          for (const o of ops) await apply(o, collection, clients);
          let e = await expected(collection);
          await until(
            () => clients.every((c) => same(canonical(views(c)), canonical(wanted(c, e)))),
            4_000,
            () =>
              JSON.stringify(
                clients
                  .filter((c) => !same(canonical(views(c)), canonical(wanted(c, e))))
                  .map((c) => ({
                    client: c.client.clientId,
                    spec: c.spec,
                    got: views(c),
                    want: wanted(c, e),
                    errors: c.errors,
                    log: Object.fromEntries(c.log),
                  })),
              ).slice(0, 8000),
          ).catch(async (error) => {
            if (process.env.CONVERGENCE_TRACE) {
              appendFileSync(
                process.env.CONVERGENCE_TRACE,
                `FAILED run ${run}: ${JSON.stringify({ ops })} ${String(error).slice(0, 8000)}\n`,
              );
            }
            e = await expected(collection); // in case a write was still landing
            for (const c of clients) expect(canonical(views(c))).toEqual(canonical(wanted(c, e)));
            throw error;
          });
          for (const c of clients) {
            for (const [key, entries] of c.log) {
              const complaint = misordered(entries);
              expect(complaint, `${c.client.clientId} ${key}: ${JSON.stringify(entries)}`).toBeUndefined();
              for (const entry of entries) {
                if (entry.kind === 'event') stats.events++;
                else if (entry.kind === 'snapshot') stats.snapshots++;
              }
            }
          }
          stats.runs++;
          stats.ops += ops.length;
          if (process.env.CONVERGENCE_TRACE) {
            appendFileSync(
              process.env.CONVERGENCE_TRACE,
              `run ${run}: ${Date.now() - started} ms ${JSON.stringify({ specs, ops })}\n`,
            );
          }
        } finally {
          await Promise.all(clients.map((c) => c.client.disconnect()));
          stats.ms += Date.now() - started;
        }
      }),
      { numRuns: RUNS },
    );
  }, 180_000); // ~6-12 s alone; leave room for a loaded CI machine
});
