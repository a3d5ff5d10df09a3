/**
 * Database factories for backend tests. PostgreSQL is one server for the whole run (global setup)
 * shared by all test files at once, and PGlite is one instance per test file (each costs several
 * hundred MB): isolate tests by collection name (`uniqueCollection`), not by database.
 */
import type { PGlite } from '@electric-sql/pglite';
import { inject } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import type { Database } from '../../src/core/collection-backend.js';
import { memoryDatabase } from '../../src/index.js';
import { type PgDatabaseOptions, pgDatabase } from '../../src/pg.js';
import { openPglite, pgliteDatabase } from '../../src/pglite.js';

/** The run's PostgreSQL URL (embedded server, or DATABASE_URL). */
export function databaseUrl(): string {
  return inject('databaseUrl');
}

/**
 * A new pool on the run's PostgreSQL, wrapped as a database: two calls are two independent
 * "server instances" (separate connections, separate LISTEN). Close it when done.
 */
export function openPg(
  options: Omit<PgDatabaseOptions, 'connectionString' | 'pool'> & {
    /** The connections' `application_name` (what `injectEventFault` keys on). */
    applicationName?: string;
  } = {},
): Promise<SqlDatabase> {
  const { applicationName, ...rest } = options;
  const url = new URL(databaseUrl());
  if (applicationName !== undefined) url.searchParams.set('application_name', applicationName);
  return pgDatabase({ connectionString: url.toString(), max: 4, ...rest });
}

let pglite: Promise<PGlite> | undefined;

/** This test file's one in-memory PGlite (created on first use). Close it with `closeSharedPglite` in `afterAll`. */
export function sharedPglite(): Promise<PGlite> {
  pglite ??= openPglite();
  return pglite;
}

/** A database over this file's PGlite; several of them behave like instances in one process. Closing it leaves the PGlite open. */
export async function openPgliteDb(options: { notify?: boolean } = {}): Promise<SqlDatabase> {
  return pgliteDatabase({ db: await sharedPglite(), ...options });
}

export async function closeSharedPglite(): Promise<void> {
  const db = await pglite;
  pglite = undefined;
  if (db && !db.closed) await db.close();
}

/**
 * The backends a sync or transport test file runs on, as `describe.each(syncBackends)(name,
 * (backend, open) => …)`: memory and PGlite, and PostgreSQL too in CI (`CI` set). A file that uses
 * it closes its PGlite with `afterAll(closeSharedPglite)`, closes each database it opened, and
 * names its collections with `uniqueCollection`: PGlite is one per file (shared by its describe
 * blocks) and PostgreSQL one for the whole run (shared by every file at once).
 */
export const syncBackends: SyncBackend[] = [
  ['memory', async () => memoryDatabase()],
  ['pglite', () => openPgliteDb()],
  ...(process.env.CI ? ([['postgresql', () => openPg()]] satisfies SyncBackend[]) : []),
];

/** A backend's name, and how to open a new database on it. */
export type SyncBackend = [name: string, open: () => Promise<Database>];

let counter = 0;

/** A collection name no other test (in this run, in any file) uses. */
export function uniqueCollection(prefix = 'test'): string {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}_${Math.random().toString(36).slice(2, 8)}`;
}
