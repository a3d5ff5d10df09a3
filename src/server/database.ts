/**
 * `serve`'s `db` option: which database it names (a PostgreSQL URL, `memory`, or a PGlite data
 * directory), how that is shown in logs (never with a password), and opening it with a progress
 * line and, on failure, one sentence saying what to do.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { memoryDatabase } from '../backends/memory/memory-database.js';
import type { Database } from '../core/collection-backend.js';
import { ValidationError } from '../core/errors.js';
import type { Logger } from '../events/logger.js';
import { StartupError, systemCode } from './startup-errors.js';

/** How `db` is read: a PostgreSQL URL, memory, or a PGlite data directory (absolute). */
export type DatabaseSpec =
  | { kind: 'postgres'; url: string }
  | { kind: 'memory' }
  | { kind: 'pglite'; dataDir: string };

/**
 * Reads `db`. Anything that looks like a URL must be a PostgreSQL one: `postgress://…` taken as
 * a directory name would quietly create an empty embedded database instead.
 */
export function databaseSpec(db: string): DatabaseSpec {
  if (db === 'memory') return { kind: 'memory' };
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(db)?.[1];
  if (scheme === undefined) return { kind: 'pglite', dataDir: resolve(db) };
  const shown = redactCredentials(db);
  if (!/^postgres(ql)?$/i.test(scheme)) {
    throw new ValidationError(
      `the database ${shown} is not a postgres:// URL: write a postgres:// (or postgresql://) URL for PostgreSQL, a directory path for the embedded database, or memory`,
    );
  }
  if (!URL.canParse(db)) {
    throw new ValidationError(
      `the database URL ${shown} cannot be parsed: percent-encode special characters of the user name and password (@ as %40, / as %2F, : as %3A)`,
    );
  }
  return { kind: 'postgres', url: db };
}

/** The database for logs and messages: a URL without its password. */
export function describeDatabase(spec: DatabaseSpec): string {
  if (spec.kind === 'memory') return 'memory';
  if (spec.kind === 'pglite') return `pglite:${spec.dataDir}`;
  return redactCredentials(spec.url);
}

/**
 * `scheme://user:password@` → `scheme://user:***@`, wherever it occurs in `text` (a message, a
 * stack, a JSON log line). Greedy up to the last `@` before a space or quote, so a password that
 * itself holds `@` or `/` is hidden whole; a URL's host is sometimes hidden with it, never the password.
 */
export function redactCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/[^\s"'/:@]*):[^\s"']*@/gi, '$1:***@');
}

/** Opens the database `spec` names, saying so first; failures become a `StartupError`. */
export async function openDatabase(spec: DatabaseSpec, logger: Logger): Promise<Database> {
  const shown = describeDatabase(spec);
  if (spec.kind === 'pglite' && !existsSync(join(spec.dataDir, 'PG_VERSION'))) {
    logger.info(
      {},
      `eventsync: creating the embedded database in ${spec.dataDir} (a first start takes a few seconds) …`,
    );
  } else if (spec.kind !== 'memory') {
    logger.info({}, `eventsync: opening the database ${shown} …`);
  }
  try {
    return await open(spec);
  } catch (error) {
    throw new StartupError(databaseProblem(error, spec), { cause: error });
  }
}

async function open(spec: DatabaseSpec): Promise<Database> {
  if (spec.kind === 'memory') return memoryDatabase();
  if (spec.kind === 'postgres') {
    const { pgDatabase } = await importPeer(() => import('../pg.js'), 'pg');
    return pgDatabase({ connectionString: spec.url });
  }
  const { pgliteDatabase } = await importPeer(() => import('../pglite.js'), '@electric-sql/pglite');
  return pgliteDatabase({ dataDir: spec.dataDir });
}

/** Loads a backend whose driver is an optional peer dependency, saying what to install when it is missing. */
async function importPeer<T>(load: () => Promise<T>, pkg: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && String(error).includes(pkg)) {
      throw new Error(`this database needs the package ${pkg}: npm install ${pkg}`, { cause: error });
    }
    throw error;
  }
}

/** Why opening failed, as one sentence with what to do (the driver's own words only as a last resort). */
function databaseProblem(error: unknown, spec: DatabaseSpec): string {
  const shown = describeDatabase(spec);
  const code = systemCode(error);
  const host = spec.kind === 'postgres' ? new URL(spec.url).hostname || 'the default host' : '';
  const reasons: Record<string, string> = {
    ECONNREFUSED: `could not connect to PostgreSQL at ${shown}: the connection was refused; start PostgreSQL there, or correct the URL's host and port`,
    ENOTFOUND: `could not connect to PostgreSQL at ${shown}: the host ${host} was not found; correct the URL's host`,
    EAI_AGAIN: `could not connect to PostgreSQL at ${shown}: the host ${host} could not be looked up; check the URL's host and the DNS`,
    ETIMEDOUT: `could not connect to PostgreSQL at ${shown}: the connection timed out; check the URL's host and port and the network`,
    EHOSTUNREACH: `could not connect to PostgreSQL at ${shown}: the host is unreachable; check the URL's host and the network`,
    '28P01': `PostgreSQL at ${shown} refused the user name or password: correct them in the URL`,
    '28000': `PostgreSQL at ${shown} refused the connection (pg_hba.conf): allow this user and host there, or use another user`,
    '3D000': `the database named in ${shown} does not exist: create it (createdb), or correct the URL's database name`,
    EACCES: `could not open the database ${shown}: permission denied; choose a directory this user may write to`,
  };
  if (code !== undefined && reasons[code]) return reasons[code];
  // The rest say what to do themselves (a missing package, a data directory in use), or are unforeseen.
  const message = error instanceof Error ? error.message : String(error);
  return `could not open the database ${shown}: ${message}`;
}
