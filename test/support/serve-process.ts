/**
 * The real `eventsync serve` binary (package.json's `bin`) as a child process, for every test that
 * runs it (`test/server/cli.e2e.test.ts`, `test/server/instances.e2e.test.ts`,
 * `test/browser/demo.e2e.test.ts`): compiled when a source is newer than it, started with the
 * given arguments (and none of the environment variables it reads, unless given), its JSON log
 * lines collected, its exit awaited, killed on teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { buildCli } from '../../scripts/build-cli.js';
import { SERVE_ENV } from '../../src/cli/args.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: { eventsync: string } };
export const bin = join(root, pkg.bin.eventsync);

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
      newest = Math.max(newest, statSync(path).mtimeMs);
    }
  }
  return newest;
}

/**
 * Why a lock file and not a build in vitest's globalSetup: test files run in parallel workers
 * (`maxWorkers: 2`), and several people run vitest in this checkout at the same time, so two
 * `ensureBuilt()` calls can find the binary stale at once. A globalSetup build would only order the
 * workers of one vitest run (and would compile on every run, even one with no e2e test in it); the
 * lock orders every process that uses this helper. Whoever holds it checks freshness and compiles;
 * the others wait for it to go, then find the binary fresh. Even the fresh case takes the lock, so
 * nobody starts the binary while `dist/` is half rewritten.
 *
 * The lock is `dist/.build.lock`, created with `openSync(path, 'wx')` (fails if it exists), holding
 * the pids of its holder and, while it runs, of the compiler. A lock whose pids are all gone (a
 * worker killed in the middle of a build) is stale and removed. Two waiters removing the same stale
 * lock at the same instant could still both build: that needs a crash and a race, and costs a
 * garbled build at worst.
 */
const lockPath = join(root, 'dist', '.build.lock');
const LOCK_WAIT_MS = 100_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The lock's pids, or undefined when there is no lock (or it is being written). */
function lockHolders(): number[] | undefined {
  try {
    const text = readFileSync(lockPath, 'utf8');
    return text ? text.split(' ').map(Number) : undefined;
  } catch {
    return undefined;
  }
}

async function acquireBuildLock(): Promise<{ note(pids: number[]): void; release(): void }> {
  mkdirSync(dirname(lockPath), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return {
        note: (pids) => writeFileSync(lockPath, [process.pid, ...pids].join(' ')),
        release: () => rmSync(lockPath, { force: true }),
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const holders = lockHolders();
    if (holders && !holders.some(alive)) {
      rmSync(lockPath, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(`${lockPath} still held by pid ${holders?.join(', ')} after ${LOCK_WAIT_MS} ms`);
    }
    await sleep(100);
  }
}

/**
 * Compiles `src/` into `dist/` (`tsc -p tsconfig.build.json`, then the command's bundle,
 * `buildCli()`: `npm run build` but the demo, which is the browser test's own `buildDemo()`),
 * unless the binary is newer than every source. Safe to call from several test files and processes at once: see the lock above.
 */
export async function ensureBuilt(): Promise<void> {
  const lock = await acquireBuildLock();
  try {
    if (existsSync(bin) && statSync(bin).mtimeMs >= newestSource(join(root, 'src'))) return;
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid !== undefined) lock.note([child.pid]);
    let output = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    const signal = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (_code, signal) => resolve(signal));
    });
    // tsc writes the output even when some other file has a type error; only a missing binary is fatal.
    if (signal !== null || !existsSync(bin)) throw new Error(`build failed (${signal}):\n${output}`);
    await buildCli();
  } finally {
    lock.release();
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface ServeProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:port`, from the `eventsync: listening` log line. */
  url: string;
  /** Every JSON log line so far (stdout); a line that is not JSON is kept as `{ level: 0, msg: line }`. */
  logs: LogLine[];
  /** What it wrote on stderr so far. */
  stderr(): string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Every child started here that has not exited yet. */
const running = new Set<ChildProcess>();

/** SIGKILLs every server started here that still runs (also ones still starting), and waits for them. */
export async function killAll(): Promise<void> {
  const exits = [...running].map((child) => new Promise((resolve) => child.once('exit', resolve)));
  for (const child of running) child.kill('SIGKILL');
  await Promise.all(exits);
}

/**
 * This process's environment without the variables `eventsync serve` reads (a developer's `PORT`
 * or the test run's `DATABASE_URL` must not change what a test starts), plus `env`.
 */
function serveEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = { ...process.env };
  for (const name of Object.values(SERVE_ENV)) delete clean[name];
  return { ...clean, ...env };
}

/** Runs `eventsync <args>` to its end (killed after `timeoutMs`): its exit code and output. */
export async function runEventsync(
  args: string[],
  {
    env = {},
    cwd = root,
    timeoutMs = 20_000,
  }: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [bin, ...args], {
    cwd,
    env: serveEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) =>
    child.once('close', (exitCode) => resolve(exitCode)),
  );
  clearTimeout(timer);
  running.delete(child);
  return { code, stdout, stderr };
}

/**
 * Starts `eventsync serve <args>` and resolves once it logged `listening` (the log level must let
 * info through); rejects, killing it, if it exits first or takes longer than `timeoutMs`. Its logs
 * keep being collected after that, until it exits.
 */
export async function startServe(
  args: string[],
  // A first start creates a PGlite database (~4 s alone, ~18 s seen on a machine at load 9).
  timeoutMs = 50_000,
  env: Record<string, string> = {},
  /** Another copy of the binary (an installed package's) and the directory to start it in. */
  where: { bin?: string; cwd?: string } = {},
): Promise<ServeProcess> {
  const child = spawn(process.execPath, [where.bin ?? bin, 'serve', ...args], {
    cwd: where.cwd ?? root,
    env: serveEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const logs: LogLine[] = [];
  let stderr = '';
  let buffered = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  /** For failure messages: stderr, and the last log lines in case it said why there. */
  const output = () =>
    `${stderr}\nlast log lines:\n${logs
      .slice(-20)
      .map((l) => JSON.stringify(l))
      .join('\n')}`;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "listening" in ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        let parsed: LogLine;
        try {
          parsed = JSON.parse(line) as LogLine;
        } catch {
          parsed = { level: 0, msg: line };
        }
        logs.push(parsed);
        if (parsed.msg === 'eventsync: listening') {
          clearTimeout(timer);
          resolve(parsed.url as string);
        }
      }
    });
    exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (${signal ?? code}) before listening:\n${output()}`));
    });
  });
  return { child, url, logs, stderr: () => stderr, exit };
}

/** A loopback port nobody listens on now (the OS gave it out, and it was closed again at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
