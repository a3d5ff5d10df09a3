/**
 * Which web pages may use the server, checked on every WebSocket upgrade, SSE stream and REST
 * request before anything else runs.
 *
 * - **Origin**: a browser names the page that makes a request (`Origin`). WebSockets have no CORS,
 *   and a `text/plain` POST needs no preflight, so without this check any website a user visits
 *   could read and write through the user's browser (with cookie-based `authenticate`, as the
 *   user: cross-site WebSocket hijacking). Default: same origin only (the `Origin`'s host equals
 *   the request's `Host`); `allowedOrigins` adds others, `'*'` allows every origin. Requests
 *   without `Origin` (servers, curl, same-origin navigations) pass.
 * - **Host**: a page on `evil.example` whose name an attacker re-points at 127.0.0.1 (DNS
 *   rebinding) is same-origin with itself; only a list of the names the server answers to stops
 *   it. `eventsync serve` on a loopback address answers only to `localhost`, `127.0.0.1` and `[::1]`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { EventSyncError } from '../core/errors.js';
import type { AccessOptions } from '../sync/types.js';

export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]', '::1'];

/** `localhost`, `127.x.y.z`, `::1` (also as `[::1]`, a URL's hostname). */
export function isLoopback(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

/** Why the request may not go on (a 403 message), or `undefined` when it may. */
export function accessProblem(req: IncomingMessage, access: AccessOptions): string | undefined {
  const host = req.headers.host?.toLowerCase();
  if (access.allowedHosts && !access.allowedHosts.includes(hostName(host))) {
    return `this server does not answer to the host ${JSON.stringify(host ?? '')}`;
  }
  const origin = req.headers.origin;
  if (origin === undefined || access.allowedOrigins === '*') return undefined;
  if (access.allowedOrigins?.includes(origin)) return undefined;
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host; // `null` (sandboxed pages, file:) does not parse: refused
  } catch {
    originHost = undefined;
  }
  if (originHost !== undefined && originHost === host) return undefined;
  return `pages from ${JSON.stringify(origin)} may not use this server (allowedOrigins)`;
}

/** What a page on another origin may send beyond the CORS-safelisted headers. */
const CORS_REQUEST_HEADERS =
  'Authorization, Content-Type, If-Match, Last-Event-ID, Idempotency-Key, X-Eventsync-Client-Id, X-Eventsync-Mutation-Id';
/** What such a page may read of an answer beyond the safelisted headers. */
const CORS_EXPOSED_HEADERS = 'ETag, Location, Link, Idempotent-Replayed';

/**
 * Lets a page on another origin that `allowedOrigins` names read REST answers and SSE streams
 * (CORS); call after {@link accessProblem} let the request through. Same-origin requests and
 * those without `Origin` get nothing. An origin listed by name may send credentials (cookies);
 * with `'*'` it may not: every site would otherwise read as the visitor. A preflight (`OPTIONS`
 * with `Access-Control-Request-Method`) is answered here: returns true when it was.
 */
export function applyCors(
  req: IncomingMessage,
  res: ServerResponse,
  access: AccessOptions,
  methods: readonly string[],
): boolean {
  const origin = req.headers.origin;
  if (origin === undefined || isSameOrigin(origin, req.headers.host)) return false;
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('vary', 'Origin');
  if (access.allowedOrigins !== '*') res.setHeader('access-control-allow-credentials', 'true');
  res.setHeader('access-control-expose-headers', CORS_EXPOSED_HEADERS);
  if (req.method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
  res.writeHead(204, {
    'access-control-allow-methods': methods.join(', '),
    'access-control-allow-headers': CORS_REQUEST_HEADERS,
    'access-control-max-age': '600',
    'content-length': '0',
  });
  res.end();
  return true;
}

function isSameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host?.toLowerCase();
  } catch {
    return false;
  }
}

/** `Host: example.com:8080` → `example.com`; `[::1]:80` → `[::1]`. */
function hostName(host: string | undefined): string {
  if (!host) return '';
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** `application/json`, with or without parameters (`; charset=utf-8`). */
export function isJsonContentType(req: IncomingMessage): boolean {
  const type = req.headers['content-type'];
  if (type === undefined) return false;
  const essence = type.split(';', 1)[0]!.trim().toLowerCase();
  return essence === 'application/json' || (essence.startsWith('application/') && essence.endsWith('+json'));
}

/**
 * Writes take JSON only: a form or `text/plain` body is what a page on another origin can send
 * without a CORS preflight, so refusing it keeps such pages out even where `Origin` is missing.
 */
export function assertJsonBody(req: IncomingMessage): void {
  if (!isJsonContentType(req)) {
    throw new EventSyncError(
      'unsupported_media_type',
      'send the body as JSON with Content-Type: application/json',
    );
  }
}
