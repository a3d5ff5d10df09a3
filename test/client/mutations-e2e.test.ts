/**
 * Issue 17, second acceptance point, at the SDK level on real servers: a mutation whose answer
 * is lost after the server applied it is sent again by the SDK on its own and applied once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { defineMutators, EventSyncClient, type FetchLike } from '../../src/client.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { type Ledger, ledgerMutators } from './ledger.js';
import {
  FetchEventSource,
  faultyWebSocket,
  NodeWebSocket,
  rest,
  startServer,
  type TestServer,
  until,
} from './support.js';

afterAll(closeSharedPglite);

/** Client ids unique per test process: the mid records of a PostgreSQL given by DATABASE_URL outlive the run. */
const PROCESS = Math.random().toString(36).slice(2, 8);

describe.each(syncBackends)('a mutation whose answer is lost (%s)', (_backend, open) => {
  // Found by mutation-convergence.test.ts: the SDK waited for the next stream's welcome, which
  // never came while the stream stayed up, so the mutation stayed pending for good.
  it('SSE: the POST applied but its answer lost is sent again while the stream stays up, applied once', async () => {
    const collection = uniqueCollection('lost');
    const server = await startServer(open, { mutators: { [collection]: ledgerMutators } });
    let lost = 0;
    const losing: FetchLike = async (url, init) => {
      const res = await fetch(url, init);
      if (url.includes('/mutate/') && lost++ === 0) {
        await res.text(); // applied on the server; the answer never arrives
        throw new TypeError('fetch failed');
      }
      return res;
    };
    const client = new EventSyncClient({
      serverUrl: server.base,
      clientId: `sse-lost-${PROCESS}`,
      transport: 'sse',
      EventSource: FetchEventSource,
      fetch: losing,
      reconnect: { initialDelayMs: 2, maxDelayMs: 20 },
    });
    try {
      await rest(server.base, 'POST', `/api/${collection}`, { _id: 'l1', gold: 5, notes: [] });
      client.mutators(collection, ledgerMutators);
      const doc = client.document<Ledger>(collection, 'l1');
      await client.connect();
      await doc.whenSynced();
      const answer = doc.mutate('add', { amount: 3 });
      expect(doc.state?.gold).toBe(8);
      await expect(answer).resolves.toMatchObject({ mid: 1, duplicate: true });
      await until(() => doc.pending.length === 0 && doc.confirmed?.gold === 8);
      const events = await server.engine.events.backend.list(collection, 'l1');
      expect(events.filter((e) => e.clientId === `sse-lost-${PROCESS}`)).toHaveLength(1);
      expect(await server.engine.lastMid(`sse-lost-${PROCESS}`)).toBe(1);
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });

  it('WebSocket: the connection killed between apply and answer; the SDK resends after reconnecting, applied once', async () => {
    const collection = uniqueCollection('killed');
    let server: TestServer | undefined;
    let kills = 0;
    // The server's `add` destroys the client's connection while it runs: the write commits, the answer is lost.
    const killing = defineMutators<Ledger>({
      ...ledgerMutators,
      add: {
        args: { parse: (v) => v as { amount: number } },
        run(draft, { amount }: { amount: number }) {
          if (kills++ === 0)
            for (const socket of server!.syncSockets(`ws-killed-${PROCESS}`)) socket.destroy();
          draft.gold += amount;
        },
      },
    });
    server = await startServer(open, { mutators: { [collection]: killing } });
    const client = new EventSyncClient({
      serverUrl: server.base,
      clientId: `ws-killed-${PROCESS}`,
      // Faultless: only for the tag in its URL, by which the server finds the client's sockets.
      WebSocket: faultyWebSocket(`ws-killed-${PROCESS}`, { duplicate: 0, delay: 0, random: Math.random })
        .WebSocket,
      reconnect: { initialDelayMs: 2, maxDelayMs: 20 },
    });
    try {
      await rest(server.base, 'POST', `/api/${collection}`, { _id: 'k1', gold: 5, notes: [] });
      client.mutators(collection, ledgerMutators);
      const doc = client.document<Ledger>(collection, 'k1');
      await client.connect();
      await doc.whenSynced();
      await expect(doc.mutate('add', { amount: 3 })).resolves.toMatchObject({ mid: 1, duplicate: true });
      await until(() => doc.pending.length === 0 && doc.confirmed?.gold === 8);
      const events = await server.engine.events.backend.list(collection, 'k1');
      expect(events.filter((e) => e.clientId === `ws-killed-${PROCESS}`)).toHaveLength(1);
      expect(await server.engine.lastMid(`ws-killed-${PROCESS}`)).toBe(1);
      expect(kills).toBe(1);
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });
});

// The memory backend forgets everything with its process; the persistent ones keep the mid records.
describe.each(syncBackends.filter(([name]) => name !== 'memory'))(
  'a mutation applied just before the server restarts (%s)',
  (_backend, open) => {
    it('is answered duplicate by the new server from the stored mid record, applied once', async () => {
      const collection = uniqueCollection('restart');
      const clientId = `restart-${PROCESS}`;
      let server: TestServer | undefined;
      let calls = 0;
      // The first `add` stops the old server taking connections and cuts the client's: the write
      // commits, its answer is lost, and the client's reconnects are refused until the restart.
      const stopping = defineMutators<Ledger>({
        ...ledgerMutators,
        add: {
          args: { parse: (v) => v as { amount: number } },
          run(draft, { amount }: { amount: number }) {
            if (calls++ === 0) {
              server!.server.close();
              for (const socket of server!.syncSockets(clientId)) socket.destroy();
            }
            draft.gold += amount;
          },
        },
      });
      server = await startServer(open, { mutators: { [collection]: stopping } });
      const port = Number(new URL(server.base).port);
      const client = new EventSyncClient({
        serverUrl: server.base,
        clientId,
        WebSocket: faultyWebSocket(clientId, { duplicate: 0, delay: 0, random: Math.random }).WebSocket,
        reconnect: { initialDelayMs: 2, maxDelayMs: 20 },
      });
      try {
        await rest(server.base, 'POST', `/api/${collection}`, { _id: 'r1', gold: 5, notes: [] });
        client.mutators(collection, ledgerMutators);
        const doc = client.document<Ledger>(collection, 'r1');
        await client.connect();
        await doc.whenSynced();
        let answered = false;
        const answer = doc.mutate('add', { amount: 3 }).finally(() => {
          answered = true;
        });
        const old = server;
        await until(() => calls === 1);
        await until(() => client.state !== 'connected');
        // The mutator ran (calls) before its transaction committed: wait for the commit.
        await expect.poll(() => old.engine.lastMid(clientId), { timeout: 10_000 }).toBe(1);
        await old.stop();
        expect(answered).toBe(false);
        server = await startServer(open, { mutators: { [collection]: stopping } }, port);
        await expect(answer).resolves.toMatchObject({ mid: 1, duplicate: true });
        await until(() => doc.pending.length === 0 && doc.confirmed?.gold === 8);
        const events = await server.engine.events.backend.list(collection, 'r1');
        expect(events.filter((e) => e.clientId === clientId)).toHaveLength(1);
        expect(await server.engine.lastMid(clientId)).toBe(1);
        expect(calls).toBe(1);
      } finally {
        await client.disconnect();
        await server?.stop();
      }
    });
  },
);

// Found by bench/mutations.ts, which hung: the server drops frames over its rate limit without an
// answer (one rate_limited error per burst), and the SDK waited for the answers of the dropped mutations.
describe('a burst of mutations over the server rate limit (memory)', () => {
  it('WebSocket: every mutation is applied once and in mid order, the dropped ones sent again', async () => {
    const collection = uniqueCollection('burst');
    const clientId = `burst-${PROCESS}`;
    const limits = { maxMessagesPerSecond: 20 };
    const server = await startServer(syncBackends[0]![1], {
      mutators: { [collection]: ledgerMutators },
      limits,
    });
    const errors: string[] = [];
    const client = new EventSyncClient({
      serverUrl: server.base,
      clientId,
      WebSocket: NodeWebSocket,
      onError: (error) => errors.push(error.code),
    });
    try {
      await rest(server.base, 'POST', `/api/${collection}`, { _id: 'b1', gold: 0, notes: [] });
      client.mutators(collection, ledgerMutators);
      const doc = client.document<Ledger>(collection, 'b1');
      await client.connect();
      await doc.whenSynced();
      const count = 60;
      const answers = Array.from({ length: count }, (_, i) => doc.mutate('note', { text: `n${i + 1}` }));
      expect(doc.state?.notes).toHaveLength(count);
      await expect(Promise.all(answers)).resolves.toHaveLength(count);
      await until(() => doc.pending.length === 0, 10_000);
      expect(errors).toContain('rate_limited');
      const expected = Array.from({ length: count }, (_, i) => `n${i + 1}`);
      expect(doc.confirmed?.notes).toEqual(expected);
      const events = await server.engine.events.backend.list(collection, 'b1');
      const mids = events
        .filter((e) => e.clientId === clientId)
        .map((e) => (e.metadata?.mutation as { mid?: number } | undefined)?.mid);
      expect(mids).toEqual(expected.map((_, i) => i + 1));
    } finally {
      await client.disconnect();
      await server.stop();
    }
  }, 60_000);
});
