/**
 * An `http.Server` on 127.0.0.1 (a port the OS picks) with a sync engine's transports attached,
 * for the tests that drive real sockets: it records the server side of every TCP connection
 * (by the client's port, so a test can pause or inspect one), and `close()` takes everything
 * down in the order that does not hang: transports, engine, connections, listener.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { attach } from '../../src/server/attach.js';
import type { SyncEngine } from '../../src/sync/engine.js';

export interface LoopbackServer {
  server: Server;
  port: number;
  /** The server side of every TCP connection, by the client's port. */
  serverSockets: Map<number, Socket>;
  close(): Promise<void>;
}

export async function loopbackServer(
  engine: SyncEngine,
  transports: (server: Server) => { close(): Promise<void> } = (server) => attach(server, engine),
): Promise<LoopbackServer> {
  const server = createServer();
  const serverSockets = new Map<number, Socket>();
  server.on('connection', (socket) => serverSockets.set(socket.remotePort!, socket));
  const attached = transports(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    port: (server.address() as AddressInfo).port,
    serverSockets,
    async close() {
      await attached.close();
      await engine.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
