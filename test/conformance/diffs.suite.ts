/**
 * Every diff valid and exact, on every backend: random documents (nested objects, arrays, and
 * sections, i.e. objects with a numeric `version`, inside objects and arrays) get random edits
 * through EventSyncStorage: draft mutations, returned replacements, deep-equal reassignments,
 * update operators (also of the wrong type), pipelines and section edits. After each edit:
 *
 * - `jsonPatch` applied by fast-json-patch with validation on (every `replace`/`remove` target
 *   exists) gives the stored document; so do `mergePatch` (when neither side holds a null, the
 *   RFC 7396 limit) and `mongoUpdate` applied by mingo, whenever they are present;
 * - `hasChanges` is false exactly when the stored JSON did not change, and then no event exists;
 *   otherwise exactly one event, whose diff is the answer's, and the SDK's `applyEvent` gives
 *   the stored document from the one before;
 * - a refused edit (`validation`) changes nothing and records nothing.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { applyEvent } from '../../src/events/apply.js';
import {
  createEventStore,
  createStorage,
  type Database,
  EventSyncError,
  EventSyncStorage,
  type JsonObject,
  type JsonValue,
  type SyncEvent,
} from '../../src/index.js';
import { jsonEqual } from '../../src/storage/diff.js';
import type { EditResult, UpdateOperators, UpdatePipeline } from '../../src/storage/types.js';
import { applyJsonPatch, applyMergePatch, applyMongoUpdate, holdsNull } from '../support/appliers.js';

export interface DiffsBackendFactory {
  name: string;
  open(): Promise<Database>;
  /** Random documents tried (each gets 1-4 edits). */
  runs: number;
}

type Doc = JsonObject & { _id: string; version: number };

// ---------------------------------------------------------------------------------------------
// Random documents
// ---------------------------------------------------------------------------------------------

// Few keys, so that edits hit what is there; `/` and `~` exercise JSON Pointer escaping.
const key = fc.constantFrom('a', 'b', 'c', 'x/y', 'm~n');
const scalar = fc.oneof(
  fc.integer({ min: -3, max: 3 }),
  fc.constantFrom('s', '', 'é', '😀', true, false),
  fc.constant(null),
);
const { value } = fc.letrec<{ value: JsonValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    scalar,
    scalar,
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(key, tie('value'), { maxKeys: 3 }),
    // A section: an object with a numeric version field.
    fc
      .record({ version: fc.nat({ max: 5 }), fields: fc.dictionary(key, tie('value'), { maxKeys: 2 }) })
      .map(({ version, fields }) => ({ ...fields, version })),
  ),
}));
const fields = fc.dictionary(key, value, { maxKeys: 4 });

// ---------------------------------------------------------------------------------------------
// Random edits, chosen against the document as it is (paths found by walking it)
// ---------------------------------------------------------------------------------------------

type Path = (string | number)[];

/** Every path in `doc` (object keys and array indexes), the root's `_id`/`version` left out. */
function pathsOf(doc: JsonValue, prefix: Path = []): Path[] {
  if (doc === null || typeof doc !== 'object') return [];
  const out: Path[] = [];
  const entries: [string | number, JsonValue][] = Array.isArray(doc)
    ? doc.map((v, i) => [i, v])
    : Object.entries(doc);
  for (const [k, v] of entries) {
    if (prefix.length === 0 && (k === '_id' || k === 'version')) continue;
    out.push([...prefix, k], ...pathsOf(v, [...prefix, k]));
  }
  return out;
}

/** Object-key paths to plain objects inside plain objects: where `updateSection` may point. */
function sectionPathsOf(doc: JsonValue, prefix: string[] = []): string[][] {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return [];
  const out: string[][] = [];
  for (const [k, v] of Object.entries(doc)) {
    if (prefix.length === 0 && (k === '_id' || k === 'version')) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out.push([...prefix, k]);
    out.push(...sectionPathsOf(v, [...prefix, k]));
  }
  return out;
}

function at(root: unknown, path: Path): unknown {
  let node = root;
  for (const k of path) node = node === null || typeof node !== 'object' ? undefined : (node as never)[k];
  return node;
}

/** One change to a draft at `path`; a path no longer there (an earlier change moved it) is skipped. */
type Mutation =
  | { kind: 'set'; path: Path; value: JsonValue }
  | { kind: 'delete'; path: Path }
  | { kind: 'push'; path: Path; value: JsonValue }
  | { kind: 'splice'; path: Path; start: number; count: number; items: JsonValue[] }
  | { kind: 'same'; path: Path }
  | { kind: 'replace-object'; path: Path; fields: JsonObject };

function mutate(draft: unknown, m: Mutation): void {
  const parent = at(draft, m.path.slice(0, -1)) as Record<string | number, unknown> | undefined;
  const last = m.path[m.path.length - 1]!;
  if (parent === null || typeof parent !== 'object') return;
  // Arrays take indexes only (mutative throws otherwise, as a plain array would grow oddly).
  if (Array.isArray(parent) && typeof last !== 'number') return;
  const target = parent[last];
  switch (m.kind) {
    case 'set':
      parent[last] = structuredClone(m.value);
      return;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
      return;
    case 'push':
      if (Array.isArray(target)) target.push(structuredClone(m.value));
      return;
    case 'splice':
      if (Array.isArray(target)) target.splice(m.start, m.count, ...structuredClone(m.items));
      return;
    case 'same':
      // A deep-equal copy of what is there: no change.
      if (target !== undefined) parent[last] = JSON.parse(JSON.stringify(target));
      return;
    case 'replace-object':
      // E.g. a section replaced by an object without (or with another) version.
      parent[last] = structuredClone(m.fields);
      return;
  }
}

function mutationArb(doc: Doc): fc.Arbitrary<Mutation> {
  const paths = pathsOf(doc);
  const newPath = fc.tuple(fc.constantFrom<Path>([], ...paths), key).map(([p, k]) => [...p, k]);
  const existing = paths.length > 0 ? fc.constantFrom(...paths) : newPath;
  return fc.oneof(
    fc.record({ kind: fc.constant('set' as const), path: fc.oneof(existing, newPath), value }),
    fc.record({ kind: fc.constant('delete' as const), path: existing }),
    fc.record({ kind: fc.constant('push' as const), path: existing, value }),
    fc.record({
      kind: fc.constant('splice' as const),
      path: existing,
      start: fc.nat({ max: 3 }),
      count: fc.nat({ max: 2 }),
      items: fc.array(value, { maxLength: 2 }),
    }),
    fc.record({ kind: fc.constant('same' as const), path: existing }),
    fc.record({ kind: fc.constant('replace-object' as const), path: existing, fields }),
  );
}

type Edit =
  | { kind: 'mutate'; mutations: Mutation[] }
  | { kind: 'return'; fields: JsonObject; keep: string[] }
  | { kind: 'same' }
  | { kind: 'operators'; operators: UpdateOperators }
  | { kind: 'pipeline'; pipeline: UpdatePipeline }
  | { kind: 'section'; path: string; mutations: Mutation[] };

const dotted = (path: Path) => path.join('.');

function operatorsArb(doc: Doc): fc.Arbitrary<UpdateOperators> {
  // Dotted paths without `/`, `~` or `.` inside keys (MongoDB reads dots as separators).
  const paths = pathsOf(doc).filter((p) => p.every((k) => /^[a-c0-9]$|^\d+$/.test(String(k))));
  const field = fc.oneof(
    paths.length > 0 ? fc.constantFrom(...paths.map(dotted)) : fc.constant('a'),
    fc.constantFrom('a', 'b', 'c', 'a.b', 'b.c'),
  );
  const one = fc.oneof(
    fc.record({ $set: fc.dictionary(field, value, { minKeys: 1, maxKeys: 2 }) }),
    fc.record({ $unset: fc.dictionary(field, fc.constant(''), { minKeys: 1, maxKeys: 2 }) }),
    fc.record({ $inc: fc.dictionary(field, fc.integer({ min: -2, max: 2 }), { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $mul: fc.dictionary(field, fc.integer({ min: 0, max: 2 }), { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $push: fc.dictionary(field, value, { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $addToSet: fc.dictionary(field, scalar, { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $pop: fc.dictionary(field, fc.constantFrom(1, -1), { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $pull: fc.dictionary(field, scalar, { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $min: fc.dictionary(field, fc.integer({ min: -3, max: 3 }), { minKeys: 1, maxKeys: 1 }) }),
    fc.record({ $max: fc.dictionary(field, fc.integer({ min: -3, max: 3 }), { minKeys: 1, maxKeys: 1 }) }),
  );
  return one as fc.Arbitrary<UpdateOperators>;
}

function editArb(doc: Doc): fc.Arbitrary<Edit> {
  const mutations = fc.array(mutationArb(doc), { minLength: 1, maxLength: 3 });
  const topKeys = Object.keys(doc).filter((k) => k !== '_id' && k !== 'version');
  const sections = sectionPathsOf(doc)
    .filter((p) => p.every((k) => /^[a-c]$/.test(k)))
    .map((p) => p.join('.'));
  const arbs: fc.Arbitrary<Edit>[] = [
    fc.record({ kind: fc.constant('mutate' as const), mutations }),
    fc.record({ kind: fc.constant('mutate' as const), mutations }),
    fc.record({
      kind: fc.constant('return' as const),
      fields,
      keep: fc.subarray(topKeys),
    }),
    fc.constant({ kind: 'same' as const }),
    fc.record({ kind: fc.constant('operators' as const), operators: operatorsArb(doc) }),
    fc.record({
      kind: fc.constant('pipeline' as const),
      pipeline: fc
        .tuple(fc.constantFrom('a', 'b', 'c'), scalar, fc.constantFrom('a', 'b', 'c'))
        .map(
          ([set, v, unset]) => [{ $set: { [set]: { $literal: v } } }, { $unset: unset }] as UpdatePipeline,
        ),
    }),
  ];
  if (sections.length > 0) {
    arbs.push(
      fc.record({
        kind: fc.constant('section' as const),
        path: fc.constantFrom(...sections),
        mutations: fc.array(mutationArb({ _id: '', version: 0 }), { minLength: 1, maxLength: 2 }),
      }),
    );
  }
  return fc.oneof(...arbs);
}

async function runEditOn(sync: EventSyncStorage<Doc>, id: string, edit: Edit): Promise<EditResult<Doc>> {
  switch (edit.kind) {
    case 'mutate':
      return sync.findOneAndUpdate(id, (d) => {
        for (const m of edit.mutations) mutate(d, m);
      });
    case 'return':
      return sync.findOneAndUpdate(id, (d) => {
        const kept = Object.fromEntries(edit.keep.map((k) => [k, JSON.parse(JSON.stringify(d[k]))]));
        return { ...structuredClone(edit.fields), ...kept } as Doc;
      });
    case 'same':
      return sync.findOneAndUpdate(id, (d) => JSON.parse(JSON.stringify(d)) as Doc);
    case 'operators':
      return sync.updateOne(id, edit.operators);
    case 'pipeline':
      return sync.updateOneWithPipeline(id, edit.pipeline);
    case 'section':
      return sync.updateSection(id, edit.path, (s) => {
        // The section's own keys, found on the draft: the generator saw an empty document.
        for (const m of edit.mutations) mutate(s, m);
      });
  }
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

let collections = 0;

export function diffsSuite(backend: DiffsBackendFactory): void {
  describe(`diffs conformance: ${backend.name}`, () => {
    let db: Database | undefined;
    afterAll(async () => {
      await db?.close();
    });

    it(`every edit's jsonPatch, mergePatch and mongoUpdate give the stored document; hasChanges iff it changed, one event each (${backend.runs} documents)`, async () => {
      db = await backend.open();
      const collection = `diffs_${process.pid}_${++collections}`;
      const storage = await createStorage<Doc>({ db, collection });
      const events = await createEventStore({ db });
      const sync = new EventSyncStorage(storage, events);
      const counts = { changed: 0, unchanged: 0, refused: 0, merge: 0, mongo: 0 };
      let docs = 0;

      await fc.assert(
        fc.asyncProperty(
          fields,
          fc.array(fc.integer({ min: 0, max: 2 ** 31 - 1 }), { minLength: 1, maxLength: 4 }),
          async (initial, seeds) => {
            const id = `d${++docs}`;
            await sync.findOneAndUpsert({ ...initial, _id: id } as Doc);
            for (const seed of seeds) {
              const before = (await sync.findOne(id))!;
              const [edit] = fc.sample(editArb(before), { seed, numRuns: 1 });
              await checkEdit(sync, events, collection, before, edit!, counts);
            }
          },
        ),
        { numRuns: backend.runs },
      );
      // Enough of each outcome to mean something.
      expect(counts.changed).toBeGreaterThan(backend.runs / 2);
      expect(counts.unchanged).toBeGreaterThan(backend.runs / 20);
      expect(counts.refused).toBeGreaterThan(0);
      expect(counts.merge).toBeGreaterThan(backend.runs / 10);
      expect(counts.mongo).toBeGreaterThan(backend.runs / 4);
    });
  });
}

type Counts = Record<'changed' | 'unchanged' | 'refused' | 'merge' | 'mongo', number>;

async function checkEdit(
  sync: EventSyncStorage<Doc>,
  events: Awaited<ReturnType<typeof createEventStore>>,
  collection: string,
  before: Doc,
  edit: Edit,
  counts: Counts,
): Promise<void> {
  const seq = await events.getLatestSequence(collection, before._id);
  const outcome = await runEditOn(sync, before._id, edit).catch((e: unknown) => e);
  const stored = (await sync.findOne(before._id))!;
  const recorded: SyncEvent[] = await events.getEvents(collection, before._id, seq);
  if (outcome instanceof Error) {
    // Refused input (a type mismatch of an operator, a bad path…): nothing changes.
    expect(EventSyncError.is(outcome, 'validation'), `${outcome.message} for ${JSON.stringify(edit)}`).toBe(
      true,
    );
    expect(stored).toEqual(before);
    expect(recorded).toEqual([]);
    counts.refused++;
    return;
  }
  const { diff } = outcome as EditResult<Doc>;
  const context = () => JSON.stringify({ before, edit, diff });
  expect(diff.hasChanges, context()).toBe(!jsonEqual(before, stored));
  if (!diff.hasChanges) {
    expect(recorded).toEqual([]);
    if (edit.kind === 'same') expect(stored).toEqual(before);
    counts.unchanged++;
    return;
  }
  counts.changed++;
  // Compared as JSON values: an edit may compute -0 (`$mul` of -1 by 0), which JSON writes as 0,
  // so a SQL backend stores 0 where the patch carries -0; both are the JSON number 0.
  const asJson = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
  expect(asJson(applyJsonPatch(before, diff.jsonPatch)), context()).toEqual(asJson(stored));
  if (diff.mergePatch && !holdsNull(before) && !holdsNull(stored)) {
    expect(asJson(applyMergePatch(before, diff.mergePatch)), context()).toEqual(asJson(stored));
    counts.merge++;
  }
  if (diff.mongoUpdate) {
    expect(asJson(applyMongoUpdate(before, diff.mongoUpdate)), context()).toEqual(asJson(stored));
    counts.mongo++;
  }
  expect(recorded).toHaveLength(1);
  // As JSON values too: the event read back from SQL carries the stored 0 where the edit computed -0.
  expect(asJson(recorded[0]!.diff!.jsonPatch)).toEqual(asJson(diff.jsonPatch));
  expect(asJson(applyEvent(structuredClone(before), recorded[0]!))).toEqual(asJson(stored));
}
