/**
 * What the HTTP transports (REST, SSE) share: credentials from a request, JSON bodies with a
 * size and depth limit, and errors as `{ error: { code, message } }` with the status of their
 * code. No framework: plain `node:http` requests and responses (Express and Fastify hand the
 * same objects, subclassed).
 */

import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { type ErrorCode, ErrorStatus, EventSyncError } from '../core/errors.js';
import { isId } from '../core/ids.js';
import type { Logger } from '../events/logger.js';
import { parseClientJson } from '../sync/json.js';
import type { SessionHost } from '../sync/session-host.js';
import type { Principal } from '../sync/types.js';

/** A request handler an app can mount: `true` when it took the request (and will answer it). */
export interface RequestHandler {
  handle(req: IncomingMessage, res: ServerResponse): boolean;
}

/**
 * The `handle` of a transport mounted under `prefix`: each request under it goes to `serve`,
 * whose failure is answered as an error (`sendError`); a target no URL parser takes is 400. A
 * request elsewhere is not taken (`false`), for the next handler or the app.
 */
export function handleUnder(
  prefix: string,
  logger: Logger,
  serve: (req: IncomingMessage, res: ServerResponse, url: URL, segments: string[]) => Promise<void>,
): RequestHandler['handle'] {
  return (req, res) => {
    let url: URL;
    let segments: string[] | undefined;
    try {
      url = requestUrl(req);
      segments = segmentsUnder(url.pathname, prefix);
    } catch (error) {
      if (!(error instanceof EventSyncError)) return false; // not a URL we could read: not ours
      sendError(res, error, logger);
      return true;
    }
    if (!segments) return false;
    serve(req, res, url, segments).catch((error: unknown) =>
      sendError(res, error, logger, { method: req.method, path: url.pathname }),
    );
    return true;
  };
}

/** `/api/` → `/api`, `api` → `/api`. */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '');
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`;
}

/** The credentials of a request: `Authorization: Bearer …`, else `?token=`. */
export function requestToken(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (match) return match[1];
  }
  return url.searchParams.get('token') ?? undefined;
}

/** Who each request was authenticated as, for `serve`'s request log. */
const principals = new WeakMap<IncomingMessage, string>();

/** The id of the principal `authenticateRequest` found for `req`, if it ran and accepted. */
export function requestPrincipal(req: IncomingMessage): string | undefined {
  return principals.get(req);
}

/** Runs the host's `authenticate` on a request; throws `unauthorized` when it refuses. */
export async function authenticateRequest(
  host: Pick<SessionHost, 'authenticate'>,
  req: IncomingMessage,
  url: URL,
): Promise<Principal> {
  const token = requestToken(req, url);
  const principal = await host.authenticate({
    headers: req.headers,
    url: req.url ?? '/',
    ...(token === undefined ? {} : { token }),
  });
  if (!principal) {
    throw new EventSyncError(
      'unauthorized',
      'the credentials were refused: send Authorization: Bearer <token> (or ?token=)',
    );
  }
  principals.set(req, principal.id);
  return principal;
}

/**
 * The client id a principal's REST calls act as: the principal's id when it is an id (the usual
 * case), else a stable id made from it, `p-` and 32 hex digits of its SHA-256. Events name their
 * actor and vector clocks are keyed by client ids, which must be ids (see `core/ids.ts`); a
 * principal id such as Auth0's `auth0|42` is not one, and must not make its REST writes fail.
 */
export function principalClientId(principal: Principal): string {
  if (isId(principal.id)) return principal.id;
  return `p-${createHash('sha256').update(principal.id).digest('hex').slice(0, 32)}`;
}

/** Throws `forbidden` unless the host's `authorize` allows it. */
export async function mustAuthorize(
  host: Pick<SessionHost, 'authorize'>,
  principal: Principal,
  action: 'read' | 'subscribe' | 'write',
  collection: string,
  documentId?: string,
): Promise<void> {
  if (!(await host.authorize(principal, action, collection, documentId))) {
    const what = documentId === undefined ? collection : `${collection}/${documentId}`;
    throw new EventSyncError('forbidden', `you may not ${action} ${what}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request body as text, at most `maxBytes` (`too_large` past that, checked against
 * Content-Length first so a large upload is refused before it is read).
 */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const tooLarge = () => new EventSyncError('too_large', `request bodies are limited to ${maxBytes} bytes`);
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  if (req.readableEnded) return bodyReadBefore(req, maxBytes, tooLarge);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        // Stop reading (not destroy: the 413 still has to go out on this socket).
        cleanup();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      try {
        resolve(utf8.decode(Buffer.concat(chunks)));
      } catch {
        // Decoding leniently would store U+FFFD in place of the bytes the client sent.
        reject(new EventSyncError('bad_message', 'the body is not valid UTF-8'));
      }
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

/**
 * The body of a request a body parser mounted before us (e.g. `express.json()`) has already
 * read: its `req.body`, as text again. Waiting for the stream's `end` would wait forever.
 */
function bodyReadBefore(req: IncomingMessage, maxBytes: number, tooLarge: () => Error): string {
  const parsed = (req as IncomingMessage & { body?: unknown }).body;
  if (parsed === undefined) {
    throw new EventSyncError(
      'internal',
      'the request body was read before eventsync saw the request: mount the handler before body ' +
        'parsers (Fastify: in an onRequest hook), or leave the parsed body on req.body',
    );
  }
  const text =
    typeof parsed === 'string'
      ? parsed
      : Buffer.isBuffer(parsed)
        ? utf8.decode(parsed)
        : JSON.stringify(parsed);
  if (Buffer.byteLength(text) > maxBytes) throw tooLarge();
  return text;
}

/** Parses a request body or JSON query parameter the way frames are parsed; throws `bad_message`. */
export function parseJson(text: string, maxDepth: number, what = 'the body'): unknown {
  const parsed = parseClientJson(text, maxDepth);
  if (!parsed.ok) throw new EventSyncError('bad_message', `${what} ${parsed.reason}`);
  return parsed.value;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/**
 * Answers with the error: ours by their code's status, anything else as 500 `internal` (logged,
 * no details to the client). A response already under way is cut off instead.
 */
export function sendError(res: ServerResponse, error: unknown, logger: Logger, context: object = {}): void {
  let code: ErrorCode = 'internal';
  let message = 'the server could not handle this request';
  if (EventSyncError.is(error) && error.code !== 'internal') {
    code = error.code;
    message = error.message;
  } else {
    logger.error({ err: error, ...context }, 'eventsync: handling a request failed');
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = {};
  if (code === 'unauthorized') headers['www-authenticate'] = 'Bearer';
  // The rest of a refused upload is not worth reading: close the connection after the answer.
  if (code === 'too_large') headers.connection = 'close';
  sendJson(res, ErrorStatus[code], { error: { code, message } }, headers);
}

/** A 405 for a path that exists but not with this method. */
export function methodNotAllowed(res: ServerResponse, method: string, allow: string[]): void {
  sendJson(
    res,
    405,
    {
      error: {
        code: 'method_not_allowed',
        message: `${method} is not allowed here; use ${allow.join(', ')}`,
      },
    },
    { allow: allow.join(', ') },
  );
}

/** The path's segments after `prefix` (decoded), or `undefined` when the path is not under it. */
export function segmentsUnder(pathname: string, prefix: string): string[] | undefined {
  if (pathname !== prefix && !pathname.startsWith(`${prefix}/`)) return undefined;
  const rest = pathname.slice(prefix.length + 1);
  if (rest === '') return [];
  return rest.split('/').map((segment) => {
    try {
      return decodeURIComponent(segment);
    } catch {
      throw new EventSyncError('bad_message', 'the path is not valid percent-encoding');
    }
  });
}

/** A non-negative integer query parameter (`fallback` when absent); `validation` otherwise. */
export function intParam(url: URL, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  if (!/^\d{1,16}$/.test(raw) || Number(raw) > max) {
    throw new EventSyncError('validation', `${name} must be an integer from 0 to ${max}`);
  }
  return Number(raw);
}

/**
 * The request's URL (path and query) resolved against a dummy origin. A target no URL parser
 * takes (`http://[::1`, which Node's HTTP parser lets through) is `bad_message`, never a TypeError.
 */
export function requestUrl(req: { url?: string | undefined }): URL {
  const raw = req.url ?? '/';
  try {
    // Origin-form ('/path?query') is appended, so '//x' stays a path instead of naming a host.
    return raw.startsWith('/') ? new URL(`http://localhost${raw}`) : new URL(raw, 'http://localhost');
  } catch {
    throw new EventSyncError('bad_message', 'the request target is not a valid URL');
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
};

/**
 * Answers an upgrade request that will not be upgraded, on its raw socket, and destroys the
 * socket: Node hands upgrade sockets over without an error listener or a timeout, so one left
 * open sits in CLOSE-WAIT forever (and an `ECONNRESET` on it would be an uncaught error).
 */
export function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  socket.on('error', () => {});
  if (socket.writable) {
    const body = `${message}\n`;
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
        'connection: close\r\ncontent-type: text/plain; charset=utf-8\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
