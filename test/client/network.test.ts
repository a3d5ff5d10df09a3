/**
 * The client and the platform's network status (src/client/network.ts), against a real server: a
 * status that says offline drops the connections at once (a browser's offline mode leaves them
 * open) and keeps mutations queued, unsent; no connection is tried while offline; back online the
 * client reconnects at once (not after its backoff delay) and the queue is applied once.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { EventSyncClient, type EventSyncClientOptions, type NetworkStatus } from '../../src/client.js';
import { closeSharedPglite, syncBackends, uniqueCollection } from '../support/databases.js';
import { type Ledger, ledgerMutators } from './ledger.js';
import { FetchEventSource, NodeWebSocket, rest, startServer, type TestServer, until } from './support.js';

afterAll(closeSharedPglite);

const PROCESS = Math.random().toString(36).slice(2, 8);
const [memory] = syncBackends;

/** A network status the test switches, as a browser's `offline`/`online` events would. */
function switchableNetwork(): NetworkStatus & { set(online: boolean): void } {
  let online = true;
  const listeners = new Set<(online: boolean) => void>();
  return {
    get online() {
      return online;
    },
    subscribe(changed) {
      listeners.add(changed);
      return () => listeners.delete(changed);
    },
    set(value) {
      online = value;
      for (const listener of [...listeners]) listener(value);
    },
  };
}

describe.each(['websocket', 'sse'] as const)('the client offline and back (%s)', (transport) => {
  const clientOn = (
    server: TestServer,
    network: NetworkStatus,
    clientId: string,
    options: Partial<EventSyncClientOptions>,
  ) =>
    new EventSyncClient({
      serverUrl: server.base,
      clientId,
      transport,
      network,
      EventSource: FetchEventSource,
      WebSocket: NodeWebSocket,
      ...options,
    });

  it('drops its connections at once, queues mutations unsent, tries nothing offline, and is applied once back online', async () => {
    const collection = uniqueCollection('net');
    const server = await startServer(memory![1], { mutators: { [collection]: ledgerMutators } });
    const network = switchableNetwork();
    const clientId = `net-${transport}-${PROCESS}`;
    const states: string[] = [];
    const client = clientOn(server, network, clientId, {
      // A long backoff: only the `online` signal can bring the client back within the test's wait.
      reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000, jitter: 0 },
      onState: (state) => states.push(state),
    });
    try {
      await rest(server.base, 'POST', `/api/${collection}`, { _id: 'n1', gold: 0, notes: [] });
      client.mutators(collection, ledgerMutators);
      const doc = client.document<Ledger>(collection, 'n1');
      await client.connect();
      await doc.whenSynced();
      expect(server.syncSockets().length).toBeGreaterThan(0);

      network.set(false);
      expect(client.state).toBe('reconnecting');
      await until(() => server.syncSockets().length === 0);
      const answers = Array.from({ length: 10 }, () => doc.mutate('add', { amount: 1 }));
      expect(doc.state?.gold).toBe(10); // predicted at once
      expect(doc.pending).toHaveLength(10);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(server.syncSockets()).toHaveLength(0); // nothing tried offline
      expect((await rest<Ledger>(server.base, 'GET', `/api/${collection}/n1`)).body.gold).toBe(0);

      network.set(true);
      await until(() => client.state === 'connected');
      await expect(Promise.all(answers)).resolves.toHaveLength(10);
      await until(() => doc.pending.length === 0 && doc.confirmed?.gold === 10);
      expect((await rest<Ledger>(server.base, 'GET', `/api/${collection}/n1`)).body.gold).toBe(10);
      const events = await server.engine.events.backend.list(collection, 'n1');
      expect(events.filter((e) => e.clientId === clientId)).toHaveLength(10);
      expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });

  it('connect() while offline tries nothing, says so when it times out, and connects when the network is back', async () => {
    const server = await startServer(memory![1]);
    const network = switchableNetwork();
    network.set(false);
    const clientId = `net-start-${transport}-${PROCESS}`;
    const client = clientOn(server, network, clientId, { connectTimeoutMs: 200 });
    try {
      client.document(uniqueCollection('net'), 'n1');
      await expect(client.connect()).rejects.toMatchObject({
        code: 'timeout',
        message: expect.stringContaining('offline'),
      });
      expect(server.syncSockets()).toHaveLength(0);
      network.set(true);
      await until(() => client.state === 'connected');
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });
});

describe('a reconnect delay that outlives the network', () => {
  it('does not connect while offline: the backoff timer of a dropped connection waits for online', async () => {
    const server = await startServer(memory![1]);
    const network = switchableNetwork();
    const client = new EventSyncClient({
      serverUrl: server.base,
      clientId: `net-timer-${PROCESS}`,
      network,
      WebSocket: NodeWebSocket,
      reconnect: { initialDelayMs: 100, maxDelayMs: 100, jitter: 0 },
    });
    try {
      client.document(uniqueCollection('net'), 'n1');
      await client.connect();
      // The server drops the connection: the client waits 100 ms, then would connect again.
      for (const socket of server.syncSockets()) socket.destroy();
      await until(() => client.state === 'reconnecting');
      network.set(false);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(server.syncSockets()).toHaveLength(0);
      expect(client.state).toBe('reconnecting');
      network.set(true);
      await until(() => client.state === 'connected');
    } finally {
      await client.disconnect();
      await server.stop();
    }
  });
});
