/**
 * The real `eventsync serve` binary (package.json's `bin`) as a child process: built when a source
 * is newer than it, started with the given arguments, its JSON log lines collected, its exit
 * awaited. The same steps as `test/server/cli.e2e.test.ts`, for tests that run several instances.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** `npm run build`, unless the binary is newer than every source. */
export function ensureBuilt(): void {
  if (existsSync(bin) && statSync(bin).mtimeMs >= newestSource(join(root, 'src'))) return;
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
    cwd: root,
    encoding: 'utf8',
  });
  // tsc writes the output even when some other file has a type error; only a missing binary is fatal.
  if (!existsSync(bin)) throw new Error(`build failed:\n${built.stdout}\n${built.stderr}`);
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
  /** Every JSON log line so far (stdout). */
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
 * Starts `eventsync serve <args>` and resolves once it logged `listening` (the log level must let
 * info through); rejects, killing it, if it exits first or takes longer than `timeoutMs`.
 */
export async function startServe(args: string[], timeoutMs = 20_000): Promise<ServeProcess> {
  const child = spawn(process.execPath, [bin, 'serve', ...args], {
    cwd: root,
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
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "listening" in ${timeoutMs} ms:\n${stderr}`));
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
      reject(new Error(`exited (${signal ?? code}) before listening:\n${stderr}`));
    });
  });
  return { child, url, logs, stderr: () => stderr, exit };
}
