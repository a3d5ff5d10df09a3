/** `eventsync` argv → what to do. No I/O: `main.ts` runs the result. */
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
  -h, --help           this text
  -v, --version        the version
`;

export interface ServeCommand {
  command: 'serve';
  db: string;
  port: number;
  host: string;
  logLevel: LogLevel;
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
  return { command: 'serve', db, port, host, logLevel };
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
