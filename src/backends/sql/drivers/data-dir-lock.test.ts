import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockDataDir } from './data-dir-lock.js';

const dirs: string[] = [];
const fresh = () => {
  const dir = mkdtempSync(join(tmpdir(), 'eventsync-lock-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('lockDataDir', () => {
  it('holds a directory for one opener at a time, this process included, until released', () => {
    const dir = fresh();
    const lock = lockDataDir(join(dir, 'data'));
    expect(JSON.parse(readFileSync(join(dir, 'data', LOCK_FILE), 'utf8'))).toMatchObject({
      pid: process.pid,
    });
    expect(() => lockDataDir(join(dir, 'data'))).toThrow(`in use by process ${process.pid}`);
    lock.release();
    lock.release();
    expect(existsSync(join(dir, 'data', LOCK_FILE))).toBe(false);
    lockDataDir(join(dir, 'data')).release();
  });

  it('takes over the lock of a process that is gone, and of a lock file left half written', () => {
    const dir = fresh();
    // Pids above the kernel's pid_max (at most 2^22) belong to nobody.
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 2 ** 23, host: hostname(), since: 'then' }));
    lockDataDir(dir).release();
    writeFileSync(join(dir, LOCK_FILE), '{"pid":');
    lockDataDir(dir).release();
  });

  it('takes a holder on another host as alive (a shared volume)', () => {
    const dir = fresh();
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere', since: 'then' }));
    expect(() => lockDataDir(dir)).toThrow('in use by process 1 on elsewhere');
  });
});
