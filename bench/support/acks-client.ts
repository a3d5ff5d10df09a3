/**
 * The acknowledgement benchmark's SDK clients, in their own process (`bench/acks.ts` forks this
 * file): `EventSyncClient`s over WebSocket, each following one document, with a given ack delay.
 * Counts the events they applied and the `ack` frames they sent, and reports over IPC.
 */
import WebSocket from 'ws';
import { EventSyncClient, type WebSocketConstructor } from '../../src/client.js';

export type Command =
  | {
      type: 'open';
      /** `http://host:port` of each server instance; `perServer` clients on each. */
      urls: string[];
      perServer: number;
      collection: string;
      /** Client i of a server follows `documents[i % documents.length]`. */
      documents: string[];
      ackDelayMs: number;
      tag: string;
    }
  | { type: 'count' }
  | { type: 'close' }
  | { type: 'exit' };

export type Report =
  | { type: 'opened'; count: number; ms: number }
  | { type: 'counted'; events: number; acks: number }
  | { type: 'closed' }
  | { type: 'failed'; message: string };

const OPEN_CONCURRENCY = 50;

let clients: EventSyncClient[] = [];
let events = 0;
let acks = 0;

/** `ws`, counting the `ack` frames the SDK sends through it. */
class CountingWebSocket extends WebSocket {
  override send(data: unknown, ...rest: unknown[]): void {
    if (typeof data === 'string' && data.startsWith('{"type":"ack"')) acks++;
    (super.send as (...args: unknown[]) => void)(data, ...rest);
  }
}

const report = (r: Report) => process.send?.(r);

async function open(command: Extract<Command, { type: 'open' }>): Promise<void> {
  const started = performance.now();
  const specs = command.urls.flatMap((url, s) =>
    Array.from({ length: command.perServer }, (_, i) => ({
      url,
      clientId: `${command.tag}-${s}-${i}`,
      documentId: command.documents[i % command.documents.length]!,
    })),
  );
  for (let i = 0; i < specs.length; i += OPEN_CONCURRENCY) {
    await Promise.all(
      specs.slice(i, i + OPEN_CONCURRENCY).map(async (spec) => {
        const client = new EventSyncClient({
          serverUrl: spec.url,
          clientId: spec.clientId,
          WebSocket: CountingWebSocket as unknown as WebSocketConstructor,
          ackDelayMs: command.ackDelayMs,
          onEvent: () => {
            events++;
          },
        });
        clients.push(client);
        const handle = client.document(command.collection, spec.documentId);
        await client.connect();
        await handle.whenSynced();
      }),
    );
  }
  report({ type: 'opened', count: clients.length, ms: performance.now() - started });
}

process.on('message', (command: Command) => {
  const run = async () => {
    switch (command.type) {
      case 'open':
        return open(command);
      case 'count':
        return report({ type: 'counted', events, acks });
      case 'close':
        await Promise.all(clients.map((c) => c.disconnect()));
        clients = [];
        return report({ type: 'closed' });
      case 'exit':
        process.exit(0);
    }
  };
  run().catch((error: unknown) =>
    report({ type: 'failed', message: String((error as Error)?.stack ?? error) }),
  );
});
