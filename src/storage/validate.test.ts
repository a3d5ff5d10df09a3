import { create } from 'mutative';
import { describe, expect, it } from 'vitest';
import { refusal } from '../../test/support/refusal.js';
import { ValidationError } from '../core/errors.js';
import { assertJsonDocument, assertJsonValue, assertPatchValues, MAX_DEPTH } from './validate.js';

function expectRefused(value: unknown, path: string, message?: RegExp): void {
  const e = refusal(() => assertJsonDocument(value));
  expect(e.path).toBe(path);
  if (message) expect(e.message).toMatch(message);
}

function nested(depth: number): Record<string, unknown> {
  // `depth` levels of objects in all, the outermost included.
  let value: Record<string, unknown> = {};
  for (let i = 1; i < depth; i++) value = { a: value };
  return value;
}

describe('assertJsonDocument', () => {
  it('accepts plain JSON, null-prototype objects and repeated references', () => {
    const shared = { x: [1, 2, { y: null }] };
    const bare = Object.create(null) as Record<string, unknown>;
    bare.k = 'v';
    const doc = {
      s: '',
      n: -0.5,
      b: false,
      z: null,
      arr: [1, 'a', true, null, [], {}],
      one: shared,
      two: shared,
      list: [shared, shared],
      bare,
      '0': 1,
      'a b/c~d': 2,
      x$: 3,
    };
    expect(() => assertJsonDocument(doc)).not.toThrow();
    expect(() => assertJsonDocument(JSON.parse('{"a":{"b":[1,2,{"c":"d"}]}}'))).not.toThrow();
  });

  it('refuses a non-object document', () => {
    for (const value of [null, [], 'x', 1, undefined, new Date(0), new Map()]) {
      expect(refusal(() => assertJsonDocument(value)).path).toBe('');
    }
    expect(refusal(() => assertJsonDocument([1])).message).toMatch(/plain object/);
  });

  it('refuses functions, symbols, BigInt, NaN and Infinity', () => {
    expectRefused({ a: { f: () => 1 } }, '/a/f', /function/);
    expectRefused({ a: [Symbol('s')] }, '/a/0', /symbol/);
    expectRefused({ big: 10n }, '/big', /BigInt/);
    expectRefused({ a: { n: Number.NaN } }, '/a/n', /NaN.*finite number/);
    expectRefused({ a: [0, Number.POSITIVE_INFINITY] }, '/a/1', /Infinity/);
    expectRefused({ a: Number.NEGATIVE_INFINITY }, '/a', /-Infinity/);
  });

  it('refuses undefined members, suggesting delete', () => {
    const e = refusal(() => assertJsonDocument({ a: { b: undefined } }));
    expect(e.path).toBe('/a/b');
    expect(e.message).toMatch(/delete/);
  });

  it('refuses undefined array elements and holes', () => {
    expectRefused({ a: [1, undefined] }, '/a/1', /null.*splice/);
    // biome-ignore lint/suspicious/noSparseArray: the hole is the point
    expectRefused({ a: [1, , 3] }, '/a/1', /hole/);
    const sized = new Array(2);
    expectRefused({ a: sized }, '/a/0', /hole/);
  });

  it('refuses class instances with advice', () => {
    expectRefused({ d: new Date(0) }, '/d', /Date.*toISOString/);
    expectRefused({ m: new Map() }, '/m', /Map.*fromEntries/);
    expectRefused({ s: [new Set([1])] }, '/s/0', /Set/);
    expectRefused({ u: new Uint8Array(2) }, '/u', /Uint8Array/);
    class Point {
      x = 1;
    }
    expectRefused({ p: new Point() }, '/p', /Point.*plain object/);
    class MyArray extends Array {}
    expectRefused({ q: MyArray.from([1]) }, '/q', /MyArray/);
    expectRefused({ w: new String('x') }, '/w', /String/);
  });

  it('refuses symbol-keyed members', () => {
    expectRefused({ a: { [Symbol('k')]: 1 } }, '/a', /symbol-keyed/);
  });

  it('refuses cycles but not repeated references', () => {
    const a: Record<string, unknown> = { x: 1 };
    a.self = a;
    expectRefused({ a }, '/a/self', /cycle/);
    const arr: unknown[] = [1];
    arr.push({ back: arr });
    expectRefused({ arr }, '/arr/1/back', /cycle/);
    const shared = { deep: { x: 1 } };
    expect(() => assertJsonDocument({ a: shared, b: [shared, { c: shared }] })).not.toThrow();
  });

  it('checks a heavily shared DAG once per object', () => {
    // 20 levels, each holding the next twice: 2^20 paths to the innermost object, checked once.
    let ownKeysCalls = 0;
    const innermost = new Proxy(
      { x: 1 },
      {
        ownKeys(target) {
          ownKeysCalls++;
          return Reflect.ownKeys(target);
        },
      },
    );
    let node: unknown = innermost;
    for (let i = 0; i < 20; i++) node = { a: node, b: [node] };
    expect(() => assertJsonDocument({ node })).not.toThrow();
    // Containers of containers are checked once; one holding only scalars (like `innermost`) is
    // re-checked per reference to it (2 here), each time with Object.keys and
    // Object.getOwnPropertySymbols. Without the memo this would be 2^21 × 2.
    expect(ownKeysCalls).toBeLessThanOrEqual(4);
  });

  it('refuses forbidden keys with the path of the member', () => {
    expectRefused(JSON.parse('{"a":{"__proto__":{"x":1}}}'), '/a/__proto__', /reserved/);
    expectRefused({ a: { constructor: 1 } }, '/a/constructor', /reserved/);
    expectRefused({ prototype: 1 }, '/prototype', /reserved/);
    expectRefused({ a: [{ $set: 1 }] }, '/a/0/$set', /"\$"/);
    expectRefused({ 'a.b': 1 }, '/a.b', /"\."/);
    expectRefused({ a: { 'x\0y': 1 } }, '/a/x\0y', /NUL/);
    expectRefused({ a: { '': 1 } }, '/a/', /empty/);
    expectRefused({ 'a/b': { 'c~d': { $x: 1 } } }, '/a~1b/c~0d/$x', /"\$"/);
  });

  it('enforces the maximum depth without overflowing the stack', () => {
    expect(() => assertJsonDocument(nested(MAX_DEPTH))).not.toThrow();
    const e = refusal(() => assertJsonDocument(nested(MAX_DEPTH + 1)));
    expect(e.message).toMatch(/nested more than 100/);
    // The object at level 101 is the one reported.
    expect(e.path).toBe(`/${Array(MAX_DEPTH).fill('a').join('/')}`);
    // Far deeper than any stack: refused at the limit, not with a RangeError.
    expect(refusal(() => assertJsonDocument(nested(200_000))).message).toMatch(/nested more than/);
    let arr: unknown[] = [];
    for (let i = 0; i < 200_000; i++) arr = [arr];
    expect(refusal(() => assertJsonDocument({ arr })).message).toMatch(/nested more than/);
  });

  it('counts depth through repeated references', () => {
    const deep = nested(MAX_DEPTH - 1);
    expect(() => assertJsonDocument({ a: deep })).not.toThrow();
    // The same object again, one level lower, exceeds the limit.
    expect(refusal(() => assertJsonDocument({ a: deep, b: { c: deep } })).message).toMatch(
      /nested more than/,
    );
  });

  it('prefixes error paths with the given path', () => {
    expect(refusal(() => assertJsonDocument({ a: undefined }, '/sec')).path).toBe('/sec/a');
  });
});

describe('assertJsonValue', () => {
  it('accepts scalars and arrays', () => {
    for (const v of ['x', 0, true, null, [1, [2]], { a: [] }]) expect(() => assertJsonValue(v)).not.toThrow();
  });

  it('refuses non-JSON values at the given path', () => {
    expect(refusal(() => assertJsonValue(undefined, '/x')).path).toBe('/x');
    expect(refusal(() => assertJsonValue([() => 1], '/$set/a')).path).toBe('/$set/a/0');
    expect(refusal(() => assertJsonValue({ k: Number.NaN })).path).toBe('/k');
  });

  it('counts levels above the value', () => {
    expect(() => assertJsonValue(nested(10), '', MAX_DEPTH - 10)).not.toThrow();
    expect(refusal(() => assertJsonValue(nested(10), '', MAX_DEPTH - 9)).message).toMatch(/nested more than/);
  });
});

describe('assertPatchValues', () => {
  const opts = { enablePatches: { pathAsArray: false, arrayLengthAssignment: false } } as const;
  const patchesOf = (recipe: (d: Record<string, unknown>) => void) =>
    create({ a: { b: 1 }, arr: [1, 2] } as Record<string, unknown>, recipe, opts)[1];

  it('accepts JSON values and removals', () => {
    expect(() =>
      assertPatchValues([
        { op: 'add', path: '/a/c', value: { d: [1, null] } },
        { op: 'replace', path: '/arr/0', value: 'x' },
        { op: 'remove', path: '/a/b' },
        { op: 'add', path: '/arr/-', value: null },
      ]),
    ).not.toThrow();
  });

  it('refuses an add or replace without a value (how mutative reports undefined)', () => {
    const pushed = patchesOf((d) => {
      (d.arr as unknown[]).push(undefined);
    });
    let e = refusal(() => assertPatchValues(pushed));
    expect(e.path).toBe('/arr/2');
    expect(e.message).toMatch(/undefined/);
    const set = patchesOf((d) => {
      (d.a as Record<string, unknown>).b = undefined;
    });
    e = refusal(() => assertPatchValues(set));
    expect(e.path).toBe('/a/b');
    expect(e.message).toMatch(/delete/);
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/x', value: undefined }])).path).toBe('/x');
  });

  it('refuses non-JSON values with the path inside the value', () => {
    const dated = patchesOf((d) => {
      d.when = { at: new Date(0) };
    });
    expect(refusal(() => assertPatchValues(dated)).path).toBe('/when/at');
    expect(
      refusal(() => assertPatchValues([{ op: 'replace', path: '/a/b', value: [1, Number.NaN] }])).path,
    ).toBe('/a/b/1');
    const cyclic: Record<string, unknown> = {};
    cyclic.me = cyclic;
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/c', value: cyclic }])).path).toBe('/c/me');
  });

  it('refuses forbidden keys created by the ops', () => {
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/a/$inc', value: 1 }])).path).toBe('/a/$inc');
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/a/constructor', value: 1 }])).path).toBe(
      '/a/constructor',
    );
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/a/x.y', value: 1 }])).path).toBe('/a/x.y');
    expect(refusal(() => assertPatchValues([{ op: 'add', path: '/a/', value: 1 }])).path).toBe('/a/');
    expect(
      refusal(() => assertPatchValues([{ op: 'add', path: '/a', value: { ok: { __proto__: null, $x: 1 } } }]))
        .path,
    ).toBe('/a/ok/$x');
  });

  it('counts the depth of the path', () => {
    // The value sits at level MAX_DEPTH (the document is level 1).
    const path = `/${Array(MAX_DEPTH - 1)
      .fill('a')
      .join('/')}`;
    expect(() => assertPatchValues([{ op: 'add', path, value: {} }])).not.toThrow();
    expect(refusal(() => assertPatchValues([{ op: 'add', path, value: { b: {} } }])).message).toMatch(
      /nested more than/,
    );
  });

  it('checks a root replacement as a document', () => {
    expect(() => assertPatchValues([{ op: 'replace', path: [], value: { a: 1 } }])).not.toThrow();
    expect(refusal(() => assertPatchValues([{ op: 'replace', path: '', value: [1] }])).path).toBe('');
    expect(
      refusal(() => assertPatchValues([{ op: 'replace', path: [], value: { a: undefined } }])).path,
    ).toBe('/a');
  });

  it('refuses unsupported ops and malformed paths', () => {
    expect(refusal(() => assertPatchValues([{ op: 'move', path: '/a' }])).message).toMatch(/unsupported/);
    expect(refusal(() => assertPatchValues([{ op: 'add', path: 'a', value: 1 }])).message).toMatch(
      /JSON Pointer/,
    );
  });
});

describe('strings PostgreSQL jsonb cannot hold are refused everywhere', () => {
  it.each([
    ['a lone high surrogate in a value', { s: 'a\ud800b' }, '/s'],
    ['a lone low surrogate deep in an array', { a: [['x', '\udc00']] }, '/a/0/1'],
    ['NUL in a value', { s: 'a\u0000b' }, '/s'],
    ['a lone surrogate in a key', { 'k\ud800': 1 }, ''],
  ])('%s', (_name, doc, path) => {
    const error = refusal(() => assertJsonDocument(doc));
    expect(error.path.startsWith(path)).toBe(true);
  });

  it('takes surrogate pairs (emoji) and other Unicode', () => {
    expect(() => assertJsonDocument({ s: '😀 é € \u{10FFFF}', '😀': ['\uffff'] })).not.toThrow();
  });

  it('checks values written by patch operations too', () => {
    expect(() => assertPatchValues([{ op: 'add', path: '/x', value: 'bad\u0000' }])).toThrow(ValidationError);
    expect(() => assertPatchValues([{ op: 'replace', path: '/x', value: ['\ud800'] }])).toThrow(
      ValidationError,
    );
  });
});
