/**
 * SSE client streams (`GET /sse`): one stream per client, whose subscriptions are added and
 * removed with requests to `/sse/streams/:streamId/…` (src/server/stream-control.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import { attach } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { loopbackServer } from '../support/loopback-server.js';
import { http, SseClient } from './http-client.js';

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
}

const GAMES = uniqueCollection('streams_games');

async function start(openDb: () => Promise<Database>, limits: Partial<SyncEngine['limits']> = {}) {
  const db = await openDb();
  const engine = await SyncEngine.create({
    db,
    authenticate: ({ token }) => (token ? { id: token } : undefined),
    authorize: (principal, action, _collection, documentId) =>
      action !== 'read' || !documentId?.startsWith('secret') || principal.id === 'admin',
    limits,
  });
  const { port, close } = await loopbackServer(engine, (server) =>
    attach(server, engine, { sse: { heartbeatMs: 1000, lingerMs: 500 } }),
  );
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await close();
    await db.close();
  };
  return { engine, base, stop };
}

afterAll(closeSharedPglite);

describe.each(syncBackends)('SSE client streams on %s', (_backend, openDb) => {
  let engine: SyncEngine;
  let base: string;
  let stop: () => Promise<void>;
  const open: SseClient[] = [];

  beforeAll(async () => {
    ({ engine, base, stop } = await start(openDb));
  });
  afterAll(async () => {
    for (const c of open.splice(0)) c.destroy();
    await stop();
  });

  /** A client stream of `who`, welcomed: the stream and its id. */
  async function stream(who = 'alice', at = base) {
    const c = await SseClient.open(at, '/sse?clientId=' + `${who}-client`, {
      authorization: `Bearer ${who}`,
    });
    open.push(c);
    expect(c.status).toBe(200);
    await c.until((s) => s.of('welcome').length === 1);
    const streamId = c.of('welcome')[0]!.streamId!;
    return { c, streamId };
  }

  const post = (streamId: string, what: string, body: unknown, who = 'alice', at = base) =>
    http(at, 'POST', `/sse/streams/${streamId}/${what}`, {
      body,
      headers: { authorization: `Bearer ${who}` },
    });
  const synced = (c: SseClient, sub: string) => c.of('synced').some((m) => m.sub === sub);
  const games = () => engine.collection<Game>(GAMES);

  it('welcomes with a stream id, then carries the subscriptions added and removed on it', async () => {
    const g = await games();
    for (let i = 0; i < 20; i++) await g.findOneAndUpsert({ _id: `d${i}`, name: `d${i}`, gold: 0 });
    const { c, streamId } = await stream();
    expect(streamId).toMatch(/^[0-9a-f]{32}$/);
    expect(c.of('welcome')[0]).toMatchObject({ protocol: 2, clientId: 'alice-client', lastMid: 0 });
    for (let i = 0; i < 20; i++) {
      const res = await post(streamId, 'subscriptions', {
        sub: `s${i}`,
        collection: GAMES,
        documentId: `d${i}`,
      });
      expect(res.status).toBe(202);
    }
    await c.until((s) => Array.from({ length: 20 }, (_, i) => synced(s, `s${i}`)).every(Boolean));
    for (let i = 0; i < 20; i++) await g.updateOne(`d${i}`, { $inc: { gold: 1 } });
    await c.until((s) => Array.from({ length: 20 }, (_, i) => s.seqs(`d${i}`).length === 2).every(Boolean));

    // A collection subscription on the same stream, with its snapshot; then one document less.
    const typed = { type: 'subscribe', sub: 'all', collection: GAMES, filter: { gold: 1 } };
    expect((await post(streamId, 'subscriptions', typed)).status).toBe(202);
    await c.until((s) => synced(s, 'all'));
    const gone = await http(base, 'DELETE', `/sse/streams/${streamId}/subscriptions/s3`, {
      headers: { authorization: 'Bearer alice' },
    });
    expect(gone.status).toBe(202);
    await c.until((s) => s.of('unsubscribed').some((m) => m.sub === 's3'));
    // d3 is still covered by `all`; d4 only by s4: both events come, once each.
    await g.updateOne('d3', { $inc: { gold: 1 } });
    await g.updateOne('d4', { $inc: { gold: 1 } });
    await c.until((s) => s.seqs('d4').length === 3);
    await c.until((s) => s.of('leave').some((m) => m.documentId === 'd3'));
    expect(c.seqs('d4')).toEqual([1, 2, 3]);

    // Acks move the client's position: a position-less catch-up starts after it.
    expect((await post(streamId, 'acks', { collection: GAMES, documentId: 'd5', seq: 2 })).status).toBe(202);
    await expect
      .poll(async () => (await engine.missingEvents('alice-client', GAMES, 'd5')).events.length)
      .toBe(0);
    expect(c.of('error')).toEqual([]);
    expect(c.ended).toBe(false);
  });

  it("gives a client stream without ?clientId= a new client id, the principal's", async () => {
    const c = await SseClient.open(base, '/sse', { authorization: 'Bearer alice' });
    open.push(c);
    await c.until((s) => s.of('welcome').length === 1);
    const { clientId } = c.of('welcome')[0]!;
    expect(clientId).toMatch(/^sse-/);
    await expect(engine.claimClient(clientId, 'mallory')).rejects.toMatchObject({ code: 'forbidden' });
    await engine.claimClient(clientId, 'alice');
  });

  it('catches a subscription up from afterSeq, exactly as over WebSocket', async () => {
    const g = await games();
    await g.findOneAndUpsert({ _id: 'late', name: 'late', gold: 0 });
    for (let i = 0; i < 4; i++) await g.updateOne('late', { $inc: { gold: 1 } });
    const { c, streamId } = await stream();
    await post(streamId, 'subscriptions', { sub: 'l', collection: GAMES, documentId: 'late', afterSeq: 3 });
    await c.until((s) => synced(s, 'l'));
    expect(c.seqs('late')).toEqual([4, 5]);
    expect(c.of('snapshot')).toEqual([]);
  });

  it('answers a refused subscription on the stream, which stays open for the others', async () => {
    const { c, streamId } = await stream('bob');
    await post(streamId, 'subscriptions', { sub: 'x', collection: GAMES, documentId: 'secret1' }, 'bob');
    await post(streamId, 'subscriptions', { sub: 'y', collection: GAMES, documentId: 'd1' }, 'bob');
    await c.until((s) => synced(s, 'y'));
    expect(c.of('error')).toEqual([expect.objectContaining({ code: 'forbidden', ref: 'x' })]);
    expect(c.ended).toBe(false);
    // An unknown sub to unsubscribe: not_found on the stream, as over WebSocket.
    await http(base, 'DELETE', `/sse/streams/${streamId}/subscriptions/nope`, {
      headers: { authorization: 'Bearer bob' },
    });
    await c.until((s) => s.of('error').some((m) => m.ref === 'nope'));
  });

  it('refuses requests it cannot take, with typed errors, and changes nothing', async () => {
    const { c, streamId } = await stream();
    const doc = { sub: 'ok', collection: GAMES, documentId: 'd1' };
    const code = (res: { status: number; body: { error?: { code?: string } } }) => [
      res.status,
      res.body.error?.code,
    ];
    expect(code(await post('0'.repeat(32), 'subscriptions', doc))).toEqual([404, 'not_found']);
    expect(code(await post('not-a-stream', 'subscriptions', doc))).toEqual([404, 'not_found']);
    expect(code(await post(streamId, 'subscriptions', doc, 'mallory'))).toEqual([403, 'forbidden']);
    expect(code(await http(base, 'POST', `/sse/streams/${streamId}/subscriptions`, { body: doc }))).toEqual([
      401,
      'unauthorized',
    ]);
    expect(code(await post(streamId, 'subscriptions', { sub: 'b', collection: 'Bad!' }))).toEqual([
      400,
      'bad_message',
    ]);
    expect(code(await post(streamId, 'subscriptions', { ...doc, type: 'mutate' }))).toEqual([
      400,
      'bad_message',
    ]);
    expect(code(await post(streamId, 'subscriptions', [doc]))).toEqual([400, 'bad_message']);
    expect(code(await post(streamId, 'subscriptions', '{nope'))).toEqual([415, 'unsupported_media_type']);
    const json = { authorization: 'Bearer alice', 'content-type': 'application/json' };
    const notJson = await http(base, 'POST', `/sse/streams/${streamId}/subscriptions`, {
      body: '{nope',
      headers: json,
    });
    expect(code(notJson)).toEqual([400, 'bad_message']);
    const huge = await post(streamId, 'subscriptions', {
      ...doc,
      pad: 'x'.repeat(engine.limits.maxMessageBytes),
    });
    expect(huge.status).toBe(413);
    const wrongMethod = await http(base, 'GET', `/sse/streams/${streamId}/subscriptions`, {
      headers: { authorization: 'Bearer alice' },
    });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.allow).toBe('POST');
    expect(code(await post(streamId, 'elsewhere', doc))).toEqual([404, 'not_found']);
    // None of these reached the stream.
    await post(streamId, 'subscriptions', doc);
    await c.until((s) => synced(s, 'ok'));
    expect(c.of('subscribed').map((m) => m.sub)).toEqual(['ok']);
    expect(c.of('error')).toEqual([]);

    // A closed stream forgets its id.
    c.destroy();
    await expect.poll(async () => (await post(streamId, 'subscriptions', doc)).status).toBe(404);
  });

  it('bounds a stream by the session limits: subscriptions per connection, messages per second', async () => {
    const small = await start(openDb, { maxSubscriptions: 2, maxMessagesPerSecond: 5 });
    try {
      const { c, streamId } = await stream('alice', small.base);
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          post(
            streamId,
            'subscriptions',
            { sub: `s${i}`, collection: GAMES, documentId: `d${i}` },
            'alice',
            small.base,
          ),
        ),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s !== 202 && s !== 429)).toEqual([]);
      expect(answers.find((a) => a.status === 429)?.body.error.code).toBe('rate_limited');
      await c.until((s) => s.of('error').some((m) => m.code === 'rate_limited'));
      expect(c.of('subscribed').length).toBe(2);
      expect(c.ended).toBe(false);
    } finally {
      await small.stop();
    }
  });
});
