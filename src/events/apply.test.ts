import { createRequire } from 'node:module';
import fc from 'fast-check';
import jsonPatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { creationDiff } from '../core/drafts.js';
import { EventSyncError, ValidationError } from '../core/errors.js';
import type { SyncEvent } from '../core/events.js';
import type { JsonObject, JsonPatchOperation, JsonValue } from '../core/json.js';
import { compareValues } from '../storage/diff.js';
import { applyEvent, applyEvents } from './apply.js';

let seq = 0;
function event(
  operation: SyncEvent['operation'],
  ops?: unknown[],
  extra: Partial<SyncEvent> = {},
): SyncEvent {
  seq += 1;
  const e: SyncEvent = {
    id: `e${seq}`,
    collection: 'c',
    documentId: 'd',
    seq,
    serverSeq: seq,
    timestamp: 0,
    operation,
    version: seq,
    clientId: 'server',
    vectorClock: { server: seq },
    ...extra,
  };
  if (ops) {
    e.diff = {
      hasChanges: true,
      version: e.version,
      jsonPatch: ops as JsonPatchOperation[],
      mergePatch: {},
      mongoUpdate: {},
    };
  }
  return e;
}

const update = (ops: unknown[], extra: Partial<SyncEvent> = {}) => event('update', ops, extra);

function deepFreeze<V>(value: V): V {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(EventSyncError.is(error), String(error)).toBe(true);
    return (error as EventSyncError).code;
  }
  return undefined;
}

describe('applyEvent', () => {
  it('creates from nothing, updates, deletes', () => {
    const doc = { _id: 'd', version: 1, gold: 1, bag: { a: [1, 2] } };
    const created = applyEvent(null, event('create', undefined, { diff: creationDiff(doc, 1) }));
    expect(created).toEqual(doc);
    const updated = applyEvent(
      created,
      update([
        { op: 'replace', path: '/gold', value: 5 },
        { op: 'add', path: '/bag/a/2', value: 3 },
        { op: 'remove', path: '/bag/a/0' },
      ]),
    );
    expect(updated).toEqual({ _id: 'd', version: 1, gold: 5, bag: { a: [2, 3] } });
    expect(applyEvent(updated, event('delete'))).toBeNull();
  });

  it('never mutates the state or the event, and shares what it did not touch', () => {
    const state = deepFreeze({ a: { deep: { x: 1 } }, b: { y: [1, { z: 2 }] }, c: 'same' }) as JsonObject;
    const e = deepFreeze(
      update([
        { op: 'replace', path: '/b/y/1/z', value: 3 },
        { op: 'add', path: '/n', value: { inner: [1] } },
        { op: 'add', path: '/n/inner/1', value: 2 },
        { op: 'remove', path: '/c' },
      ]),
    );
    const after = applyEvent(state, e)!;
    expect(after).toEqual({ a: { deep: { x: 1 } }, b: { y: [1, { z: 3 }] }, n: { inner: [1, 2] } });
    expect(after.a).toBe(state.a);
    expect(e.diff!.jsonPatch[1]).toEqual({ op: 'add', path: '/n', value: { inner: [1] } });
  });

  it('applies section updates like updates', () => {
    const state = { _id: 'd', version: 2, inv: { version: 1, sword: 1 } };
    const e = event('update_section', [
      { op: 'replace', path: '/inv/sword', value: 2 },
      { op: 'replace', path: '/inv/version', value: 2 },
      { op: 'replace', path: '/version', value: 3 },
    ]);
    expect(applyEvent(state, e)).toEqual({ _id: 'd', version: 3, inv: { version: 2, sword: 2 } });
  });

  it('supports move, copy and test from other producers without touching the input', () => {
    const state = deepFreeze({ a: { b: [1, 2] }, c: {} }) as JsonObject;
    const after = applyEvent(
      state,
      update([
        { op: 'test', path: '/a/b/0', value: 1 },
        { op: 'move', from: '/a/b', path: '/c/b' },
        { op: 'copy', from: '/c/b', path: '/d' },
      ]),
    );
    expect(after).toEqual({ a: {}, c: { b: [1, 2] }, d: [1, 2] });
  });

  it('refuses an operation that does not fit the state (internal: the state and the log disagree)', () => {
    const state = { a: 1 };
    expect(codeOf(() => applyEvent(null, update([{ op: 'replace', path: '/a', value: 1 }])))).toBe(
      'internal',
    );
    expect(codeOf(() => applyEvent(null, event('delete')))).toBe('internal');
    expect(codeOf(() => applyEvent(state, event('create', undefined, { diff: creationDiff({}, 1) })))).toBe(
      'internal',
    );
  });

  it('refuses a patch that does not apply to the document (validation, as the RFC 6902 test suite expects)', () => {
    const state = { a: 1 };
    const doesNotApply = [
      [state, { op: 'replace', path: '/missing', value: 1 }],
      [state, { op: 'remove', path: '/x/y' }],
      [state, { op: 'add', path: '/x/y', value: 1 }],
      [state, { op: 'test', path: '/a', value: 2 }],
      [{ l: [1] }, { op: 'add', path: '/l/5', value: 1 }],
    ] as const;
    for (const [doc, op] of doesNotApply) {
      const error = (() => {
        try {
          applyEvent(doc as JsonObject, update([op as JsonPatchOperation]));
        } catch (e) {
          return e;
        }
      })();
      expect(EventSyncError.is(error, 'validation')).toBe(true);
      expect((error as Error).message).toMatch(/does not apply/);
    }
  });

  it('refuses malformed events (validation)', () => {
    const state = { a: 1 };
    expect(codeOf(() => applyEvent(state, update([{ op: 'jump', path: '/a' }])))).toBe('validation');
    expect(codeOf(() => applyEvent(state, update([{ op: 'add', path: 'a', value: 1 }])))).toBe('validation');
    expect(codeOf(() => applyEvent(state, update([{ op: 'add', path: '/b' }])))).toBe('validation');
    expect(codeOf(() => applyEvent(state, update([null])))).toBe('validation');
    expect(codeOf(() => applyEvent(state, update([{ op: 'add', path: '/__proto__/x', value: 1 }])))).toBe(
      'validation',
    );
    expect(codeOf(() => applyEvent(state, update([{ op: 'add', path: '/__proto__', value: 1 }])))).toBe(
      'validation',
    );
    expect(codeOf(() => applyEvent(state, update([{ op: 'replace', path: '', value: [1] }])))).toBe(
      'validation',
    );
    expect(codeOf(() => applyEvent(state, event('update')))).toBe('validation');
    expect(codeOf(() => applyEvent(state, event('rename' as never, [])))).toBe('validation');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('agrees with fast-json-patch on random documents and edits, without mutating its input', () => {
    const json = fc.jsonValue({ maxDepth: 3 });
    const object = fc.dictionary(fc.string({ maxLength: 3 }), json, {
      maxKeys: 5,
    }) as fc.Arbitrary<JsonObject>;
    fc.assert(
      fc.property(fc.array(object, { minLength: 2, maxLength: 5 }), (states) => {
        // JSON round trip: fast-check may produce -0, which JSON (and so the stores) turns into 0.
        const docs = states.map((s) => JSON.parse(JSON.stringify(s)) as JsonObject);
        const events = docs.slice(1).map((after, i) => update(compareValues(docs[i]!, after)));
        const frozen = deepFreeze(structuredClone(docs[0]!));
        deepFreeze(events);
        expect(applyEvents(frozen, events)).toEqual(docs.at(-1));
        for (let i = 0; i < events.length; i++) {
          const expected = jsonPatch.applyPatch(
            structuredClone(docs[i]!),
            events[i]!.diff!.jsonPatch as never,
          ).newDocument as JsonValue;
          expect(applyEvent(docs[i]!, events[i]!)).toEqual(expected);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('applyEvent: operations that share values', () => {
  const update = (ops: JsonPatchOperation[]): SyncEvent =>
    ({
      collection: 'c',
      documentId: 'd',
      seq: 2,
      operation: 'update',
      diff: { hasChanges: true, version: 2, jsonPatch: ops, mergePatch: {}, mongoUpdate: {} },
    }) as unknown as SyncEvent;

  it('a copy of a container changed earlier in the event does not change with it later', () => {
    const state = deepFreeze({ _id: 'd', a: { x: 1 } }) as JsonObject;
    const after = applyEvent(
      state,
      update([
        { op: 'replace', path: '/a/x', value: 2 },
        { op: 'copy', from: '/a', path: '/b' } as never,
        { op: 'replace', path: '/a/x', value: 3 },
      ]),
    );
    expect(after).toEqual({ _id: 'd', a: { x: 3 }, b: { x: 2 } });
    expect(state).toEqual({ _id: 'd', a: { x: 1 } });
  });

  it('a move out of and back into arrays, and a test, as RFC 6902 says', () => {
    const state = { _id: 'd', list: [1, 2, 3], o: {} } as JsonObject;
    const after = applyEvent(
      state,
      update([
        { op: 'move', from: '/list/0', path: '/list/-' } as never,
        { op: 'move', from: '/list/0', path: '/o/first' } as never,
        { op: 'test', path: '/list', value: [3, 1] } as never,
      ]),
    );
    expect(after).toEqual({ _id: 'd', list: [3, 1], o: { first: 2 } });
  });
});

describe('applyEvents', () => {
  const at = (s: number, extra: Partial<SyncEvent> = {}) =>
    update([{ op: 'replace', path: '/n', value: s }], { seq: s, ...extra });

  it('applies a gapless run, merged events included', () => {
    expect(applyEvents({ n: 0 }, [at(1), at(2), at(5, { fromSeq: 3 }), at(6)], 0)).toEqual({ n: 6 });
    expect(applyEvents({ n: 0 }, [at(7), at(8)])).toEqual({ n: 8 });
    expect(applyEvents({ n: 0 }, [], 3)).toEqual({ n: 0 });
  });

  it('refuses gaps, overlaps and a start that does not follow afterSeq, saying which seqs', () => {
    expect(() => applyEvents({ n: 0 }, [at(1), at(3)])).toThrow(/does not follow seq 1.*2\.\.2 are missing/);
    expect(() => applyEvents({ n: 0 }, [at(1), at(2), at(3, { fromSeq: 2 })])).toThrow(/overlap/);
    expect(() => applyEvents({ n: 0 }, [at(4)], 2)).toThrow(/does not follow seq 2/);
    expect(codeOf(() => applyEvents({ n: 0 }, [at(2), at(2)]))).toBe('internal');
  });
});

describe('applyEvent against the json-patch-test-suite package', () => {
  interface Case {
    comment?: string;
    doc: JsonValue;
    patch: { op: string; path: string; from?: string; value?: JsonValue }[];
    expected?: JsonValue;
    error?: string;
    disabled?: boolean;
  }
  const require = createRequire(import.meta.url);
  const cases = [
    ...(require('json-patch-test-suite/tests.json') as Case[]),
    ...(require('json-patch-test-suite/spec_tests.json') as Case[]),
  ].filter((c) => !c.disabled && (c.expected !== undefined || c.error !== undefined));
  // Documents are objects here: each case's document sits under /root, and so do its paths.
  const under = (pointer: string) => `/root${pointer}`;
  const eventOf = (c: Case): SyncEvent =>
    ({
      id: 'e',
      collection: 'c',
      documentId: 'd',
      seq: 2,
      serverSeq: 2,
      timestamp: 0,
      operation: 'update',
      clientId: 'x',
      vectorClock: {},
      diff: {
        hasChanges: true,
        version: 2,
        jsonPatch: c.patch.map((op) => ({
          ...op,
          path: under(op.path),
          ...(op.from === undefined ? {} : { from: under(op.from) }),
        })),
        mergePatch: {},
        mongoUpdate: {},
      },
    }) as unknown as SyncEvent;

  it.each(cases.map((c, i) => [`${i}: ${c.comment ?? c.error ?? ''}`, c] as const))('%s', (_name, c) => {
    const apply = () => applyEvent({ root: c.doc } as JsonObject, eventOf(c));
    if (c.error !== undefined) expect(apply).toThrow(ValidationError);
    else expect(apply()).toEqual({ root: c.expected });
  });
});

describe('applyEvent: malformed JSON Pointers (RFC 6901) are ValidationError', () => {
  const update = (ops: JsonPatchOperation[]): SyncEvent =>
    ({
      collection: 'c',
      documentId: 'd',
      seq: 2,
      operation: 'update',
      diff: { hasChanges: true, version: 2, jsonPatch: ops, mergePatch: {}, mongoUpdate: {} },
    }) as unknown as SyncEvent;
  const state = { _id: 'd', a: [1, 2, 3], o: { '01': 'key' } } as JsonObject;

  it.each([
    ['an array index with a leading zero', { op: 'replace', path: '/a/01', value: 9 }],
    ['an array index with an exponent', { op: 'remove', path: '/a/1e0' }],
    ['a ~ that is not ~0 or ~1', { op: 'add', path: '/~2', value: 1 }],
    ['a pointer that does not start with /', { op: 'add', path: 'a', value: 1 }],
    ['a malformed from', { op: 'copy', from: '/a/00', path: '/b' }],
  ])('%s', (_name, op) => {
    expect(() => applyEvent(state, update([op as JsonPatchOperation]))).toThrow(ValidationError);
  });

  it('still takes "01" as an object key', () => {
    expect(applyEvent(state, update([{ op: 'replace', path: '/o/01', value: 'x' }]))).toEqual({
      ...state,
      o: { '01': 'x' },
    });
  });
});
