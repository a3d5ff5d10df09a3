import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import type { SyncEvent } from '../../src/core/events.js';
import { attach } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { http } from './http-client.js';

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  [key: string]: unknown;
}

// The collections of these tests: names no other file uses (PostgreSQL is shared by all).
const GAMES = uniqueCollection('games');
const SHOP = uniqueCollection('shop');
const READONLY = uniqueCollection('readonly');
const HIDDEN = uniqueCollection('hidden');
const PAGED = uniqueCollection('paged');

// The server of the backend under test (each describe.each block starts its own).
let db: Database;
let server: Server;
let engine: SyncEngine;
let base: string;
const logged: { details: object; message?: string }[] = [];

async function startServer(open: () => Promise<Database>): Promise<void> {
  const quiet = () => {};
  db = await open();
  engine = await SyncEngine.create({
    db,
    authenticate: ({ token }) => {
      if (token === 'boom') throw new Error('the token service is down (secret detail)');
      return token ? { id: token } : undefined;
    },
    authorize: (principal, action, collection, documentId) => {
      if (principal.id === 'admin') return true;
      if (documentId?.startsWith('secret')) return false;
      if (collection === HIDDEN) return false;
      return action !== 'write' || collection !== READONLY;
    },
    limits: { maxMessageBytes: 4096 },
    logger: {
      error: (details, message) => logged.push({ details, message }),
      warn: quiet,
      info: quiet,
      debug: quiet,
    },
  });
  server = createServer();
  attach(server, engine);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function stopServer(): Promise<void> {
  await engine.close();
  await new Promise((resolve) => server.close(resolve));
  await db.close();
}

afterAll(closeSharedPglite);

const auth = (token = 'alice') => ({ authorization: `Bearer ${token}` });
const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = auth()) =>
  http(base, method, path, { body, headers: { 'content-type': 'application/json', ...headers } });
const errorOf = (res: { status: number; body: { error?: { code: string } } }) => ({
  status: res.status,
  code: res.body.error?.code,
});
const games = () => engine.collection<Game>(GAMES);

describe.each(syncBackends)('REST on %s', (_backend, open) => {
  beforeAll(() => startServer(open));
  afterAll(stopServer);

  describe('REST: create', () => {
    it('POST /api/:c creates: 201, Location, ETag, the event names the principal', async () => {
      const res = await api('POST', `/api/${GAMES}`, { _id: 'c1', name: 'one', gold: 5 });
      expect(res.status).toBe(201);
      expect(res.body).toEqual({ _id: 'c1', name: 'one', gold: 5, version: 1 });
      expect(res.headers.location).toBe(`/api/${GAMES}/c1`);
      expect(res.headers.etag).toMatch(/^"\d+-1"$/);
      const [event] = await engine.events.getEvents(GAMES, 'c1');
      expect(event).toMatchObject({ operation: 'create', seq: 1, clientId: 'alice' });
    });

    it('acts for a principal whose id is not an id (auth0|42) under a stable p-<hash> client id', async () => {
      const token = auth('auth0|42');
      expect((await api('POST', '/api/games', { _id: 'c-auth0', name: 'a', gold: 1 }, token)).status).toBe(
        201,
      );
      expect((await api('PATCH', '/api/games/c-auth0', { gold: 2 }, token)).status).toBe(200);
      expect((await api('POST', '/api/sync/games/c-auth0', { afterSeq: 0 }, token)).status).toBe(200);
      const events = await engine.events.getEvents('games', 'c-auth0');
      const actors = events.map((event) => event.clientId);
      expect(actors).toEqual([actors[0], actors[0]]);
      expect(actors[0]).toMatch(/^p-[0-9a-f]{32}$/);
    });

    it('generates an ObjectId when the document has no _id', async () => {
      const res = await api('POST', `/api/${GAMES}`, { name: 'anon', gold: 0 });
      expect(res.status).toBe(201);
      expect(res.body._id).toMatch(/^[0-9a-f]{24}$/);
      expect(res.headers.location).toBe(`/api/${GAMES}/${res.body._id}`);
    });

    it('refuses an existing id (409 already_exists), a non-object, bad JSON, bad keys, a bad id', async () => {
      await api('POST', `/api/${GAMES}`, { _id: 'dup', name: 'd', gold: 0 });
      expect(errorOf(await api('POST', `/api/${GAMES}`, { _id: 'dup', name: 'again', gold: 1 }))).toEqual({
        status: 409,
        code: 'already_exists',
      });
      expect(await (await games()).findOne('dup')).toMatchObject({ name: 'd' });
      expect(errorOf(await api('POST', `/api/${GAMES}`, [1, 2]))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('POST', `/api/${GAMES}`, '{"name": '))).toEqual({
        status: 400,
        code: 'bad_message',
      });
      expect(errorOf(await api('POST', `/api/${GAMES}`, ''))).toEqual({ status: 400, code: 'bad_message' });
      expect(errorOf(await api('POST', `/api/${GAMES}`, '{"_id":"p1","__proto__":{"x":1}}'))).toEqual({
        status: 400,
        code: 'bad_message',
      });
      expect(await (await games()).findOne('p1')).toBeUndefined();
      expect(errorOf(await api('POST', `/api/${GAMES}`, { _id: 'has space' }))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('POST', `/api/${GAMES}`, { _id: 7 }))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('POST', '/api/Bad-Name', { name: 'x' }))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('POST', `/api/${GAMES}`, `${'['.repeat(200)}${']'.repeat(200)}`))).toEqual({
        status: 400,
        code: 'bad_message',
      });
    });

    it('refuses a body over limits.maxMessageBytes with 413 too_large, by Content-Length or while reading', async () => {
      const big = { _id: 'big', name: 'x'.repeat(5000), gold: 0 };
      const declared = await api('POST', `/api/${GAMES}`, big);
      expect(errorOf(declared)).toEqual({ status: 413, code: 'too_large' });
      expect(declared.headers.connection).toBe('close');
      // Chunked: no Content-Length, the limit applies while reading.
      const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          new URL(`/api/${GAMES}`, base),
          {
            method: 'POST',
            headers: { ...auth(), 'transfer-encoding': 'chunked', 'content-type': 'application/json' },
          },
          (res) => {
            let body = '';
            res.on('data', (c) => {
              body += c;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.write(JSON.stringify(big).slice(0, 3000));
        req.write(JSON.stringify(big).slice(3000));
        req.end();
      });
      expect(streamed.status).toBe(413);
      expect(JSON.parse(streamed.body).error.code).toBe('too_large');
      expect(await (await games()).findOne('big')).toBeUndefined();
    });

    it('asks authorize write with the id (403 forbidden), and authenticates (401 unauthorized)', async () => {
      expect(errorOf(await api('POST', `/api/${READONLY}`, { name: 'x' }))).toEqual({
        status: 403,
        code: 'forbidden',
      });
      expect(errorOf(await api('POST', `/api/${GAMES}`, { _id: 'secret-new', name: 'x' }))).toEqual({
        status: 403,
        code: 'forbidden',
      });
      const anonymous = await api('POST', `/api/${GAMES}`, { name: 'x' }, {});
      expect(errorOf(anonymous)).toEqual({ status: 401, code: 'unauthorized' });
      expect(anonymous.headers['www-authenticate']).toBe('Bearer');
      expect((await api('POST', `/api/${READONLY}?token=admin`, { _id: 'ro1', name: 'x' }, {})).status).toBe(
        201,
      );
    });
  });

  describe('REST: read', () => {
    beforeAll(async () => {
      const shop = await engine.collection<Game>(SHOP);
      for (const [i, name] of ['axe', 'bow', 'cap', 'dagger', 'egg'].entries()) {
        await shop.findOneAndUpsert({ _id: `item${i}`, name, gold: i * 10 });
      }
      await shop.findOneAndUpsert({ _id: 'secret-item', name: 'sword', gold: 100 });
    });

    it('GET /api/:c/:id returns the document with its ETag', async () => {
      const res = await api('GET', `/api/${SHOP}/item1`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ _id: 'item1', name: 'bow', version: 1 });
      expect(res.headers.etag).toMatch(/^"\d+-1"$/);
    });

    it('GET one: 404 not_found, 403 forbidden, 400 for a bad id', async () => {
      expect(errorOf(await api('GET', `/api/${SHOP}/nothing`))).toEqual({ status: 404, code: 'not_found' });
      expect(errorOf(await api('GET', `/api/${SHOP}/secret-item`))).toEqual({
        status: 403,
        code: 'forbidden',
      });
      expect((await api('GET', `/api/${SHOP}/secret-item`, undefined, auth('admin'))).status).toBe(200);
      expect(errorOf(await api('GET', `/api/${SHOP}/.dot`))).toEqual({ status: 400, code: 'validation' });
      expect(errorOf(await api('GET', `/api/${SHOP}/%E0%A4%A`))).toEqual({
        status: 400,
        code: 'bad_message',
      });
    });

    it('GET /api/:c with filter, sort, limit and skip; leaves out what the principal may not read', async () => {
      const q = (params: Record<string, unknown>) =>
        new URLSearchParams(
          Object.entries(params).map(([k, v]): [string, string] => [
            k,
            typeof v === 'string' ? v : JSON.stringify(v),
          ]),
        ).toString();
      const all = await api('GET', `/api/${SHOP}?${q({ sort: { gold: 1 } })}`);
      expect(all.status).toBe(200);
      expect(all.body.map((d: Game) => d.name)).toEqual(['axe', 'bow', 'cap', 'dagger', 'egg']);
      const admin = await api('GET', `/api/${SHOP}`, undefined, auth('admin'));
      expect(admin.body).toHaveLength(6);
      const some = await api(
        'GET',
        `/api/${SHOP}?${q({ filter: { gold: { $gte: 20 } }, sort: { gold: -1 }, limit: '2', skip: '1' })}`,
      );
      // By gold, descending: egg, dagger, cap. secret-item (100) is not readable, so it is out
      // before filter, sort, skip and limit run (no authorizeQuery: in memory), and shapes nothing.
      expect(some.body.map((d: Game) => d.name)).toEqual(['dagger', 'cap']);
      const first = await api(
        'GET',
        `/api/${SHOP}?${q({ filter: { gold: { $gte: 20 } }, sort: { gold: -1 }, limit: '2' })}`,
      );
      expect(first.body.map((d: Game) => d.name)).toEqual(['egg', 'dagger']);
      expect((await api('GET', '/api/empty_collection')).body).toEqual([]);
    });

    it('GET many: 400 for bad filter, sort, limit; 403 for a collection it may not read', async () => {
      expect(errorOf(await api('GET', `/api/${SHOP}?filter=%7Bnope`))).toEqual({
        status: 400,
        code: 'bad_message',
      });
      expect(errorOf(await api('GET', `/api/${SHOP}?filter=%5B1%5D`))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(
        errorOf(await api('GET', `/api/${SHOP}?filter=${encodeURIComponent('{"$where":"1"}')}`)),
      ).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('GET', `/api/${SHOP}?sort=${encodeURIComponent('{"gold":2}')}`))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('GET', `/api/${SHOP}?limit=5000`))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('GET', `/api/${SHOP}?skip=-1`))).toEqual({ status: 400, code: 'validation' });
      expect(errorOf(await api('GET', `/api/${HIDDEN}`))).toEqual({ status: 403, code: 'forbidden' });
    });
  });

  describe('REST: PATCH', () => {
    it('applies an RFC 7396 merge patch: members merge, null removes, arrays replace', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'm1', name: 'm', gold: 1, stats: { hp: 10, mp: 5 }, tags: ['a', 'b'] });
      const res = await api('PATCH', `/api/${GAMES}/m1`, {
        gold: 2,
        stats: { mp: null, str: { base: 3, bonus: null } },
        tags: ['c'],
        name: null,
      });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        _id: 'm1',
        gold: 2,
        stats: { hp: 10, str: { base: 3 } },
        tags: ['c'],
        version: 2,
      });
      expect(res.headers.etag).toMatch(/^"\d+-2"$/);
      const events = await engine.events.getEvents(GAMES, 'm1', 1);
      expect(events[0]).toMatchObject({ operation: 'update', seq: 2, clientId: 'alice' });
      expect(events[0]!.diff!.mergePatch).toEqual({
        gold: 2,
        name: null,
        stats: { mp: null, str: { base: 3 } },
        tags: ['c'],
        version: 2,
      });
      // An empty patch changes nothing and records nothing.
      const same = await api('PATCH', `/api/${GAMES}/m1`, {});
      expect(same.body.version).toBe(2);
      expect(await engine.events.getLatestSequence(GAMES, 'm1')).toBe(2);
    });

    it('applies MongoDB update operators', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'o1', name: 'o', gold: 1, log: [] });
      const res = await api('PATCH', `/api/${GAMES}/o1`, { $inc: { gold: 10 }, $push: { log: 'bonus' } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ gold: 11, log: ['bonus'], version: 2 });
      expect(errorOf(await api('PATCH', `/api/${GAMES}/o1`, { $frobnicate: { gold: 1 } }))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('PATCH', `/api/${GAMES}/o1`, { $inc: { gold: 'x' } }))).toEqual({
        status: 400,
        code: 'validation',
      });
    });

    it('If-Match: applies at that ETag, else 409 version_conflict and nothing changes', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'v1', name: 'v', gold: 0 });
      const first = (await api('GET', `/api/${GAMES}/v1`)).headers.etag as string;
      const at = (version: number) => first.replace(/-1"$/, `-${version}"`);
      const ok = await api('PATCH', `/api/${GAMES}/v1`, { gold: 1 }, { ...auth(), 'if-match': first });
      expect(ok.status).toBe(200);
      expect(ok.body.version).toBe(2);
      expect(ok.headers.etag).toBe(at(2));
      const stale = await api('PATCH', `/api/${GAMES}/v1`, { gold: 99 }, { ...auth(), 'if-match': first });
      expect(errorOf(stale)).toEqual({ status: 409, code: 'version_conflict' });
      const staleOps = await api(
        'PATCH',
        `/api/${GAMES}/v1`,
        { $set: { gold: 99 } },
        { ...auth(), 'if-match': first },
      );
      expect(errorOf(staleOps)).toEqual({ status: 409, code: 'version_conflict' });
      const okOps = await api(
        'PATCH',
        `/api/${GAMES}/v1`,
        { $inc: { gold: 1 } },
        { ...auth(), 'if-match': `W/${at(2)}` },
      );
      expect(okOps.body).toMatchObject({ gold: 2, version: 3 });
      expect(await g.findOne('v1')).toMatchObject({ gold: 2, version: 3 });
      expect(await engine.events.getLatestSequence(GAMES, 'v1')).toBe(3);
      // A bare version could match a document deleted and created again: refused.
      for (const bad of ['soon', '3', '"3"', 'W/"3"', '"x-3"']) {
        const res = await api('PATCH', `/api/${GAMES}/v1`, { gold: 1 }, { ...auth(), 'if-match': bad });
        expect(errorOf(res)).toEqual({ status: 400, code: 'validation' });
      }
    });

    it('If-Match of a deleted document never matches its successor with the same id and version', async () => {
      const g = await games();
      const created = await api('POST', `/api/${GAMES}`, { _id: 'inc1', name: 'alice', gold: 1 });
      const old = created.headers.etag as string;
      await g.deleteOne('inc1');
      await g.findOneAndUpsert({ _id: 'inc1', name: 'mallory', gold: 7 });
      const renewed = (await api('GET', `/api/${GAMES}/inc1`)).headers.etag as string;
      expect(renewed).toMatch(/-1"$/);
      expect(renewed).not.toBe(old);
      expect(
        errorOf(await api('PATCH', `/api/${GAMES}/inc1`, { gold: 0 }, { ...auth(), 'if-match': old })),
      ).toEqual({
        status: 409,
        code: 'version_conflict',
      });
      expect(
        errorOf(await api('DELETE', `/api/${GAMES}/inc1`, undefined, { ...auth(), 'if-match': old })),
      ).toEqual({
        status: 409,
        code: 'version_conflict',
      });
      expect(await g.findOne('inc1')).toMatchObject({ name: 'mallory', gold: 7, version: 1 });
      const ok = await api('PATCH', `/api/${GAMES}/inc1`, { gold: 8 }, { ...auth(), 'if-match': renewed });
      expect(ok.status).toBe(200);
    });

    it('refuses: a mix of operators and members, a non-object, bad keys, _id changes, 404, 403', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'r1', name: 'r', gold: 0 });
      const refused = [
        [{ $set: { gold: 1 }, name: 'x' }, 400, 'validation'],
        [[{ gold: 1 }], 400, 'validation'],
        ['"text"', 400, 'validation'],
        // Refused when the body is parsed (like a frame): zod or a draft could otherwise drop the key silently.
        ['{"__proto__": {"polluted": true}}', 400, 'bad_message'],
        [{ nested: { 'a.b': 1 } }, 400, 'validation'],
        [{ nested: { $bad: 1 } }, 400, 'validation'],
        [{ _id: 'other' }, 400, 'validation'],
        ['{', 400, 'bad_message'],
      ] as const;
      for (const [body, status, code] of refused) {
        expect(errorOf(await api('PATCH', `/api/${GAMES}/r1`, body)), JSON.stringify(body)).toEqual({
          status,
          code,
        });
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(await g.findOne('r1')).toEqual({ _id: 'r1', name: 'r', gold: 0, version: 1 });
      expect(errorOf(await api('PATCH', `/api/${GAMES}/none`, { gold: 1 }))).toEqual({
        status: 404,
        code: 'not_found',
      });
      expect(errorOf(await api('PATCH', `/api/${GAMES}/secret-x`, { gold: 1 }))).toEqual({
        status: 403,
        code: 'forbidden',
      });
    });
  });

  describe('REST: DELETE', () => {
    it('deletes and returns the document; then 404', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'd1', name: 'd', gold: 3 });
      const res = await api('DELETE', `/api/${GAMES}/d1`);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ _id: 'd1', name: 'd', gold: 3, version: 1 });
      expect(errorOf(await api('GET', `/api/${GAMES}/d1`))).toEqual({ status: 404, code: 'not_found' });
      expect(errorOf(await api('DELETE', `/api/${GAMES}/d1`))).toEqual({ status: 404, code: 'not_found' });
      const events = await engine.events.getEvents(GAMES, 'd1');
      expect(events.map((e) => [e.operation, e.clientId])).toEqual([
        ['create', 'server'],
        ['delete', 'alice'],
      ]);
    });

    it('If-Match on DELETE: deletes at that version, else 409 version_conflict and nothing is deleted', async () => {
      const g = await games();
      const { incarnation } = await g.findOneAndUpsert({ _id: 'd2', name: 'd', gold: 3 });
      await g.updateOne('d2', { $inc: { gold: 1 } });
      const stale = await api('DELETE', `/api/${GAMES}/d2`, undefined, {
        ...auth(),
        'if-match': `"${incarnation}-1"`,
      });
      expect(errorOf(stale)).toEqual({ status: 409, code: 'version_conflict' });
      expect(await g.findOne('d2')).toMatchObject({ version: 2, gold: 4 });
      const bad = await api('DELETE', `/api/${GAMES}/d2`, undefined, { ...auth(), 'if-match': 'soon' });
      expect(errorOf(bad)).toEqual({ status: 400, code: 'validation' });
      const ok = await api('DELETE', `/api/${GAMES}/d2`, undefined, {
        ...auth(),
        'if-match': `"${incarnation}-2"`,
      });
      expect(ok.status).toBe(200);
      expect(await g.findOne('d2')).toBeUndefined();
      const gone = await api('DELETE', `/api/${GAMES}/d2`, undefined, {
        ...auth(),
        'if-match': `"${incarnation}-2"`,
      });
      expect(errorOf(gone)).toEqual({ status: 404, code: 'not_found' });
    });

    it('refuses unauthorized writers', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'secret-d', name: 'd', gold: 3 });
      expect(errorOf(await api('DELETE', `/api/${GAMES}/secret-d`))).toEqual({
        status: 403,
        code: 'forbidden',
      });
      expect(await g.findOne('secret-d')).toBeDefined();
    });
  });

  describe('REST: events and sync', () => {
    beforeAll(async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'e1', name: 'e', gold: 0 });
      for (let i = 0; i < 5; i++)
        await g.updateOne('e1', { $inc: { gold: 1 } }, { clientId: i < 3 ? 'p1' : 'p2' });
    });

    it('GET /api/:c/:id/events?after= returns the events after a seq, with a limit', async () => {
      const res = await api('GET', `/api/${GAMES}/e1/events?after=3`);
      expect(res.status).toBe(200);
      expect(res.body.events.map((e: SyncEvent) => e.seq)).toEqual([4, 5, 6]);
      const limited = await api('GET', `/api/${GAMES}/e1/events?after=0&limit=2`);
      expect(limited.body.events.map((e: SyncEvent) => e.seq)).toEqual([1, 2]);
      expect((await api('GET', `/api/${GAMES}/never/events`)).body).toEqual({ events: [] });
    });

    it('events: 400 for a bad after or limit, 403 for a document it may not read', async () => {
      expect(errorOf(await api('GET', `/api/${GAMES}/e1/events?after=x`))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('GET', `/api/${GAMES}/e1/events?limit=100000`))).toEqual({
        status: 400,
        code: 'validation',
      });
      expect(errorOf(await api('GET', `/api/${GAMES}/secret-e/events`))).toEqual({
        status: 403,
        code: 'forbidden',
      });
    });

    it('POST /api/sync never answers with a deleted incarnation: a re-created id starts at its create', async () => {
      const g = await games();
      await g.findOneAndUpsert({ _id: 'again1', name: 'alice-secret', gold: 1 });
      await g.updateOne('again1', { $set: { name: 'alice-secret-2' } });
      await g.deleteOne('again1');
      await g.findOneAndUpsert({ _id: 'again1', name: 'mallory', gold: 7 });
      const res = await api('POST', `/api/sync/${GAMES}/again1`, { afterSeq: 0 });
      expect(res.status).toBe(200);
      expect(res.body.snapshot).toMatchObject({ seq: 4, state: { name: 'mallory', gold: 7, version: 1 } });
      expect(res.body.events).toEqual([]);
      expect(JSON.stringify(res.body)).not.toContain('alice-secret');
    });

    it('POST /api/sync/:c/:id answers { afterSeq } and { vectorClock } with exactly the missing events', async () => {
      const bySeq = await api('POST', `/api/sync/${GAMES}/e1`, { afterSeq: 4 });
      expect(bySeq.status).toBe(200);
      expect(bySeq.body.snapshot).toBeUndefined();
      expect(bySeq.body.events.map((e: SyncEvent) => e.seq)).toEqual([5, 6]);
      // Seen: the server's create and p1's three updates; not p2's two.
      const byClock = await api('POST', `/api/sync/${GAMES}/e1`, {
        vectorClock: { server: 1, p1: 3 },
        clientId: 'c-7',
      });
      expect(byClock.body.events.map((e: SyncEvent) => [e.seq, e.clientId])).toEqual([
        [5, 'p2'],
        [6, 'p2'],
      ]);
      const fromStart = await api('POST', `/api/sync/${GAMES}/e1`, '');
      expect(fromStart.body.events.map((e: SyncEvent) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('sync: 400 bad_message for a body that is not a position, 403, 401', async () => {
      for (const body of ['{', { afterSeq: -1 }, { afterSeq: 1, vectorClock: {} }, { since: 3 }, [1]]) {
        expect(errorOf(await api('POST', `/api/sync/${GAMES}/e1`, body)), JSON.stringify(body)).toEqual({
          status: 400,
          code: 'bad_message',
        });
      }
      expect(errorOf(await api('POST', `/api/sync/${GAMES}/secret-e`, { afterSeq: 0 }))).toEqual({
        status: 403,
        code: 'forbidden',
      });
      expect(errorOf(await api('POST', `/api/sync/${GAMES}/e1`, { afterSeq: 0 }, {}))).toEqual({
        status: 401,
        code: 'unauthorized',
      });
    });
  });

  describe('REST: routing and failures', () => {
    it('404 for unknown routes, 405 with Allow for a wrong method', async () => {
      expect(errorOf(await api('GET', '/api'))).toEqual({ status: 404, code: 'not_found' });
      expect(errorOf(await api('GET', `/api/${GAMES}/a/b/c`))).toEqual({ status: 404, code: 'not_found' });
      expect(errorOf(await api('GET', `/api/${GAMES}/a/history`))).toEqual({
        status: 404,
        code: 'not_found',
      });
      const put = await api('PUT', `/api/${GAMES}/a`, {});
      expect(put.status).toBe(405);
      expect(put.headers.allow).toBe('GET, PATCH, DELETE');
      expect((await api('DELETE', `/api/${GAMES}`)).headers.allow).toBe('GET, POST');
      expect((await api('POST', `/api/${GAMES}/a/events`)).headers.allow).toBe('GET');
      expect((await api('GET', `/api/sync/${GAMES}/a`)).headers.allow).toBe('POST');
    });

    it('an unexpected error is 500 internal, logged, with no details', async () => {
      logged.length = 0;
      const res = await api('GET', `/api/${GAMES}/c1`, undefined, auth('boom'));
      expect(errorOf(res)).toEqual({ status: 500, code: 'internal' });
      expect(res.text).not.toContain('secret detail');
      expect(logged).toHaveLength(1);
      expect(String((logged[0]!.details as { err: Error }).err.message)).toContain('secret detail');
    });

    it('HEAD is answered like GET, without a body', async () => {
      const res = await api('HEAD', `/api/${GAMES}/c1`);
      expect(res.status).toBe(200);
      expect(res.text).toBe('');
    });
  });
});

describe.each(syncBackends)('REST: pages bounded in bytes (maxPageBytes) on %s', (_backend, open) => {
  const MAX = 1000;
  let smallDb: Database;
  let small: SyncEngine;
  let smallServer: Server;
  let smallBase: string;
  const get = (path: string) => http(smallBase, 'GET', path, { headers: auth() });
  const nextOf = (res: { headers: Record<string, unknown> }) =>
    /^<([^>]+)>; rel="next"$/.exec(String(res.headers.link ?? ''))?.[1];

  beforeAll(async () => {
    smallDb = await open();
    small = await SyncEngine.create({
      db: smallDb,
      authenticate: ({ token }) => (token ? { id: token } : undefined),
      authorize: (_p, _a, _c, documentId) => !documentId?.startsWith('secret'),
      limits: { maxPageBytes: MAX },
    });
    smallServer = createServer();
    attach(smallServer, small);
    await new Promise<void>((resolve) => smallServer.listen(0, '127.0.0.1', resolve));
    smallBase = `http://127.0.0.1:${(smallServer.address() as AddressInfo).port}`;
    const docs = await small.collection<Game>(PAGED);
    for (let i = 0; i < 10; i++) {
      await docs.findOneAndUpsert({ _id: `${i < 3 ? 'secret' : 'd'}${i}`, name: 'x'.repeat(250), gold: i });
    }
    await docs.findOneAndUpsert({ _id: 'huge', name: 'y'.repeat(3000), gold: 100 });
    for (let i = 0; i < 12; i++) await docs.updateOne('d5', { $set: { name: `${i}`.repeat(200) } });
  });

  afterAll(async () => {
    await small.close();
    await new Promise((resolve) => smallServer.close(resolve));
    await smallDb.close();
  });

  it('a list stops after the document that reaches maxPageBytes and links to the rest', async () => {
    const sort = encodeURIComponent(JSON.stringify({ gold: 1 }));
    let path: string | undefined = `/api/${PAGED}?sort=${sort}&limit=50&token=alice`;
    const seen: string[] = [];
    const pages: number[] = [];
    while (path !== undefined) {
      const res = await get(path);
      expect(res.status).toBe(200);
      const docs = res.body as Game[];
      // Under the limit without its last document, which took it there or past it (or the end).
      const withoutLast = Buffer.byteLength(JSON.stringify(docs.slice(0, -1)));
      expect(withoutLast).toBeLessThan(MAX);
      seen.push(...docs.map((d) => d._id));
      pages.push(docs.length);
      path = nextOf(res);
      if (path) {
        expect(path).not.toContain('token');
        expect(path).toContain(`sort=${sort}`);
        path += '&token=alice';
      }
    }
    // Every readable document once, in order; the 3 KB one alone on its page.
    expect(seen).toEqual(['d3', 'd4', 'd5', 'd6', 'd7', 'd8', 'd9', 'huge']);
    expect(pages.length).toBeGreaterThan(2);
    expect(pages[pages.length - 1]).toBe(1);
  });

  it('a full page by count links on; the last page does not', async () => {
    // skip counts readable documents only (secret0-2 are not): d3 … d9, huge.
    const res = await get(`/api/${PAGED}?limit=2&skip=3`);
    expect((res.body as Game[]).map((d) => d._id)).toEqual(['d6', 'd7']);
    expect(nextOf(res)).toBe(`/api/${PAGED}?limit=2&skip=5`);
    expect(nextOf(await get(`/api/${PAGED}?skip=7`))).toBeUndefined();
    expect((await get(`/api/${PAGED}?skip=7`)).body).toHaveLength(1);
    expect((await get(`/api/${PAGED}?limit=0`)).body).toEqual([]);
  });

  it('an event page stops after the event that reaches maxPageBytes and says the after to continue', async () => {
    let path: string | undefined = `/api/${PAGED}/d5/events?after=0`;
    const seqs: number[] = [];
    while (path !== undefined) {
      const res = await get(path);
      const { events } = res.body as { events: SyncEvent[] };
      expect(Buffer.byteLength(JSON.stringify({ events: events.slice(0, -1) }))).toBeLessThan(MAX);
      seqs.push(...events.map((e) => e.seq));
      path = nextOf(res);
      if (path) expect(path).toBe(`/api/${PAGED}/d5/events?after=${events[events.length - 1]!.seq}`);
    }
    expect(seqs).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
  });
});
