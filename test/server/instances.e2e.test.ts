/**
 * Several instances: two real `eventsync serve` processes (the built binary) on one PostgreSQL
 * database. WebSocket clients on server A follow a document and a filtered collection while every
 * change goes through server B's REST API; A learns of them through LISTEN/NOTIFY and reads them
 * from the event table. Then A's database connections are killed while B keeps writing: its LISTEN
 * connection, a feed read in the middle of its query, then every connection it has. A's clients
 * still get every event, in order, once, and A keeps serving REST.
 *
 * The database is a new one on the run's PostgreSQL, so other test files' tables don't interfere
 * and `pg_stat_activity` can be filtered by it. Each server's connections carry its own
 * `application_name` (`?application_name=` in the `--db` URL), which is how only A's are killed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { SyncEvent } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';
import { applyEvent } from '../../src/events/apply.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { databaseUrl } from '../support/databases.js';
import { ensureBuilt, killAll, startServe } from '../support/serve-process.js';
import { TestClient } from '../support/ws-client.js';
import { http } from './http-client.js';

const COLLECTION = 'games';
const FILTER = { team: 'red' };
const APP_A = 'eventsync_e2e_a';
const APP_B = 'eventsync_e2e_b';

/** On the run's database: CREATE/DROP DATABASE and pg_stat_activity. */
let admin: pg.Client;
let dbName: string;
const clients: TestClient[] = [];
const writers: { stop(): Promise<unknown> }[] = [];

beforeAll(async () => {
  await ensureBuilt();
  admin = new pg.Client({ connectionString: databaseUrl() });
  await admin.connect();
  dbName = `eventsync_instances_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  await admin.query(`CREATE DATABASE ${dbName}`);
});

afterAll(async () => {
  await Promise.all(writers.map((w) => w.stop()));
  for (const client of clients) client.terminate();
  await killAll();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.end();
});

/** The test database's URL, with the connections named `applicationName`. */
function instanceDb(applicationName: string): string {
  const url = new URL(databaseUrl());
  url.pathname = `/${dbName}`;
  url.searchParams.set('application_name', applicationName);
  return url.toString();
}

/** Pids of `applicationName`'s backends on the test database that match `where` (SQL on pg_stat_activity). */
async function backends(applicationName: string, where = 'true'): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND (${where}) ORDER BY pid`,
    [dbName, applicationName],
  );
  return rows.map((r) => r.pid);
}
/** A server's listen connection: its last query was a LISTEN, or (it also sends the server's notifications) a pg_notify. */
const LISTENING = "(query ILIKE 'LISTEN %' OR query LIKE '%pg_notify(%')";

/** Terminates the backends (waiting up to 5 s for each to be gone); returns how many there were. */
async function terminate(pids: number[]): Promise<number> {
  const { rows } = await admin.query<{ done: boolean }>(
    'SELECT pg_terminate_backend(pid, 5000) AS done FROM unnest($1::int[]) AS pid',
    [pids],
  );
  return rows.filter((r) => r.done).length;
}

async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A WebSocket client on `base`, past hello, with one subscription synced. */
async function subscribed(base: string, clientId: string, subscribe: Record<string, unknown>) {
  const ws = await TestClient.connect(`${base.replace('http', 'ws')}/sync`);
  clients.push(ws);
  ws.send({ type: 'hello', protocol: 1, clientId });
  await ws.next('welcome');
  ws.send({ type: 'subscribe', sub: 's', collection: COLLECTION, ...subscribe });
  await ws.next('synced');
  return ws;
}

interface Replayed {
  /** Per document followed right now: its state (null: deleted) and last seq applied. */
  docs: Map<string, { state: JsonObject | null; seq: number }>;
  /** Every event received, per document, in arrival order. */
  events: Map<string, SyncEvent[]>;
  snapshots: number;
  /** Gaps, duplicates, events out of order or of a document not followed, error frames. */
  problems: string[];
}

/**
 * What a client makes of the frames it received: snapshots replace a document, events are applied
 * with `applyEvent` and must each follow the previous seq, `leave` forgets a document.
 */
function replay(received: ServerMessage[]): Replayed {
  const out: Replayed = { docs: new Map(), events: new Map(), snapshots: 0, problems: [] };
  for (const m of received) {
    if (m.type === 'snapshot') {
      out.snapshots++;
      out.docs.set(m.documentId, { state: m.state, seq: m.seq });
    } else if (m.type === 'leave') {
      out.docs.delete(m.documentId);
    } else if (m.type === 'event') {
      const e = m.event;
      out.events.set(e.documentId, [...(out.events.get(e.documentId) ?? []), e]);
      let doc = out.docs.get(e.documentId);
      if (doc === undefined && e.operation === 'create') doc = { state: null, seq: (e.fromSeq ?? e.seq) - 1 };
      if (doc === undefined) {
        out.problems.push(`${e.documentId}: event ${e.seq} (${e.operation}) of a document not followed`);
        continue;
      }
      if ((e.fromSeq ?? e.seq) !== doc.seq + 1)
        out.problems.push(`${e.documentId}: event ${e.seq} after ${doc.seq}`);
      doc.state = applyEvent(doc.state, e);
      doc.seq = e.seq;
      out.docs.set(e.documentId, doc);
    } else if (m.type === 'error') {
      out.problems.push(`error frame: ${m.code} ${m.message}`);
    }
  }
  return out;
}

/**
 * A client following the filtered collection. A session whose delivery failed (a document read
 * that hit a killed connection) is closed by the server with 1011; like a client SDK, this one
 * then reconnects and subscribes again, which starts over with a snapshot of each matching document.
 */
class CollectionFollower {
  readonly connections: TestClient[] = [];
  constructor(readonly base: string) {}

  get current(): TestClient {
    return this.connections[this.connections.length - 1]!;
  }

  /** Closes seen (each 1011 with its reason, or something else that fails the test). */
  get closes(): { code: number; reason: string }[] {
    return this.connections.flatMap((c) => (c.closed ? [c.closed] : []));
  }

  async connect(): Promise<void> {
    this.connections.push(
      await subscribed(this.base, `coll-client-${this.connections.length + 1}`, { filter: FILTER }),
    );
  }

  async reconnectIfClosed(): Promise<void> {
    if (this.current.closed?.code === 1011) await this.connect();
  }

  /** The replica of the current connection: matching documents by id. */
  replica(): Map<string, JsonObject | null> {
    return new Map([...replay(this.current.received).docs].map(([id, d]) => [id, d.state]));
  }
}

/** Every event of a document, as the server at `base` lists it. */
async function eventsOf(base: string, documentId: string): Promise<SyncEvent[]> {
  const res = await http<{ events: SyncEvent[] }>(base, 'GET', `/api/${COLLECTION}/${documentId}/events`);
  expect(res.status).toBe(200);
  return res.body.events;
}

/** The documents matching FILTER, as the server at `base` returns them, by id. */
async function matching(base: string): Promise<Map<string, JsonObject>> {
  const filter = encodeURIComponent(JSON.stringify(FILTER));
  const res = await http<JsonObject[]>(base, 'GET', `/api/${COLLECTION}?filter=${filter}`);
  expect(res.status).toBe(200);
  return new Map(res.body.map((d) => [String(d._id), d]));
}

/**
 * Waits until the document client has every event of g1 that B lists and the collection client's
 * replica holds exactly the matching documents as A returns them; then checks both fully.
 */
async function expectInSync(a: string, b: string, docClient: TestClient, coll: CollectionFollower) {
  const expected = await eventsOf(b, 'g1');
  const last = expected[expected.length - 1]!.seq;
  await docClient.until(
    (r) => r.some((m) => m.type === 'event' && m.event.documentId === 'g1' && m.event.seq >= last),
    10_000,
  );
  // The document client: exactly B's events of g1, seqs 1..n, once each, and A's current document.
  const doc = replay(docClient.received);
  expect(doc.problems).toEqual([]);
  expect(doc.snapshots).toBe(0);
  expect(doc.events.get('g1')).toEqual(expected);
  expect(expected.map((e) => e.seq)).toEqual(expected.map((_, i) => i + 1));
  const onA = await http(a, 'GET', `/api/${COLLECTION}/g1`);
  expect(onA.status).toBe(200);
  expect(doc.docs.get('g1')?.state).toEqual(onA.body);

  // The collection client: on each connection, events follow each other (or a snapshot) with no
  // gap or duplicate and are the ones B lists; its replica is the matching documents as A has them.
  await coll.reconnectIfClosed();
  const want = await matching(a);
  await coll.current.until(() => isDeepStrictEqual(coll.replica(), want), 10_000).catch(() => {}); // the assertions say what differs
  expect(coll.replica()).toEqual(want);
  const lists = new Map<string, Map<number, SyncEvent>>();
  for (const connection of coll.connections) {
    const replayed = replay(connection.received);
    expect(replayed.problems).toEqual([]);
    for (const [id, events] of replayed.events) {
      if (!lists.has(id)) lists.set(id, new Map((await eventsOf(b, id)).map((e) => [e.seq, e])));
      for (const e of events) expect(e).toEqual(lists.get(id)!.get(e.seq));
    }
  }
  return { docEvents: expected.length, collectionDocs: want.size };
}

/** PATCHes through `base` until stopped, each must succeed: operators, merge patches, g3 moving in and out of the filter. */
function startWriter(base: string) {
  let stopped = false;
  let writes = 0;
  const failures: string[] = [];
  const done = (async () => {
    for (let i = 0; !stopped; i++) {
      const id = ['g1', 'g2', 'g3'][i % 3]!;
      const body =
        i % 9 === 2
          ? { team: i % 2 === 0 ? 'red' : 'blue' } // g3 leaves or enters the filter
          : i % 2 === 0
            ? { $inc: { gold: 1 }, $push: { log: i } }
            : { tick: i, stats: { [`k${i % 4}`]: i } };
      try {
        const res = await http(base, 'PATCH', `/api/${COLLECTION}/${id}`, { body });
        if (res.status === 200) writes++;
        else failures.push(`${id} ${JSON.stringify(body)}: ${res.status} ${res.text}`);
      } catch (error) {
        failures.push(`${id} ${JSON.stringify(body)}: ${error}`);
      }
      await sleep(5);
    }
  })();
  const writer = {
    get writes() {
      return writes;
    },
    /** Resolves once `n` more writes succeeded. */
    more(n: number) {
      const target = writes + n;
      return waitFor(`${n} more writes`, async () =>
        writes >= target || failures.length > 0 ? true : undefined,
      );
    },
    async stop() {
      stopped = true;
      await done;
      return { writes, failures };
    },
  };
  writers.push(writer);
  return writer;
}

describe('two eventsync serve processes on one PostgreSQL', () => {
  it("a client on A sees every change made through B's REST API, in order, also across dropped connections", async () => {
    const [a, b] = await Promise.all([
      startServe(['--db', instanceDb(APP_A), '--port', '0']),
      startServe(['--db', instanceDb(APP_B), '--port', '0']),
    ]);
    onTestFailed(() => {
      for (const [name, s] of [
        ['A', a],
        ['B', b],
      ] as const) {
        const logs = s.logs.filter((l) => l.level >= 40).map((l) => JSON.stringify(l).slice(0, 600));
        console.error(`server ${name} warnings and errors:\n${logs.join('\n')}\n${s.stderr()}`);
      }
    });
    expect(a.url).not.toBe(b.url);

    const docClient = await subscribed(a.url, 'doc-client', { documentId: 'g1' });
    const coll = new CollectionFollower(a.url);
    await coll.connect();
    const write = async (method: string, path: string, body?: unknown, status = 200) => {
      const res = await http(b.url, method, `/api/${COLLECTION}${path}`, body === undefined ? {} : { body });
      expect(res.status, `${method} ${path}: ${res.text}`).toBe(status);
    };

    // ---- changes through B: create, operators, merge patches, delete and re-create ----
    await write(
      'POST',
      '',
      { _id: 'g1', name: 'Quest', team: 'red', gold: 0, tags: ['a'], stats: { hp: 10 } },
      201,
    );
    await write('PATCH', '/g1', { $inc: { gold: 5 }, $push: { tags: 'b' } });
    await write('PATCH', '/g1', { name: 'Quest II', stats: { mp: 3 } }); // merge patch
    await write('PATCH', '/g1', { stats: { hp: null }, tags: ['c'] }); // null removes, arrays replace
    await write('POST', '', { _id: 'g2', team: 'red', gold: 1 }, 201);
    await write('POST', '', { _id: 'g3', team: 'blue', gold: 2 }, 201);
    await write('PATCH', '/g2', { team: 'blue' }); // leaves the filter
    await write('PATCH', '/g3', { $set: { team: 'red', 'deep.x': [1, { y: 2 }] } }); // enters it
    await write('PATCH', '/g1', { $unset: { stats: '' }, $mul: { gold: 3 } });
    await write('DELETE', '/g1');
    await write('POST', '', { _id: 'g1', name: 'Reborn', team: 'red', gold: 100 }, 201);
    await write('PATCH', '/g1', { $addToSet: { tags: 'z' }, $rename: { name: 'title' } });
    await write('PATCH', '/g2', { team: 'red', gold: 7 }); // back in
    const before = await expectInSync(a.url, b.url, docClient, coll);
    expect(before).toEqual({ docEvents: 8, collectionDocs: 3 });
    expect(docClient.of('event').map((m) => m.event.operation)).toEqual(
      ['create', 'update', 'update', 'update', 'update', 'delete', 'create', 'update'], // seqs go on after the delete
    );

    const [listenB] = await backends(APP_B, LISTENING);
    expect(listenB).toBeDefined();
    const writer = startWriter(b.url);
    await writer.more(20);

    // ---- 1. A's LISTEN connection dies: A connects again and LISTENs again ----
    const [listenA] = await backends(APP_A, LISTENING);
    expect(await terminate([listenA!])).toBe(1);
    await waitFor("A's new LISTEN connection", async () => {
      const now = await backends(APP_A, LISTENING);
      return now.length === 1 && now[0] !== listenA ? true : undefined;
    });
    await writer.more(20);

    // ---- 2. A's feed loses its connection in the middle of a read ----
    // Hold eventsync_events locked and hand out a serverSeq: A's next feed poll blocks reading the
    // table (B's writes wait too); kill that backend of A, then let go.
    const locker = new pg.Client({ connectionString: instanceDb('eventsync_e2e_locker') });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query("SET LOCAL lock_timeout = '5s'");
      await locker.query('LOCK TABLE eventsync_events IN ACCESS EXCLUSIVE MODE');
      await locker.query("SELECT nextval('eventsync_server_seq')"); // after the lock: A's feed has something to read
      const blocked = await waitFor("A's feed blocked on the lock", async () => {
        const pids = await backends(APP_A, "wait_event_type = 'Lock' AND query ILIKE '%eventsync_events%'");
        return pids.length > 0 ? pids : undefined;
      });
      expect(await terminate(blocked)).toBe(blocked.length);
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
    }
    // It reads again from where it was (it used to stop, closing every session with 1011).
    const feedLog = await waitFor("A's feed reporting the failed read", async () =>
      a.logs.find((l) => l.level >= 40 && /event feed/.test(l.msg)),
    );
    expect(feedLog.msg).toBe('eventsync: reading the event feed failed; retrying');
    expect(docClient.closed).toBeUndefined();
    await writer.more(20);

    // ---- 3. every connection of A dies (pool and LISTEN) ----
    const allA = await waitFor('A using its pool again', async () => {
      const [pids, listening] = [await backends(APP_A), await backends(APP_A, LISTENING)];
      return pids.length >= 2 && listening.length === 1 ? pids : undefined;
    });
    expect(await terminate(allA)).toBe(allA.length);
    // The pool drops the dead connections and opens new ones: the very next request works.
    const right = await http(a.url, 'GET', `/api/${COLLECTION}/g1`);
    expect(right.status, right.text).toBe(200);
    await waitFor("A's LISTEN connection after losing every connection", async () => {
      const now = await backends(APP_A, LISTENING);
      return now.length === 1 && !allA.includes(now[0]!) ? true : undefined;
    });
    await writer.more(20);
    const { writes, failures } = await writer.stop();
    expect(failures).toEqual([]);
    expect(await backends(APP_B, LISTENING), "B's LISTEN connection was not touched").toEqual([listenB]);

    // A serves REST again (its pool reconnected), its feed runs, and its clients missed nothing.
    expect((await http(a.url, 'GET', '/healthz')).text).toBe('ok\n');
    expect((await http(a.url, 'GET', `/api/${COLLECTION}/g2`)).status).toBe(200);
    expect(docClient.closed).toBeUndefined();
    for (const closed of coll.closes) expect(closed).toEqual({ code: 1011, reason: 'internal error' });
    const after = await expectInSync(a.url, b.url, docClient, coll);
    expect(after.docEvents).toBeGreaterThanOrEqual(before.docEvents + Math.floor(writes / 3));
    expect(a.logs.map((l) => l.msg)).not.toContain(
      'eventsync: the event feed stopped; closing sessions so clients reconnect',
    );

    // Writes through A reach a client on B too.
    const onB = await subscribed(b.url, 'b-client', { documentId: 'g2' });
    const patched = await http<JsonObject>(a.url, 'PATCH', `/api/${COLLECTION}/g2`, {
      body: { $inc: { gold: 1 } },
    });
    expect(patched.status).toBe(200);
    await onB.until((r) => r.some((m) => m.type === 'event' && m.event.version === patched.body.version));

    // ---- both stop on SIGTERM with 0 ----
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect(await a.exit, a.stderr()).toEqual({ code: 0, signal: null });
    expect(await b.exit, b.stderr()).toEqual({ code: 0, signal: null });
    await docClient.until(() => docClient.closed !== undefined).catch(() => {});
    expect(docClient.closed?.code).toBe(1001);
  });
});
