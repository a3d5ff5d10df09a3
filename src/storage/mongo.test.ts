/**
 * The hand-applied update operators (`applySimpleOperators`) against mingo: on every update the
 * fast path takes, both must give the same document; what it declines, it leaves untouched.
 */
import fc from 'fast-check';
import { update } from 'mingo/updater';
import { describe, expect, it } from 'vitest';
import { applySimpleOperators } from './mongo.js';
import type { JsonObject } from './types.js';

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
