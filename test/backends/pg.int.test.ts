/**
 * The SQL backend on PostgreSQL (the run's embedded server, or DATABASE_URL): every `open()` is
 * a new pool, i.e. another server instance; tests keep apart by collection name.
 */
import { createRequire } from 'node:module';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import { feedSql } from '../../src/backends/sql/feed.js';
import { findPlan } from '../../src/backends/sql/find.js';
import { filterIndexName, migrations } from '../../src/backends/sql/schema.js';
import type { CollectionBackend } from '../../src/core/collection-backend.js';
import { EventSyncError } from '../../src/core/errors.js';
import type { SyncEvent } from '../../src/core/events.js';
import { SyncService } from '../../src/events/sync-service.js';
import { type PgDatabaseOptions, pgDatabase } from '../../src/pg.js';
import { createStorage } from '../../src/storage/create-storage.js';

import type { BackendTarget } from '../conformance/backend-fixtures.js';
import { catchupSuite } from '../conformance/catchup.suite.js';
import { collectionBackendSuite } from '../conformance/collection-backend.suite.js';
import { diffsSuite } from '../conformance/diffs.suite.js';
import { eventBackendSuite } from '../conformance/event-backend.suite.js';
import { eventsSuite } from '../conformance/events.suite.js';
import { storageSuite } from '../conformance/storage.suite.js';
import { databaseUrl, openPg, uniqueCollection } from '../support/databases.js';
import { injectEventFault } from '../support/event-faults.js';
import { checkEventLog } from '../support/event-log-check.js';
import { spawnWriter } from '../support/processes.js';
import { sqlEventsSuite } from './sql-events.js';
import { sqlPrimitivesSuite } from './sql-primitives.js';

// Each database its own application_name, so that a fault injected into one fails it alone.
const backend: BackendTarget = {
  name: 'pg',
  open: () => openPg({ applicationName: uniqueCollection('backend_app') }),
  openPeers: async () => [await openPg(), await openPg()],
  injectEventFault,
};
collectionBackendSuite(backend);
eventBackendSuite(backend);

/**
 * `pg` loaded a second time, as a linked package or a monorepo's second copy would be: its module
 * files are taken out of Node's require cache while it loads, so its Pool is another class.
 */
function anotherCopyOfPg(): typeof pg {
  const require = createRequire(import.meta.url);
  const ours = Object.keys(require.cache).filter((path) => /[\\/]node_modules[\\/]pg[\\/]/.test(path));
  const saved = new Map(ours.map((path) => [path, require.cache[path]]));
  for (const path of ours) delete require.cache[path];
  try {
    return require('pg') as typeof pg;
  } finally {
    for (const [path, module] of saved) require.cache[path] = module;
  }
}

sqlPrimitivesSuite({ name: 'pg', open: (options) => openPg(options) });

sqlEventsSuite({ name: 'pg', open: (options) => openPg(options) });

storageSuite({ name: 'pg', open: () => openPg() });

diffsSuite({ name: 'pg', open: () => openPg(), runs: 300 });

catchupSuite({ name: 'pg', open: () => openPg(), propertyRuns: 20 });

eventsSuite({
  name: 'pg',
  open: () => openPg({ applicationName: uniqueCollection('events_app') }),
  injectEventFault,
});

describe('pg: entry point and PostgreSQL specifics', () => {
  it('uses a pool it was given and leaves it open', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2 });
    const db = await pgDatabase({ pool });
    expect(db.kind).toBe('pg');
    const c = await db.collection(uniqueCollection());
    await c.insert({ id: 'a', version: 1, data: { _id: 'a', version: 1 } });
    await db.close();
    expect((await pool.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await pool.end();
  });

  it('takes a pool from another copy of pg (no instanceof), and listens on its database', async () => {
    const OtherPool = anotherCopyOfPg().Pool;
    const pool = new OtherPool({ connectionString: databaseUrl(), max: 2 });
    expect(pool instanceof pg.Pool).toBe(false);
    const [db, other] = [await pgDatabase({ pool }), await openPg()];
    try {
      const collection = uniqueCollection();
      const seen: string[] = [];
      await (await db.collection(collection)).subscribe((change) => seen.push(change.id));
      await (await other.collection(collection)).insert({
        id: 'a',
        version: 1,
        data: { _id: 'a', version: 1 },
      });
      expect((await (await db.collection(collection)).get('a'))?.version).toBe(1);
      for (const until = Date.now() + 10_000; seen.length === 0 && Date.now() < until; ) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(seen).toEqual(['a']);
    } finally {
      await Promise.all([db.close(), other.close()]);
      await pool.end();
    }
  });

  it('refuses options that would reach pg’s defaults or that it does not know, before connecting', async () => {
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 1 });
    const refusal = async (options: unknown) => {
      const error = await pgDatabase(options as PgDatabaseOptions).then(
        (db) => db.close().then(() => undefined),
        (e: unknown) => e,
      );
      expect(EventSyncError.is(error, 'validation'), String(error)).toBe(true);
      return (error as Error).message;
    };
    try {
      expect(await refusal({})).toMatch(/needs connectionString .* or pool.*DATABASE_URL/);
      expect(await refusal({ connectionString: undefined })).toMatch(/unset environment variable/);
      expect(await refusal({ connectionString: databaseUrl(), maxConnections: 4 })).toMatch(
        /no option "maxConnections"; its options are connectionString, pool, max, notify, feed, prepare, onListenError/,
      );
      expect(await refusal({ pool: { connectionString: databaseUrl() } })).toMatch(/pool must be a pg.Pool/);
      expect(await refusal({ pool, connectionString: databaseUrl() })).toMatch(/not both/);
      expect(await refusal({ pool, max: 4 })).toMatch(/set max on it/);
      // Shaped like a pool but without the connection settings the LISTEN connection needs.
      const bare = { query: pool.query.bind(pool), connect: pool.connect.bind(pool) };
      expect(await refusal({ pool: bare })).toMatch(/no `options`/);
      expect(pool.totalCount).toBe(0);
    } finally {
      await pool.end();
    }
  });

  it('listens again after its LISTEN connection is killed', async () => {
    // Its own application_name, so that only this test's LISTEN connection gets killed.
    const appName = uniqueCollection('listen');
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, application_name: appName });
    const [writer, reader] = [await openPg(), await pgDatabase({ pool })];
    try {
      const c = await writer.collection(uniqueCollection());
      const seen: number[] = [];
      const stop = await (await reader.collection(c.collection)).subscribe((change) =>
        seen.push(change.version),
      );
      const killed = await writer.driver.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
         WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
        [appName],
      );
      expect(killed.length).toBeGreaterThan(0);
      await c.insert({ id: 'a', version: 1, data: { _id: 'a', version: 1 } });
      // Notifications while the connection is down are lost (see the TODO in the pg driver);
      // once it is back (about a second), changes arrive again.
      let version = 1;
      const deadline = Date.now() + 10_000;
      while (!seen.some((v) => v > 1) && Date.now() < deadline) {
        await c.replace(
          { id: 'a', version: version + 1, data: { _id: 'a', version: version + 1 } },
          version,
          {
            hasChanges: true,
            version: version + 1,
            jsonPatch: [],
            mergePatch: {},
            mongoUpdate: {},
          },
        );
        version++;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(seen.some((v) => v > 1)).toBe(true);
      await stop();
    } finally {
      await Promise.all([writer.close(), reader.close()]);
      await pool.end();
    }
  });

  it('announces after commit on its own connection: writes go on while it is killed, then announce again', async () => {
    const appName = uniqueCollection('notify');
    const pool = new pg.Pool({ connectionString: databaseUrl(), max: 2, application_name: appName });
    const [writer, reader] = [await pgDatabase({ pool }), await openPg()];
    try {
      const c = await writer.collection(uniqueCollection());
      const seen: number[] = [];
      const stop = await (await reader.collection(c.collection)).subscribe((change) =>
        seen.push(change.version),
      );
      const replace = (version: number) =>
        c.replace({ id: 'a', version, data: { _id: 'a', version } }, version - 1, {
          hasChanges: true,
          version,
          jsonPatch: [],
          mergePatch: {},
          mongoUpdate: {},
        });
      await c.insert({ id: 'a', version: 1, data: { _id: 'a', version: 1 } });
      for (const until = Date.now() + 5000; !seen.includes(1) && Date.now() < until; ) {
        await new Promise((r) => setTimeout(r, 5));
      }
      // The writer's pooled connections never ran a NOTIFY: only its notify connection did.
      const notifying = await reader.driver.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_notify%'`,
        [appName],
      );
      expect(notifying).toHaveLength(1);
      await reader.driver.query('SELECT pg_terminate_backend($1)', [notifying[0]!.pid]);
      let version = 1;
      const deadline = Date.now() + 10_000;
      while (!seen.some((v) => v > 1) && Date.now() < deadline) {
        expect(await replace(++version)).toEqual({ token: expect.any(String) });
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(seen.some((v) => v > 1)).toBe(true);
      await stop();
    } finally {
      await Promise.all([writer.close(), reader.close()]);
      await pool.end();
    }
  });

  it('migrates a fresh database once when several processes start at the same time', async () => {
    const admin = new pg.Client({ connectionString: databaseUrl() });
    await admin.connect();
    const name = uniqueCollection('fresh_db');
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
    try {
      const url = new URL(databaseUrl());
      url.pathname = `/${name}`;
      const dbs = await Promise.all(
        Array.from({ length: 4 }, () => pgDatabase({ connectionString: url.toString(), max: 1 })),
      );
      const rows = await dbs[0]!.driver.query<{ id: number }>(
        'SELECT id FROM eventsync_migrations ORDER BY id',
      );
      expect(rows).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }, { id: 6 }]);
      await Promise.all(dbs.map((db) => db.close()));
    } finally {
      await admin.query(`DROP DATABASE ${admin.escapeIdentifier(name)} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('migrations 4 and 5 keep the documents and clients made before them: documents get incarnations, clients are owned by nobody until claimed', async () => {
    const admin = new pg.Client({ connectionString: databaseUrl() });
    await admin.connect();
    const name = uniqueCollection('old_db');
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(name)}`);
    const url = new URL(databaseUrl());
    url.pathname = `/${name}`;
    const old = new pg.Client({ connectionString: url.toString() });
    try {
      // A database as migrations 1-3 left it, with a client and what it acknowledged.
      await old.connect();
      await old.query(`CREATE TABLE eventsync_migrations (
        id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const migration of migrations.filter((m) => m.id <= 3)) {
        for (const statement of migration.statements) await old.query(statement);
        await old.query('INSERT INTO eventsync_migrations (id, name) VALUES ($1, $2)', [
          migration.id,
          migration.name,
        ]);
      }
      await old.query(`INSERT INTO eventsync_clients (client_id) VALUES ('phone')`);
      await old.query(`INSERT INTO eventsync_state_vectors VALUES ('phone', 'games', 'g', '{"a":1}', 1, 0)`);
      await old.query(
        `INSERT INTO eventsync_documents (collection, id, version, data) VALUES ('games', 'old', 1, '{"_id":"old","version":1}')`,
      );

      const db = await pgDatabase({ connectionString: url.toString(), max: 1 });
      try {
        const service = new SyncService(await db.events());
        expect(await service.isRegistered('phone')).toBe(true);
        await service.claimClient('phone', 'bob');
        await expect(service.claimClient('phone', 'alice')).rejects.toMatchObject({ code: 'forbidden' });
        expect((await service.stateVectors.get('phone', 'games', 'g'))?.lastSeq).toBe(1);
        const games = await createStorage({ db, collection: 'games' });
        const entry = await games.findEntry('old');
        expect(entry?.incarnation).toMatch(/^\d+$/);
        await games.deleteOne('old');
        const again = await games.findOneAndUpsert({ _id: 'old' });
        expect(again.incarnation).not.toBe(entry?.incarnation);
      } finally {
        await db.close();
      }
    } finally {
      await old.end();
      await admin.query(`DROP DATABASE ${admin.escapeIdentifier(name)} WITH (FORCE)`);
      await admin.end();
    }
  });

  it('answers a selective top-level equality filter from the collection’s filter index, when it has one', async () => {
    const db = await openPg({ notify: false });
    try {
      const name = uniqueCollection();
      const c = await db.collection(name, { filterIndex: true });
      await db.driver.query(
        `INSERT INTO eventsync_documents (collection, id, version, data)
         SELECT $1, 'd' || i, 1, jsonb_build_object('_id', 'd' || i, 'status', CASE WHEN i % 1000 = 0 THEN 'rare' ELSE 'common' END)
         FROM generate_series(1, 5000) i`,
        [name],
      );
      const index = filterIndexName(name);
      // Keep GIN's pending list (fastupdate) from making the index look dear.
      await db.driver.query('SELECT gin_clean_pending_list($1::regclass)', [index]);
      await db.driver.query('ANALYZE eventsync_documents');
      const plan = async (filterIndex: boolean) => {
        const read = findPlan(name, filterIndex, { status: 'rare' }, {})!.pushed!;
        const rows = await db.driver.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${read.text}`, read.params);
        return rows.map((r) => r['QUERY PLAN']).join('\n');
      };
      expect(await plan(true)).toContain(index);
      expect((await c.find({ status: 'rare' })).length).toBe(5);
      // Opened without asking for it: the same answers.
      expect((await (await db.collection(name)).find({ status: 'rare' })).length).toBe(5);
      // No index over every collection is left from before migration 3.
      const all = await db.driver.query(
        "SELECT 1 FROM pg_indexes WHERE indexname = 'eventsync_documents_data_gin'",
      );
      expect(all).toHaveLength(0);
    } finally {
      await db.close();
    }
  });
});

describe('pg: event log across connections and processes', () => {
  const record = { clientId: 'w' };
  const newDoc = (id: string) => ({ id, version: 1, data: { _id: id, version: 1 } });

  /** A transaction on `c` that records an insert of `id`, then waits for `end` (true: commit, false: roll back). */
  async function heldTransaction(c: CollectionBackend, id: string) {
    let finish!: (commit: boolean) => void;
    const end = new Promise<boolean>((resolve) => {
      finish = resolve;
    });
    let written!: (event: SyncEvent) => void;
    const event = new Promise<SyncEvent>((resolve) => {
      written = resolve;
    });
    const done = c
      .transaction(async (tx) => {
        written((await tx.insert(newDoc(id), record))!.event!);
        if (!(await end)) throw new Error('rolled back on purpose');
      })
      .catch((error: Error) => {
        if (error.message !== 'rolled back on purpose') throw error;
      });
    return { event: await event, commit: () => finish(true), rollBack: () => finish(false), done };
  }

  it('never skips an event that commits after one with a larger serverSeq', async () => {
    const [writer1, writer2, reader, patient] = await Promise.all([
      openPg(),
      openPg(),
      openPg({ feed: { settleTimeoutMs: 300 } }),
      openPg({ feed: { settleTimeoutMs: 10_000 } }),
    ]);
    const held: { rollBack(): void; done: Promise<void> }[] = [];
    try {
      const name = uniqueCollection('feed');
      const [c1, c2] = [await writer1.collection(name), await writer2.collection(name)];
      const events = await reader.events();
      const start = (
        await events.append({
          collection: name,
          documentId: 'start',
          operation: 'update',
          version: 1,
          clientId: 'w',
        })
      ).serverSeq;

      // Transaction 1 takes serverSeq n and stays open; transaction 2 takes n + 1 and commits.
      const t1 = await heldTransaction(c1, 'a');
      held.push(t1);
      const e2 = (await c2.insert(newDoc('b'), record))!.event!;
      expect(e2.serverSeq).toBeGreaterThan(t1.event.serverSeq);
      // What a plain "committed after n" query would return: n + 1 alone (a reader moving on to
      // it would never see n).
      const naive = await reader.driver.query<{ server_seq: string }>(
        'SELECT server_seq FROM eventsync_events WHERE collection = $1 AND server_seq > $2 ORDER BY server_seq',
        [name, start],
      );
      expect(naive.map((r) => Number(r.server_seq))).toEqual([e2.serverSeq]);
      // Nor does the settled serverSeq move past n - 1 meanwhile.
      const latest = () => events.latestServerSeq();
      expect(await latest()).toBeLessThan(t1.event.serverSeq);
      // The feed returns neither while transaction 1 may still commit (it waited 300 ms, then gave up).
      expect(await events.listAfterServerSeq(name, start, 100)).toEqual([]);
      const everything = await events.listAfterServerSeq(undefined, start, 10_000);
      expect(everything.filter((e) => e.collection === name)).toEqual([]);
      // A reader waiting when transaction 1 commits gets both, in serverSeq order.
      const waiting = (await patient.events()).listAfterServerSeq(name, start, 100);
      await new Promise((resolve) => setTimeout(resolve, 100));
      t1.commit();
      await t1.done;
      expect((await waiting).map((e) => [e.documentId, e.serverSeq])).toEqual([
        ['a', t1.event.serverSeq],
        ['b', e2.serverSeq],
      ]);
      expect((await events.listAfterServerSeq(name, start, 100)).map((e) => e.documentId)).toEqual([
        'a',
        'b',
      ]);
      expect(await latest()).toBeGreaterThanOrEqual(e2.serverSeq);

      // A writer that rolls back holds the feed only until it ends; its serverSeq never shows.
      const after = e2.serverSeq;
      const t3 = await heldTransaction(c1, 'c');
      held.push(t3);
      const e4 = (await c2.insert(newDoc('d'), record))!.event!;
      const waiting2 = (await patient.events()).listAfterServerSeq(name, after, 100);
      await new Promise((resolve) => setTimeout(resolve, 100));
      t3.rollBack();
      await t3.done;
      expect((await waiting2).map((e) => [e.documentId, e.serverSeq])).toEqual([['d', e4.serverSeq]]);
      expect(t3.event.serverSeq).toBeLessThan(e4.serverSeq);
    } finally {
      // A failed expectation must not leave a transaction open (closing its pool would wait for it).
      for (const t of held) t.rollBack();
      await Promise.all(held.map((t) => t.done));
      await Promise.all([writer1.close(), writer2.close(), reader.close(), patient.close()]);
    }
  });

  it('waits for a writer whose xid is past the snapshot’s xmax (it took its xid after the last one to complete)', async () => {
    const reader = await openPg({ feed: { settleTimeoutMs: 300 } });
    const [a, b] = [
      new pg.Client({ connectionString: databaseUrl() }),
      new pg.Client({ connectionString: databaseUrl() }),
    ];
    await Promise.all([a.connect(), b.connect()]);
    const insert = async (c: pg.Client, id: string) =>
      Number(
        (
          await c.query<{ server_seq: string }>(
            `INSERT INTO eventsync_events (collection, document_id, seq, id, at, operation, version, client_id, actor_seq, vector_clock)
             VALUES ($1, $2, 1, $2, 0, 'update', 1, 'c', 1, '{}') RETURNING server_seq`,
            [name, id],
          )
        ).rows[0]!.server_seq,
      );
    const name = uniqueCollection('feed');
    try {
      const events = await reader.events();
      const start = (
        await events.append({
          collection: name,
          documentId: 's',
          operation: 'update',
          version: 1,
          clientId: 'w',
        })
      ).serverSeq;
      // a takes an xid, then b a larger one; b takes serverSeq n and stays open, a takes n + 1 and
      // commits. Unless some other transaction completes meanwhile, b's xid is the snapshot's
      // xmax: not in its running list, so "xmin >= xmax of an earlier snapshot" held while b ran.
      await a.query('BEGIN');
      await a.query('SELECT pg_current_xact_id()');
      await b.query('BEGIN');
      await b.query('SELECT pg_current_xact_id()');
      const held = await insert(b, 'b');
      const committed = await insert(a, 'a');
      await a.query('COMMIT');
      expect(committed).toBeGreaterThan(held);
      expect(await events.listAfterServerSeq(undefined, start, 10_000)).not.toContainEqual(
        expect.objectContaining({ collection: name, documentId: 'a' }),
      );
      expect(await events.listAfterServerSeq(name, start, 100)).toEqual([]);
      expect(await events.latestServerSeq()).toBeLessThan(held);
      await b.query('COMMIT');
      expect((await events.listAfterServerSeq(name, start, 100)).map((e) => e.serverSeq)).toEqual([
        held,
        committed,
      ]);
    } finally {
      await Promise.all([a.query('ROLLBACK').catch(() => {}), b.query('ROLLBACK').catch(() => {})]);
      await Promise.all([a.end(), b.end(), reader.close()]);
    }
  });

  it('is not held up by a running transaction that never touched the events table', async () => {
    const [writer, reader] = await Promise.all([openPg(), openPg({ feed: { settleTimeoutMs: 10_000 } })]);
    const bystander = new pg.Client({ connectionString: databaseUrl() });
    await bystander.connect();
    try {
      const name = uniqueCollection('feed');
      const c = await writer.collection(name);
      const events = await reader.events();
      const start = (await c.insert(newDoc('a'), record))!.event!.serverSeq;
      // A long transaction with an xid (as a batch job writing other tables has), older than the next event.
      await bystander.query('BEGIN');
      await bystander.query('SELECT pg_current_xact_id()');
      const e = (await c.insert(newDoc('b'), record))!.event!;
      expect((await events.listAfterServerSeq(name, start, 100)).map((x) => x.serverSeq)).toEqual([
        e.serverSeq,
      ]);
      // One that holds a lock on the events table may be an event writer: that one is waited for
      // (300 ms here, then nothing is returned yet).
      await bystander.query('ROLLBACK');
      await bystander.query('BEGIN');
      await bystander.query('LOCK TABLE eventsync_events IN ROW EXCLUSIVE MODE');
      await bystander.query('SELECT pg_current_xact_id()');
      const e2 = (await c.insert(newDoc('c'), record))!.event!;
      const impatient = await openPg({ feed: { settleTimeoutMs: 300 } });
      try {
        expect(await (await impatient.events()).listAfterServerSeq(name, e.serverSeq, 100)).toEqual([]);
      } finally {
        await impatient.close();
      }
      await bystander.query('ROLLBACK');
      expect((await events.listAfterServerSeq(name, e.serverSeq, 100)).map((x) => x.serverSeq)).toEqual([
        e2.serverSeq,
      ]);
    } finally {
      await bystander.query('ROLLBACK').catch(() => {});
      await bystander.end();
      await Promise.all([writer.close(), reader.close()]);
    }
  });

  it('reads one collection’s feed from its own index range, also with a generic plan', async () => {
    const db = await openPg();
    const big = uniqueCollection('feed_big');
    // The plan matters once there are many events: a big collection to make the server_seq index tempting.
    await db.driver.query(
      `INSERT INTO eventsync_events (collection, document_id, seq, id, at, operation, version, client_id, actor_seq, vector_clock)
       SELECT $1, 'd' || (i % 100), i / 100 + 1, 'e' || i, 0, 'update', 1, 'c', 1, '{}' FROM generate_series(0, 19999) i`,
      [big],
    );
    await db.driver.query('ANALYZE eventsync_events');
    // The simple query protocol: EXPLAIN (GENERIC_PLAN) of a text with $n and no values.
    const client = new pg.Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      const plan = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (GENERIC_PLAN) ${feedSql(false, true)}`,
      );
      const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
      expect(text).not.toContain('eventsync_events_server_seq_key');
      expect(text).toMatch(/Index Cond: .*collection/);
    } finally {
      await client.end();
      await db.driver.query('DELETE FROM eventsync_events WHERE collection = $1', [big]);
      await db.close();
    }
  });

  /** Waits until no connection named `applicationName` is left (a statement in flight when its process died may still commit). */
  async function connectionsGone(db: SqlDatabase, applicationName: string): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const rows = await db.driver.query('SELECT 1 FROM pg_stat_activity WHERE application_name = $1', [
        applicationName,
      ]);
      if (rows.length === 0) return;
      if (Date.now() > deadline) throw new Error(`connections of ${applicationName} still there`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('I1 under SIGKILL: each document’s events run 1..N, end at its version and replay to it', async () => {
    const collection = uniqueCollection('crash');
    const applicationName = uniqueCollection('crash_app');
    const clientIds = Array.from({ length: 8 }, (_, i) => `crash-${i}`);
    const writer = spawnWriter({
      databaseUrl: databaseUrl(),
      applicationName,
      collection,
      documents: Array.from({ length: 24 }, (_, i) => `doc${i}`),
      clientIds,
      deleters: ['crash-0', 'crash-1'],
      progressEvery: 20,
    });
    const db = await openPg();
    try {
      await writer.reached(400);
      writer.child.kill('SIGKILL');
      await writer.exited;
      expect(writer.child.signalCode).toBe('SIGKILL');
      await connectionsGone(db, applicationName);
      const summary = await checkEventLog(db, collection);
      expect(summary.documents).toBe(24);
      // Most writes made an event (an upsert that found the document made none).
      expect(summary.events).toBeGreaterThan(200);
      expect(summary.deletes).toBeGreaterThan(0);
      expect(Object.keys(summary.byActor).sort()).toEqual([...clientIds].sort());
    } finally {
      writer.child.kill('SIGKILL');
      await db.close();
    }
  });

  it('I2: 8 writers in 2 processes on 3 documents, with deletes and re-creates: gapless seqs and clocks', async () => {
    const collection = uniqueCollection('i2');
    const documents = ['d0', 'd1', 'd2'];
    const writers = [0, 1].map((p) =>
      spawnWriter({
        databaseUrl: databaseUrl(),
        applicationName: uniqueCollection(`i2_app_${p}`),
        collection,
        documents,
        clientIds: [0, 1, 2, 3].map((i) => `p${p}-w${i}`),
        deleters: [`p${p}-w0`],
        operations: 40,
      }),
    );
    const db = await openPg();
    try {
      const heard = await Promise.all(writers.map((w) => w.done));
      const summary = await checkEventLog(db, collection);
      // Every event an actor heard committed is in the log, and nothing else.
      expect(summary.byActor).toEqual(Object.assign({}, ...heard));
      expect(Object.keys(summary.byActor).length).toBe(8);
      expect(summary.deletes).toBeGreaterThan(0);
      expect(summary.recreations).toBeGreaterThan(0);
    } finally {
      for (const w of writers) w.child.kill('SIGKILL');
      await db.close();
    }
  });
});
