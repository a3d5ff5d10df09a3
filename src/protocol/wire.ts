/**
 * The facts of the wire that are not message shapes (those are the schemas of `messages.ts`):
 * error codes, close codes, how a document and an SSE event are named, the default paths. The
 * server, the client and the protocol document (`scripts/protocol-doc.ts`) all read them from
 * here, so a code or a format is written down once. Each is part of the protocol: changing one
 * breaks clients that are already deployed. Browser-safe: imports only `src/core/`.
 */

import { type ErrorCode, ErrorCodes, ErrorStatus } from '../core/errors.js';

// ---- error codes ---------------------------------------------------------------------------------

/**
 * Error codes, with the HTTP status each is answered with and whether it is `retryable`. The
 * table lives with the error class in `src/core/errors.ts` (every layer throws those, and core
 * imports nothing); the protocol, its document and the client read it from here. A client gives
 * up on a subscription refused with a code that is not retryable (subscribing again would only
 * be refused again): change something first (credentials, the filter, the message).
 */
export { type ErrorCode, ErrorCodes, ErrorStatus };

/** Whether a request refused with `code` may succeed unchanged later; a code this version does not know: yes. */
export function isRetryable(code: string): boolean {
  return !Object.hasOwn(ErrorCodes, code) || ErrorCodes[code as ErrorCode].retryable;
}

// ---- close codes ---------------------------------------------------------------------------------

/** A WebSocket close code (over SSE: the `code` of `event: close`), as the server uses it. */
export interface CloseCodeFacts {
  readonly code: number;
  /** RFC 6455's name for 1000-1015; this protocol's for 4000-4999. */
  readonly name: string;
  /** Whether a client should connect again (with backoff): no when the server would refuse it again. */
  readonly retry: boolean;
}

const TOO_SLOW_REASON = 'too slow: the send buffer is full; reconnect and catch up';
const NO_HELLO_REASON = 'no hello';
const DISCONNECTED_REASON = 'disconnected by the server';

export const CloseCodes = {
  normalClosure: { code: 1000, name: 'normal closure', retry: true },
  goingAway: { code: 1001, name: 'going away', retry: true },
  unsupportedData: { code: 1003, name: 'unsupported data', retry: true },
  abnormalClosure: { code: 1006, name: 'abnormal closure', retry: true },
  messageTooBig: { code: 1009, name: 'message too big', retry: true },
  internalError: { code: 1011, name: 'internal error', retry: true },
  tryAgainLater: { code: 1013, name: 'try again later', retry: true },
  unsupportedProtocol: { code: 4000, name: 'unsupported protocol', retry: false },
  unauthorized: { code: 4001, name: 'unauthorized', retry: false },
  clientIdTaken: { code: 4003, name: 'client id taken', retry: false },
  disconnected: { code: 4010, name: 'disconnected', retry: true },
  noHello: { code: 4408, name: 'no hello', retry: true },
} as const satisfies Record<string, CloseCodeFacts>;

/**
 * When the server closes with each code, for the protocol document. A function, and apart from
 * `CloseCodes`, so that a client bundle (which needs only the numbers) leaves the prose out.
 */
export function closeCodeNotes(): Record<keyof typeof CloseCodes, string> {
  return {
    normalClosure:
      'The client closed the connection (the server answers in kind). SSE: the server ended the ' +
      "stream's one subscription (reason `the subscription ended`), after the `error` that says why.",
    goingAway:
      'The server is shutting down (reason `server shutting down`). Reconnect with backoff and resume.',
    unsupportedData: 'The client sent a binary frame (reason `text frames only`).',
    abnormalClosure:
      'Never sent; what a client sees when the connection ends without a close frame, e.g. when the ' +
      'heartbeat terminated it (no pong since the previous ping).',
    messageTooBig:
      'A frame larger than `maxMessageBytes`: `error too_large`, then this close (reason `message too ' +
      'large`). A frame much larger (over twice the limit) is refused by the WebSocket library from its ' +
      'header, before it is read: the close comes without an `error` frame and with an empty reason.',
    internalError:
      "The server's event feed stopped (reason `event feed failed`), a gap in a document's events could " +
      'not be repaired, delivering an event failed, or the socket failed. Reconnect and resume.',
    tryAgainLater:
      'The client read too slowly: more than `maxBufferedBytes` waited to be sent to it (reason ' +
      `\`${TOO_SLOW_REASON}\`). Resume with \`afterSeq\`.`,
    unsupportedProtocol:
      '`hello` named a protocol version this server does not speak (after `error unsupported_protocol`).',
    unauthorized: '`authenticate` refused the credentials of `hello` (after `error unauthorized`).',
    clientIdTaken:
      '`hello` named a client id that belongs to another principal (after `error forbidden`). Connect ' +
      'again with a client id of your own.',
    disconnected:
      'The app disconnected the principal (`engine.disconnect(principalId, reason?)`; reason ' +
      `\`${DISCONNECTED_REASON}\` unless the app gave one), on WebSocket and SSE alike. No \`error\` frame. ` +
      'Connecting again runs `authenticate` again, which decides whether the principal gets back in.',
    noHello:
      'The connection was not welcomed within `helloTimeoutMs` of opening (reason ' +
      `\`${NO_HELLO_REASON} within <ms> ms\`): no \`hello\`, or \`authenticate\` still deciding. No \`error\` ` +
      'frame. Connect again and send `hello` first. SSE streams are authenticated on their request and never get it.',
  };
}

/**
 * Whether a client should connect again after the server closed with `code`. Codes the server
 * does not send (1005, 1015, a proxy's own) are network trouble: yes.
 */
export function mayReconnect(code: number): boolean {
  return Object.values(CloseCodes).find((c) => c.code === code)?.retry ?? true;
}

/** The close of a client too slow to read (WebSocket close code and reason; SSE `event: close`). */
export const TOO_SLOW = { code: CloseCodes.tryAgainLater.code, reason: TOO_SLOW_REASON } as const;

/** The close of a WebSocket that did not send `hello` within `helloTimeoutMs` (the reason gets the ms appended). */
export const HELLO_TIMEOUT = { code: CloseCodes.noHello.code, reason: NO_HELLO_REASON } as const;

/** The close of every connection of a principal the app disconnected (`engine.disconnect`; the app may give the reason). */
export const DISCONNECTED = { code: CloseCodes.disconnected.code, reason: DISCONNECTED_REASON } as const;

// ---- names of documents and positions ------------------------------------------------------------

/**
 * `collection/documentId`: how the server (the engine's followers, a session's documents) and the
 * client (its feeds, its stored replicas) key a document. A collection name has no `/`, so the
 * first `/` ends it whatever the id holds.
 */
export const documentKey = (collection: string, documentId: string): string => `${collection}/${documentId}`;

/** The collection and id of a `documentKey`; `undefined` when `key` is not one. */
export function parseDocumentKey(key: string): { collection: string; documentId: string } | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0 || slash === key.length - 1) return undefined;
  return { collection: key.slice(0, slash), documentId: key.slice(slash + 1) };
}

/**
 * `collection/documentId/seq`: the SSE event id of a frame that carries one document's position
 * (`snapshot`, `event`), so a browser reconnecting with `Last-Event-ID` resumes after exactly it.
 */
export const sseEventId = (collection: string, documentId: string, seq: number): string =>
  `${documentKey(collection, documentId)}/${seq}`;

/** The document and seq an `sseEventId` names; `undefined` when `id` is not one. */
export function parseSseEventId(
  id: string,
): { collection: string; documentId: string; seq: number } | undefined {
  const slash = id.lastIndexOf('/');
  const seq = id.slice(slash + 1);
  const document = slash === -1 ? undefined : parseDocumentKey(id.slice(0, slash));
  if (!document || !/^\d{1,16}$/.test(seq) || !Number.isSafeInteger(Number(seq))) return undefined;
  return { ...document, seq: Number(seq) };
}

/** The `sub` of an SSE stream's one subscription: its `subscribed`, `synced`, `leave` and errors carry it. */
export const SSE_SUBSCRIPTION = 'sse';

/**
 * Under the SSE prefix, what changes an SSE client stream (`GET {sse}`, whose `welcome` names its
 * `streamId`): `POST …/subscriptions` a `subscribe`, `DELETE …/subscriptions/:sub` an `unsubscribe`,
 * `POST …/acks` an `ack`.
 */
export const sseStreamPath = (streamId: string, what: 'subscriptions' | 'acks'): string =>
  `/streams/${streamId}/${what}`;

/** Where the server mounts its transports unless told otherwise, and where the client looks for them. */
export const DEFAULT_PATHS = { sync: '/sync', sse: '/sse', api: '/api' } as const;
