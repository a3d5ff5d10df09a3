/** `eventsync` argv → what to do. No I/O: `main.ts` runs the result. */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

export const DEFAULT_PORT = 8080;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DB = './data';

export const USAGE = `Usage: eventsync serve [options]

Starts the sync server: WebSocket /sync, SSE /sse/:collection[/:id], REST /api/:collection,
/healthz and /metrics.

Options:
  --db <where>         a PGlite data directory (default ${DEFAULT_DB}), a postgres:// URL,
                       or "memory" (nothing kept)
  --port <n>           port to listen on (default ${DEFAULT_PORT}; 0 picks a free one)
  --host <address>     address to listen on (default ${DEFAULT_HOST}: this machine only)
  --log-level <level>  fatal, error, warn, info, debug or trace (default info)
  --auth <none|jwt>    none (the default on a loopback --host): a token is taken as the
                       actor's name, so anyone who reaches the server may act as anyone; any
                       other --host needs --auth written out
                       jwt: a bearer token must be a JWT (signature and exp checked); its
                       sub claim is the actor
  --jwt-secret <s>     --auth jwt: the HS256 shared secret (at least 32 bytes)
  --jwks-url <url>     --auth jwt: the issuer's JSON Web Key Set (https://, or http:// on loopback)
  --jwt-audience <a>   --auth jwt: the aud claim tokens must carry
  --jwt-issuer <i>     --auth jwt: the iss claim tokens must carry
  --rules <module>     a JavaScript module whose default (or authorize) export decides what
                       each principal may do; allow-all lets everyone do everything. Required
                       with --auth jwt; default with --auth none: allow-all
  -h, --help           this text
  -v, --version        the version
`;

export interface ServeCommand {
  command: 'serve';
  db: string;
  port: number;
  host: string;
  logLevel: LogLevel;
  auth: AuthSpec;
}

/**
 * Who a request comes from (`--auth`) and what it may do (`rules`: the path of a module that
 * exports `authorize`, or `'allow-all'`).
 */
export type AuthSpec = { mode: 'none'; rules?: string } | JwtSpec;

/** `--auth jwt`: exactly one of `secret` (HS256) and `jwksUrl`. */
export interface JwtSpec {
  mode: 'jwt';
  secret?: string;
  jwksUrl?: string;
  audience?: string;
  issuer?: string;
  /** Absent only through `serve()`'s API, when `engine.authorize` is given instead. */
  rules?: string;
}

export type Command = ServeCommand | { command: 'help' } | { command: 'version' };

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A mistake on the command line: print the message and the usage, exit 2. */
export class UsageError extends Error {}

export function parseCommand(argv: string[]): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  if (values.version) return { command: 'version' };
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError('missing command: eventsync serve');
  if (command !== 'serve') throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);

  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!/^\d{1,5}$/.test(values.port ?? '0') || port > 65535) {
    throw new UsageError(`--port must be a number from 0 to 65535, not ${JSON.stringify(values.port)}`);
  }
  const logLevel = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const db = values.db ?? DEFAULT_DB;
  if (db === '') throw new UsageError('--db must not be empty');
  const host = values.host ?? DEFAULT_HOST;
  if (host === '') throw new UsageError('--host must not be empty');
  return { command: 'serve', db, port, host, logLevel, auth: parseAuth(values, host) };
}

const JWT_FLAGS = ['jwt-secret', 'jwks-url', 'jwt-audience', 'jwt-issuer'] as const;

function parseAuth(values: ReturnType<typeof parse>['values'], host: string): AuthSpec {
  for (const flag of [...JWT_FLAGS, 'rules'] as const) {
    if (values[flag] === '') throw new UsageError(`--${flag} must not be empty`);
  }
  const rules = values.rules;
  if (values.auth === undefined || values.auth === 'none') {
    const problem = unauthenticatedHostProblem(host, values.auth !== undefined);
    if (problem) throw new UsageError(`${problem}: pass --auth jwt …, or --auth none to accept that`);
    const jwtFlag = JWT_FLAGS.find((flag) => values[flag] !== undefined);
    if (jwtFlag) throw new UsageError(`--${jwtFlag} needs --auth jwt`);
    return rules === undefined ? { mode: 'none' } : { mode: 'none', rules };
  }
  if (values.auth !== 'jwt')
    throw new UsageError(`--auth must be none or jwt, not ${JSON.stringify(values.auth)}`);
  const { 'jwt-secret': secret, 'jwks-url': jwksUrl } = values;
  if ((secret === undefined) === (jwksUrl === undefined)) {
    throw new UsageError('--auth jwt needs one of --jwt-secret <secret> (HS256) or --jwks-url <url>');
  }
  // A short HMAC secret can be guessed offline from any one token: RFC 7518 asks for 256 bits.
  if (secret !== undefined && new TextEncoder().encode(secret).length < 32) {
    throw new UsageError('--jwt-secret must be at least 32 bytes (HS256 needs a 256-bit key)');
  }
  if (jwksUrl !== undefined) assertJwksUrl(jwksUrl);
  if (rules === undefined) {
    throw new UsageError(
      '--auth jwt needs --rules ./rules.js (what each principal may do), or --rules allow-all to let every valid token read and write everything',
    );
  }
  const spec: JwtSpec = { mode: 'jwt', rules };
  if (secret !== undefined) spec.secret = secret;
  if (jwksUrl !== undefined) spec.jwksUrl = jwksUrl;
  if (values['jwt-audience'] !== undefined) spec.audience = values['jwt-audience'];
  if (values['jwt-issuer'] !== undefined) spec.issuer = values['jwt-issuer'];
  return spec;
}

/** Keys fetched over plain HTTP from another machine could be swapped on the way: https only, but on loopback. */
function assertJwksUrl(jwksUrl: string): void {
  let url: URL;
  try {
    url = new URL(jwksUrl);
  } catch {
    throw new UsageError(`--jwks-url must be a URL, not ${JSON.stringify(jwksUrl)}`);
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname))) return;
  throw new UsageError('--jwks-url must be https:// (http:// only for a loopback host)');
}

/**
 * Why serving without authentication on `host` is refused, or `undefined` when it is not: on a
 * loopback address only this machine's users and programs can act as anyone; on any other,
 * anyone who reaches it can, so that must be asked for (`explicit`).
 */
export function unauthenticatedHostProblem(host: string, explicit: boolean): string | undefined {
  if (explicit || isLoopback(host)) return undefined;
  return `--host ${host} is not a loopback address, and without authentication anyone who reaches it may act as anyone`;
}

/** `localhost`, `127.x.y.z`, `::1` (also as `[::1]`, a URL's hostname). */
export function isLoopback(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      db: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'log-level': { type: 'string' },
      auth: { type: 'string' },
      'jwt-secret': { type: 'string' },
      'jwks-url': { type: 'string' },
      'jwt-audience': { type: 'string' },
      'jwt-issuer': { type: 'string' },
      rules: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
}

/** How `--db` is read: a PostgreSQL URL, memory, or a PGlite data directory. */
export type DatabaseSpec =
  | { kind: 'postgres'; url: string }
  | { kind: 'memory' }
  | { kind: 'pglite'; dataDir: string };

export function databaseSpec(db: string): DatabaseSpec {
  if (/^postgres(ql)?:\/\//i.test(db)) return { kind: 'postgres', url: db };
  if (db === 'memory') return { kind: 'memory' };
  return { kind: 'pglite', dataDir: db };
}

/** The database for logs: a URL without its password. */
export function describeDatabase(spec: DatabaseSpec): string {
  if (spec.kind === 'memory') return 'memory';
  if (spec.kind === 'pglite') return `pglite:${spec.dataDir}`;
  try {
    const url = new URL(spec.url);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'postgres (unparsable URL)';
  }
}
