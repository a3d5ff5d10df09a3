/**
 * The real binary: package.json's `bin` (built by `npm ci` through `prepare`; rebuilt here when a
 * source is newer), started on a fresh PGlite data directory, used over WebSocket and REST,
 * stopped with SIGTERM, started again on the same directory.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../src/events/types.js';
import { TestClient } from '../support/ws-client.js';
import { http } from './http-client.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: { eventsync: string } };
const bin = join(root, pkg.bin.eventsync);

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
function ensureBuilt(): void {
  if (existsSync(bin) && statSync(bin).mtimeMs >= newestSource(join(root, 'src'))) return;
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const built = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], {
    cwd: root,
    encoding: 'utf8',
  });
  // tsc writes the output even when some other file has a type error; only a missing binary is fatal.
  if (!existsSync(bin)) throw new Error(`build failed:\n${built.stdout}\n${built.stderr}`);
}

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

interface Running {
  child: ChildProcess;
  url: string;
  logs: LogLine[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function start(dataDir: string): Promise<Running> {
  const child = spawn(process.execPath, [bin, 'serve', '--db', dataDir, '--port', '0'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let stderr = '';
  let buffered = '';
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening" in 60 s:\n${stderr}`)), 60_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const parsed = JSON.parse(line) as LogLine;
        logs.push(parsed);
        if (parsed.msg === 'eventsync: listening') {
          clearTimeout(timer);
          resolve(parsed.url as string);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    exit.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (${signal ?? code}) before listening:\n${stderr}`));
    });
  });
  return { child, url, logs, exit };
}

let dir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  ensureBuilt();
  dir = await mkdtemp(join(tmpdir(), 'eventsync-cli-'));
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('eventsync serve (the built binary)', () => {
  it('serves WebSocket and REST on PGlite, exits 0 on SIGTERM, and reopens its data directory', async () => {
    const dataDir = join(dir, 'data');
    const first = await start(dataDir);
    children.push(first.child);
    const listening = first.logs.find((l) => l.msg === 'eventsync: listening')!;
    expect(listening).toMatchObject({ db: `pglite:${dataDir}` });
    expect(listening.startupMs).toBeGreaterThan(0);
    expect(listening.rssMB).toBeGreaterThan(0);
    expect((await http(first.url, 'GET', '/healthz')).text).toBe('ok\n');

    const ws = await TestClient.connect(`${first.url.replace('http', 'ws')}/sync`);
    ws.send({ type: 'hello', protocol: 1, clientId: 'e2e' });
    ws.send({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g1' });
    await ws.next('synced');
    const created = await http(first.url, 'POST', '/api/games', {
      body: { _id: 'g1', name: 'Quest', gold: 0 },
    });
    expect(created.status).toBe(201);
    const patched = await http(first.url, 'PATCH', '/api/games/g1', { body: { $inc: { gold: 5 } } });
    expect(patched.body).toMatchObject({ gold: 5, version: 2 });
    await ws.until((r) => r.filter((m) => m.type === 'event').length === 2);
    expect(ws.of('event').map((m) => [m.event.seq, m.event.operation])).toEqual([
      [1, 'create'],
      [2, 'update'],
    ]);

    first.child.kill('SIGTERM');
    expect(await first.exit).toEqual({ code: 0, signal: null });
    await ws.until(() => ws.closed !== undefined).catch(() => {});
    expect(ws.closed?.code).toBe(1001);
    expect(first.logs.map((l) => l.msg)).toContain('eventsync: stopped');

    const second = await start(dataDir);
    children.push(second.child);
    const doc = await http(second.url, 'GET', '/api/games/g1');
    expect(doc.body).toEqual({ _id: 'g1', name: 'Quest', gold: 5, version: 2 });
    const events = await http<{ events: SyncEvent[] }>(second.url, 'GET', '/api/games/g1/events');
    expect(events.body.events.map((e) => e.seq)).toEqual([1, 2]);
    second.child.kill('SIGINT');
    expect(await second.exit).toEqual({ code: 0, signal: null });
  });
});
