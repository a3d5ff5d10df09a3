/**
 * The SSE transport: the WebSocket protocol's server frames over one long HTTP response.
 *
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
 * - `: ping` comment lines keep proxies from timing the stream out. When the server closes the
 *   stream it sends `event: close` with `{ code, reason }` (WebSocket close codes) first; it does
 *   so (1000) after an `error` that ended the stream's subscription, e.g. a revoked `forbidden`.
 * - A client reading too slowly (more than `limits.maxBufferedBytes` of live frames waiting) is
 *   disconnected. Catch-up frames are paced to the client instead (see `CatchUpWindow`).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventSyncError, ValidationError } from '../core/errors.js';
import { assertCollectionName, assertId } from '../core/ids.js';
import { Id } from '../protocol/messages.js';
import { CloseCodes, DEFAULT_PATHS, parseSseEventId, SSE_SUBSCRIPTION, TOO_SLOW } from '../protocol/wire.js';
import type { SyncEngine } from '../sync/engine.js';
import { assertRemoteFilter } from '../sync/filter-policy.js';
import type { Session } from '../sync/session.js';
import { accessProblem, applyCors } from './access.js';
import { CatchUpWindow } from './catch-up-window.js';
import { encodeOnce } from './encode-once.js';
import {
  authenticateRequest,
  intParam,
  methodNotAllowed,
  mustAuthorize,
  normalizePrefix,
  parseJson,
  type RequestHandler,
  requestUrl,
  segmentsUnder,
  sendError,
} from './http.js';
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
  const prefix = normalizePrefix(options.prefix ?? DEFAULT_PATHS.sse);
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const lingerMs = options.lingerMs ?? 10_000;
  const { limits, logger } = engine;
  const open = new Map<Session, ServerResponse>();
  const write = batchedWrites(options.batchWritesMs);
  const sseBytes = encodeOnce(sseFrame);

  async function stream(req: IncomingMessage, res: ServerResponse, url: URL, segments: string[]) {
    let gone = false;
    res.once('close', () => {
      gone = true;
    });
    const method = req.method ?? 'GET';
    const refused = accessProblem(req, engine.access);
    if (refused) throw new EventSyncError('forbidden', refused);
    if (applyCors(req, res, engine.access, ['GET'])) return;
    if (segments.length < 1 || segments.length > 2) {
      throw new EventSyncError('not_found', `no stream at ${url.pathname}; use ${prefix}/:collection[/:id]`);
    }
    if (method !== 'GET') return methodNotAllowed(res, method, ['GET']);
    const [collection, documentId] = segments as [string, string | undefined];
    assertCollectionName(collection);
    let subscribe: Record<string, unknown>;
    if (documentId !== undefined) {
      assertId(documentId);
      if (url.searchParams.has('filter')) {
        throw new ValidationError(
          'filter applies to collection streams (/sse/:collection), not to one document',
        );
      }
      const afterSeq = resumeAfter(req, url, collection, documentId);
      subscribe = { collection, documentId, ...(afterSeq === undefined ? {} : { afterSeq }) };
    } else {
      const raw = url.searchParams.get('filter');
      const filter = raw ? parseJson(raw, limits.maxMessageDepth, 'filter') : undefined;
      if (filter !== undefined) assertRemoteFilter(filter, limits);
      subscribe = { collection, ...(filter === undefined ? {} : { filter }) };
    }
    const named = url.searchParams.get('clientId');
    const clientId = named ?? `sse-${randomUUID()}`;
    if (!Id.safeParse(clientId).success) {
      throw new ValidationError('clientId: 1-128 of A-Z a-z 0-9 _ . : @ -, not starting with . : @ -');
    }

    const principal = await authenticateRequest(engine, req, url);
    if (documentId !== undefined) await mustAuthorize(engine, principal, 'read', collection, documentId);
    else await mustAuthorize(engine, principal, 'subscribe', collection);
    // A client id the stream names must be the principal's; one the server issued is new and
    // unguessable, and a stream acknowledges nothing, so it is not written down.
    if (named !== null) await engine.service.claimClient(clientId, principal.id);
    if (gone) return;
    const slot = engine.connections.acquire(req.socket.remoteAddress);
    if (!slot.ok) throw new EventSyncError('rate_limited', slot.message);
    res.once('close', slot.release);

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': eventsync\n\n');

    let heartbeat: NodeJS.Timeout | undefined;
    // Catch-up may queue up to half the limit; the too-slow rule counts only the rest.
    const catchUp = new CatchUpWindow(limits.maxBufferedBytes / 2);
    const tooSlow = () => res.writableLength - catchUp.bytes > limits.maxBufferedBytes;
    const ended = () => res.writableEnded || res.destroyed;
    const session = engine.connect(
      { headers: req.headers, url: req.url ?? url.pathname },
      {
        send(frame, eventId) {
          if (ended()) return;
          if (tooSlow()) {
            session.close(TOO_SLOW.code, TOO_SLOW.reason);
            return;
          }
          const bytes = sseBytes(frame, eventId);
          write(res, () => res.write(bytes));
        },
        sendCatchUp(frame, eventId) {
          if (ended()) return true;
          const bytes = sseBytes(frame, eventId);
          const written = catchUp.add(bytes.length);
          write(res, () => res.write(bytes, written));
          return !catchUp.full;
        },
        drained: () => catchUp.drained(),
        // The stream is its one subscription: ended by the server (refused, too large), nothing
        // more can come, and a stream left open would look alive.
        ended: () => session.close(CloseCodes.normalClosure.code, 'the subscription ended'),
        close(code, reason) {
          clearInterval(heartbeat);
          catchUp.close();
          open.delete(session);
          if (ended()) return;
          res.end(`event: close\ndata: ${JSON.stringify({ code, reason })}\n\n`);
          // A client that does not read the rest is not waited for.
          setTimeout(() => res.destroy(), lingerMs).unref();
        },
      },
    );
    open.set(session, res);
    res.once('close', () => session.close(CloseCodes.goingAway.code, 'client went away'));
    heartbeat = setInterval(() => {
      if (tooSlow()) session.close(TOO_SLOW.code, TOO_SLOW.reason);
      else res.write(': ping\n\n');
    }, heartbeatMs);
    heartbeat.unref();
    if (gone) {
      session.close(CloseCodes.goingAway.code, 'client went away');
      return;
    }
    session.accept(principal, clientId);
    await session.receive(JSON.stringify({ type: 'subscribe', sub: SSE_SUBSCRIPTION, ...subscribe }));
  }

  return {
    handle(req, res) {
      let url: URL;
      let segments: string[] | undefined;
      try {
        url = requestUrl(req);
        segments = segmentsUnder(url.pathname, prefix);
      } catch (error) {
        if (!(error instanceof EventSyncError)) return false;
        sendError(res, error, logger);
        return true;
      }
      if (!segments) return false;
      stream(req, res, url, segments).catch((error: unknown) =>
        sendError(res, error, logger, { path: url.pathname }),
      );
      return true;
    },
    async close(code: number = CloseCodes.goingAway.code, reason = 'server shutting down') {
      for (const session of [...open.keys()]) session.close(code, reason);
    },
  };
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
