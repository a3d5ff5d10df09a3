import { describe, expect, it } from 'vitest';
import { refusal } from '../../test/support/refusal.js';
import { assertClientId, assertCollectionName, assertId, newObjectId } from './ids.js';

describe('assertId', () => {
  it('accepts ids of 1..128 allowed characters', () => {
    for (const id of ['a', '0', '_x', 'user:42', 'a.b-c@d_e', '507f1f77bcf86cd799439011', 'x'.repeat(128)]) {
      expect(() => assertId(id)).not.toThrow();
    }
  });

  it('refuses anything else', () => {
    for (const id of ['', 'x'.repeat(129), 'a/b', '-a', '.a', ':a', '@a', 'a b', 'é', 'a\nb', 'a#b']) {
      const e = refusal(() => assertId(id));
      expect(e.path).toBe('');
      expect(e.message).toMatch(/invalid document id.*A-Z a-z 0-9/);
    }
    for (const id of [1, null, undefined, {}, ['a']]) {
      expect(refusal(() => assertId(id)).message).toMatch(/must be a string/);
    }
  });
});

describe('assertCollectionName', () => {
  it('accepts lowercase identifiers up to 63 characters', () => {
    for (const name of ['games', '_x', 'a1_b2', 'g'.repeat(63)])
      expect(() => assertCollectionName(name)).not.toThrow();
  });

  it('refuses anything else', () => {
    for (const name of ['', 'Games', '1games', 'a-b', 'a.b', 'a b', 'g'.repeat(64), 'ü', 'a;drop', 3, null]) {
      expect(refusal(() => assertCollectionName(name)).message).toMatch(/invalid collection name/);
    }
  });
});

describe('newObjectId', () => {
  it('makes 24-hex ids with the current time, one process part and a counter', () => {
    const before = Math.floor(Date.now() / 1000);
    const ids = Array.from({ length: 1000 }, () => newObjectId());
    const after = Math.floor(Date.now() / 1000);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) {
      expect(id).toMatch(/^[0-9a-f]{24}$/);
      const seconds = Number.parseInt(id.slice(0, 8), 16);
      expect(seconds).toBeGreaterThanOrEqual(before);
      expect(seconds).toBeLessThanOrEqual(after);
      expect(id.slice(8, 18)).toBe(ids[0]!.slice(8, 18));
      expect(() => assertId(id)).not.toThrow();
    }
    const counters = ids.map((id) => Number.parseInt(id.slice(18), 16));
    for (let i = 1; i < counters.length; i++) expect(counters[i]).toBe((counters[i - 1]! + 1) & 0xffffff);
  });
});

describe('assertClientId', () => {
  it('holds client ids to the rule of ids, naming them clientId', () => {
    expect(() => assertClientId('client-3f2a')).not.toThrow();
    for (const id of ['', 'x'.repeat(129), 'a b', 'a/b', 'auth0|42']) {
      expect(refusal(() => assertClientId(id)).message).toMatch(/invalid clientId/);
    }
  });
});
