/**
 * Raw HTTP request lines and headers from fast-check, 10,000 against `serve` and 10,000 against
 * an app that mounts `attach()`: every one is answered (a status line) or its connection closed
 * within 3 s, the process never throws out of a listener, and `/healthz` still answers after.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from '../server/http-client.js';
import { rawRequest, startAttachHost, startTarget } from './support.js';

const RUNS = 10_000;

const token = fc.stringMatching(/^[A-Za-z!#$%&'*+.^_`|~-]{1,12}$/);
/** Bytes a client may put anywhere: printable ASCII, the URL punctuation that once broke us, controls, UTF-8. */
const anyText = (maxLength: number) =>
  fc.string({
    unit: fc.oneof(
      fc.constantFrom(...'[]:%@?#/\\.~ \t{}"$'.split('')),
      fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      fc.integer({ min: 0x00, max: 0x1f }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('é', '€', '\u{1F600}', '\uFFFD'),
    ),
    maxLength,
  });

const method = fc.oneof(
  fc.constantFrom('GET', 'POST', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'PUT', 'CONNECT', 'TRACE'),
  token,
);

const target = fc.oneof(
  fc.constantFrom(
    '/',
    '/healthz',
    '/metrics',
    '/sync',
    '/api/games',
    '/api/games/g1',
    '/api/games/g1/events?after=0',
    '/api/sync/games/g1',
    '/sse/games',
    '/sse/games/g1',
    'http://[::1',
    'http://[',
    'http://',
    '*',
    '//x',
    '/%',
    '/api/%zz',
    '/api/games?filter=%7B',
    'http://x/api/games',
  ),
  fc
    .tuple(fc.constantFrom('/', '/api/', '/sse/', '/sync', 'http://', 'http://[', ''), anyText(40))
    .map(([prefix, rest]) => prefix + rest),
);

const version = fc.oneof(
  fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1 x', ''),
  anyText(10),
);

const header = fc.oneof(
  fc.tuple(fc.constant('Host'), fc.oneof(fc.constant('x'), anyText(20))),
  fc.tuple(fc.constant('Upgrade'), fc.constantFrom('websocket', 'WebSocket', 'h2c', '')),
  fc.tuple(fc.constant('Connection'), fc.constantFrom('Upgrade', 'close', 'keep-alive', 'upgrade, close')),
  fc.tuple(fc.constant('Sec-WebSocket-Key'), fc.constantFrom('dGhlIHNhbXBsZSBub25jZQ==', 'x', '')),
  fc.tuple(fc.constant('Sec-WebSocket-Version'), fc.constantFrom('13', '8', 'x')),
  fc.tuple(
    fc.constant('Content-Length'),
    fc.oneof(fc.nat(100).map(String), fc.constantFrom('-1', 'x', '99999999999')),
  ),
  fc.tuple(fc.constant('Transfer-Encoding'), fc.constantFrom('chunked', 'gzip', 'chunked, chunked')),
  fc.tuple(fc.constant('Content-Type'), fc.constantFrom('application/json', 'text/plain', '')),
  fc.tuple(fc.constant('Authorization'), fc.oneof(fc.constant('Bearer t'), anyText(30))),
  fc.tuple(fc.constant('Last-Event-ID'), anyText(30)),
  fc.tuple(fc.constant('If-Match'), anyText(10)),
  fc.tuple(token, anyText(30)),
  fc.tuple(anyText(10), anyText(10)),
);

const request = fc
  .record({
    method,
    target,
    version,
    headers: fc.array(header, { maxLength: 6 }),
    newline: fc.constantFrom('\r\n', '\r\n', '\n'),
    body: fc.option(anyText(60), { nil: undefined }),
  })
  .map(({ method: m, target: t, version: v, headers, newline, body }) => {
    const lines = [`${m} ${t} ${v}`.trimEnd(), ...headers.map(([name, value]) => `${name}: ${value}`)];
    return `${lines.join(newline)}${newline}${newline}${body ?? ''}`;
  });

/** Answered or closed: a request the server left hanging with the client done fails the property. */
async function answered(port: number, bytes: string): Promise<boolean> {
  const answer = await rawRequest(port, bytes, { waitMs: 3000, firstByte: true });
  return answer.closed || answer.status !== undefined || answer.text.length > 0;
}

describe('fuzzed raw HTTP requests', () => {
  const unhandled: unknown[] = [];
  const onError = (error: unknown) => unhandled.push(error);
  beforeAll(() => {
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
  });
  afterAll(() => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  });

  it(`against serve: ${RUNS} requests, every one answered or closed, none thrown`, async () => {
    const target = await startTarget('memory');
    try {
      await fc.assert(
        fc.asyncProperty(request, (bytes) => answered(target.port, bytes)),
        { numRuns: RUNS },
      );
      expect(unhandled).toEqual([]);
      expect((await http(target.url, 'GET', '/healthz')).status).toBe(200);
    } finally {
      await target.close();
    }
  }, 300_000);

  it(`against an app that mounts attach(): ${RUNS} requests, every one answered or closed, none thrown`, async () => {
    const host = await startAttachHost();
    try {
      await fc.assert(
        fc.asyncProperty(request, (bytes) => answered(host.port, bytes)),
        { numRuns: RUNS },
      );
      expect(unhandled).toEqual([]);
      expect((await http(host.url, 'GET', '/anything')).text).toBe('app');
    } finally {
      await host.close();
    }
  }, 300_000);
});
