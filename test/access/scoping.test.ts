/**
 * Reads are scoped before they are shaped (issue 15, item 1). alice may read `alice-*` and
 * `public-*`, not `bob-*`. The list oracle: with her own document as a marker, a filter such as
 * `{ $or: [{ _id: 'alice-1' }, { _id: 'bob-1', salary: { $gt: N } }] }` plus a sort, a skip or
 * a sort by the hidden field made a page's shape say whether bob-1's salary is above N, and a
 * binary search recovered it. Each attack runs in two worlds (bob-1's salary 91001, then 3):
 * every answer must be the same in both, over REST, WebSocket and SSE collection subscriptions,
 * on memory and PostgreSQL, with `authorizeQuery` and with `authorize` alone. A scope that admits
 * more than `authorize` does is the control: there the attack still works, which is why
 * `authorizeQuery` must admit only readable documents (and shows the probes would notice a leak).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/core/collection-backend.js';
import { memoryDatabase } from '../../src/index.js';
import { SyncEngine, type SyncEngineOptions } from '../../src/sync/engine.js';
import type { Authorize } from '../../src/sync/types.js';
import { http, SseClient } from '../server/http-client.js';
import { openPg, uniqueCollection } from '../support/databases.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';
import { TestClient } from '../support/ws-client.js';

const HIDDEN = 91001;
const OTHER_WORLD = 3;
/** Where probes look: around both worlds' values, and far from them. */
const PROBES = [0, 2, 3, 4, 12, 50_000, 91_000, 91_001, 91_002, 200_000];

const readable = (who: string, id: string) => id.startsWith(`${who}-`) || id.startsWith('public-');
const authorize: Authorize = (p, action, _c, id) =>
  id === undefined || (action === 'write' ? id.startsWith(`${p.id}-`) : readable(p.id, id));
const authenticate = ({ token }: { token?: string }) =>
  token === 'alice' || token === 'bob' ? { id: token } : undefined;

type Mode = 'authorizeQuery' | 'authorize only' | 'scope wider than authorize';
const modes: Record<Mode, Partial<SyncEngineOptions>> = {
  // $regex: the scope is server code, not held to the remote filter policy.
  authorizeQuery: { authorize, authorizeQuery: (p) => ({ _id: { $regex: `^(${p.id}|public)-` } }) },
  'authorize only': { authorize },
  'scope wider than authorize': { authorize, authorizeQuery: () => true },
};

interface Setup {
  base: string;
  ws: string;
  collection: string;
  engine: SyncEngine;
  /** Sets bob-1's hidden salary (server side). */
  hide(salary: number): Promise<void>;
}

const $or = (n: number) => ({ $or: [{ _id: 'alice-1' }, { _id: 'bob-1', salary: { $gt: n } }] });
const query = (params: Record<string, unknown>) =>
  new URLSearchParams(
    Object.entries(params).map(([k, v]): [string, string] => [k, JSON.stringify(v)]),
  ).toString();

/** What alice sees of one REST list: the ids in the body, and the answer (status, ids, next page) as text. */
async function list(s: Setup, params: Record<string, unknown>): Promise<{ ids: string[]; answer: string }> {
  const res = await http(s.base, 'GET', `/api/${s.collection}?${query(params)}&token=alice`);
  const ids = Array.isArray(res.body) ? res.body.map((d: { _id: string }) => d._id) : [];
  return { ids, answer: JSON.stringify([res.status, ids, res.headers.link ?? null]) };
}

/** The REST attacks, each a probe at N: its answer, and whether the answer says "bob-1's salary > N". */
const restAttacks: Record<string, (s: Setup, n: number) => Promise<{ answer: string; above: boolean }>> = {
  // Newest _id first, one per page: bob-1 (dropped, if it matched) would push alice-1 off the page.
  'filter + sort + limit': async (s, n) => {
    const { ids, answer } = await list(s, { filter: $or(n), sort: { _id: -1 }, limit: 1 });
    return { answer, above: !ids.includes('alice-1') };
  },
  // skip 1 skips bob-1 (if it matched) and leaves alice-1.
  'filter + skip': async (s, n) => {
    const { ids, answer } = await list(s, { filter: $or(n), sort: { _id: -1 }, skip: 1 });
    return { answer, above: ids.includes('alice-1') };
  },
  // alice moves her marker's salary to N; sorted by salary, bob-1 first means it is lower.
  'marker + sort by the hidden field': async (s, n) => {
    const patch = await http(s.base, 'PATCH', `/api/${s.collection}/alice-1?token=alice`, {
      body: { salary: n + 0.5 },
    });
    expect(patch.status).toBe(200);
    const filter = { _id: { $in: ['alice-1', 'bob-1'] } };
    const { ids, answer } = await list(s, { filter, sort: { salary: 1 }, limit: 1 });
    return { answer, above: ids.includes('alice-1') };
  },
};

/** The attacker's binary search over [0, 200,000]: 18 probes. */
async function binarySearch(probe: (n: number) => Promise<boolean>): Promise<number> {
  let lo = 0;
  let hi = 200_000;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (await probe(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** alice's collection subscription over WebSocket: the documents of its snapshot, in order. */
async function wsSnapshot(s: Setup, filter: object): Promise<string> {
  const c = await TestClient.connect(s.ws);
  try {
    c.send({ type: 'hello', protocol: 1, clientId: 'alice-ws', token: 'alice' });
    await c.next('welcome');
    c.send({ type: 'subscribe', sub: 'c', collection: s.collection, filter });
    await c.until((r) => r.some((m) => m.type === 'synced' || (m.type === 'error' && m.ref === 'c')));
    return JSON.stringify(c.received.slice(1).map((m) => [m.type, 'documentId' in m ? m.documentId : '']));
  } finally {
    c.close();
  }
}

/** The same over SSE. */
async function sseSnapshot(s: Setup, filter: object): Promise<string> {
  const path = `/sse/${s.collection}?filter=${encodeURIComponent(JSON.stringify(filter))}&token=alice`;
  const stream = await SseClient.open(s.base, path);
  try {
    expect(stream.status).toBe(200);
    await stream.until((c) => c.messages.some((m) => m.type === 'synced'));
    return JSON.stringify(stream.messages.map((m) => [m.type, 'documentId' in m ? m.documentId : '']));
  } finally {
    stream.destroy();
  }
}

const backends: Record<string, () => Promise<Database>> = {
  memory: async () => memoryDatabase(),
  postgresql: () => openPg(),
};

for (const [backend, open] of Object.entries(backends)) {
  for (const [mode, options] of Object.entries(modes) as [Mode, Partial<SyncEngineOptions>][]) {
    describe(`the list oracle, ${backend}, ${mode}`, () => {
      let db: Database;
      let server: LoopbackServer;
      let s: Setup;

      beforeAll(async () => {
        db = await open();
        const engine = await SyncEngine.create({ db, authenticate, ...options });
        server = await loopbackServer(engine);
        const collection = uniqueCollection('scoping');
        const docs = await engine.collection(collection);
        for (const [_id, salary] of [
          ['alice-1', 50_000],
          ['alice-2', 60_000],
          ['public-1', 70_000],
          ['bob-1', HIDDEN],
          ['bob-2', 12],
        ] as const) {
          await docs.findOneAndUpsert({ _id, salary, secret: `${_id} secret` } as never);
        }
        s = {
          base: `http://127.0.0.1:${server.port}`,
          ws: `ws://127.0.0.1:${server.port}/sync`,
          collection,
          engine,
          hide: async (salary) => void (await docs.updateOne('bob-1', { $set: { salary } })),
        };
      });

      afterAll(async () => {
        await server.close();
        await db.close();
      });

      for (const [attack, probe] of Object.entries(restAttacks)) {
        it(`REST, ${attack}`, async () => {
          const worlds: string[][] = [];
          const found: number[] = [];
          for (const salary of [HIDDEN, OTHER_WORLD]) {
            await s.hide(salary);
            worlds.push(await Promise.all(PROBES.map(async (n) => (await probe(s, n)).answer)));
            found.push(await binarySearch(async (n) => (await probe(s, n)).above));
          }
          if (mode === 'scope wider than authorize') {
            // The control: the second gate alone shapes the page, and the search finds both values.
            expect(found).toEqual([HIDDEN, OTHER_WORLD]);
          } else {
            expect(new Set(worlds.flat()).size).toBe(1);
            expect(found[0]).toBe(found[1]);
          }
        });
      }

      it('WebSocket and SSE collection subscriptions: snapshots and live membership', async () => {
        const answers = new Set<string>();
        for (const salary of [HIDDEN, OTHER_WORLD]) {
          await s.hide(salary);
          for (const n of PROBES) {
            answers.add(await wsSnapshot(s, $or(n)));
            answers.add(`sse ${await sseSnapshot(s, $or(n))}`);
          }
        }
        expect([...answers]).toEqual([
          JSON.stringify([
            ['subscribed', ''],
            ['snapshot', 'alice-1'],
            ['synced', ''],
          ]),
          `sse ${JSON.stringify([
            ['subscribed', ''],
            ['snapshot', 'alice-1'],
            ['synced', ''],
          ])}`,
        ]);

        // Live: bob-1 starts matching the filter, then alice's marker changes. Only the marker's event comes.
        const c = await TestClient.connect(s.ws);
        c.send({ type: 'hello', protocol: 1, clientId: 'alice-live', token: 'alice' });
        c.send({ type: 'subscribe', sub: 'live', collection: s.collection, filter: $or(1000) });
        await c.next('synced');
        const from = c.received.length;
        await s.hide(5000);
        const docs = await s.engine.collection(s.collection);
        await docs.updateOne('alice-1', { $set: { note: 'marker' } });
        await c.until((r) => r.slice(from).some((m) => m.type === 'event'));
        c.close();
        expect(c.received.slice(from).map((m) => [m.type, 'event' in m ? m.event.documentId : ''])).toEqual([
          ['event', 'alice-1'],
        ]);
      });

      it('the client filter keeps the remote filter policy; the scope does not need to', async () => {
        const res = await http(
          s.base,
          'GET',
          `/api/${s.collection}?${query({ filter: { _id: { $regex: '^bob' } } })}&token=alice`,
        );
        expect([res.status, res.body.error.code]).toEqual([400, 'validation']);
        const { ids } = await list(s, { sort: { _id: 1 } });
        expect(ids).toEqual(['alice-1', 'alice-2', 'public-1']);
      });
    });
  }
}

describe('scopes that are not a filter, and the cost of having none', () => {
  const quiet = { error() {}, warn() {}, info() {}, debug() {} };

  async function start(options: Partial<SyncEngineOptions>) {
    const engine = await SyncEngine.create({
      db: memoryDatabase(),
      authenticate,
      authorize: 'allow-all',
      logger: quiet,
      ...options,
    });
    const server = await loopbackServer(engine);
    const docs = await engine.collection('c');
    for (const _id of ['alice-1', 'bob-1', 'public-1']) await docs.findOneAndUpsert({ _id });
    const get = (path: string) => http(`http://127.0.0.1:${server.port}`, 'GET', `${path}?token=alice`);
    return { server, get };
  }

  it('false is nothing; true is everything; anything else is 500 internal, never everything', async () => {
    const answers: Record<string, unknown> = {};
    for (const [name, scope] of [
      ['false', false],
      ['true', true],
      ['undefined', undefined],
      ['invalid', { a: { $in: 5 } }],
    ] as const) {
      const { server, get } = await start({ authorizeQuery: () => scope as never });
      const res = await get('/api/c');
      answers[name] = res.status === 200 ? res.body.map((d: { _id: string }) => d._id) : res.status;
      await server.close();
    }
    expect(answers).toEqual({
      false: [],
      true: ['alice-1', 'bob-1', 'public-1'],
      undefined: 500,
      invalid: 500,
    });
  });

  it('without authorizeQuery, a list under authorize reads at most maxUnscopedListDocuments', async () => {
    const { server, get } = await start({ authorize, limits: { maxUnscopedListDocuments: 2 } });
    const res = await get('/api/c');
    expect([res.status, res.body.error.code]).toEqual([413, 'too_large']);
    expect(res.body.error.message).toContain('authorizeQuery');
    await server.close();
  });
});
