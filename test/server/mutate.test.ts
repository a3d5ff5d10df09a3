/**
 * `POST /api/:collection/:id/mutate/:name` (src/server/mutate.ts) and SSE's `?protocol=2`
 * welcome, over loopback HTTP on memory, PGlite and (CI) PostgreSQL: exactly once by an
 * Idempotency-Key (also across a restart of the engine) or by the SDK's client-id headers (the
 * WebSocket record), and bad requests refused with typed errors that change nothing.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import type { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';
import { openMutationEngine, type Player } from '../support/player-mutators.js';
import { TestClient } from '../support/ws-client.js';
import { http, SseClient } from './http-client.js';

const PLAYERS = uniqueCollection('players');

afterAll(closeSharedPglite);

describe.each(syncBackends)('REST mutations on %s', (_backend, open) => {
  let db: Database;
  let engine: SyncEngine;
  let server: LoopbackServer;
  let base: string;
  const start = async () => {
    engine = await openMutationEngine(db, PLAYERS);
    server = await loopbackServer(engine);
    base = `http://127.0.0.1:${server.port}`;
  };
  beforeAll(async () => {
    db = await open();
    await start();
  });
  afterAll(async () => {
    await server.close();
    await db.close();
  });

  const players = () => engine.collection<Player>(PLAYERS);
  const newPlayer = async () => {
    const id = uniqueCollection('p');
    await (await players()).findOneAndUpsert({ _id: id, gold: 0, xp: 0, level: 1 });
    return id;
  };
  const gold = async (id: string) => (await (await players()).findOne(id))?.gold;
  const post = (id: string, name: string, body?: unknown, headers: Record<string, string> = {}) =>
    http(base, 'POST', `/api/${PLAYERS}/${id}/mutate/${name}`, {
      body,
      headers: { authorization: 'Bearer alice', 'content-type': 'application/json', ...headers },
    });

  it('runs once per Idempotency-Key: the same key answers the stored outcome, also after a restart', async () => {
    const id = await newPlayer();
    const key = { 'idempotency-key': uniqueCollection('key') };
    const first = await post(id, 'addGold', { amount: 4 }, key);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ mid: 1, seq: 2, version: 2, result: { gold: 4 } });
    const again = await post(id, 'addGold', { amount: 4 }, key);
    expect([again.status, again.body, again.headers['idempotent-replayed']]).toEqual([
      200,
      first.body,
      'true',
    ]);
    // A new engine on the same database: the key's record is still there.
    await server.close();
    await start();
    const afterRestart = await post(id, 'addGold', { amount: 4 }, key);
    expect([afterRestart.status, afterRestart.body]).toEqual([200, first.body]);
    expect(await gold(id)).toBe(4);
    // A refusal is kept the same way: same status and body.
    const refusedKey = { 'idempotency-key': uniqueCollection('key') };
    const refused = await post(id, 'levelUp', undefined, refusedKey);
    expect(refused.status).toBe(409);
    expect(refused.body).toEqual({
      error: { code: 'mutation_refused', message: 'levelling up needs 100 XP', reason: 'not_enough_xp' },
    });
    const refusedAgain = await post(id, 'levelUp', undefined, refusedKey);
    expect([refusedAgain.status, refusedAgain.body]).toEqual([409, refused.body]);
    // Without a key: once per request.
    await post(id, 'addGold', { amount: 1 });
    await post(id, 'addGold', { amount: 1 });
    expect(await gold(id)).toBe(6);
  });

  it('shares the client id’s record with WebSocket through the SDK headers; a resend is a duplicate', async () => {
    const id = await newPlayer();
    const clientId = uniqueCollection('client');
    const sdk = (mid: number) => ({
      'x-eventsync-client-id': clientId,
      'x-eventsync-mutation-id': String(mid),
    });
    // The first send's connection dies once the server applied it, before its answer is read.
    const body = JSON.stringify({ amount: 2 });
    const socket = connect(server.port, '127.0.0.1');
    socket.write(
      `POST /api/${PLAYERS}/${id}/mutate/addGold HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer alice\r\n` +
        `content-type: application/json\r\ncontent-length: ${body.length}\r\n` +
        `x-eventsync-client-id: ${clientId}\r\nx-eventsync-mutation-id: 1\r\n\r\n${body}`,
    );
    while ((await gold(id)) !== 2) await new Promise((resolve) => setTimeout(resolve, 10));
    socket.destroy();
    // The resend is answered from the record, and runs nothing.
    expect((await post(id, 'addGold', { amount: 2 }, sdk(1))).body).toEqual({
      mid: 1,
      seq: 2,
      version: 2,
      result: { gold: 2 },
      duplicate: true,
    });
    expect(await gold(id)).toBe(2);
    expect((await post(id, 'addGold', { amount: 2 }, sdk(3))).body.error.code).toBe('out_of_order');
    // The WebSocket of the same client id continues the count.
    const ws = await TestClient.connect(`ws://127.0.0.1:${server.port}/sync`);
    ws.send({ type: 'hello', protocol: 2, clientId, token: 'alice' });
    expect(await ws.next('welcome')).toMatchObject({ lastMid: 1 });
    ws.send({
      type: 'mutate',
      mid: 2,
      collection: PLAYERS,
      documentId: id,
      name: 'addGold',
      args: { amount: 1 },
    });
    expect(await ws.next('mutated')).toMatchObject({ mid: 2, seq: 3 });
    ws.close();
    expect(await gold(id)).toBe(3);
    // Another principal may not use the client id.
    const taken = await post(id, 'addGold', { amount: 2 }, { ...sdk(3), authorization: 'Bearer bob' });
    expect([taken.status, taken.body.error.code]).toEqual([403, 'forbidden']);
    expect(await gold(id)).toBe(3);
  });

  it('refuses bad requests with typed errors and changes nothing', async () => {
    const id = await newPlayer();
    const cases: [Parameters<typeof post>, number, string][] = [
      [[id, 'nothing', {}], 404, 'unknown_mutator'],
      [[id, 'addGold', { amount: 0 }], 400, 'validation'],
      [[id, 'explode', undefined], 500, 'mutation_failed'],
      [['missing', 'addGold', { amount: 1 }], 404, 'not_found'],
      [[id, 'addGold', { amount: 1 }, { authorization: 'Bearer mallory' }], 403, 'forbidden'],
      [[id, 'addGold', '{"amount": 1', {}], 400, 'bad_message'],
      [[id, 'addGold', { amount: 1 }, { 'content-type': 'text/plain' }], 415, 'unsupported_media_type'],
      [[id, 'addGold', undefined, { 'content-type': 'text/plain' }], 415, 'unsupported_media_type'],
      [[id, 'addGold', { amount: 1, pad: 'x'.repeat(70_000) }], 413, 'too_large'],
      [[id, 'addGold', { amount: 1 }, { 'idempotency-key': 'has space' }], 400, 'validation'],
      [[id, 'addGold', { amount: 1 }, { 'idempotency-key': 'k'.repeat(129) }], 400, 'validation'],
      [
        [id, 'addGold', { amount: 1 }, { 'x-eventsync-client-id': 'c', 'x-eventsync-mutation-id': '0' }],
        400,
        'validation',
      ],
      [
        [
          id,
          'addGold',
          { amount: 1 },
          { 'x-eventsync-client-id': 'c', 'x-eventsync-mutation-id': '9007199254740993' },
        ],
        400,
        'validation',
      ],
      [[id, 'addGold', { amount: 1 }, { 'x-eventsync-mutation-id': '1' }], 400, 'validation'],
      [
        [
          id,
          'addGold',
          { amount: 1 },
          { 'x-eventsync-client-id': 'rest:alice:k', 'x-eventsync-mutation-id': '1' },
        ],
        403,
        'forbidden',
      ],
      [
        [id, 'addGold', { amount: 1 }, { 'idempotency-key': 'k', 'x-eventsync-client-id': 'c' }],
        400,
        'validation',
      ],
    ];
    for (const [args, status, code] of cases) {
      const answer = await post(...args);
      expect([answer.status, answer.body?.error?.code], JSON.stringify(args).slice(0, 200)).toEqual([
        status,
        code,
      ]);
    }
    expect(await (await players()).findOne(id)).toMatchObject({ gold: 0, version: 1 });
    expect(await (await players()).findOne('missing')).toBeUndefined();
  });

  it('starts an SSE stream opened with ?protocol=2 with a welcome that says lastMid; without it, none', async () => {
    const id = await newPlayer();
    const clientId = uniqueCollection('client');
    await post(
      id,
      'addGold',
      { amount: 1 },
      { 'x-eventsync-client-id': clientId, 'x-eventsync-mutation-id': '1' },
    );
    const path = `/sse/${PLAYERS}/${id}?clientId=${clientId}`;
    const withWelcome = await SseClient.open(base, `${path}&protocol=2`, { authorization: 'Bearer alice' });
    const plain = await SseClient.open(base, path, { authorization: 'Bearer alice' });
    try {
      await withWelcome.until((c) => c.of('synced').length > 0);
      await plain.until((c) => c.of('synced').length > 0);
      expect(withWelcome.messages[0]).toMatchObject({ type: 'welcome', protocol: 2, clientId, lastMid: 1 });
      expect(plain.of('welcome')).toEqual([]);
    } finally {
      withWelcome.destroy();
      plain.destroy();
    }
    const wrong = await SseClient.open(base, `${path}&protocol=7`, { authorization: 'Bearer alice' });
    expect(wrong.status).toBe(400);
    wrong.destroy();
  });
});
