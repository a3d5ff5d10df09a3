import { VersionConflictError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import type { RetryOptions } from './types.js';

export const defaultRetryOptions: Required<RetryOptions> = {
  maxRetries: 10,
  retryDelay: 5,
  maxRetryDelay: 500,
  retryJitter: 0.5,
  timeout: 10_000,
};

/** Returned by an attempt that lost the race for the document and should run again on fresh state. */
export const CONFLICT: unique symbol = Symbol('conflict');

/**
 * Runs `attempt` until it does not report a conflict, with exponential backoff and jitter between
 * attempts, bounded by `maxRetries` and `timeout`; then throws `VersionConflictError`.
 */
export async function retryOnConflict<R>(
  target: { collection: string; id: string },
  options: RetryOptions | undefined,
  attempt: () => Promise<R | typeof CONFLICT>,
): Promise<R> {
  const o = { ...defaultRetryOptions, ...options };
  const started = Date.now();
  for (let retries = 0; ; retries++) {
    const result = await attempt();
    if (result !== CONFLICT) return result;
    if (retries >= o.maxRetries) {
      throw new VersionConflictError(target.collection, target.id, retries + 1, `maxRetries ${o.maxRetries}`);
    }
    const base = Math.min(o.maxRetryDelay, o.retryDelay * 2 ** retries);
    const delay = Math.max(0, base * (1 + o.retryJitter * (2 * Math.random() - 1)));
    if (Date.now() - started + delay > o.timeout) {
      throw new VersionConflictError(target.collection, target.id, retries + 1, `timeout ${o.timeout} ms`);
    }
    await sleep(delay);
  }
}
