/**
 * `eventsync` argv and environment → what to do. No I/O: `main.ts` runs the result. Every
 * option of `serve` may also come from an environment variable (`SERVE_ENV`); a flag wins.
 */
import { parseArgs } from 'node:util';
import { isLoopback } from '../server/access.js';
import { type AuthSpec, type JwtSpec, unauthenticatedHostProblem } from '../server/serve-auth.js';

export const DEFAULT_PORT = 8080;
export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_DB = './data';

/** Each option of `serve`, and the environment variable it is read from when the flag is absent. */
export const SERVE_ENV = {
  db: 'DATABASE_URL',
  port: 'PORT',
  host: 'HOST',
  'log-level': 'EVENTSYNC_LOG_LEVEL',
  'log-format': 'EVENTSYNC_LOG_FORMAT',
  auth: 'EVENTSYNC_AUTH',
  'jwt-secret': 'EVENTSYNC_JWT_SECRET',
  'jwks-url': 'EVENTSYNC_JWKS_URL',
  'jwt-audience': 'EVENTSYNC_JWT_AUDIENCE',
  'jwt-issuer': 'EVENTSYNC_JWT_ISSUER',
  rules: 'EVENTSYNC_RULES',
} as const;

type OptionName = keyof typeof SERVE_ENV;

export const USAGE = `Usage: eventsync <command> [options]

Commands:
  serve        run the sync server (eventsync serve --help for its options)

Options:
  -h, --help     this text; eventsync <command> --help (or eventsync help <command>) for a command's
  -v, --version  the version
`;

export const SERVE_USAGE = `Usage: eventsync serve [options]

Starts the sync server: WebSocket /sync, SSE /sse/:collection[/:id], REST /api/:collection,
/healthz and /metrics. Each option may also be set by the environment variable in brackets;
the flag wins.

Options:
  --db <where>          a PGlite data directory (default ${DEFAULT_DB}), a postgres:// URL, or
                        "memory" (nothing kept)                                    [DATABASE_URL]
  --port <n>            port to listen on (default ${DEFAULT_PORT}; 0 picks a free one)          [PORT]
  --host <address>      address to listen on (default ${DEFAULT_HOST}: this machine only)      [HOST]
  --log-level <level>   fatal, error, warn, info, debug, trace or silent (default info); debug
                        logs every request and WebSocket, and stacks    [EVENTSYNC_LOG_LEVEL]
  --log-format <f>      pretty (one readable line per entry; the default on a terminal) or
                        json (JSON lines; the default otherwise)       [EVENTSYNC_LOG_FORMAT]
  --auth <none|jwt>     none (the default on a loopback --host): a token is taken as the
                        actor's name, so anyone who reaches the server may act as anyone; any
                        other --host needs --auth written out
                        jwt: a bearer token must be a JWT (signature and exp checked); its
                        sub claim is the actor                               [EVENTSYNC_AUTH]
  --jwt-secret <s>      --auth jwt: the HS256 shared secret, at least 32 bytes (the environment
                        keeps it out of the process list)              [EVENTSYNC_JWT_SECRET]
  --jwks-url <url>      --auth jwt: the issuer's JSON Web Key Set (https://, or http:// on
                        loopback)                                        [EVENTSYNC_JWKS_URL]
  --jwt-audience <a>    --auth jwt: the aud claim tokens must carry  [EVENTSYNC_JWT_AUDIENCE]
  --jwt-issuer <i>      --auth jwt: the iss claim tokens must carry    [EVENTSYNC_JWT_ISSUER]
  --rules <module>      a JavaScript module whose default (or authorize) export decides what
                        each principal may do; allow-all lets everyone do everything. Required
                        with --auth jwt; default with --auth none: allow-all    [EVENTSYNC_RULES]
  -h, --help            this text
`;

export interface ServeCommand {
  command: 'serve';
  db: string;
  port: number;
  host: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
  auth: AuthSpec;
}

export type Command = ServeCommand | { command: 'help'; text: string } | { command: 'version' };

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** A mistake on the command line or in the environment: print the message, exit 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/**
 * What `argv` (after `eventsync`) asks for, with `env` filling in the options it leaves out.
 * `stdoutIsTTY` picks the default log format.
 */
export function parseCommand(
  argv: string[],
  env: Record<string, string | undefined> = {},
  stdoutIsTTY = false,
): Command {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, ...extra] = positionals;
  if (values.version) return { command: 'version' };
  if (values.help || command === 'help') return help(command === 'help' ? extra[0] : command);
  if (command === undefined) throw new UsageError('missing command: eventsync serve');
  if (command !== 'serve') throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  return serveCommand(options(values, env), stdoutIsTTY);
}

function help(topic: string | undefined): Command {
  if (topic === undefined) return { command: 'help', text: USAGE };
  if (topic === 'serve') return { command: 'help', text: SERVE_USAGE };
  throw new UsageError(`unknown command ${JSON.stringify(topic)}`);
}

/** Reads each option from its flag, else from its environment variable (empty counts as unset). */
interface Options {
  get(name: OptionName): string | undefined;
  /** Where the option came from, for messages: `--port`, or `PORT` when the environment set it. */
  label(name: OptionName): string;
}

function options(
  values: ReturnType<typeof parse>['values'],
  env: Record<string, string | undefined>,
): Options {
  const fromEnv = (name: OptionName) => (values[name] === undefined && env[SERVE_ENV[name]]) || undefined;
  return {
    get: (name) => values[name] ?? fromEnv(name),
    label: (name) => (fromEnv(name) === undefined ? `--${name}` : `${SERVE_ENV[name]} (environment)`),
  };
}

function serveCommand(option: Options, stdoutIsTTY: boolean): ServeCommand {
  for (const name of [
    'db',
    'host',
    'jwt-secret',
    'jwks-url',
    'jwt-audience',
    'jwt-issuer',
    'rules',
  ] as const) {
    if (option.get(name) === '') throw new UsageError(`${option.label(name)} must not be empty`);
  }
  const rawPort = option.get('port');
  const port = rawPort === undefined ? DEFAULT_PORT : Number(rawPort);
  if (!/^\d{1,5}$/.test(rawPort ?? '0') || port > 65535) {
    throw new UsageError(
      `${option.label('port')} must be a number from 0 to 65535, not ${JSON.stringify(rawPort)}`,
    );
  }
  const logLevel = oneOf(option, 'log-level', LOG_LEVELS) ?? 'info';
  const logFormat = oneOf(option, 'log-format', LOG_FORMATS) ?? (stdoutIsTTY ? 'pretty' : 'json');
  const db = option.get('db') ?? DEFAULT_DB;
  const host = option.get('host') ?? DEFAULT_HOST;
  return { command: 'serve', db, port, host, logLevel, logFormat, auth: parseAuth(option, host) };
}

function oneOf<T extends string>(option: Options, name: OptionName, allowed: readonly T[]): T | undefined {
  const value = option.get(name);
  if (value === undefined || allowed.includes(value as T)) return value as T | undefined;
  throw new UsageError(
    `${option.label(name)} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`,
  );
}

const JWT_OPTIONS = ['jwt-secret', 'jwks-url', 'jwt-audience', 'jwt-issuer'] as const;

function parseAuth(option: Options, host: string): AuthSpec {
  const rules = option.get('rules');
  const mode = option.get('auth');
  if (mode === undefined || mode === 'none') {
    const problem = unauthenticatedHostProblem(host, mode !== undefined);
    if (problem) throw new UsageError(`${problem}: pass --auth jwt …, or --auth none to accept that`);
    const jwtOption = JWT_OPTIONS.find((name) => option.get(name) !== undefined);
    if (jwtOption) throw new UsageError(`${option.label(jwtOption)} needs --auth jwt`);
    return rules === undefined ? { mode: 'none' } : { mode: 'none', rules };
  }
  if (mode !== 'jwt')
    throw new UsageError(`${option.label('auth')} must be none or jwt, not ${JSON.stringify(mode)}`);
  const secret = option.get('jwt-secret');
  const jwksUrl = option.get('jwks-url');
  if ((secret === undefined) === (jwksUrl === undefined)) {
    throw new UsageError('--auth jwt needs one of --jwt-secret <secret> (HS256) or --jwks-url <url>');
  }
  // A short HMAC secret can be guessed offline from any one token: RFC 7518 asks for 256 bits.
  if (secret !== undefined && new TextEncoder().encode(secret).length < 32) {
    throw new UsageError(
      `${option.label('jwt-secret')} must be at least 32 bytes (HS256 needs a 256-bit key)`,
    );
  }
  if (jwksUrl !== undefined) assertJwksUrl(jwksUrl, option.label('jwks-url'));
  if (rules === undefined) {
    throw new UsageError(
      '--auth jwt needs --rules ./rules.js (what each principal may do), or --rules allow-all to let every valid token read and write everything',
    );
  }
  const spec: JwtSpec = { mode: 'jwt', rules };
  if (secret !== undefined) spec.secret = secret;
  if (jwksUrl !== undefined) spec.jwksUrl = jwksUrl;
  const audience = option.get('jwt-audience');
  const issuer = option.get('jwt-issuer');
  if (audience !== undefined) spec.audience = audience;
  if (issuer !== undefined) spec.issuer = issuer;
  return spec;
}

/** Keys fetched over plain HTTP from another machine could be swapped on the way: https only, but on loopback. */
function assertJwksUrl(jwksUrl: string, label: string): void {
  let url: URL;
  try {
    url = new URL(jwksUrl);
  } catch {
    throw new UsageError(`${label} must be a URL, not ${JSON.stringify(jwksUrl)}`);
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname))) return;
  throw new UsageError(`${label} must be https:// (http:// only for a loopback host)`);
}

function parse(argv: string[]) {
  const strings = Object.fromEntries(Object.keys(SERVE_ENV).map((name) => [name, { type: 'string' }])) as {
    [name in OptionName]: { type: 'string' };
  };
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      ...strings,
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
    },
  });
}
