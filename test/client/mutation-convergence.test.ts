/**
 * Issue 17, first acceptance point, property-based: clients (WebSocket and SSE+REST) mutate two
 * documents of a real server while fast-check drives server-side edits, connections destroyed on
 * either side, event frames duplicated and reordered, lost REST answers, offline spells and
 * reloads (a new client with the same id and store). After every step each handle shows its
 * confirmed state with its pending mutations replayed in mid order. Once everything is
 * connected and confirmed, every replica equals the server's document, and the server ran each
 * mutation at most once, in order, none lost: its record of each client id counts every mutation
 * the client made.
 */
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DocumentHandle,
  EventSyncClient,
  type EventSyncClientError,
  type JsonObject,
  type MutationContext,
  memoryStore,
  type PendingMutation,
  type ReplicaStore,
} from '../../src/client.js';
import type { Database } from '../../src/core/collection-backend.js';
import { mutatorNamed } from '../../src/core/mutators.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { type Ledger, type LedgerMutation, ledgerMutators } from './ledger.js';
import {
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

const RUNS = Number(process.env.MUTATION_RUNS ?? 300);
const DOCS = ['a', 'b'] as const;
type DocId = (typeof DOCS)[number];

interface ClientSpec {
  transport: 'websocket' | 'sse';
  duplicate: number;
  delay: number;
  /** Chance that the answer to a mutation's POST (SSE) is lost after the server applied it. */
  loseAnswer: number;
}
type Mutation = LedgerMutation & { doc: DocId };
type Op =
  | { kind: 'mutate'; client: number; mutation: Mutation }
  | { kind: 'inc'; doc: DocId; by: number }
  | { kind: 'push'; doc: DocId; text: string }
  | { kind: 'kill'; client: number; side: 'server' | 'client' }
  | { kind: 'offline'; client: number; mutations: Mutation[] }
  | { kind: 'reload'; client: number; before: Mutation[] }
  | { kind: 'pause'; ms: number };

const doc = fc.constantFrom(...DOCS);
const client = fc.nat(2);
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    doc,
    name: fc.constantFrom('add' as const, 'spend' as const),
    args: fc.record({ amount: fc.integer({ min: 1, max: 6 }) }),
  }),
  fc.record({
    doc,
    name: fc.constant('note' as const),
    args: fc.record({ text: fc.string({ maxLength: 3 }) }),
  }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('mutate' as const), client, mutation }), weight: 8 },
  {
    arbitrary: fc.record({ kind: fc.constant('inc' as const), doc, by: fc.integer({ min: -4, max: 4 }) }),
    weight: 2,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('push' as const), doc, text: fc.constant('server') }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('kill' as const),
      client,
      side: fc.constantFrom('server' as const, 'client' as const),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('offline' as const),
      client,
      mutations: fc.array(mutation, { maxLength: 3 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('reload' as const),
      client,
      before: fc.array(mutation, { maxLength: 2 }),
    }),
    weight: 1,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 6 }) }),
    weight: 1,
  },
);
const clientSpec: fc.Arbitrary<ClientSpec> = fc.record({
  transport: fc.constantFrom('websocket' as const, 'sse' as const),
  duplicate: fc.constantFrom(0, 0.3),
  delay: fc.constantFrom(0, 0.3),
  loseAnswer: fc.constantFrom(0, 0.3),
});
const scenario = fc.record({
  clients: fc.array(clientSpec, { minLength: 2, maxLength: 3 }),
  ops: fc.array(op, { minLength: 1, maxLength: 16 }),
  seed: fc.integer(),
});

/** One `mutate()` call; the k-th call of a client id must carry mid k. */
interface Call {
  doc: DocId;
  name: Mutation['name'];
  /** How its promise settled (a reload leaves the promises of the old client unsettled). */
  outcome?: 'applied' | 'duplicate' | 'refused' | string;
}

/** One client id across reloads: its store, its calls, and its current client. */
interface RunningClient {
  id: string;
  spec: ClientSpec;
  store: ReplicaStore;
  calls: Call[];
  client: EventSyncClient;
  handles: Map<DocId, DocumentHandle<Ledger>>;
  sockets: Set<FaultySocket>;
  sources: Set<FetchEventSource>;
  errors: string[];
}

let server: TestServer;
/** One collection per backend (the server's mutators are by collection); each run has documents of its own. */
let collection: string;
let run = 0;
/** Client ids are unique per test process: the mid records of a PostgreSQL given by DATABASE_URL outlive the run. */
const PROCESS = Math.random().toString(36).slice(2, 8);
const emptyStats = () => ({ runs: 0, ops: 0, mutations: 0, refused: 0, reloads: 0, lostAnswers: 0, ms: 0 });
let stats = emptyStats();

afterAll(closeSharedPglite);

const docId = (doc: DocId) => `r${run}${doc}`;
const noop = () => undefined;

/** A new client for `c` (the first, or after a reload): same id, same store, both documents followed. */
function open(c: Omit<RunningClient, 'client' | 'handles' | 'sockets' | 'sources'>, random: () => number) {
  const faults = { duplicate: c.spec.duplicate, delay: c.spec.delay, random };
  const ws = faultyWebSocket(c.id, faults);
  const es = faultyEventSource(faults);
  const client = new EventSyncClient({
    serverUrl: server.base,
    clientId: c.id,
    transport: c.spec.transport,
    persistence: c.store,
    persistDelayMs: 1,
    WebSocket: ws.WebSocket,
    EventSource: es.EventSource,
    reconnect: { initialDelayMs: 2, maxDelayMs: 20 },
    gapTimeoutMs: 30,
    ackDelayMs: 10,
    connectTimeoutMs: 3_000,
    fetch: async (url, init) => {
      const res = await fetch(url, init);
      if (url.includes('/mutate/') && random() < c.spec.loseAnswer) {
        await res.text(); // the server applied it; the answer never arrives
        stats.lostAnswers++;
        throw new TypeError('fetch failed (the test lost the answer)');
      }
      return res;
    },
    onError: (e) => c.errors.push(`${e.code}: ${e.message}`),
  });
  client.mutators(collection, ledgerMutators);
  const handles = new Map(DOCS.map((d) => [d, client.document<Ledger>(collection, docId(d))] as const));
  return { ...c, client, handles, sockets: ws.sockets, sources: es.sources };
}

function mutate(c: RunningClient, m: Mutation): void {
  const call: Call = { doc: m.doc, name: m.name };
  c.calls.push(call);
  stats.mutations++;
  c.handles
    .get(m.doc)!
    .mutate(m.name, m.args)
    .then(
      (answer) => {
        call.outcome = answer.duplicate ? 'duplicate' : 'applied';
      },
      (error: EventSyncClientError) => {
        call.outcome = error.code === 'mutation_refused' ? 'refused' : `${error.code}: ${error.message}`;
        if (call.outcome === 'refused') stats.refused++;
      },
    );
}

/** The state the SDK should show: `confirmed` with `pending` replayed in mid order, a mutator that throws skipped. */
function predicted(confirmed: Ledger | null, pending: readonly PendingMutation[]): Ledger | null {
  let state = confirmed;
  for (const m of pending) {
    if (state === null) continue; // no mutator here creates its document
    const mutator = mutatorNamed(ledgerMutators, m.name)!;
    const draft = structuredClone(state);
    const ctx = { clientId: '', collection, documentId: m.documentId, mid: m.mid, delete: noop };
    try {
      mutator.run(draft, mutator.args!.parse(m.args), ctx satisfies MutationContext);
      state = draft;
    } catch {
      // refused or failed: the server decides; the prediction skips it
    }
  }
  return state;
}

/** The prediction invariant, for every handle of every client. */
function expectPredictions(clients: RunningClient[]): void {
  for (const c of clients) {
    for (const [d, handle] of c.handles) {
      const pending = handle.pending;
      const mids = pending.map((m) => m.mid);
      expect(mids, `${c.id} ${d}: pending in mid order`).toEqual([...mids].sort((x, y) => x - y));
      expect(pending.every((m) => m.documentId === docId(d))).toBe(true);
      expect(handle.state, `${c.id} ${d}: state = confirmed + pending`).toEqual(
        predicted(handle.confirmed, pending),
      );
    }
  }
}

async function offline(c: RunningClient, mutations: Mutation[], clients: RunningClient[]): Promise<void> {
  await c.client.disconnect();
  for (const m of mutations) {
    mutate(c, m);
    expectPredictions(clients);
  }
  c.client.connect().catch(noop);
}

/** Disconnects the client (saving its store), then starts a new one with the same id and store. */
async function reload(
  c: RunningClient,
  before: Mutation[],
  random: () => number,
  clients: RunningClient[],
): Promise<void> {
  stats.reloads++;
  await c.client.disconnect();
  Object.assign(c, open(c, random));
  for (const m of before) {
    mutate(c, m); // before the store is loaded: it takes the mids after the stored ones
    expectPredictions(clients);
  }
  c.client.connect().catch(noop);
}

async function apply(o: Op, clients: RunningClient[], random: () => number): Promise<void> {
  const pick = (i: number) => clients[i % clients.length]!;
  switch (o.kind) {
    case 'mutate':
      mutate(pick(o.client), o.mutation);
      return;
    case 'inc':
      await rest(server.base, 'PATCH', `/api/${collection}/${docId(o.doc)}`, { $inc: { gold: o.by } });
      return;
    case 'push':
      await rest(server.base, 'PATCH', `/api/${collection}/${docId(o.doc)}`, { $push: { notes: o.text } });
      return;
    case 'kill': {
      const target = pick(o.client);
      if (o.side === 'server') {
        for (const socket of server.syncSockets(target.id)) socket.destroy();
      } else {
        for (const socket of target.sockets) socket.destroy();
        for (const source of target.sources) source.kill();
      }
      return;
    }
    case 'offline':
      return offline(pick(o.client), o.mutations, clients);
    case 'reload':
      return reload(pick(o.client), o.before, random, clients);
    case 'pause':
      await new Promise((resolve) => setTimeout(resolve, o.ms));
  }
}

/** Every client connected, nothing pending: the server has decided every mutation. */
const settled = (clients: RunningClient[]) =>
  clients.every(
    (c) => c.client.state === 'connected' && [...c.handles.values()].every((h) => h.pending.length === 0),
  );

async function serverDocs() {
  const storage = await server.engine.collection(collection);
  const docs = new Map<DocId, { state: JsonObject | null; seq: number }>();
  for (const d of DOCS) {
    const state = ((await storage.findOne(docId(d))) as unknown as JsonObject | undefined) ?? null;
    const seq = (await server.engine.events.backend.head(collection, docId(d)))?.lastSeq ?? 0;
    docs.set(d, { state, seq });
  }
  return docs;
}

const replicas = (c: RunningClient) =>
  new Map([...c.handles].map(([d, h]) => [d, { state: h.state as JsonObject | null, seq: h.seq }]));

/** What one client's state looks like, for a failure's message. */
const describeClient = (c: RunningClient) => ({
  id: c.id,
  spec: c.spec,
  state: c.client.state,
  replicas: Object.fromEntries(replicas(c)),
  pending: [...c.handles.values()].flatMap((h) => h.pending),
  calls: c.calls,
  errors: c.errors.slice(-10),
});

/**
 * On the server, per client id: the events its mutations wrote carry each mid at most once, on
 * the document and with the name of the call that made it (the k-th call is mid k); `add` and
 * `note` wrote exactly one, `spend` one or none, as its answer said; the record counts every call.
 */
async function expectExactlyOnce(c: RunningClient): Promise<void> {
  const written = new Map<number, { doc: DocId; name: string }>();
  for (const d of DOCS) {
    for (const event of await server.engine.events.backend.list(collection, docId(d))) {
      const mutation = event.metadata?.mutation as { name: string; mid: number } | undefined;
      if (!mutation || event.clientId !== c.id) continue;
      expect(written.has(mutation.mid), `${c.id}: mid ${mutation.mid} written twice`).toBe(false);
      written.set(mutation.mid, { doc: d, name: mutation.name });
    }
  }
  c.calls.forEach((call, i) => {
    const mid = i + 1;
    const event = written.get(mid);
    const where = `${c.id} mid ${mid} (${JSON.stringify(call)})`;
    if (event) expect(event, where).toEqual({ doc: call.doc, name: call.name });
    if (call.name !== 'spend') expect(event, `${where}: applied once`).toBeDefined();
    if (call.outcome === 'applied') expect(event, `${where}: answered applied`).toBeDefined();
    if (call.outcome === 'refused') expect(event, `${where}: answered refused`).toBeUndefined();
    expect(['applied', 'duplicate', 'refused', undefined], where).toContain(call.outcome);
    written.delete(mid);
  });
  expect([...written.keys()], `${c.id}: mids written that no call made`).toEqual([]);
  expect(await server.engine.lastMid(c.id), `${c.id}: the server's last mid`).toBe(c.calls.length);
}

async function expectConverged(clients: RunningClient[]): Promise<void> {
  const dump = () => JSON.stringify(clients.map(describeClient)).slice(0, 8000);
  await until(() => settled(clients), 8_000, dump);
  const docs = await serverDocs();
  await until(
    () => clients.every((c) => isDeepStrictEqual(replicas(c), docs)),
    4_000,
    () =>
      JSON.stringify({ server: Object.fromEntries(docs), clients: clients.map(describeClient) }).slice(
        0,
        8000,
      ),
  );
  expectPredictions(clients);
  for (const c of clients) await expectExactlyOnce(c);
}

describe.each(syncBackends)(
  'client mutations converge (property) on %s',
  (backend, openDb: () => Promise<Database>) => {
    beforeAll(async () => {
      collection = uniqueCollection('mconv');
      server = await startServer(openDb, { mutators: { [collection]: ledgerMutators } });
      stats = emptyStats();
    });
    afterAll(async () => {
      await server.stop();
      console.log(
        `mutation convergence on ${backend}: ${stats.runs} runs, ${stats.ops} ops, ${stats.mutations} mutations ` +
          `(${stats.refused} refused), ${stats.reloads} reloads, ${stats.lostAnswers} POST answers lost, ${stats.ms} ms in runs`,
      );
    });

    it(`replicas end equal to the server; each mutation applied once, none lost (${RUNS} runs)`, async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async ({ clients: specs, ops, seed }) => {
          const started = Date.now();
          run++;
          const random = prng(seed);
          for (const d of DOCS) {
            await rest(server.base, 'POST', `/api/${collection}`, { _id: docId(d), gold: 5, notes: [] });
          }
          const clients = specs.map((spec, i) =>
            open(
              { id: `m${PROCESS}-${run}-c${i}`, spec, store: memoryStore(), calls: [], errors: [] },
              random,
            ),
          );
          try {
            await Promise.all(clients.map((c) => c.client.connect()));
            for (const o of ops) {
              await apply(o, clients, random);
              expectPredictions(clients);
            }
            await expectConverged(clients);
            stats.runs++;
            stats.ops += ops.length;
          } finally {
            await Promise.all(clients.map((c) => c.client.disconnect()));
            stats.ms += Date.now() - started;
          }
        }),
        { numRuns: RUNS },
      );
    }, 600_000); // ~3 minutes per backend on a 2-core machine shared with others
  },
);
