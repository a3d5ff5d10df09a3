/**
 * Property tests: the three notations of a Diff, checked against independent appliers
 * (fast-json-patch for RFC 6902, json-merge-patch for RFC 7396, mingo for MongoDB updates).
 */
import fc from 'fast-check';
import { create, rawReturn } from 'mutative';
import { describe, expect, it } from 'vitest';
import { applyJsonPatch, applyMergePatch, applyMongoUpdate } from '../../test/support/appliers.js';
import type { Diff, JsonObject, JsonPatchOperation, JsonValue } from '../core/json.js';
import {
  buildDiff,
  compareAlong,
  compareValues,
  emptyDiff,
  formatPointer,
  jsonEqual,
  jsonSize,
  parsePointer,
  prefixPatch,
} from './diff.js';
import { RECORD_PATHS, runEdit } from './edit.js';
import { assertPatchValues, keyProblem } from './validate.js';

const RUNS = 600;
const patchOptions = { enablePatches: { pathAsArray: false, arrayLengthAssignment: false } } as const;

const clone = <T>(value: T): T => structuredClone(value);

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/** Object keys allowed in documents; a small pool so edits hit existing keys often. */
const keyArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', 'c', 'd', 'id', 'name', 'hp', 'items') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('0', '1', '10', 'x/y', '~', 't~1', '~0/', 'a$', 'sp ace', 'é', '-'),
  },
  {
    weight: 1,
    arbitrary: fc.string({ minLength: 1, maxLength: 4 }).filter((k) => keyProblem(k) === undefined),
  },
);

const scalarArb = fc.oneof(
  fc.integer({ min: -1000, max: 1000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
  fc.string({ maxLength: 6 }),
  fc.boolean(),
);

/**
 * JSON values. With `nullMembers` false, no object member is null anywhere (arrays may still hold
 * null): that is the domain where a merge patch is exact.
 */
function jsonArbs(nullMembers: boolean) {
  return fc.letrec<{ value: JsonValue; member: JsonValue; object: JsonObject; array: JsonValue[] }>(
    (tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        scalarArb,
        fc.constant(null),
        tie('object'),
        tie('array'),
      ),
      member: nullMembers
        ? tie('value')
        : fc.oneof({ depthSize: 'small' }, scalarArb, tie('object'), tie('array')),
      object: fc.dictionary(keyArb, tie('member'), { maxKeys: 5 }),
      array: fc.array(tie('value'), { maxLength: 5 }),
    }),
  );
}

const strict = jsonArbs(false);
const loose = jsonArbs(true);

/** Game-state-like documents: a few wide-ish known members plus random ones. */
function docArb(arbs: typeof strict): fc.Arbitrary<JsonObject> {
  return (
    fc
      .record({
        rest: arbs.object,
        players: fc.dictionary(keyArb, arbs.object, { maxKeys: 4 }),
        items: fc.array(fc.oneof(arbs.object, scalarArb), { maxLength: 5 }),
      })
      // fast-check makes some objects with a null prototype; mutative does not draft those (edits
      // would mutate them in place, unrecorded), and stored documents never have them (they come
      // from JSON), so normalize.
      .map(({ rest, players, items }) => structuredClone({ ...rest, players, items }))
  );
}

type StepKind =
  | 'set'
  | 'delete'
  | 'push'
  | 'splice'
  | 'unshift'
  | 'bump'
  | 'newArray'
  | 'newObject'
  | 'reverse'
  | 'alias'
  | 'same';

interface Step {
  kind: StepKind;
  /** Navigation choices: at each level, which child container to enter (or stop). */
  picks: number[];
  key: string;
  index: number;
  count: number;
  values: JsonValue[];
}

function stepArb(arbs: typeof strict): fc.Arbitrary<Step> {
  return fc.record({
    kind: fc.constantFrom<StepKind>(
      'set',
      'set',
      'delete',
      'delete',
      'push',
      'splice',
      'unshift',
      'bump',
      'newArray',
      'newObject',
      'reverse',
      'alias',
      'same',
    ),
    picks: fc.array(fc.nat(20), { maxLength: 5 }),
    key: keyArb,
    index: fc.nat(50),
    count: fc.nat(3),
    values: fc.array(arbs.member, { minLength: 1, maxLength: 3 }),
  });
}

type Container = Record<string, unknown> | unknown[];
const isContainer = (v: unknown): v is Container => typeof v === 'object' && v !== null;

/** Walks into a random nested container of `root` (a mutative draft or a plain object). */
function pick(root: Container, picks: number[]): Container {
  let cur: Container = root;
  for (const p of picks) {
    const children = Array.isArray(cur)
      ? cur.filter(isContainer)
      : Object.keys(cur)
          .map((k) => (cur as Record<string, unknown>)[k])
          .filter(isContainer);
    if (children.length === 0 || p % (children.length + 1) === children.length) break;
    cur = children[p % (children.length + 1)]!;
  }
  return cur;
}

/** Applies the steps in place; values are cloned so generated values are never shared or mutated. */
function applySteps(root: Container, steps: Step[]): void {
  for (const s of steps) {
    const target = pick(root, s.picks);
    const value = clone(s.values[0]!);
    if (Array.isArray(target)) {
      const len = target.length;
      const i = len === 0 ? 0 : s.index % len;
      switch (s.kind) {
        case 'set':
        case 'bump':
          if (len === 0) target.push(value);
          else
            target[i] =
              s.kind === 'bump' && typeof target[i] === 'number' ? (target[i] as number) + 1 : value;
          break;
        case 'delete':
          if (len > 0) target.splice(i, 1);
          break;
        case 'push':
          target.push(...clone(s.values));
          break;
        case 'splice':
          target.splice(s.index % (len + 1), s.count, ...clone(s.values.slice(1)));
          break;
        case 'unshift':
          target.unshift(...clone(s.values));
          break;
        case 'reverse':
          target.reverse();
          break;
        case 'newArray':
          target[i] = [value];
          break;
        case 'newObject':
          target[i] = { [s.key]: value };
          break;
        case 'alias':
          if (len > 1) target[i] = target[(i + 1) % len];
          break;
        case 'same':
          // biome-ignore lint/correctness/noSelfAssign: a no-op write through the draft is the point
          if (len > 0) target[i] = target[i];
          break;
      }
    } else {
      const keys = Object.keys(target);
      const existing = keys.length > 0 ? keys[s.index % keys.length]! : s.key;
      switch (s.kind) {
        case 'set':
          target[s.key] = value;
          break;
        case 'bump': {
          const v = target[existing];
          target[existing] = typeof v === 'number' ? v + 1 : typeof v === 'string' ? `${v}!` : value;
          break;
        }
        case 'delete':
          delete target[existing];
          break;
        case 'push':
        case 'unshift':
        case 'splice':
        case 'newArray':
          target[s.key] = clone(s.values);
          break;
        case 'newObject':
          target[existing] = { [s.key]: value, nested: { deeper: clone(s.values) } };
          break;
        case 'reverse':
          // Replace an existing member with a value of another type.
          target[existing] = Array.isArray(target[existing]) ? { [s.key]: value } : [value];
          break;
        case 'alias':
          if (keys.length > 1) target[s.key] = target[keys[(s.index + 1) % keys.length]!];
          break;
        case 'same':
          // (On a missing key this would store undefined, which validation refuses.)
          // biome-ignore lint/correctness/noSelfAssign: a no-op write through the draft is the point
          if (keys.length > 0) target[existing] = target[existing];
          break;
      }
    }
  }
}

type Mode = 'mutate' | 'return-fresh' | 'return-shared';

interface Case {
  before: JsonObject;
  after: JsonObject;
  ops: JsonPatchOperation[];
  diff: Diff;
}

/** Runs an edit the way the storage does and builds its Diff. */
function runCase(before: JsonObject, steps: Step[], mode: Mode): Case {
  const beforeCopy = clone(before);
  let after: JsonObject;
  let ops: JsonPatchOperation[];
  if (mode === 'return-fresh') {
    // The edit returns a brand-new document that shares nothing with the old one.
    const fresh = clone(before);
    applySteps(fresh, steps);
    const [next, patches] = create(before, () => rawReturn(fresh), patchOptions);
    after = next as JsonObject;
    expect(patches.length).toBeLessThanOrEqual(1);
    ops = compareValues(before, after);
  } else {
    const [next, patches] = create(before as Container, (draft) => applySteps(draft, steps), patchOptions);
    after = next as JsonObject;
    ops = patches as unknown as JsonPatchOperation[];
    expect(() => assertPatchValues(ops)).not.toThrow();
    if (mode === 'return-shared') {
      // Same result, reported as a root replacement: buildDiff must compare structurally.
      ops = [{ op: 'replace', path: '', value: after }];
    }
  }
  const afterCopy = clone(after);
  const diff = buildDiff(before, after, ops, 7);
  // Building the diff changes neither side.
  expect(before).toEqual(beforeCopy);
  expect(after).toEqual(afterCopy);
  return { before, after, ops, diff };
}

const inputArb = (arbs: typeof strict) =>
  fc.record({
    before: docArb(arbs),
    steps: fc.array(stepArb(arbs), { minLength: 1, maxLength: 4 }),
    mode: fc.constantFrom<Mode>('mutate', 'mutate', 'return-fresh', 'return-shared'),
  });

/** A property over edit cases; the edit runs inside the property so failures shrink. */
const caseProperty = (arbs: typeof strict, check: (c: Case) => void) =>
  fc.property(inputArb(arbs), ({ before, steps, mode }) => check(runCase(before, steps, mode)));

// ---------------------------------------------------------------------------------------------
// Independent appliers
// ---------------------------------------------------------------------------------------------

const applyMongoUpdateOf = (doc: JsonObject, diff: Diff) => applyMongoUpdate(doc, diff.mongoUpdate ?? {});

/** Removes null object members everywhere (what a merge patch cannot express). */
function stripNullMembers(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(stripNullMembers);
  if (value === null || typeof value !== 'object') return value;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value)) if (v !== null) out[k] = stripNullMembers(v);
  return out;
}

/** Every null object member of `result` is also a null member of `after` (no spurious nulls). */
function nullsAreGenuine(result: JsonValue, after: JsonValue | undefined): boolean {
  if (Array.isArray(result)) {
    return Array.isArray(after) && result.every((v, i) => nullsAreGenuine(v, after[i]));
  }
  if (result === null || typeof result !== 'object') return true;
  if (after === null || typeof after !== 'object' || Array.isArray(after)) return false;
  return Object.entries(result).every(([k, v]) =>
    v === null ? Object.hasOwn(after, k) && after[k] === null : nullsAreGenuine(v, after[k]),
  );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

describe('buildDiff (properties)', () => {
  it('jsonPatch applied with fast-json-patch gives `after`', () => {
    fc.assert(
      caseProperty(loose, ({ before, after, diff }) => {
        expect(applyJsonPatch(before, diff.jsonPatch)).toEqual(after);
        expect(diff.hasChanges).toBe(diff.jsonPatch.length > 0);
        expect(diff.version).toBe(7);
      }),
      { numRuns: RUNS },
    );
  });

  // The documents here are small, so the derived notations are nearly always kept (they are left
  // out only when much larger than jsonPatch): each property holds whenever one is there, and
  // counts that it was there often enough to mean something.
  it('mergePatch applied with json-merge-patch gives `after` (no null members)', () => {
    const present = counter();
    fc.assert(
      caseProperty(strict, ({ before, after, diff }) => {
        if (!present(diff.mergePatch)) return;
        expect(applyMergePatch(before, diff.mergePatch!)).toEqual(after);
      }),
      { numRuns: RUNS },
    );
    expect(present.share()).toBeGreaterThan(0.9);
  });

  it('mergePatch with null members: `after` up to null members, and no spurious nulls (the RFC 7396 limit)', () => {
    const present = counter();
    fc.assert(
      caseProperty(loose, ({ before, after, diff }) => {
        if (!present(diff.mergePatch)) return;
        const result = applyMergePatch(before, diff.mergePatch!);
        expect(stripNullMembers(result)).toEqual(stripNullMembers(after));
        expect(nullsAreGenuine(result, after)).toBe(true);
      }),
      { numRuns: RUNS },
    );
    expect(present.share()).toBeGreaterThan(0.9);
  });

  it('mongoUpdate applied with mingo gives `after`', () => {
    const present = counter();
    fc.assert(
      caseProperty(loose, ({ before, after, diff }) => {
        if (!present(diff.mongoUpdate)) return;
        expect(applyMongoUpdateOf(before, diff)).toEqual(after);
      }),
      { numRuns: RUNS },
    );
    expect(present.share()).toBeGreaterThan(0.9);
  });

  it('mongoUpdate is well formed: no overlapping paths, indexes only of arrays, in range', () => {
    fc.assert(
      caseProperty(loose, ({ after, diff }) => {
        if (!diff.mongoUpdate) return;
        const { $set = {}, $unset = {} } = diff.mongoUpdate;
        const setPaths = Object.keys($set);
        const unsetPaths = Object.keys($unset);
        const paths = [...setPaths, ...unsetPaths].sort();
        expect(new Set(paths).size).toBe(paths.length);
        for (let i = 1; i < paths.length; i++) expect(paths[i]!.startsWith(`${paths[i - 1]}.`)).toBe(false);
        for (const p of paths) {
          // Every proper prefix is a plain object, or an array the next segment indexes.
          let cur: JsonValue | undefined = after;
          const segs = p.split('.');
          for (const seg of segs.slice(0, -1)) {
            cur = childOf(cur, seg);
            expect(cur).toBeDefined();
          }
          const last = segs[segs.length - 1]!;
          if (p in $set) expect(childOf(cur, last)).toBe($set[p]);
          else {
            // Only object members are unset: $unset of an array element would leave a null.
            expect(cur !== null && typeof cur === 'object' && !Array.isArray(cur)).toBe(true);
            expect(Object.hasOwn(cur as JsonObject, last)).toBe(false);
          }
        }
        if (!diff.hasChanges) expect(diff.mongoUpdate).toEqual({});
      }),
      { numRuns: RUNS },
    );
  });

  it('keeps a derived notation only when it is at most twice the size of jsonPatch plus 1 KiB', () => {
    fc.assert(
      caseProperty(loose, ({ diff }) => {
        const budget = 2 * jsonSize(diff.jsonPatch as never, Infinity) + 1024;
        if (diff.mergePatch) expect(jsonSize(diff.mergePatch, Infinity)).toBeLessThanOrEqual(budget);
        if (diff.mongoUpdate)
          expect(jsonSize(diff.mongoUpdate as never, Infinity)).toBeLessThanOrEqual(budget);
      }),
      { numRuns: RUNS },
    );
  });
});

/** Counts calls and how many were given a value; the call answers whether it was. */
function counter() {
  let calls = 0;
  let given = 0;
  const count = (value: unknown) => {
    calls++;
    if (value !== undefined) given++;
    return value !== undefined;
  };
  return Object.assign(count, { share: () => given / Math.max(1, calls) });
}

/** The member `key` of an object, or element `key` (a canonical index) of an array; else undefined. */
function childOf(value: JsonValue | undefined, key: string): JsonValue | undefined {
  if (Array.isArray(value)) return /^(0|[1-9]\d*)$/.test(key) ? value[Number(key)] : undefined;
  if (value === null || typeof value !== 'object') return undefined;
  return Object.hasOwn(value, key) ? value[key] : undefined;
}

describe('array changes stay proportional (properties)', () => {
  // Elements without null members, so the merge patch is exact too.
  const element = fc.oneof(
    fc.integer({ min: 0, max: 9 }),
    fc.record({ k: fc.integer({ min: 0, max: 9 }), s: fc.string({ maxLength: 6 }) }),
  );
  type Change =
    | { kind: 'append'; items: JsonValue[] }
    | { kind: 'truncate'; count: number }
    | { kind: 'set'; at: number; item: JsonValue }
    | { kind: 'field'; at: number; k: number }
    | { kind: 'splice'; at: number; count: number; items: JsonValue[] };
  const items = fc.array(element, { minLength: 1, maxLength: 4 });
  const change: fc.Arbitrary<Change> = fc.oneof(
    fc.record({ kind: fc.constant('append' as const), items }),
    fc.record({ kind: fc.constant('truncate' as const), count: fc.integer({ min: 1, max: 4 }) }),
    fc.record({ kind: fc.constant('set' as const), at: fc.nat(), item: element }),
    fc.record({ kind: fc.constant('field' as const), at: fc.nat(), k: fc.integer({ min: 10, max: 99 }) }),
    fc.record({
      kind: fc.constant('splice' as const),
      at: fc.nat(),
      count: fc.integer({ min: 0, max: 4 }),
      items: fc.array(element, { maxLength: 4 }),
    }),
  );

  /** Applies `c` to the draft's array; returns the values it wrote and how many elements it touched. */
  function apply(arr: JsonValue[], c: Change): { written: JsonValue[]; touched: number } {
    const at = 'at' in c ? c.at % arr.length : 0;
    switch (c.kind) {
      case 'append':
        arr.push(...clone(c.items));
        return { written: c.items, touched: c.items.length };
      case 'truncate':
        arr.splice(arr.length - c.count);
        return { written: [], touched: c.count };
      case 'set':
        arr[at] = clone(c.item);
        return { written: [c.item], touched: 1 };
      case 'field':
        arr[at] = { k: c.k, s: 'f' };
        return { written: [arr[at]!], touched: 1 };
      case 'splice':
        arr.splice(at, c.count, ...clone(c.items));
        return { written: c.items, touched: c.count + c.items.length };
    }
  }

  it('an append, truncation, element change or splice costs O(change) in every notation, all exact', async () => {
    const record = fc.record({
      k: fc.integer({ min: 0, max: 9 }),
      s: fc.string({ minLength: 8, maxLength: 12 }),
    });
    const big = fc.array(fc.oneof(element, record, record), { minLength: 400, maxLength: 600 });
    await fc.assert(
      fc.asyncProperty(big, change, async (arr, c) => {
        const before: JsonObject = { _id: 'd', version: 1, arr, other: { n: 1 } };
        let effect = { written: [] as JsonValue[], touched: 0 };
        const outcome = await runEdit(
          before,
          (draft: JsonObject) => {
            effect = apply(draft.arr as JsonValue[], c);
          },
          { versionField: 'version', version: 1, lockedFields: ['_id'] },
        );
        if (!outcome) return; // e.g. an element set to what it was
        const { after, ops } = outcome;
        const diff = buildDiff(before, after, ops, 2);
        // O(change): the values written, about 64 bytes per element touched, the version op;
        // and up to 8 elements an element-wise recording may shift before the compare is tried.
        const bound = JSON.stringify(effect.written).length + 64 * effect.touched + 8 * 64 + 128;
        const size = (v: unknown) => JSON.stringify(v).length;
        expect(size(diff.jsonPatch)).toBeLessThanOrEqual(bound);
        if (diff.mergePatch) expect(size(diff.mergePatch)).toBeLessThanOrEqual(3 * bound + 1200);
        if (diff.mongoUpdate) expect(size(diff.mongoUpdate)).toBeLessThanOrEqual(3 * bound + 1200);
        // The array is larger than any of those bounds: it is never sent whole.
        expect(size(arr)).toBeGreaterThan(3 * bound + 1200);
        // Changes in place and appends keep the MongoDB update (by index).
        if (c.kind !== 'truncate' && c.kind !== 'splice') expect(diff.mongoUpdate).toBeDefined();
        expect(applyJsonPatch(before, diff.jsonPatch)).toEqual(after);
        if (diff.mergePatch) expect(applyMergePatch(before, diff.mergePatch)).toEqual(after);
        if (diff.mongoUpdate) expect(applyMongoUpdateOf(before, diff)).toEqual(after);
      }),
      { numRuns: 300 },
    );
  });
});

describe('compareValues (properties)', () => {
  it('round trips arbitrary pairs with fast-json-patch', () => {
    fc.assert(
      fc.property(loose.value, loose.value, (before, after) => {
        const ops = compareValues(before, after);
        expect(applyJsonPatch(before, ops)).toEqual(after);
        if (jsonEqual(before, after)) expect(ops).toEqual([]);
      }),
      { numRuns: 1000 },
    );
  });

  it('round trips edited arrays (inserts, removals, reorders of deep-copied elements)', () => {
    const elem = fc.oneof(fc.integer({ min: 0, max: 5 }), fc.record({ k: fc.integer({ min: 0, max: 3 }) }));
    fc.assert(
      fc.property(
        fc.array(elem, { maxLength: 8 }),
        fc.nat(8),
        fc.nat(4),
        fc.array(elem, { maxLength: 4 }),
        (arr, start, deleteCount, items) => {
          const before = { arr } as JsonObject;
          const edited = clone(arr);
          edited.splice(start, deleteCount, ...items);
          const after = { arr: edited } as JsonObject;
          const ops = compareValues(before, after);
          expect(applyJsonPatch(before, ops)).toEqual(after);
          // Never more ops than elements in the result (else it replaces the array).
          expect(ops.length).toBeLessThanOrEqual(Math.max(1, edited.length));
          const diff = buildDiff(before, after, ops, 1);
          expect(applyMongoUpdateOf(before, diff)).toEqual(after);
          expect(applyMergePatch(before, diff.mergePatch!)).toEqual(after);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('round trips documents with edits applied (structure mostly shared)', () => {
    fc.assert(
      fc.property(
        docArb(loose),
        fc.array(stepArb(loose), { minLength: 1, maxLength: 4 }),
        (before, steps) => {
          const after = create(before as Container, (draft) => applySteps(draft, steps)) as JsonValue;
          const ops = compareValues(before, after);
          expect(applyJsonPatch(before, ops)).toEqual(after);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe('compareAlong (properties)', () => {
  it('gives ops that apply to the same document as compareValues, walking only the written paths', () => {
    fc.assert(
      fc.property(
        docArb(loose),
        fc.array(stepArb(loose), { minLength: 1, maxLength: 4 }),
        (before, steps) => {
          const [after, patches] = create(
            before as Container,
            (draft) => applySteps(draft, steps),
            RECORD_PATHS,
          );
          const written = patches.map((patch) => patch.path as (string | number)[]);
          const along = compareAlong(before, after as JsonValue, written);
          expect(applyJsonPatch(before, along)).toEqual(after);
          // As exact as the full compare: no op where nothing changed.
          expect(along.length === 0).toBe(compareValues(before, after as JsonValue).length === 0);
        },
      ),
      { numRuns: RUNS },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------------

describe('buildDiff (examples)', () => {
  const edit = (before: JsonObject, recipe: (d: JsonObject) => unknown) => {
    const [after, patches] = create(before, recipe as never, patchOptions) as unknown as [
      JsonObject,
      JsonPatchOperation[],
    ];
    return { after, diff: buildDiff(before, after, patches, 2) };
  };

  it('expresses a one-field edit at the field', () => {
    const { diff } = edit({ a: { b: 1, c: 2 }, z: [1] }, (d) => {
      (d.a as JsonObject).b = 5;
    });
    expect(diff).toEqual({
      hasChanges: true,
      version: 2,
      jsonPatch: [{ op: 'replace', path: '/a/b', value: 5 }],
      mergePatch: { a: { b: 5 } },
      mongoUpdate: { $set: { 'a.b': 5 } },
    });
  });

  it('expresses an insert or removal in an array at the array', () => {
    const { after, diff } = edit({ p: { items: [{ n: 1 }, { n: 2 }] } }, (d) => {
      const items = (d.p as JsonObject).items as JsonObject[];
      items.splice(0, 1);
    });
    const items = (after.p as JsonObject).items;
    expect(diff.jsonPatch).toEqual([
      { op: 'replace', path: '/p/items/0', value: { n: 2 } },
      { op: 'remove', path: '/p/items/1' },
    ]);
    expect(diff.mongoUpdate).toEqual({ $set: { 'p.items': items } });
    expect(diff.mergePatch).toEqual({ p: { items } });
    // Shares structure with `after` rather than copying it.
    expect(diff.mongoUpdate!.$set!['p.items']).toBe(items);
  });

  it('expresses changes in place and appends in an array by index, the merge patch by the array', () => {
    const { after, diff } = edit({ p: { items: [{ n: 1 }, { n: 2 }] }, t: [[0]] }, (d) => {
      const items = (d.p as JsonObject).items as JsonObject[];
      items[1]!.n = 3;
      items.push({ n: 4 });
      delete items[0]!.n;
      ((d.t as JsonValue[])[0] as JsonValue[]).push(1);
    });
    expect(diff.mongoUpdate).toEqual({
      $set: { 'p.items.1.n': 3, 'p.items.2': { n: 4 }, 't.0.1': 1 },
      $unset: { 'p.items.0.n': '' },
    });
    expect(diff.mergePatch).toEqual({ p: { items: (after.p as JsonObject).items }, t: after.t });
  });

  it('unsets removed members and nulls them in the merge patch', () => {
    const { diff } = edit({ a: { b: 1, c: 2 }, d: 1 }, (d) => {
      delete (d.a as JsonObject).b;
      delete d.d;
    });
    expect(diff.mongoUpdate).toEqual({ $unset: { 'a.b': '', d: '' } });
    expect(diff.mergePatch).toEqual({ a: { b: null }, d: null });
  });

  it('recurses into a replaced object for the merge patch', () => {
    const { diff } = edit({ a: { x: 1, y: { k: 1, j: 2 } } }, (d) => {
      d.a = { y: { k: 1, j: 3 }, w: 2 };
    });
    expect(diff.mongoUpdate).toEqual({ $set: { a: { y: { k: 1, j: 3 }, w: 2 } } });
    expect(diff.mergePatch).toEqual({ a: { x: null, y: { j: 3 }, w: 2 } });
  });

  it('drops paths covered by a shorter changed path', () => {
    const before = { a: { b: { c: 1 } } };
    const after = { a: { b: { c: 2 }, n: 1 } };
    const diff = buildDiff(
      before,
      after,
      [
        { op: 'replace', path: '/a/b/c', value: 2 },
        { op: 'replace', path: '/a', value: after.a },
        { op: 'add', path: '/a/n', value: 1 },
      ],
      3,
    );
    expect(diff.mongoUpdate).toEqual({ $set: { a: after.a } });
    expect(diff.mergePatch).toEqual({ a: { b: { c: 2 }, n: 1 } });
  });

  it('turns a returned document (root replacement) into structural ops', () => {
    const before = { a: 1, b: { c: [1, 2] }, keep: { big: true } };
    const { after, diff } = edit(before, (d) => ({ ...d, a: 2, b: { c: [1, 2, 3] } }));
    expect(after.keep).toBe(before.keep);
    expect(diff.jsonPatch).toEqual([
      { op: 'replace', path: '/a', value: 2 },
      { op: 'add', path: '/b/c/2', value: 3 },
    ]);
    expect(diff.mongoUpdate).toEqual({ $set: { a: 2, 'b.c.2': 3 } });
  });

  it('keeps nulls exact in jsonPatch and mongoUpdate, but not in the merge patch', () => {
    const { after, diff } = edit({ a: 1, o: {} }, (d) => {
      d.a = null;
      d.o = { n: null };
    });
    expect(applyJsonPatch({ a: 1, o: {} }, diff.jsonPatch)).toEqual(after);
    expect(diff.mongoUpdate).toEqual({ $set: { a: null, o: { n: null } } });
    expect(applyMergePatch({ a: 1, o: {} }, diff.mergePatch!)).toEqual({ o: {} });
  });

  it('says "no changes" for an empty op list', () => {
    const before = { a: 1 };
    expect(buildDiff(before, before, [], 4)).toEqual(emptyDiff(4));
    expect(emptyDiff(4)).toEqual({
      hasChanges: false,
      version: 4,
      jsonPatch: [],
      mergePatch: {},
      mongoUpdate: {},
    });
    expect(buildDiff(before, { a: 1 }, [{ op: 'replace', path: '', value: { a: 1 } }], 4).hasChanges).toBe(
      false,
    );
  });

  it('costs the size of the change, not of the document', () => {
    // A subtree that throws when anything enumerates or reads it: the diff must not walk it.
    const trap = new Proxy({} as JsonObject, {
      get() {
        throw new Error('walked the unchanged part of the document');
      },
      ownKeys() {
        throw new Error('walked the unchanged part of the document');
      },
    });
    const before = { wide: trap, n: 1, o: { p: 1 } };
    const after = { wide: trap, n: 2, o: { p: 2 } };
    const diff = buildDiff(
      before,
      after,
      [
        { op: 'replace', path: '/n', value: 2 },
        { op: 'replace', path: '/o/p', value: 2 },
      ],
      2,
    );
    expect(diff.mongoUpdate).toEqual({ $set: { n: 2, 'o.p': 2 } });
    expect(diff.mergePatch).toEqual({ n: 2, o: { p: 2 } });
  });
});

describe('compareValues (examples)', () => {
  it('uses the common prefix and suffix of arrays', () => {
    expect(compareValues({ a: [1, 2, 3] }, { a: [0, 1, 2, 3] })).toEqual([
      { op: 'add', path: '/a/0', value: 0 },
    ]);
    expect(compareValues({ a: [1, 2, 3, 4] }, { a: [1, 4] })).toEqual([
      { op: 'remove', path: '/a/2' },
      { op: 'remove', path: '/a/1' },
    ]);
    expect(compareValues([{ x: 1 }, { y: 2 }], [{ x: 1 }, { y: 3 }])).toEqual([
      { op: 'replace', path: '/1/y', value: 3 },
    ]);
  });

  it('replaces an array whole when that is shorter', () => {
    expect(compareValues({ a: [1, 2, 3] }, { a: [4, 5] })).toEqual([
      { op: 'replace', path: '/a', value: [4, 5] },
    ]);
  });

  it('escapes keys and honours basePath', () => {
    expect(compareValues({ 'x/y': 1, 'a~b': 1, k: 0 }, { 'x/y': 2, k: 0 }, '/s~1t')).toEqual([
      { op: 'replace', path: '/s~1t/x~1y', value: 2 },
      { op: 'remove', path: '/s~1t/a~0b' },
    ]);
  });

  it('replaces an object of which nothing survives whole, when that is fewer ops (never the root)', () => {
    expect(compareValues({ s: { a: 1, b: { c: 1 } } }, { s: { a: 2, d: 3 } })).toEqual([
      { op: 'replace', path: '/s', value: { a: 2, d: 3 } },
    ]);
    // A member kept (here an object, which may have changed inside) keeps the ops member-wise.
    expect(compareValues({ s: { a: 1, b: { c: 1 } } }, { s: { a: 2, b: { c: 1 } } })).toEqual([
      { op: 'replace', path: '/s/a', value: 2 },
    ]);
    expect(compareValues({ a: 1, b: 2 }, { a: 2, c: 3 })).toHaveLength(3);
  });

  it('replaces on a change of type, including at the root', () => {
    expect(compareValues({ a: [1] }, { a: { 0: 1 } })).toEqual([
      { op: 'replace', path: '/a', value: { 0: 1 } },
    ]);
    expect(compareValues(1, 'x')).toEqual([{ op: 'replace', path: '', value: 'x' }]);
  });

  it('skips shared subtrees by reference', () => {
    const big = { deep: { er: [1, 2, 3] } };
    const trap = new Proxy(big, {
      ownKeys() {
        throw new Error('walked a shared subtree');
      },
    });
    expect(compareValues({ s: trap, n: 1 }, { s: trap, n: 2 })).toEqual([
      { op: 'replace', path: '/n', value: 2 },
    ]);
  });
});

describe('JSON Pointer helpers', () => {
  it('formats and parses with ~0 and ~1', () => {
    expect(formatPointer([])).toBe('');
    expect(formatPointer(['a', 'b/c', '~d', 0])).toBe('/a/b~1c/~0d/0');
    expect(parsePointer('')).toEqual([]);
    expect(parsePointer('/a/b~1c/~0d/0')).toEqual(['a', 'b/c', '~d', '0']);
    expect(parsePointer('/~01')).toEqual(['~1']);
    expect(parsePointer('/')).toEqual(['']);
    expect(parsePointer([])).toEqual([]);
    expect(() => parsePointer('a')).toThrow(SyntaxError);
  });

  it('round trips arbitrary segments', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 5 }), { maxLength: 5 }), (segs) => {
        expect(parsePointer(formatPointer(segs))).toEqual(segs);
      }),
      { numRuns: 500 },
    );
  });

  it('prefixPatch re-roots ops under escaped segments', () => {
    const ops: JsonPatchOperation[] = [
      { op: 'replace', path: '/x', value: 1 },
      { op: 'remove', path: '/y/0' },
      { op: 'add', path: '', value: {} },
    ];
    expect(prefixPatch(ops, ['sec/1', 'in~v'])).toEqual([
      { op: 'replace', path: '/sec~11/in~0v/x', value: 1 },
      { op: 'remove', path: '/sec~11/in~0v/y/0' },
      { op: 'add', path: '/sec~11/in~0v', value: {} },
    ]);
    expect(prefixPatch(ops, [])).toEqual(ops);
    const doc = { 'sec/1': { 'in~v': { x: 0, y: [5] } } };
    expect(applyJsonPatch(doc, prefixPatch(ops.slice(0, 2), ['sec/1', 'in~v']))).toEqual({
      'sec/1': { 'in~v': { x: 1, y: [] } },
    });
  });
});
