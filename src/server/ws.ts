/**
 * The WebSocket transport: attaches to an existing `http.Server` on one path, turns each
 * connection into a `Session`, and enforces what only the socket can: frame size, the send
 * buffer (a client with more than `maxBufferedBytes` of live frames waiting is disconnected
 * with a reason; catch-up frames are paced instead, see `CatchUpWindow`), and heartbeats.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { CloseCodes, DEFAULT_PATHS, TOO_SLOW } from '../protocol/wire.js';
import type { SyncEngine } from '../sync/engine.js';
import type { Session } from '../sync/session.js';
import type { AuthRequest, Sink } from '../sync/types.js';
import { accessProblem } from './access.js';
import { CatchUpWindow } from './catch-up-window.js';
import { encodeOnce } from './encode-once.js';
import { refuseUpgrade, requestUrl } from './http.js';
import { batchedWrites } from './write-batcher.js';

/** Frames are sent as UTF-8 bytes (see `encodeOnce`) in text messages. */
const TEXT = { binary: false } as const;

export interface WebSocketOptions {
  /** Default `/sync`. */
  path?: string;
  /**
   * Frames to one client within one turn of the event loop, and at most this many ms, leave in
   * one system call (see `WriteBatcher`); `0` writes every frame at once. Default 5.
   */
  batchWritesMs?: number;
}

export interface AttachedTransport {
  close(): Promise<void>;
}

export function attachWebSocket(
  server: Server,
  engine: SyncEngine,
  options: WebSocketOptions = {},
): AttachedTransport {
  const path = options.path ?? DEFAULT_PATHS.sync;
  const { limits } = engine;
  // ws refuses frames over maxPayload from the header alone (close 1009, no reason); leave it a
  // margin so the session sees a frame just over the limit and answers with a `too_large` reason.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 2 * limits.maxMessageBytes + 1024 });
  const alive = new WeakMap<WebSocket, boolean>();
  const output: SocketOutput = {
    write: batchedWrites(options.batchWritesMs),
    encode: encodeOnce(),
    maxBufferedBytes: limits.maxBufferedBytes,
  };

  let closing = false;
  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const verdict = judgeUpgrade(request, server, engine, path, closing);
    if (verdict === 'elsewhere') return;
    if (verdict) return refuseUpgrade(socket, verdict.status, verdict.message);
    const slot = engine.connections.acquire(request.socket.remoteAddress);
    if (!slot.ok) return refuseUpgrade(socket, slot.status, slot.message);
    socket.once('close', slot.release);
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
  };
  server.on('upgrade', onUpgrade);

  wss.on('connection', (ws: WebSocket, request: IncomingMessage) => {
    alive.set(ws, true);
    ws.on('pong', () => alive.set(ws, true));
    connectSocket(engine, ws, { headers: request.headers, url: request.url ?? path }, output);
  });

  // A connection that missed a pong by the next ping is gone (its peer or the network died).
  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.get(ws)) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, limits.heartbeatMs);
  heartbeat.unref();

  return {
    async close() {
      closing = true;
      clearInterval(heartbeat);
      server.off('upgrade', onUpgrade);
      for (const ws of wss.clients) ws.close(CloseCodes.goingAway.code, 'server shutting down');
      // A client that does not answer the close handshake must not hold the shutdown (ws waits 30 s).
      const stragglers = setTimeout(() => {
        for (const ws of wss.clients) ws.terminate();
      }, 2000);
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      clearTimeout(stragglers);
    },
  };
}

/** What every socket of one transport writes with. */
interface SocketOutput {
  write: ReturnType<typeof batchedWrites>;
  encode: ReturnType<typeof encodeOnce>;
  maxBufferedBytes: number;
}

/** A new WebSocket's session: its text frames go to `receive`, its close ends the session. */
function connectSocket(
  engine: SyncEngine,
  ws: WebSocket,
  request: Omit<AuthRequest, 'token'>,
  output: SocketOutput,
): void {
  const session = engine.connect(
    request,
    socketSink(ws, output, () => session),
  );
  ws.on('message', (data, isBinary) => {
    if (isBinary) {
      session.close(CloseCodes.unsupportedData.code, 'text frames only');
      return;
    }
    const bytes = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.byteLength;
    void session.receive(data.toString(), bytes);
  });
  const openedAt = performance.now();
  engine.logger.debug({ session: session.id }, 'eventsync: websocket connected');
  ws.on('close', (code, reason) => {
    session.close();
    engine.logger.debug(
      {
        session: session.id,
        principal: session.principal?.id,
        code,
        reason: reason.toString(),
        ms: Math.round(performance.now() - openedAt),
      },
      'eventsync: websocket closed',
    );
  });
  ws.on('error', () => session.close(CloseCodes.internalError.code, 'socket error'));
}

/** Where a WebSocket's session sends: live frames under the too-slow rule, catch-up paced. */
function socketSink(ws: WebSocket, output: SocketOutput, session: () => Session): Sink {
  // ws has no cork of its own: its socket (set once the upgrade is done, as it is here) has.
  const socket = (ws as unknown as { _socket: Socket })._socket;
  // Catch-up may queue up to half the limit; the too-slow rule counts only the rest.
  const catchUp = new CatchUpWindow(output.maxBufferedBytes / 2);
  return {
    send(frame) {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (ws.bufferedAmount - catchUp.bytes > output.maxBufferedBytes) {
        session().close(TOO_SLOW.code, TOO_SLOW.reason);
        return;
      }
      const bytes = output.encode(frame);
      output.write(socket, () => ws.send(bytes, TEXT));
    },
    sendCatchUp(frame) {
      if (ws.readyState !== WebSocket.OPEN) return true;
      const bytes = output.encode(frame);
      const written = catchUp.add(bytes.length);
      output.write(socket, () => ws.send(bytes, TEXT, written));
      return !catchUp.full;
    },
    drained: () => catchUp.drained(),
    close(code, reason) {
      catchUp.close();
      // The close frame of a client too slow to read would queue behind its full buffer: free the socket now.
      if (code === TOO_SLOW.code) ws.terminate();
      else if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)
        ws.close(code, reason);
    },
  };
}

/**
 * Whether an upgrade is ours to take: `undefined` when it is, `'elsewhere'` when another upgrade
 * listener of the server will answer it, else the status and message to refuse it with (an
 * upgrade to a path nobody serves is refused too: left alone, its socket would stay open forever).
 */
function judgeUpgrade(
  request: IncomingMessage,
  server: Server,
  engine: SyncEngine,
  path: string,
  closing: boolean,
): { status: number; message: string } | 'elsewhere' | undefined {
  let pathname: string;
  try {
    pathname = requestUrl(request).pathname;
  } catch {
    return { status: 400, message: 'the request target is not a valid URL' };
  }
  if (pathname !== path) {
    if (server.listenerCount('upgrade') > 1) return 'elsewhere';
    return { status: 404, message: `no WebSocket at ${pathname}` };
  }
  if (closing) return { status: 503, message: 'the server is shutting down' };
  const refused = accessProblem(request, engine.access);
  return refused ? { status: 403, message: refused } : undefined;
}
