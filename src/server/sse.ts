/**
 * The SSE transport: the WebSocket protocol's server frames over one long HTTP response.
 *
 * - `GET /sse` is a client stream: a stream with no subscription yet, whose `welcome` names its
 *   `streamId`; the client adds and removes subscriptions (document and collection alike, any
 *   number up to `maxSubscriptions`) and sends acks with requests to `/sse/streams/:streamId/…`
 *   (stream-control.ts), so a page follows any number of documents over one connection: browsers
 *   open at most 6 HTTP/1.1 connections per origin, and a seventh stream would wait forever.
 *   Its frames are the WebSocket's, `sub` and all; it closes only when the client or the server
 *   ends it, never because one subscription ended.
 * - `GET /sse/:collection/:id` follows one document; `GET /sse/:collection?filter=<json>` every
 *   document of a collection that matches the filter (default: all).
 * - Credentials: `Authorization: Bearer …` or `?token=`; `?clientId=` names the client, one
 *   of the principal's own (default: a new id). The request is authenticated and authorized
 *   before the stream starts (401 / 403 as JSON, so a browser's `EventSource` stops instead of
 *   retrying).
 * - Every frame is one `data:` line holding the same JSON as on the WebSocket. Snapshot and
 *   event frames carry `id: collection/documentId/seq`, so a browser reconnecting with
 *   `Last-Event-ID` (or a client sending `?lastEventId=`) resumes after exactly that seq:
 *   nothing missed, nothing repeated. `?afterSeq=` starts a document stream after a seq (a
 *   `Last-Event-ID` for the same document wins). Collection streams start over with snapshots.
 * - `?protocol=2`: the stream starts with a `welcome` frame (`clientId`, `serverTime`, `protocol`,
 *   `lastMid`), so a client that sends mutations through REST learns its next mutation id.
 * - `: ping` comment lines keep proxies from timing the stream out. When the server closes the
 *   stream it sends `event: close` with `{ code, reason }` (WebSocket close codes) first; it does
 *   so (1000) after an `error` that ended the stream's subscription, e.g. a revoked `forbidden`.
 * - A client reading too slowly (more than `limits.maxBufferedBytes` of live frames waiting) is
 *   disconnected. Catch-up frames are paced to the client instead (see `CatchUpWindow`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventSyncError, ValidationError } from '../core/errors.js';
import { assertCollectionName, assertId } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import { Id, PROTOCOL_VERSION, SUPPORTED_PROTOCOLS } from '../protocol/messages.js';
import { CloseCodes, DEFAULT_PATHS, parseSseEventId, SSE_SUBSCRIPTION, TOO_SLOW } from '../protocol/wire.js';
import type { SyncEngine } from '../sync/engine.js';
import { assertRemoteFilter } from '../sync/filter-policy.js';
import type { Session, SubscribeMessage } from '../sync/session.js';
import type { Sink, SyncLimits } from '../sync/types.js';
import { accessProblem, applyCors } from './access.js';
import { CatchUpWindow } from './catch-up-window.js';
import { encodeOnce } from './encode-once.js';
import {
  authenticateRequest,
  handleUnder,
  intParam,
  methodNotAllowed,
  mustAuthorize,
  normalizePrefix,
  parseJson,
  type RequestHandler,
} from './http.js';
import { controlStream, isStreamControl } from './stream-control.js';
import { batchedWrites } from './write-batcher.js';

export interface SseOptions {
  /** Where the streams live. Default `/sse`. */
  prefix?: string;
  /** A `: ping` comment every this many ms. Default 15,000. */
  heartbeatMs?: number;
  /** A closed stream whose client does not take the rest within this many ms is cut off. Default 10,000. */
  lingerMs?: number;
  /**
   * Frames to one stream within one turn of the event loop, and at most this many ms, leave in
   * one system call (see `WriteBatcher`); `0` writes every frame at once. Default 5.
   */
  batchWritesMs?: number;
}

export interface SseHandler extends RequestHandler {
  /** Ends every open stream (sending `event: close` with `code`/`reason`), e.g. on shutdown. */
  close(code?: number, reason?: string): Promise<void>;
}

export function createSseHandler(engine: SyncEngine, options: SseOptions = {}): SseHandler {
  const streams = new SseStreams(engine, options);
  return {
    handle: handleUnder(streams.prefix, engine.logger, (req, res, url, segments) =>
      streams.open(req, res, url, segments),
    ),
    async close(code: number = CloseCodes.goingAway.code, reason = 'server shutting down') {
      streams.closeAll(code, reason);
    },
  };
}

/** The open streams of one handler, and how a request becomes one. */
class SseStreams {
  readonly prefix: string;
  readonly #engine: SyncEngine;
  readonly #heartbeatMs: number;
  readonly #open = new Map<Session, ServerResponse>();
  /** The open client streams (`GET {sse}`) by `streamId`; a stream that closes is forgotten. */
  readonly #clientStreams = new Map<string, Session>();
  /** What the streams' sinks share: batched writes, frames rendered and encoded once. */
  readonly #output: StreamOutput;

  constructor(engine: SyncEngine, options: SseOptions) {
    this.#engine = engine;
    this.prefix = normalizePrefix(options.prefix ?? DEFAULT_PATHS.sse);
    this.#heartbeatMs = options.heartbeatMs ?? 15_000;
    this.#output = {
      write: batchedWrites(options.batchWritesMs),
      encode: encodeOnce(sseFrame),
      lingerMs: options.lingerMs ?? 10_000,
      maxBufferedBytes: engine.limits.maxBufferedBytes,
    };
  }

  /**
   * A request under the prefix: checked, authenticated and authorized before the stream starts
   * (so a refusal is a JSON answer an `EventSource` does not retry), then the stream's session,
   * welcomed without a `hello`, subscribes.
   */
  async open(req: IncomingMessage, res: ServerResponse, url: URL, segments: string[]): Promise<void> {
    let gone = false;
    res.once('close', () => {
      gone = true;
    });
    const engine = this.#engine;
    const refused = accessProblem(req, engine.access);
    if (refused) throw new EventSyncError('forbidden', refused);
    if (applyCors(req, res, engine.access, ['GET', 'POST', 'DELETE'])) return;
    if (isStreamControl(segments)) {
      return controlStream(engine, req, res, url, segments, (id) => this.#clientStreams.get(id));
    }
    if (segments.length > 2) {
      throw new EventSyncError(
        'not_found',
        `no stream at ${url.pathname}; use ${this.prefix} or ${this.prefix}/:collection[/:id]`,
      );
    }
    const method = req.method ?? 'GET';
    if (method !== 'GET') return methodNotAllowed(res, method, ['GET']);
    // No segment: a client stream, which subscribes later (stream-control.ts).
    const subscribe = segments.length === 0 ? undefined : subscriptionOf(req, url, segments, engine.limits);
    const named = url.searchParams.get('clientId');
    const clientId = named ?? `sse-${randomUUID()}`;
    if (!Id.safeParse(clientId).success) {
      throw new ValidationError('clientId: 1-128 of A-Z a-z 0-9 _ . : @ -, not starting with . : @ -');
    }
    const principal = await authenticateRequest(engine, req, url);
    if (subscribe && 'documentId' in subscribe) {
      await mustAuthorize(engine, principal, 'read', subscribe.collection, subscribe.documentId);
    } else if (subscribe) await mustAuthorize(engine, principal, 'subscribe', subscribe.collection);
    // A client id the stream names must be the principal's; one the server issued is new and
    // unguessable, and a stream of one subscription acknowledges nothing, so it is not written
    // down. A client stream takes acks: its id is the principal's, as after a WebSocket hello.
    if (named !== null || !subscribe) await engine.claimClient(clientId, principal.id);
    // A client stream is always welcomed: its welcome names the stream.
    const protocol = protocolOf(url) ?? (subscribe ? undefined : PROTOCOL_VERSION);
    const streamId = subscribe ? undefined : randomBytes(16).toString('hex');
    const welcome =
      protocol === undefined
        ? undefined
        : { protocol, lastMid: await engine.lastMid(clientId), ...(streamId && { streamId }) };
    if (gone) return;
    const slot = engine.connections.acquire(req.socket.remoteAddress);
    if (!slot.ok) throw new EventSyncError('rate_limited', slot.message);
    res.once('close', slot.release);
    const session = this.#start(req, res, url, streamId);
    if (gone) {
      session.close(CloseCodes.goingAway.code, 'client went away');
      return;
    }
    session.accept(principal, clientId, welcome);
    if (subscribe) await session.subscribe(subscribe);
  }

  /**
   * Sends the stream's headers and connects its session, with a `: ping` every `heartbeatMs`; a
   * client stream (`streamId`) is findable by its id until it closes.
   */
  #start(req: IncomingMessage, res: ServerResponse, url: URL, streamId: string | undefined): Session {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': eventsync\n\n');
    let heartbeat: NodeJS.Timeout | undefined;
    const sink = new StreamSink(res, this.#output, streamId === undefined, () => {
      clearInterval(heartbeat);
      this.#open.delete(session);
      if (streamId !== undefined) this.#clientStreams.delete(streamId);
    });
    const session = this.#engine.connect({ headers: req.headers, url: req.url ?? url.pathname }, sink);
    sink.session = session;
    this.#open.set(session, res);
    if (streamId !== undefined) this.#clientStreams.set(streamId, session);
    res.once('close', () => session.close(CloseCodes.goingAway.code, 'client went away'));
    heartbeat = setInterval(() => {
      if (sink.tooSlow) session.close(TOO_SLOW.code, TOO_SLOW.reason);
      else res.write(': ping\n\n');
    }, this.#heartbeatMs);
    heartbeat.unref();
    return session;
  }

  closeAll(code: number, reason: string): void {
    for (const session of [...this.#open.keys()]) session.close(code, reason);
  }
}

/** What every stream of a handler writes with. */
interface StreamOutput {
  write: ReturnType<typeof batchedWrites>;
  encode: ReturnType<typeof encodeOnce>;
  lingerMs: number;
  maxBufferedBytes: number;
}

/** Where a stream's session sends: SSE messages on the response, `event: close` at the end. */
class StreamSink implements Sink {
  /** The session sending here (set once connected): closed when the client is too slow. */
  session: Session | undefined;
  readonly #res: ServerResponse;
  readonly #output: StreamOutput;
  readonly #onClose: () => void;
  /** A stream of one subscription (`/sse/:collection[/:id]`) ends with it; a client stream does not. */
  readonly #oneSubscription: boolean;
  /** Catch-up may queue up to half the limit; the too-slow rule counts only the rest. */
  readonly #catchUp: CatchUpWindow;

  constructor(res: ServerResponse, output: StreamOutput, oneSubscription: boolean, onClose: () => void) {
    this.#res = res;
    this.#output = output;
    this.#oneSubscription = oneSubscription;
    this.#onClose = onClose;
    this.#catchUp = new CatchUpWindow(output.maxBufferedBytes / 2);
  }

  get tooSlow(): boolean {
    return this.#res.writableLength - this.#catchUp.bytes > this.#output.maxBufferedBytes;
  }

  get #ended(): boolean {
    return this.#res.writableEnded || this.#res.destroyed;
  }

  send(frame: string, eventId?: string): void {
    if (this.#ended) return;
    if (this.tooSlow) {
      this.session?.close(TOO_SLOW.code, TOO_SLOW.reason);
      return;
    }
    const bytes = this.#output.encode(frame, eventId);
    this.#output.write(this.#res, () => this.#res.write(bytes));
  }

  sendCatchUp(frame: string, eventId?: string): boolean {
    if (this.#ended) return true;
    const bytes = this.#output.encode(frame, eventId);
    const written = this.#catchUp.add(bytes.length);
    this.#output.write(this.#res, () => this.#res.write(bytes, written));
    return !this.#catchUp.full;
  }

  drained(): Promise<void> {
    return this.#catchUp.drained();
  }

  /**
   * A stream that is its one subscription, ended by the server (refused, too large): nothing
   * more can come, and a stream left open would look alive. A client stream goes on.
   */
  ended(): void {
    if (this.#oneSubscription) this.session?.close(CloseCodes.normalClosure.code, 'the subscription ended');
  }

  close(code: number, reason: string): void {
    this.#onClose();
    this.#catchUp.close();
    if (this.#ended) return;
    this.#res.end(`event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`);
    // A client that does not read the rest is not waited for.
    setTimeout(() => this.#res.destroy(), this.#output.lingerMs).unref();
  }
}

/** The stream's one subscription, from its path and query: one document, or a collection with a filter. */
function subscriptionOf(
  req: IncomingMessage,
  url: URL,
  segments: string[],
  limits: SyncLimits,
): SubscribeMessage {
  const [collection, documentId] = segments as [string, string | undefined];
  assertCollectionName(collection);
  const sub = SSE_SUBSCRIPTION;
  if (documentId !== undefined) {
    assertId(documentId);
    if (url.searchParams.has('filter')) {
      throw new ValidationError(
        'filter applies to collection streams (/sse/:collection), not to one document',
      );
    }
    const afterSeq = resumeAfter(req, url, collection, documentId);
    return {
      type: 'subscribe',
      sub,
      collection,
      documentId,
      ...(afterSeq === undefined ? {} : { afterSeq }),
    };
  }
  const raw = url.searchParams.get('filter');
  const filter = raw ? parseJson(raw, limits.maxMessageDepth, 'filter') : undefined;
  if (filter === undefined) return { type: 'subscribe', sub, collection };
  assertRemoteFilter(filter, limits);
  return { type: 'subscribe', sub, collection, filter: filter as JsonObject };
}

/** One SSE message: the frame as its `data:` line, with the document position as its id when it has one. */
function sseFrame(frame: string, eventId: string | undefined): string {
  return eventId === undefined ? `data: ${frame}\n\n` : `id: ${eventId}\ndata: ${frame}\n\n`;
}

/**
 * Where a document stream starts: after the seq of `Last-Event-ID` (header, or `?lastEventId=`)
 * when it names this document, else after `?afterSeq=`, else from the start (a snapshot).
 */
function resumeAfter(
  req: IncomingMessage,
  url: URL,
  collection: string,
  documentId: string,
): number | undefined {
  const header = req.headers['last-event-id'];
  const lastEventId =
    (typeof header === 'string' ? header : undefined) ?? url.searchParams.get('lastEventId');
  if (lastEventId) {
    const position = parseSseEventId(lastEventId.trim());
    if (position?.collection === collection && position.documentId === documentId) return position.seq;
  }
  return url.searchParams.has('afterSeq') ? intParam(url, 'afterSeq', 0) : undefined;
}

/**
 * `?protocol=`: the version a stream's client speaks; given, the stream starts with a `welcome`
 * (protocol 2: with `lastMid`, for clients that send mutations through REST). Absent: no welcome.
 */
function protocolOf(url: URL): number | undefined {
  const raw = url.searchParams.get('protocol');
  if (raw === null) return undefined;
  const protocol = Number(raw);
  if (!/^\d{1,3}$/.test(raw) || !SUPPORTED_PROTOCOLS.includes(protocol)) {
    throw new EventSyncError(
      'unsupported_protocol',
      `this server speaks protocols ${SUPPORTED_PROTOCOLS.join(' and ')}`,
    );
  }
  return protocol;
}
