import { afterEach, describe, expect, it, vi } from 'vitest';
import { EventSyncError, TooLargeError } from '../core/errors.js';
import { jsonWithin, MAX_DOCUMENT_BYTES, resolveLimits, utf8Bytes } from './limits.js';

describe('limits', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('defaults to 1 MiB documents and appends by index, and refuses out-of-range settings', () => {
    expect(resolveLimits()).toEqual({ maxDocumentBytes: 1024 * 1024, maxArrayGrowth: 1 });
    expect(resolveLimits({ maxDocumentBytes: MAX_DOCUMENT_BYTES, maxArrayGrowth: 0 })).toEqual({
      maxDocumentBytes: 16 * 1024 * 1024,
      maxArrayGrowth: 0,
    });
    for (const bad of [
      { maxDocumentBytes: MAX_DOCUMENT_BYTES + 1 },
      { maxDocumentBytes: 0 },
      { maxDocumentBytes: 1.5 },
      { maxArrayGrowth: -1 },
      { maxArrayGrowth: 1025 },
      { maxArrayGrowth: Number.NaN },
    ]) {
      expect(() => resolveLimits(bad), JSON.stringify(bad)).toThrow(/limits\./);
    }
  });

  it('measures JSON in UTF-8 bytes, exactly at the limit', () => {
    // {"s":"…"} is 8 bytes around the string: é is 2 bytes, € 3, 😀 4 (a surrogate pair).
    for (const [char, bytes] of [
      ['a', 1],
      ['é', 2],
      ['€', 3],
      ['😀', 4],
    ] as const) {
      const doc = { s: char.repeat(100) };
      const size = 8 + 100 * bytes;
      expect(jsonWithin(doc, size)).toBe(JSON.stringify(doc));
      let error: unknown;
      try {
        jsonWithin(doc, size - 1, 'the test document');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(TooLargeError);
      expect(EventSyncError.is(error, 'too_large')).toBe(true);
      expect(error).toMatchObject({ bytes: size, limit: size - 1 });
      expect((error as Error).message).toMatch(/^the test document would be \d+ bytes/);
    }
  });

  it('counts UTF-8 without Buffer (browsers) as Buffer does', () => {
    const text = `a"\\é€😀\n${'x'.repeat(10)}`;
    const expected = Buffer.byteLength(text, 'utf8');
    vi.stubGlobal('Buffer', undefined);
    expect(utf8Bytes(text)).toBe(expected);
  });
});
