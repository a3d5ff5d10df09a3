import { afterEach, describe, expect, it, vi } from 'vitest';
import { AuthorizationCache } from './authorization-cache.js';

afterEach(() => {
  vi.useRealTimers();
});

/** A question that counts how often it was asked and answers `answer()` as it is then. */
function question(answer: () => boolean) {
  const asked = { count: 0 };
  const ask = async () => {
    asked.count++;
    return answer();
  };
  return { asked, ask };
}

describe('AuthorizationCache', () => {
  it('keeps an answer for ttlMs, then asks again', async () => {
    vi.useFakeTimers();
    const cache = new AuthorizationCache<boolean>(1000);
    let allowed = true;
    const { asked, ask } = question(() => allowed);
    expect(await cache.ask('a', ask)).toBe(true);
    allowed = false;
    vi.advanceTimersByTime(999);
    expect(await cache.ask('a', ask)).toBe(true);
    expect(cache.get('a')).toBe(true);
    vi.advanceTimersByTime(1);
    expect(cache.get('a')).toBeUndefined();
    expect(await cache.ask('a', ask)).toBe(false);
    expect(asked.count).toBe(2);
  });

  it('with ttlMs 0 keeps nothing: every need asks', async () => {
    const cache = new AuthorizationCache<boolean>(0);
    const { asked, ask } = question(() => true);
    await cache.ask('a', ask);
    await cache.ask('a', ask);
    expect(asked.count).toBe(2);
    expect(cache.get('a')).toBeUndefined();
  });

  it('clear() forgets every answer, and one asked across it is asked for again', async () => {
    const cache = new AuthorizationCache<boolean>(60_000);
    await cache.ask('a', async () => true);
    // The first answer was given before the revocation, and arrives after it: it does not count.
    const answers = [true, false];
    const replies: (() => void)[] = [];
    const answer = cache.ask('b', () => {
      const value = answers.shift()!;
      return new Promise<boolean>((resolve) => replies.push(() => resolve(value)));
    });
    cache.clear();
    expect(cache.get('a')).toBeUndefined();
    replies[0]!();
    await vi.waitFor(() => expect(replies).toHaveLength(2));
    replies[1]!();
    expect(await answer).toBe(false);
    expect(cache.get('b')).toBe(false);
  });
});
