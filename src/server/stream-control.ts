/**
 * The requests that change an SSE client stream (`GET {sse}`, one per client, see sse.ts): its
 * subscriptions and acks, sent as HTTP requests because a stream only goes one way.
 *
 * | route                                          | body                  | is the WebSocket frame |
 * |------------------------------------------------|-----------------------|------------------------|
 * | `POST   {sse}/streams/:streamId/subscriptions` | a `subscribe` message | `subscribe`            |
 * | `DELETE {sse}/streams/:streamId/subscriptions/:sub` | none             | `unsubscribe`          |
 * | `POST   {sse}/streams/:streamId/acks`          | an `ack` message      | `ack`                  |
 *
 * A body may leave out `type` (the route says it). The request is authenticated like the stream
 * (`Authorization: Bearer …` or `?token=`) and must be the stream's principal's (else 403); a
 * stream id no open stream has is 404 (`not_found`): the stream closed, and its id was forgotten.
 * The message is validated by the protocol's schema (400 `bad_message`), bounded by
 * `maxMessageBytes` (413) and counted against the stream's `maxMessagesPerSecond` (429), then
 * handed to the stream's session in arrival order, the path a WebSocket frame takes after parsing:
 * the answer is `202 { "accepted": true }`, and what the session says (`subscribed`, `error` with
 * `ref: sub`, …) comes on the stream. A client that waits for each answer before its next request
 * has its messages handled in the order it sent them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { EventSyncError } from '../core/errors.js';
import { isPlainObject } from '../core/values.js';
import { ClientMessage, StreamId } from '../protocol/messages.js';
import type { SyncEngine } from '../sync/engine.js';
import { describeIssue, type Session } from '../sync/session.js';
import { assertJsonBody } from './access.js';
import { authenticateRequest, methodNotAllowed, parseJson, readBody, sendJson } from './http.js';

/** The first segment under the SSE prefix of every route here. */
export const STREAMS_SEGMENT = 'streams';

/** Whether `segments` (under the SSE prefix) name a route of this module rather than a stream. */
export function isStreamControl(segments: readonly string[]): boolean {
  return segments[0] === STREAMS_SEGMENT && segments.length >= 3;
}

/** One request to change the stream `find` returns for its id; see the module comment. */
export async function controlStream(
  engine: SyncEngine,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  segments: readonly string[],
  find: (streamId: string) => Session | undefined,
): Promise<void> {
  const [, streamId = '', what, sub] = segments;
  const route = routeOf(what, segments.length);
  if (!route) throw new EventSyncError('not_found', `no route at ${url.pathname}`);
  const method = req.method ?? 'GET';
  if (method !== route.method) return methodNotAllowed(res, method, [route.method]);
  const principal = await authenticateRequest(engine, req, url);
  const session = StreamId.safeParse(streamId).success ? find(streamId) : undefined;
  if (!session || session.closed) {
    throw new EventSyncError('not_found', 'no open stream has this id: open a new one and subscribe again');
  }
  if (session.principal?.id !== principal.id) {
    throw new EventSyncError('forbidden', "this stream is another principal's");
  }
  const raw = route.type === 'unsubscribe' ? { sub } : await jsonBody(engine, req);
  const message = validMessage(route.type, raw);
  if (!session.admit(message)) {
    throw new EventSyncError(
      'rate_limited',
      `more than ${engine.limits.maxMessagesPerSecond} messages per second on this stream; slow down`,
    );
  }
  sendJson(res, 202, { accepted: true });
}

type ControlType = 'subscribe' | 'unsubscribe' | 'ack';

function routeOf(
  what: string | undefined,
  length: number,
): { method: 'POST' | 'DELETE'; type: ControlType } | undefined {
  if (what === 'subscriptions' && length === 3) return { method: 'POST', type: 'subscribe' };
  if (what === 'subscriptions' && length === 4) return { method: 'DELETE', type: 'unsubscribe' };
  if (what === 'acks' && length === 3) return { method: 'POST', type: 'ack' };
  return undefined;
}

async function jsonBody(engine: SyncEngine, req: IncomingMessage): Promise<unknown> {
  assertJsonBody(req);
  const { maxMessageBytes, maxMessageDepth } = engine.limits;
  return parseJson(await readBody(req, maxMessageBytes), maxMessageDepth);
}

/** The body as the route's message (its `type` may be left out), validated by the protocol's schema. */
function validMessage(type: ControlType, body: unknown): ClientMessage {
  if (!isPlainObject(body))
    throw new EventSyncError('bad_message', `the body is a ${type} message (a JSON object)`);
  const checked = ClientMessage.safeParse({ type, ...body });
  if (!checked.success) {
    throw new EventSyncError('bad_message', `the body ${describeIssue(checked.error.issues[0])}`);
  }
  if (checked.data.type !== type) throw new EventSyncError('bad_message', `the body is a ${type} message`);
  return checked.data;
}
