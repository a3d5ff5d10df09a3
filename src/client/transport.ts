/**
 * Transport connections ("links"): one WebSocket, or one SSE stream. A link says when the server
 * accepted it, hands over every server message, and says once when it ended; reconnecting is
 * the caller's business. Browser-safe: the WebSocket, EventSource and fetch implementations are
 * passed in (the client defaults them to `globalThis`).
 */

import { EventSyncError } from '../core/errors.js';
import type * as Messages from '../protocol/messages.js';
import { CloseCodes, type ErrorCode, mayReconnect, sseStreamPath } from '../protocol/wire.js';

/** The protocol version this client speaks (the type fails to compile if the server's changes). */
export const PROTOCOL_VERSION: typeof Messages.PROTOCOL_VERSION = 2;

export type ServerMessage = Messages.ServerMessage;
export type ClientMessage = Messages.ClientMessage;

/** What the client needs of a WebSocket: the browser's, `ws`'s, or a test double. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: (event: unknown) => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** What the client needs of an EventSource: the browser's, or a stand-in for Node. */
export interface EventSourceLike {
  close(): void;
  addEventListener(type: 'open', listener: (event: unknown) => void): void;
  addEventListener(type: 'message', listener: (event: { data: string; lastEventId?: string }) => void): void;
  addEventListener(type: 'close', listener: (event: { data: string }) => void): void;
  addEventListener(type: 'error', listener: (event: unknown) => void): void;
}
export type EventSourceConstructor = new (url: string) => EventSourceLike;

export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}
export interface FetchResponseLike {
  readonly ok: boolean;
  readonly status: number;
  text(): Promise<string>;
}
export type FetchLike = (url: string, init?: FetchInit) => Promise<FetchResponseLike>;

export type LinkOutcome = 'drop' | 'fatal' | 'refused';

/** Why the server refused a connection or a request: an `error` frame's, or an HTTP answer's, code and message. */
export interface Refusal {
  code: ErrorCode;
  message: string;
}

/** How a link reports. `close` comes once, and nothing comes after it. */
export interface LinkHandlers {
  open(): void;
  message(message: ServerMessage): void;
  /**
   * `drop`: reconnect later. `fatal`: retrying cannot help the client at all (credentials refused,
   * protocol not spoken). `refused`: this stream's request was refused (forbidden, a bad filter).
   */
  close(reason: string, outcome: LinkOutcome, error?: Refusal): void;
}

export interface Link {
  /** Sends a message (over SSE: a request to the stream; mutations go by REST instead). */
  send(message: ClientMessage): void;
  readonly canSend: boolean;
  /** Ends the link; no handler is called after this. */
  close(): void;
}

const CONNECTING = 0;
const OPEN = 1;

/** Parses a frame; `undefined` for anything that is not a JSON object with a string `type`. */
function parse(data: unknown): ServerMessage | undefined {
  if (typeof data !== 'string') return undefined;
  try {
    const value: unknown = JSON.parse(data);
    if (
      typeof value === 'object' &&
      value !== null &&
      typeof (value as { type?: unknown }).type === 'string'
    ) {
      return value as ServerMessage;
    }
  } catch {
    // not JSON: ignored
  }
  return undefined;
}

export interface WebSocketLinkOptions {
  url: string;
  WebSocket: WebSocketConstructor;
  clientId: string;
  token: string | undefined;
  /** No `welcome` within this many ms: give up on this attempt. */
  connectTimeoutMs: number;
  /** Used to learn why an upgrade failed (a WebSocket only says it closed): absent, it is not asked. */
  fetch?: FetchLike | undefined;
}

/** A WebSocket to `/sync`: `hello` first, open at `welcome`. */
export function openWebSocketLink(options: WebSocketLinkOptions, handlers: LinkHandlers): Link {
  const ws = new options.WebSocket(options.url);
  let done = false;
  let opened = false;
  let welcomed = false;
  let refusal: Refusal | undefined;
  const finish = (reason: string, outcome: LinkOutcome) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    // The upgrade failed: a wrong URL (404) will not pass by itself, so ask why; keep retrying.
    const ask = !opened && outcome === 'drop' ? options.fetch : undefined;
    if (!ask) return handlers.close(reason, outcome, refusal);
    void probeUpgrade(ask, options.url).then(
      (refused) => handlers.close(reason, outcome, refused),
      () => handlers.close(reason, outcome),
    );
  };
  const timer = setTimeout(() => {
    finish(`no welcome within ${options.connectTimeoutMs} ms`, 'drop');
    closeQuietly(ws, CloseCodes.normalClosure.code, 'connect timeout');
  }, options.connectTimeoutMs);

  ws.addEventListener('open', () => {
    if (done) return;
    opened = true;
    ws.send(JSON.stringify(helloOf(options)));
  });
  ws.addEventListener('message', (event) => {
    if (done) return;
    const message = parse(event.data);
    if (!message) return;
    if (!welcomed && message.type === 'welcome') {
      welcomed = true;
      clearTimeout(timer);
      handlers.open(); // then the welcome itself, for its lastMid
    } else if (!welcomed && message.type === 'error' && message.ref === 'hello') {
      refusal = { code: message.code, message: message.message };
      return;
    }
    handlers.message(message);
  });
  ws.addEventListener('close', (event) => {
    // Connecting again with the same settings cannot help after some codes (credentials refused,
    // protocol not spoken, the client id is another principal's).
    const outcome = mayReconnect(event.code) ? 'drop' : 'fatal';
    finish(`${event.code}${event.reason ? ` ${event.reason}` : ''}`, outcome);
  });
  ws.addEventListener('error', () => {
    // A close event follows; some implementations skip it when the connection never opened.
    setTimeout(() => {
      if (!done) {
        finish('socket error', 'drop');
        closeQuietly(ws, CloseCodes.normalClosure.code, 'socket error');
      }
    }, 0);
  });

  return {
    get canSend() {
      return !done && welcomed && ws.readyState === OPEN;
    },
    send(message) {
      if (!done && ws.readyState === OPEN) ws.send(JSON.stringify(message));
    },
    close() {
      if (done) return;
      done = true;
      clearTimeout(timer);
      closeQuietly(ws, CloseCodes.normalClosure.code, 'client closed');
    },
  };
}

function helloOf(options: WebSocketLinkOptions): ClientMessage {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    clientId: options.clientId,
    // Undefined when there is none: JSON leaves it out.
    token: options.token,
  } as ClientMessage;
}

function closeQuietly(ws: WebSocketLike, code: number, reason: string): void {
  try {
    if (ws.readyState === CONNECTING || ws.readyState === OPEN) ws.close(code, reason);
  } catch {
    // already closing
  }
}

export interface SseLinkOptions {
  /** The client stream: `{sse}?clientId=…&protocol=2[&token=…]`. */
  url: string;
  /** `http(s)://host{sse}`: where the requests that change the stream go (`sseStreamPath`). */
  base: string;
  /** Sent with each of those requests: the credentials. */
  headers: Record<string, string>;
  EventSource: EventSourceConstructor;
  /** Sends those requests, and learns why a stream was refused (an EventSource only says "error"). */
  fetch: FetchLike;
}

/**
 * One SSE client stream (`GET {sse}`), open at its `welcome`, which names the stream: from then
 * on `send` changes its subscriptions and sends acks, one request after another (each waits for
 * the previous answer, so the server handles them in the order sent). A request that fails ends
 * the link, as a broken WebSocket would: the client opens a new stream and subscribes again.
 * The browser's EventSource would reconnect by itself; this link closes it at the first error
 * instead, so the client reconnects with its own positions and backoff.
 */
export function openSseLink(options: SseLinkOptions, handlers: LinkHandlers): Link {
  const es = new options.EventSource(options.url);
  let done = false;
  let opened = false;
  let streamId: string | undefined;
  let sending: Promise<void> = Promise.resolve();
  const finish = (reason: string, outcome: LinkOutcome, error?: Refusal) => {
    if (done) return;
    done = true;
    es.close();
    handlers.close(reason, outcome, error);
  };
  es.addEventListener('open', () => {
    opened = true;
  });
  es.addEventListener('message', (event) => {
    if (done) return;
    const message = parse(event.data);
    if (!message) return;
    if (message.type === 'welcome' && streamId === undefined) {
      streamId = message.streamId;
      if (streamId === undefined)
        return finish('the server named no stream: it needs the /sse client stream', 'fatal');
      handlers.open();
    }
    handlers.message(message);
  });
  es.addEventListener('close', (event) => finish(...closeOf(event.data)));
  es.addEventListener('error', () => {
    if (done) return;
    if (opened) return finish('stream error', 'drop');
    // Refused before it started? An EventSource cannot see the status: ask once with fetch.
    es.close();
    void probe(options.fetch, options.url).then(
      (refused) => {
        if (refused) finish(`${refused.status} ${refused.code}`, refused.outcome, refused);
        else finish('stream error', 'drop');
      },
      () => finish('stream error', 'drop'),
    );
  });
  const request = async (message: ClientMessage) => {
    if (done) return;
    await requestOnStream(options, streamId!, message, (reply) => done || handlers.message(reply));
  };
  return {
    get canSend() {
      return !done && streamId !== undefined;
    },
    send(message) {
      if (done || streamId === undefined) return;
      sending = sending.then(
        () => request(message),
        () => undefined,
      );
      sending.catch((error: unknown) => {
        const refusal = error as Partial<Refusal>;
        finish(`${message.type} failed: ${refusal.message ?? String(error)}`, 'drop');
      });
    },
    close() {
      if (done) return;
      done = true;
      es.close();
    },
  };
}

/**
 * Sends `message` to client stream `streamId` as a request. Throws when the link should drop (the
 * network failed, the stream is gone: 404); a subscription refused (a bad name or filter, 429) is
 * told to `tell` as the WebSocket tells it, so that only its handle fails (or retries).
 */
async function requestOnStream(
  options: SseLinkOptions,
  streamId: string,
  message: ClientMessage,
  tell: (reply: ServerMessage) => void,
): Promise<void> {
  // An unsubscribe is a DELETE of the subscription: no body.
  const init =
    message.type === 'unsubscribe'
      ? { method: 'DELETE', headers: options.headers }
      : {
          method: 'POST',
          headers: { ...options.headers, 'content-type': 'application/json' },
          body: JSON.stringify(message),
        };
  // Called unbound: a browser's fetch throws "Illegal invocation" as a method of another object.
  const { fetch } = options;
  const res = await fetch(options.base + streamRequest(streamId, message), init);
  if (res.ok) return;
  const refusal = await errorOf(res);
  if (res.status === 404 || message.type !== 'subscribe') throw refusal;
  tell({ type: 'error', ...refusal, ref: message.sub });
}

/** The path (under the SSE prefix) of the request that sends `message` to stream `streamId`. */
function streamRequest(streamId: string, message: ClientMessage): string {
  if (message.type === 'ack') return sseStreamPath(streamId, 'acks');
  const path = sseStreamPath(streamId, 'subscriptions');
  return message.type === 'unsubscribe' ? `${path}/${encodeURIComponent(message.sub)}` : path;
}

/** Why the server ended a stream (`event: close` with `{ code, reason }`, as WebSocket close codes). */
function closeOf(data: string): [string, LinkOutcome] {
  try {
    const { code, reason } = JSON.parse(data) as { code?: number; reason?: string };
    const why = `${code ?? ''}${reason ? ` ${reason}` : ''}`.trim() || 'stream closed by the server';
    return [why, typeof code === 'number' && !mayReconnect(code) ? 'fatal' : 'drop'];
  } catch {
    return ['stream closed by the server', 'drop'];
  }
}

/** A refused request's status and error; `undefined` when the server would have started the stream. */
async function probe(
  fetch: FetchLike,
  url: string,
): Promise<(Refusal & { status: number; outcome: LinkOutcome }) | undefined> {
  const abort = new AbortController();
  try {
    const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
    if (res.ok) return undefined;
    const { code, message } = await errorOf(res);
    // Client errors other than "slow down" will not change by retrying; 401 will not for any stream.
    const permanent = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
    const outcome: LinkOutcome = res.status === 401 ? 'fatal' : permanent ? 'refused' : 'drop';
    return { status: res.status, code, message, outcome };
  } finally {
    abort.abort();
  }
}

/**
 * Why a WebSocket upgrade to `url` failed, asked over HTTP: the sync endpoint answers a plain
 * request 426 (upgrade required), so any other client error, or a page served there, means the
 * URL is not one. `undefined`: the server is there (or failing for now), nothing to tell.
 */
async function probeUpgrade(fetch: FetchLike, url: string): Promise<Refusal | undefined> {
  const http = url.replace(/^ws/, 'http');
  const abort = new AbortController();
  try {
    const res = await fetch(http, { signal: abort.signal });
    if (res.status === 426 || res.status >= 500 || res.status === 408 || res.status === 429) return undefined;
    const answer = res.ok ? byStatus(404, res.status) : await errorOf(res);
    return {
      code: answer.code,
      message: `no eventsync WebSocket at ${http} (${answer.message}): check serverUrl and paths.sync`,
    };
  } finally {
    abort.abort();
  }
}

/** `{ error: { code, message } }` of a refused HTTP request, or a generic one. */
export async function errorOf(res: FetchResponseLike): Promise<Refusal> {
  const text = await res.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const message = String(error?.message ?? '');
    if (EventSyncError.is(error)) return { code: error.code, message };
    // A code this version does not know (a newer server's) is kept in the message.
    if (typeof error?.code === 'string')
      return { ...byStatus(res.status), message: `${error.code}: ${message}` };
  } catch {
    // not JSON
  }
  return byStatus(res.status);
}

/** A refusal from an HTTP status alone (`status`: the one to judge by, `shown`: the one to name). */
function byStatus(status: number, shown = status): Refusal {
  const named: Partial<Record<number, ErrorCode>> = {
    401: 'unauthorized',
    403: 'forbidden',
    404: 'not_found',
  };
  const code = named[status] ?? (status >= 500 ? 'internal' : 'bad_message');
  return { code, message: `HTTP ${shown}` };
}
