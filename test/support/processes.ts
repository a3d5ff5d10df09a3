/**
 * Runs `test/support/event-writer.ts` in a child process (`node --import tsx`, so the pid is the
 * writer itself and SIGKILL hits it, not a wrapper) and follows its output.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WriterConfig } from './event-writer.js';

const script = fileURLToPath(new URL('./event-writer.ts', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

export interface WriterProcess {
  child: ChildProcess;
  /** Successful writes reported so far. */
  readonly progress: number;
  /** Resolves once the writer reported at least `writes` writes. */
  reached(writes: number, timeoutMs?: number): Promise<void>;
  /** Resolves with the `done` summary when the process exits normally, rejects otherwise. */
  done: Promise<Record<string, Record<string, number>>>;
  /** Resolves when the process has exited (however). */
  exited: Promise<void>;
}

export function spawnWriter(config: WriterConfig): WriterProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(config)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let progress = 0;
  let summary: Record<string, Record<string, number>> | undefined;
  let stderr = '';
  let buffered = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('progress ')) progress = Number(line.slice('progress '.length));
      else if (line.startsWith('done ')) summary = JSON.parse(line.slice('done '.length));
    }
    for (const wake of waiters) wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const done = new Promise<Record<string, Record<string, number>>>((resolve, reject) => {
    child.once('exit', (code, signal) => {
      if (code === 0 && summary) resolve(summary);
      else reject(new Error(`writer exited with ${signal ?? code}:\n${stderr.slice(-4000)}`));
    });
  });
  done.catch(() => {}); // the crash test kills it on purpose
  return {
    child,
    get progress() {
      return progress;
    },
    reached(writes, timeoutMs = 30_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`writer reached ${progress} writes, not ${writes}, in ${timeoutMs} ms:\n${stderr}`),
          );
        }, timeoutMs);
        const check = () => {
          if (progress < writes) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
        check();
        exited.then(() => {
          if (progress >= writes) return;
          clearTimeout(timer);
          waiters.delete(check);
          reject(new Error(`writer exited after ${progress} writes:\n${stderr.slice(-4000)}`));
        });
      });
    },
    done,
    exited,
  };
}
