/**
 * The hand-applied update operators (`applySimpleOperators`) against mingo: on every update the
 * fast path takes, both must give the same document; what it declines, it leaves untouched.
 */
import fc from 'fast-check';
import { update } from 'mingo/updater';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import { applySimpleOperators, applyUpdateOperators, assertFilter } from './mongo.js';
import type { UpdateOperators } from './types.js';

const key = fc.constantFrom('a', 'b', 'c', 'n');
const path = fc.array(key, { minLength: 1, maxLength: 3 }).map((keys) => keys.join('.'));
const leaf = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom('x', true, null),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: 'small' },
    leaf,
    fc.dictionary(key, tie('node'), { maxKeys: 3 }),
    fc.array(leaf, { maxLength: 2 }),
  ),
})).node;
const doc = fc.dictionary(key, value, { maxKeys: 4 }) as fc.Arbitrary<JsonObject>;
const operators = fc
  .record(
    {
      $set: fc.dictionary(path, fc.oneof(leaf, fc.constant({ z: 1 })), { minKeys: 1, maxKeys: 2 }),
      $inc: fc.dictionary(path, fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constant('1')), {
        minKeys: 1,
        maxKeys: 2,
      }),
      $unset: fc.dictionary(path, fc.constant(''), { minKeys: 1, maxKeys: 2 }),
    },
    { requiredKeys: [] },
  )
  .filter((o) => Object.keys(o).length > 0);

describe('applySimpleOperators', () => {
  it('gives what mingo gives whenever it applies an update, and changes nothing when it declines', () => {
    let applied = 0;
    fc.assert(
      fc.property(doc, operators, (original, ops) => {
        const ours = structuredClone(original);
        const theirs = structuredClone(original);
        if (!applySimpleOperators(ours, ops as never)) {
          expect(ours).toEqual(original);
          return;
        }
        applied++;
        update(theirs as never, ops as never);
        expect(ours).toEqual(theirs);
      }),
      { numRuns: 3000 },
    );
    // Enough of the runs reach the fast path to mean something (about 7% of random updates qualify).
    expect(applied).toBeGreaterThan(150);
  });

  it('takes the common cases and leaves arrays, positional paths and object values to mingo', () => {
    const d = (): JsonObject => ({ gold: 1, stats: { hp: 2 }, items: [{ qty: 1 }] });
    const doc1 = d();
    expect(
      applySimpleOperators(doc1, {
        $inc: { gold: 2, 'stats.mp': 1 },
        $set: { name: 'x' },
        $unset: { 'stats.hp': '' },
      }),
    ).toBe(true);
    expect(doc1).toEqual({ gold: 3, stats: { mp: 1 }, items: [{ qty: 1 }], name: 'x' });
    for (const ops of [
      { $inc: { 'items.0.qty': 1 } },
      { $set: { stats: { hp: 3 } } },
      { $push: { items: 1 } },
      { $inc: { stats: 1 } },
      { $set: { 'gold.x': 1 } },
    ]) {
      const doc2 = d();
      expect(applySimpleOperators(doc2, ops as never), JSON.stringify(ops)).toBe(false);
      expect(doc2).toEqual(d());
    }
  });
});

describe('applyUpdateOperators: array indexes', () => {
  const base = (): JsonObject => ({ a: [1, 2, 3], o: { b: [[0], []] }, n: null });
  const refused = (doc: JsonObject, ops: Record<string, Record<string, unknown>>, growth?: number) => {
    let error: unknown;
    try {
      applyUpdateOperators(doc, ops, growth);
    } catch (e) {
      error = e;
    }
    return error instanceof ValidationError;
  };

  it('refuses an index past the end at once, before anything is applied', () => {
    const doc = base();
    const started = performance.now();
    expect(refused(doc, { $set: { 'a.10000000': 1 } })).toBe(true);
    expect(refused(doc, { $inc: { gold: 1, 'a.99999999999999999999': 1 } })).toBe(true);
    expect(refused(doc, { $set: { 'a.4': 1 } })).toBe(true);
    expect(refused(doc, { $max: { 'a.7.x': 1 } })).toBe(true);
    expect(refused(doc, { $push: { 'o.b.1.1': 1 } })).toBe(true);
    expect(refused(doc, { $set: { 'o.b.$[].1': 1 } })).toBe(true); // o.b.1 is empty
    expect(refused(doc, { $rename: { n: 'a.9' } })).toBe(true);
    expect(performance.now() - started).toBeLessThan(100);
    expect(doc).toEqual(base());
  });

  it('lets an index append, counting the lower indexes the same update writes', () => {
    const doc = base();
    applyUpdateOperators(doc, { $set: { 'a.4': 5, 'a.3': 4, 'a.5.x': 6 }, $push: { 'o.b.1.0': 7 } });
    expect(doc).toEqual({ a: [1, 2, 3, 4, 5, { x: 6 }], o: { b: [[0], [[7]]] }, n: null });
  });

  it('leaves numeric keys of objects, and operators that create nothing, unbounded', () => {
    const doc = base();
    applyUpdateOperators(doc, { $set: { 'o.99999999999999999999': 1, 'm.5': 2 } });
    applyUpdateOperators(doc, { $unset: { 'a.10000000': '' }, $pop: { 'o.b.10000000': 1 } });
    applyUpdateOperators(doc, { $pull: { 'a.10000000': 1 } });
    expect(doc).toEqual({ ...base(), o: { b: [[0], []], '99999999999999999999': 1 }, m: { '5': 2 } });
  });

  it('with maxArrayGrowth 0 refuses any extension by index; past 1 fills the gap with nulls (MongoDB)', () => {
    expect(refused(base(), { $set: { 'a.3': 4 } }, 0)).toBe(true);
    const doc = base();
    applyUpdateOperators(doc, { $set: { 'a.5': 6 }, $inc: { 'o.b.1.2': 1 } }, 3);
    expect(doc).toEqual({ a: [1, 2, 3, null, null, 6], o: { b: [[0], [null, null, 1]] }, n: null });
  });

  it('refuses exactly the updates whose gaps reach maxArrayGrowth, else gives what mingo gives, gaps as null', () => {
    const index = fc.integer({ min: 0, max: 7 });
    const arrayPath = fc.constantFrom('a', 'o.b.0', 'o.b.1', 'o.b.$[]');
    const path = fc
      .tuple(arrayPath, index, fc.boolean())
      .map(([p, i, deeper]) => `${p}.${i}${deeper ? '.x' : ''}`);
    const ops = fc
      .record(
        {
          $set: fc.dictionary(path, fc.integer(), { minKeys: 1, maxKeys: 3 }),
          $inc: fc.dictionary(path, fc.integer(), { minKeys: 1, maxKeys: 2 }),
        },
        { requiredKeys: [] },
      )
      .filter((o) => Object.keys(o).length > 0);
    const outcomes = { refused: 0, applied: 0 };
    fc.assert(
      fc.property(ops, fc.integer({ min: 1, max: 3 }), (operators, growth) => {
        let theirs: JsonObject = base();
        try {
          update(theirs as never, operators as never);
        } catch {
          return; // conflicting paths and the like: mingo's own refusal, not ours
        }
        theirs = theirs as JsonObject;
        const gap = longestGap(theirs, base());
        const ours = base();
        if (gap >= growth) {
          outcomes.refused++;
          expect(refused(ours, operators, growth)).toBe(true);
          expect(ours).toEqual(base());
        } else {
          outcomes.applied++;
          const error = (() => {
            try {
              applyUpdateOperators(ours, operators, growth);
            } catch (e) {
              return e as Error;
            }
          })();
          // A field inside a number ("a.0.x"): MongoDB refuses it, mingo skips it.
          if (error && /cannot create "x"/.test(error.message)) expect(ours).toEqual(base());
          else if (error) throw error;
          else expect(ours).toEqual(JSON.parse(JSON.stringify(theirs)));
        }
      }),
      { numRuns: 2000 },
    );
    // Both sides of the rule are reached often (each in about a tenth of the runs or more).
    expect(outcomes.refused).toBeGreaterThan(100);
    expect(outcomes.applied).toBeGreaterThan(100);
  });
});

/** The longest run of holes that mingo left in an array of `after` past that array's end in `before`. */
function longestGap(after: JsonObject, before: JsonObject): number {
  let longest = 0;
  const visit = (a: unknown, b: unknown) => {
    if (Array.isArray(a)) {
      const from = Array.isArray(b) ? b.length : 0;
      let run = 0;
      for (let i = from; i < a.length; i++) {
        run = i in a ? 0 : run + 1;
        longest = Math.max(longest, run);
      }
      a.forEach((v, i) => {
        if (i in a) visit(v, Array.isArray(b) ? b[i] : undefined);
      });
    } else if (a !== null && typeof a === 'object') {
      for (const [k, v] of Object.entries(a)) visit(v, (b as Record<string, unknown> | undefined)?.[k]);
    }
  };
  visit(after, before);
  return longest;
}

describe('update operators follow MongoDB type rules', () => {
  const doc = () => ({ _id: 'x', name: 'n', gold: 1, list: [1], nothing: null, o: { a: [2] } }) as JsonObject;

  it.each([
    ['$inc on a string', { $inc: { name: 1 } }],
    ['$inc on null', { $inc: { nothing: 1 } }],
    ['$inc with a string', { $inc: { gold: '1' } }],
    ['$mul on an array', { $mul: { list: 2 } }],
    ['$push on a string', { $push: { name: 1 } }],
    ['$push on a number', { $push: { gold: 1 } }],
    ['$addToSet on an object', { $addToSet: { o: 1 } }],
    ['$pop on a number', { $pop: { gold: 1 } }],
    ['$pull on a string', { $pull: { name: 'n' } }],
    ['$pullAll on a number', { $pullAll: { gold: [1] } }],
    ['$inc on an array element that is an array', { $inc: { 'o.a': 1 } }],
  ])('refuses %s with ValidationError and changes nothing', (_name, operators) => {
    const target = doc();
    expect(() => applyUpdateOperators(target, operators as UpdateOperators)).toThrow(ValidationError);
    expect(target).toEqual(doc());
  });

  it('still applies to missing fields and matching types', () => {
    const target = doc();
    applyUpdateOperators(target, {
      $inc: { gold: 2, fresh: 1 },
      $push: { list: 2, newList: 1 },
    } as UpdateOperators);
    expect(target).toMatchObject({ gold: 3, fresh: 1, list: [1, 2], newList: [1] });
  });
});

describe('assertFilter: list operators take arrays', () => {
  it.each([
    { a: { $in: 5 } },
    { a: { $nin: 'x' } },
    { a: { $all: { b: 1 } } },
    { $or: [{ a: { $in: null } }] },
  ])('refuses %j (mingo would throw later, on the first document that has the field)', (filter) => {
    expect(() => assertFilter(filter as never)).toThrow(ValidationError);
  });

  it('takes arrays', () => {
    expect(() => assertFilter({ a: { $in: [1] }, b: { $nin: [] }, c: { $all: ['x'] } })).not.toThrow();
  });
});
