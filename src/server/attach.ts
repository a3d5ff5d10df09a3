/**
 * All transports on one existing `http.Server`: WebSocket (`/sync`), SSE (`/sse/…`) and REST
 * (`/api/…`). Requests under those paths are answered here and never reach the server's other
 * `request` listeners (an Express or Fastify app), whenever those were added; every other request
 * reaches them unchanged.
 *
 * How: `attach` wraps the server's `emit` so that a `request` event is offered to the SSE and
 * REST handlers first, and passed on only when they do not take it (the way engine.io takes its
 * path before the app's listeners). An app that prefers mounting a handler itself uses
 * `createHandler(engine).handle(req, res)` (returns `true` when it took the request) with
 * `attachWebSocket(server, engine)` for the WebSocket.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { DEFAULT_PATHS } from '../protocol/wire.js';
import type { SyncEngine } from '../sync/engine.js';
import { type RequestHandler, requestUrl, sendJson } from './http.js';
import { createRestHandler, type RestOptions } from './rest.js';
import { createSseHandler, type SseOptions } from './sse.js';
import { attachWebSocket, type WebSocketOptions } from './ws.js';

export interface AttachOptions {
  /** WebSocket options (default path `/sync`), or `false` for none. */
  ws?: WebSocketOptions | false;
  /** SSE options (default prefix `/sse`), or `false` for none. */
  sse?: SseOptions | false;
  /** REST options (default prefix `/api`), or `false` for none. */
  rest?: RestOptions | false;
}

export interface TransportHandler extends RequestHandler {
  /** Ends the open SSE streams (code 1001). Requests in flight finish. */
  close(): Promise<void>;
}

export interface Attached extends TransportHandler {
  /** Stops taking requests, closes WebSockets and SSE streams (1001). Does not close the engine or the server. */
  close(): Promise<void>;
}

/** SSE and REST as one request handler, for apps that mount it themselves. */
export function createHandler(
  engine: SyncEngine,
  options: Pick<AttachOptions, 'sse' | 'rest'> = {},
): TransportHandler {
  const sse = options.sse === false ? undefined : createSseHandler(engine, options.sse);
  const rest = options.rest === false ? undefined : createRestHandler(engine, options.rest);
  return {
    handle: (req, res) => (sse?.handle(req, res) ?? false) || (rest?.handle(req, res) ?? false),
    async close() {
      await sse?.close();
    },
  };
}

/** Attaches WebSocket, SSE and REST to `server`; see the module comment. */
export function attach(server: Server, engine: SyncEngine, options: AttachOptions = {}): Attached {
  const handler = createHandler(engine, options);
  const ws = options.ws === false ? undefined : attachWebSocket(server, engine, options.ws);
  const wsPath = options.ws === false ? undefined : (options.ws?.path ?? DEFAULT_PATHS.sync);
  const emit = server.emit;
  let attached = true;
  const intercept = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
    if (attached && event === 'request') {
      const [req, res] = args as [IncomingMessage, ServerResponse];
      if (handler.handle(req, res)) return true;
      if (wsPath !== undefined && isPlainRequestTo(req, wsPath)) {
        // So a client whose upgrade failed can ask what is here: the sync endpoint (426), or not (404).
        const message = `${wsPath} is eventsync's WebSocket endpoint: connect with a WebSocket upgrade`;
        sendJson(res, 426, { error: { code: 'bad_message', message } }, { upgrade: 'websocket' });
        return true;
      }
      if (this.listenerCount('request') === 0) {
        // Nobody else would answer: say so instead of leaving the request hanging.
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
        return true;
      }
    }
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  };
  server.emit = intercept as Server['emit'];

  return {
    handle: handler.handle,
    async close() {
      if (!attached) return;
      attached = false;
      // Unwrap unless someone wrapped emit after us (then `attached = false` makes ours a pass-through).
      if (server.emit === intercept) server.emit = emit;
      await Promise.all([handler.close(), ws?.close()]);
    },
  };
}

function isPlainRequestTo(req: IncomingMessage, path: string): boolean {
  try {
    return requestUrl(req).pathname === path;
  } catch {
    return false;
  }
}
