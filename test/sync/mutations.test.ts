/**
 * Client mutations on the server (docs/MUTATIONS.md), through `SyncEngine.mutate` and over
 * WebSocket, on memory, PGlite and (CI) PostgreSQL: applied once, answered from the record when
 * sent again (also after the connection died between apply and answer, and after a restart),
 * refused in mid order, and every bad input a typed answer that changes nothing stored.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import type { Database } from '../../src/core/collection-backend.js';
import { ErrorCodes } from '../../src/core/errors.js';
import { attachWebSocket } from '../../src/server/ws.js';
import type { SyncEngine } from '../../src/sync/engine.js';
import {
  type MutationCaller,
  type MutationRequest,
  REMEMBERED_REFUSALS_MIDS,
} from '../../src/sync/mutations.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { openMutationEngine, type Player } from '../support/player-mutators.js';
import { TestClient } from '../support/ws-client.js';

const PLAYERS = uniqueCollection('players');
const openEngine = (db: Database) => openMutationEngine(db, PLAYERS);

const caller = (clientId: string, principal = 'alice'): MutationCaller => ({
  principal: { id: principal },
  clientId,
  record: { kind: 'client' },
});
const request = (mid: number, name: string, documentId: string, args?: unknown): MutationRequest => ({
  mid,
  collection: PLAYERS,
  documentId,
  name,
  ...(args === undefined ? {} : { args }),
});

afterAll(closeSharedPglite);

describe.each(syncBackends)('mutations on %s', (_backend, open) => {
  let db: Database;
  let engine: SyncEngine;
  beforeAll(async () => {
    db = await open();
    engine = await openEngine(db);
  });
  afterAll(async () => {
    await engine.close();
    await db.close();
  });

  const players = () => engine.collection<Player>(PLAYERS);
  const newPlayer = async (id = uniqueCollection('p')) => {
    await (await players()).findOneAndUpsert({ _id: id, gold: 0, xp: 0, level: 1 });
    return id;
  };
  const eventsOf = async (id: string) => (await engine.events.getEvents(PLAYERS, id)).slice(1);

  it('applies a mutation once, with the mutation in the event, and answers resends from the record', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    const first = await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 5 }));
    expect(first).toEqual({ type: 'mutated', mid: 1, seq: 2, version: 2, result: { gold: 5 } });
    const [event] = await eventsOf(id);
    expect(event).toMatchObject({ clientId: client, metadata: { mutation: { name: 'addGold', mid: 1 } } });
    expect(await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 5 }))).toEqual({
      ...first,
      duplicate: true,
    });
    await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }));
    expect(await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 5 }))).toEqual({
      type: 'mutated',
      mid: 1,
      duplicate: true,
    });
    expect((await (await players()).findOne(id))?.gold).toBe(6);
    expect(await eventsOf(id)).toHaveLength(2);
    expect(await engine.lastMid(client)).toBe(2);
  });

  it('refuses a mid past the next one (out_of_order names it), and keeps nothing of it', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    const answer = await engine.mutate(caller(client), request(3, 'addGold', id, { amount: 5 }));
    expect(answer).toMatchObject({ type: 'mutation_error', mid: 3, code: 'out_of_order' });
    expect(answer.type === 'mutation_error' && answer.message).toContain('1');
    expect(await engine.lastMid(client)).toBe(0);
    expect((await (await players()).findOne(id))?.gold).toBe(0);
  });

  it('answers bad mutations with typed errors, changes no document, records each so resends agree', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    const cases: [MutationRequest, Record<string, unknown>][] = [
      [request(1, 'nothing', id), { code: 'unknown_mutator' }],
      [request(2, 'addGold', id, { amount: -3 }), { code: 'validation' }],
      [request(3, 'levelUp', id), { code: 'mutation_refused', reason: 'not_enough_xp' }],
      [request(4, 'explode', id), { code: 'mutation_failed', message: 'the mutator explode failed' }],
      [request(5, 'addGold', 'missing', { amount: 1 }), { code: 'not_found' }],
      [request(6, 'hoard', id), { code: 'mutation_failed' }],
      [request(7, 'badResult', id), { code: 'mutation_failed' }],
    ];
    for (const [req, error] of cases) {
      const answer = await engine.mutate(caller(client), req);
      expect(answer).toMatchObject({ type: 'mutation_error', mid: req.mid, ...error });
      // Sent again: the same answer, from the record.
      expect(await engine.mutate(caller(client), req)).toEqual(answer);
    }
    expect(await engine.lastMid(client)).toBe(7);
    expect(await (await players()).findOne(id)).toMatchObject({ gold: 0, version: 1 });
    expect(await eventsOf(id)).toEqual([]);
    expect(await (await players()).findOne('missing')).toBeUndefined();
  });

  it('answers a resend of a refused mid from the record after later mids were applied, within the window', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    // Mid 1 refused, mid 2 applied, both answers lost (a broken connection): the SDK resends both.
    const refused = await engine.mutate(caller(client), request(1, 'levelUp', id));
    expect(refused).toMatchObject({ code: 'mutation_refused', reason: 'not_enough_xp' });
    await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }));
    expect(await engine.mutate(caller(client), request(1, 'levelUp', id))).toEqual(refused);
    expect(await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }))).toMatchObject({
      type: 'mutated',
      mid: 2,
      duplicate: true,
    });
    // The record knows the refusals among its last REMEMBERED_REFUSALS_MIDS mids; past them, only
    // that an older mid was handled.
    for (let mid = 3; mid <= REMEMBERED_REFUSALS_MIDS; mid++) {
      await engine.mutate(caller(client), request(mid, 'nothing', id));
    }
    expect(await engine.mutate(caller(client), request(1, 'levelUp', id))).toEqual(refused);
    expect(await engine.mutate(caller(client), request(3, 'nothing', id))).toMatchObject({
      code: 'unknown_mutator',
    });
    await engine.mutate(caller(client), request(1 + REMEMBERED_REFUSALS_MIDS, 'addGold', id, { amount: 1 }));
    expect(await engine.mutate(caller(client), request(1, 'levelUp', id))).toEqual({
      type: 'mutated',
      mid: 1,
      duplicate: true,
    });
    expect(await (await players()).findOne(id)).toMatchObject({ gold: 2, level: 1 });
  });

  it('refuses a principal that may not write the document, and client ids reserved for REST keys', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    expect(
      await engine.mutate(caller(client, 'mallory'), request(1, 'addGold', id, { amount: 1 })),
    ).toMatchObject({
      code: 'forbidden',
    });
    expect(
      await engine.mutate(caller('rest:alice:k1'), request(1, 'addGold', id, { amount: 1 })),
    ).toMatchObject({
      code: 'forbidden',
    });
    expect((await (await players()).findOne(id))?.gold).toBe(0);
  });

  it('changes nothing with a no-op mutator (no seq, no event) and still moves the record', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    expect(await engine.mutate(caller(client), request(1, 'touch', id))).toEqual({
      type: 'mutated',
      mid: 1,
      version: 1,
    });
    expect(await eventsOf(id)).toEqual([]);
    expect(await engine.lastMid(client)).toBe(1);
  });

  it('creates with a create mutator, runs it on an existing document too, and deletes with ctx.delete()', async () => {
    const id = uniqueCollection('p');
    const client = uniqueCollection('client');
    expect(await engine.mutate(caller(client), request(1, 'spawn', id))).toEqual({
      type: 'mutated',
      mid: 1,
      seq: 1,
      version: 1,
    });
    expect(await (await players()).findOne(id)).toMatchObject({ _id: id, gold: 10, level: 1 });
    expect(await engine.mutate(caller(client), request(2, 'retire', id))).toEqual({
      type: 'mutated',
      mid: 2,
      seq: 2,
      version: 1,
      result: { goldLeft: 10 },
    });
    expect(await (await players()).findOne(id)).toBeUndefined();
    const events = await engine.events.getEvents(PLAYERS, id);
    expect(events.map((e) => [e.operation, e.metadata?.mutation])).toEqual([
      ['create', { name: 'spawn', mid: 1 }],
      ['delete', { name: 'retire', mid: 2 }],
    ]);
  });

  // A write the database refuses fails as a whole, record included; its answer is then kept on
  // its own. Fault injection by a real trigger: gold 666 is refused as too big (54000:
  // validation, not retryable), gold 667 as a deadlock (40P01: retryable), gold 668 by a
  // division by zero (22012, the SQLSTATE of the record's own check: not taken for a moved record).
  it.skipIf(_backend === 'memory')(
    'records the refusal of a write the database refused (no savepoint), keeps nothing for a retryable one',
    async () => {
      const driver = (db as unknown as SqlDatabase).driver;
      const fn = `eventsync_test_refuse_${uniqueCollection('t')}`;
      await driver.query(`CREATE FUNCTION ${fn}() RETURNS trigger AS $$
        BEGIN
          IF NEW.collection = '${PLAYERS}' AND NEW.data ->> 'gold' = '666' THEN
            RAISE EXCEPTION 'refused by the test' USING ERRCODE = '54000';
          END IF;
          IF NEW.collection = '${PLAYERS}' AND NEW.data ->> 'gold' = '667' THEN
            RAISE EXCEPTION 'deadlock by the test' USING ERRCODE = '40P01';
          END IF;
          IF NEW.collection = '${PLAYERS}' AND NEW.data ->> 'gold' = '668' THEN
            RAISE EXCEPTION 'division by zero by the test' USING ERRCODE = '22012';
          END IF;
          RETURN NEW;
        END $$ LANGUAGE plpgsql`);
      await driver.query(
        `CREATE TRIGGER ${fn} BEFORE UPDATE ON eventsync_documents FOR EACH ROW EXECUTE FUNCTION ${fn}()`,
      );
      try {
        const id = await newPlayer();
        const client = uniqueCollection('client');
        const refused = await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 666 }));
        expect(refused).toMatchObject({ type: 'mutation_error', mid: 1, code: 'validation' });
        expect(await engine.lastMid(client)).toBe(1);
        expect(await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 666 }))).toEqual(
          refused,
        );
        for (const amount of [667, 668]) {
          const retryable = await engine.mutate(caller(client), request(2, 'addGold', id, { amount }));
          expect(retryable.type).toBe('mutation_error');
          expect(ErrorCodes[(retryable as { code: keyof typeof ErrorCodes }).code].retryable).toBe(true);
          expect(await engine.lastMid(client)).toBe(1);
        }
        // Not mistaken for the record's check (that would answer from the record, or conflict).
        expect(await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 668 }))).toMatchObject(
          {
            code: 'internal',
          },
        );
        expect(await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }))).toMatchObject({
          type: 'mutated',
          mid: 2,
          seq: 2,
        });
        expect((await (await players()).findOne(id))?.gold).toBe(1);
        expect(await eventsOf(id)).toHaveLength(1);
      } finally {
        await driver.query(`DROP TRIGGER ${fn} ON eventsync_documents`);
        await driver.query(`DROP FUNCTION ${fn}()`);
      }
    },
  );

  it('answers from the record, never applying twice, when the record this engine knows went stale', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    // Two engines (two instances) of one database: each knows the record as it last read or wrote it.
    const other = await openEngine(db);
    try {
      await engine.mutate(caller(client), request(1, 'addGold', id, { amount: 5 }));
      const applied = await other.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }));
      expect(applied).toMatchObject({ type: 'mutated', mid: 2, seq: 3 });
      // `engine` still expects mid 2: its mutator runs, and its write finds the record moved on.
      expect(await engine.mutate(caller(client), request(2, 'addGold', id, { amount: 1 }))).toEqual({
        ...applied,
        duplicate: true,
      });
      expect(await engine.mutate(caller(client), request(3, 'addGold', id, { amount: 10 }))).toMatchObject({
        mid: 3,
        seq: 4,
      });
      // `other` knows the record at 2: its mid 4 reads it again (at 3), not refused as out of order.
      expect(await other.mutate(caller(client), request(4, 'addGold', id, { amount: 100 }))).toMatchObject({
        mid: 4,
        seq: 5,
      });
    } finally {
      await other.close();
    }
    expect((await (await players()).findOne(id))?.gold).toBe(116);
    expect(await eventsOf(id)).toHaveLength(4);
  });

  it('runs one client id’s mutations one at a time in an engine: a resend racing its first run is answered, not run', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    let runs = 0;
    const counting = await openMutationEngine(db, PLAYERS, {
      count: (draft: Player) => {
        runs++;
        draft.gold += 1;
      },
    });
    try {
      // Two connections of the client send mid 1 at once (a resend after a reconnect racing the first).
      const answers = await Promise.all(
        [1, 2, 3].map(() => counting.mutate(caller(client), request(1, 'count', id))),
      );
      expect(answers.filter((x) => x.type === 'mutated' && !x.duplicate)).toHaveLength(1);
      expect(answers.every((x) => x.type === 'mutated' && x.seq === 2)).toBe(true);
      expect(runs).toBe(1);
    } finally {
      await counting.close();
    }
  });

  it('applies a mid once when two engines of one client id race for it, and the record survives a restart', async () => {
    const id = await newPlayer();
    const client = uniqueCollection('client');
    const other = await openEngine(db);
    try {
      const answers = await Promise.all(
        [engine, other, engine, other].map((e) =>
          e.mutate(caller(client), request(1, 'addGold', id, { amount: 7 })),
        ),
      );
      expect(answers.filter((a) => a.type === 'mutated' && !a.duplicate)).toHaveLength(1);
      expect(answers.every((a) => a.type === 'mutated' && a.seq === 2)).toBe(true);
    } finally {
      await other.close();
    }
    expect((await (await players()).findOne(id))?.gold).toBe(7);
    // A new engine on the same database: the record is there.
    const restarted = await openEngine(db);
    try {
      expect(await restarted.lastMid(client)).toBe(1);
      expect(await restarted.mutate(caller(client), request(1, 'addGold', id, { amount: 7 }))).toMatchObject({
        duplicate: true,
        seq: 2,
      });
    } finally {
      await restarted.close();
    }
    expect((await (await players()).findOne(id))?.gold).toBe(7);
  });
});

describe.each(syncBackends)('mutations over WebSocket on %s', (_backend, open) => {
  let db: Database;
  let engine: SyncEngine;
  let server: Server;
  let url: string;
  const clients: TestClient[] = [];
  beforeAll(async () => {
    db = await open();
    engine = await openEngine(db);
    server = createServer();
    attachWebSocket(server, engine);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/sync`;
  });
  afterAll(async () => {
    for (const c of clients.splice(0)) c.close();
    await engine.close();
    await new Promise((resolve) => server.close(resolve));
    await db.close();
  });

  async function connect(clientId: string, protocol = 2): Promise<TestClient> {
    const c = await TestClient.connect(url);
    clients.push(c);
    c.send({ type: 'hello', protocol, clientId, token: 'alice' });
    await c.next('welcome');
    return c;
  }
  const mutate = (mid: number, documentId: string, amount = 5) => ({
    type: 'mutate',
    mid,
    collection: PLAYERS,
    documentId,
    name: 'addGold',
    args: { amount },
  });
  const players = () => engine.collection<Player>(PLAYERS);
  const newPlayer = async () => {
    const id = uniqueCollection('p');
    await (await players()).findOneAndUpsert({ _id: id, gold: 0, xp: 0, level: 1 });
    return id;
  };

  it('applies, and the subscriber sees the event with the mutation; welcome says lastMid', async () => {
    const id = await newPlayer();
    const clientId = uniqueCollection('client');
    const c = await connect(clientId);
    expect(c.received[0]).toMatchObject({ type: 'welcome', protocol: 2, lastMid: 0 });
    c.send({ type: 'subscribe', sub: 's', collection: PLAYERS, documentId: id });
    await c.next('synced');
    c.send(mutate(1, id));
    expect(await c.next('mutated')).toEqual({
      type: 'mutated',
      mid: 1,
      seq: 2,
      version: 2,
      result: { gold: 5 },
    });
    await c.until(() => c.of('event').some((m) => m.event.seq === 2));
    const event = c.of('event').find((m) => m.event.seq === 2)!.event;
    expect(event).toMatchObject({ clientId, metadata: { mutation: { name: 'addGold', mid: 1 } } });
  });

  it('answers a resend after the connection died between apply and answer as a duplicate, applied once', async () => {
    const id = await newPlayer();
    const clientId = uniqueCollection('client');
    const first = await connect(clientId);
    first.send(mutate(1, id, 3));
    first.terminate();
    // The server applies it all the same (its answer goes nowhere).
    const storage = await players();
    while ((await storage.findOne(id))?.gold !== 3) await new Promise((resolve) => setTimeout(resolve, 10));
    const again = await connect(clientId);
    expect(again.received[0]).toMatchObject({ type: 'welcome', lastMid: 1 });
    again.send(mutate(1, id, 3));
    expect(await again.next('mutated')).toEqual({
      type: 'mutated',
      mid: 1,
      seq: 2,
      version: 2,
      result: { gold: 3 },
      duplicate: true,
    });
    expect((await storage.findOne(id))?.gold).toBe(3);
  });

  it('answers bad frames with typed errors, stores nothing, and the session goes on', async () => {
    const id = await newPlayer();
    const c = await connect(uniqueCollection('client'));
    for (const mid of [0, -1, 1.5, 2 ** 53, '1']) c.send({ ...mutate(1, id), mid });
    await c.until(() => c.of('error').length === 5);
    expect(c.of('error').every((e) => e.code === 'bad_message' && e.ref === 'mutate')).toBe(true);
    c.send({ ...mutate(1, id), name: 'not a name' });
    c.send({ ...mutate(1, id), args: { amount: 1, extra: 'x'.repeat(70_000) } });
    await c.until(() => c.closed !== undefined || c.of('error').length === 7);
    expect(c.of('error').at(-1)?.code).toBe('too_large');
    const fresh = await connect(uniqueCollection('client'), 1);
    fresh.send(mutate(1, id));
    expect(await fresh.next('mutation_error')).toMatchObject({ mid: 1, code: 'unknown_mutator' });
    fresh.send({ type: 'subscribe', sub: 's', collection: PLAYERS, documentId: id });
    await fresh.next('synced');
    expect(await (await players()).findOne(id)).toMatchObject({ gold: 0, version: 1 });
  });
});
