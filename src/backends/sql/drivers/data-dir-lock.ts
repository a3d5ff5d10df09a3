/**
 * One process at a time on an embedded data directory. PGlite does not lock its directory: two
 * processes on one directory each run their own PostgreSQL over the same files, both acknowledge
 * writes, and one side's writes are gone after a restart. So the directory holds
 * `eventsync.lock` with the pid of the process using it, created exclusively.
 *
 * A lock whose process is gone (killed with SIGKILL, a crash) is taken over: it is first renamed
 * aside, which only one of several processes racing for it can do, then created anew.
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

export const LOCK_FILE = 'eventsync.lock';

export interface DataDirLock {
  /** Gives the directory back (removes the lock file if it is still ours). Safe to call twice. */
  release(): void;
}

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** Takes the directory's lock, creating the directory if needed; throws saying who holds it otherwise. */
export function lockDataDir(dataDir: string): DataDirLock {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    if (tryCreate(path, me)) return heldLock(path);
    const holder = readHolder(path);
    if (holder && holderAlive(holder)) {
      throw new Error(
        `the data directory ${dir} is in use by process ${holder.pid} on ${holder.host} (since ${holder.since}); ` +
          'stop that process or use another directory. If no such process runs, remove ' +
          `${path} and start again.`,
      );
    }
    takeOverStale(path);
  }
  throw new Error(
    `could not take the lock of the data directory ${dir} (${path}): another process keeps taking it`,
  );
}

function tryCreate(path: string, me: Holder): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    writeSync(fd, JSON.stringify(me));
  } finally {
    closeSync(fd);
  }
  return true;
}

function readHolder(path: string): Holder | undefined {
  try {
    const holder = JSON.parse(readFileSync(path, 'utf8')) as Partial<Holder>;
    return typeof holder.pid === 'number' ? (holder as Holder) : undefined;
  } catch {
    return undefined; // gone meanwhile, or half written by a process that died while writing it
  }
}

/** A holder on another machine (a shared volume) is taken as alive: its pid means nothing here. */
function holderAlive(holder: Holder): boolean {
  if (holder.host !== hostname()) return true;
  if (holder.pid === process.pid) return true; // this process opened the directory already and did not close it
  try {
    process.kill(holder.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/** Moves a dead holder's lock aside; only one racer's rename succeeds, the others find it gone. */
function takeOverStale(path: string): void {
  const aside = `${path}.stale-${process.pid}`;
  try {
    renameSync(path, aside);
    rmSync(aside, { force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function heldLock(path: string): DataDirLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    if (readHolder(path)?.pid !== process.pid) return;
    try {
      unlinkSync(path);
    } catch {
      // Already gone: nothing to give back.
    }
  };
  // A process that exits without closing the database still gives the directory back.
  process.on('exit', release);
  return { release };
}
