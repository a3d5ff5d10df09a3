import { describe, expect, it } from 'vitest';
import { filterCorpus } from '../../../test/conformance/filter-corpus.js';
import { filterToJsonPath, translateFilter } from './filter.js';

describe('filterToJsonPath', () => {
  it.each([
    [{ status: 'active' }, '$."status" == "active"'],
    [{ level: 5 }, '$."level" == 5'],
    [{ level: -2.5 }, '$."level" == -2.5'],
    [{ big: 1e21 }, '$."big" == 1e+21'],
    [{ flag: false }, '$."flag" == false'],
    [{ level: { $eq: 5 } }, '$."level" == 5'],
    [{ level: { $gt: 5 } }, '$."level" > 5'],
    [{ level: { $gte: 5, $lt: 9 } }, '($."level" >= 5 && $."level" < 9)'],
    [{ name: { $lte: 'm' } }, '$."name" <= "m"'],
    [{ tag: { $in: ['a', 1, true] } }, '(($."tag" == "a" || $."tag" == 1) || $."tag" == true)'],
    [{ tag: { $in: ['a', 'a'] } }, '$."tag" == "a"'],
    [{ tag: { $exists: true } }, 'exists($."tag")'],
    [{ a: 1, b: 2 }, '($."a" == 1 && $."b" == 2)'],
    [{ $or: [{ a: 1 }, { b: 2 }] }, '($."a" == 1 || $."b" == 2)'],
    [{ $and: [{ a: 1 }, { $or: [{ b: 2 }, { c: 3 }] }] }, '($."a" == 1 && ($."b" == 2 || $."c" == 3))'],
  ])('%j → %s', (filter, path) => {
    expect(filterToJsonPath(filter)).toBe(path);
  });

  it('unwraps arrays along dotted paths and admits arrays nested in arrays', () => {
    expect(filterToJsonPath({ 'owner.name': 'ann' })).toBe(
      '($."owner"[*]."name"[*][*][*] == "ann" || $."owner"[*].type() == "array")',
    );
    expect(filterToJsonPath({ 'a.b.c': { $gt: 1 } })).toBe(
      '($."a"[*]."b"[*]."c"[*][*][*][*] > 1 || ($."a"[*].type() == "array" || $."a"[*]."b"[*].type() == "array"))',
    );
  });

  it('quotes keys and strings as JSON', () => {
    expect(filterToJsonPath({ 'we"ird\\key': 'line\nbreak "q"' })).toBe(
      '$."we\\"ird\\\\key" == "line\\nbreak \\"q\\""',
    );
    expect(filterToJsonPath({ ü: 'é😀' })).toBe('$."ü" == "é😀"');
  });

  it.each([
    ['null equality (matches missing)', { a: null }],
    ['$eq null', { a: { $eq: null } }],
    ['$in with null', { a: { $in: ['x', null] } }],
    ['$ne', { a: { $ne: 1 } }],
    ['$nin', { a: { $nin: [1] } }],
    ['$not', { a: { $not: { $gt: 1 } } }],
    ['$exists: false', { a: { $exists: false } }],
    ['$nor', { $nor: [{ a: 1 }] }],
    ['$expr', { $expr: { $gt: ['$a', 1] } }],
    ['$where', { $where: 'true' }],
    ['$type', { a: { $type: 'string' } }],
    ['unknown operator', { a: { $frob: 1 } }],
    ['operators mixed with keys', { a: { $gt: 1, b: 2 } }],
    ['empty key segment', { 'a..b': 1 }],
    ['__proto__ in path', { '__proto__.x': 1 }],
    ['NUL in key', { 'a\u0000': 1 }],
    ['$or with an untranslatable branch', { $or: [{ a: 1 }, { b: null }] }],
    ['empty $or', { $or: [] }],
  ])('%s → TRUE', (_, filter) => {
    expect(filterToJsonPath(filter)).toBe(true);
  });

  it.each([
    ['object equality', { a: { b: 1 } }],
    ['array equality', { a: [1, 2] }],
    ['numeric path segment', { 'items.0.qty': 1 }],
    ['RegExp value', { a: /x/ }],
    ['$regex', { a: { $regex: 'x' } }],
    ['$size', { a: { $size: 1 } }],
    ['$elemMatch', { a: { $elemMatch: { b: 1 } } }],
    ['$all', { a: { $all: [1] } }],
    ['$in with an object', { a: { $in: [{ b: 1 }] } }],
    ['Date value', { a: new Date(0) }],
    ['NaN', { a: Number.NaN }],
    ['range on a boolean', { a: { $gt: false } }],
    ['range on a string above U+D7FF', { a: { $gt: '\ue000' } }],
    ['range on a string with an astral character', { a: { $lt: 'a😀' } }],
    ['string with a lone surrogate', { a: '\ud800' }],
    ['string with NUL', { a: 'x\u0000' }],
  ])('%s → first key exists', (_, filter) => {
    expect(filterToJsonPath(filter)).toBe(
      'exists($."a")'.replace('"a"', Object.keys(filter)[0] === 'items.0.qty' ? '"items"' : '"a"'),
    );
  });

  it('$exists on a dotted path only requires the first key', () => {
    expect(filterToJsonPath({ 'a.b': { $exists: true } })).toBe('exists($."a")');
  });

  it('$in: [] matches nothing, and makes a conjunction match nothing', () => {
    expect(filterToJsonPath({ a: { $in: [] } })).toBe(false);
    expect(filterToJsonPath({ a: 1, b: { $in: [] } })).toBe(false);
    expect(filterToJsonPath({ $or: [{ a: { $in: [] } }, { b: 1 }] })).toBe('$."b" == 1');
  });

  it('keeps long $in lists shallow', () => {
    const values = Array.from({ length: 64 }, (_, i) => i);
    const path = filterToJsonPath({ a: { $in: values } }) as string;
    let depth = 0;
    let max = 0;
    for (const ch of path) {
      if (ch === '(') max = Math.max(max, ++depth);
      if (ch === ')') depth--;
    }
    expect(max).toBeLessThanOrEqual(7);
    expect(path.match(/==/g)).toHaveLength(64);
  });

  it('gives up on absurd nesting', () => {
    let filter: Record<string, unknown> = { a: 1 };
    for (let i = 0; i < 40; i++) filter = { $and: [filter, { b: i }] };
    expect(() => filterToJsonPath(filter)).not.toThrow();
  });
});

describe('translateFilter', () => {
  it('numbers parameters from the given index and casts the path', () => {
    expect(translateFilter({ a: 1 }, 2)).toEqual({
      sql: 'data @@ $2::jsonpath',
      params: ['$."a" == 1'],
      exact: true,
    });
    expect(translateFilter({}, 2)).toEqual({ sql: 'TRUE', params: [], exact: true });
    expect(translateFilter({ a: { $in: [] } }, 2)).toEqual({ sql: 'FALSE', params: [], exact: true });
  });

  it('narrows top-level _id by the primary key', () => {
    expect(translateFilter({ _id: 'x' }, 2)).toEqual({ sql: 'id = $2::text', params: ['x'], exact: true });
    expect(translateFilter({ _id: { $eq: 'x' }, a: 1 }, 3)).toEqual({
      sql: 'id = $3::text AND data @@ $4::jsonpath',
      params: ['x', '$."a" == 1'],
      exact: true,
    });
    expect(translateFilter({ _id: { $in: ['x', 'y', 'x'] } }, 2)).toEqual({
      sql: 'id = ANY($2::text[])',
      params: [['x', 'y']],
      exact: true,
    });
    expect(translateFilter({ _id: { $in: [] } }, 2)).toEqual({ sql: 'FALSE', params: [], exact: true });
    // Anything else about _id goes through jsonpath like any field.
    expect(translateFilter({ _id: { $gt: 'm' } }, 2)).toEqual({
      sql: 'data @@ $2::jsonpath',
      params: ['$."_id" > "m"'],
      exact: true,
    });
  });

  it.each([
    [{ a: 1, b: { $gt: 'x' } }, true],
    [{ $or: [{ a: { $in: [1, 'x', true] } }, { b: { $exists: true } }] }, true],
    [{ _id: { $in: ['x', 'y'] }, a: { $lte: 2.5 } }, true],
    [{ 'a.b': 1 }, false],
    [{ '0': 1 }, false],
    [{ a: null }, false],
    [{ a: { $ne: 1 } }, false],
    [{ a: { $exists: false } }, false],
    [{ a: { $size: 1 } }, false],
    [{ a: { b: 1 } }, false],
    [{ a: { $gt: '\ue000' } }, false],
    [{ $nor: [{ a: 1 }] }, false],
    [{ $or: [{ a: 1 }, { 'b.c': 2 }] }, false],
  ])('%j is exact: %s', (filter, exact) => {
    expect(translateFilter(filter, 2).exact).toBe(exact);
  });

  it('narrows every selective filter of the corpus', () => {
    // Filters that match (nearly) everything, or that only mingo can evaluate, may stay TRUE.
    const mayBeTrue = new Set([
      'empty filter',
      '$eq null (matches missing)',
      '$eq null nested',
      '$ne string',
      '$ne null',
      '$in with null',
      '$nin',
      '$exists false',
      '$or with missing-field branch',
      '$not',
      '$nor',
    ]);
    for (const { name, filter } of filterCorpus) {
      const { sql } = translateFilter(filter, 2);
      if (mayBeTrue.has(name)) continue;
      expect(sql, name).not.toBe('TRUE');
    }
  });
});
