/**
 * Diffs of one write, in the three notations of {@link Diff}.
 *
 * The storage gets a correct RFC 6902 op list for free from mutative's recording when the edit
 * mutates its draft; when the edit returns a new document instead, mutative only says "the root
 * was replaced", and {@link compareValues} computes the ops structurally. {@link buildDiff} then
 * derives the merge patch and the MongoDB update from the ops, in time proportional to the change:
 * it never walks or copies the whole document.
 */

import type { Diff, JsonObject, JsonPatchOperation, JsonValue, MongoUpdate } from '../core/json.js';
import { isPlainObject } from '../core/values.js';

// ---------------------------------------------------------------------------------------------
// JSON Pointer (RFC 6901)
// ---------------------------------------------------------------------------------------------

/** Escapes one reference token: `~` → `~0`, `/` → `~1`. */
export function escapePointerSegment(segment: string): string {
  if (segment.indexOf('~') === -1 && segment.indexOf('/') === -1) return segment;
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

/** Unescapes one reference token: `~1` → `/`, `~0` → `~` (in that order, as RFC 6901 says). */
export function unescapePointerSegment(segment: string): string {
  if (segment.indexOf('~') === -1) return segment;
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** `['a', 'b/c']` → `'/a/b~1c'`; `[]` → `''` (the whole document). */
export function formatPointer(segments: readonly (string | number)[]): string {
  let out = '';
  for (const s of segments) out += `/${escapePointerSegment(String(s))}`;
  return out;
}

/**
 * `'/a/b~1c'` → `['a', 'b/c']`; `''` → `[]`. Throws a `SyntaxError` for a non-empty pointer that
 * does not start with `/`. (Also accepts an array of segments, as mutative reports the root as `[]`.)
 */
export function parsePointer(pointer: string | readonly (string | number)[]): string[] {
  if (typeof pointer !== 'string') return pointer.map(String);
  if (pointer === '') return [];
  if (pointer.charCodeAt(0) !== 47 /* '/' */) {
    throw new SyntaxError(`invalid JSON Pointer ${JSON.stringify(pointer)}: must be empty or start with "/"`);
  }
  const parts = pointer.split('/');
  parts.shift(); // the empty string before the leading '/'
  if (pointer.indexOf('~') !== -1) {
    for (let i = 0; i < parts.length; i++) parts[i] = unescapePointerSegment(parts[i]!);
  }
  return parts;
}

/** Re-roots ops under `segments` (e.g. a section's path), escaping `~` and `/` in the segments. */
export function prefixPatch(
  ops: readonly JsonPatchOperation[],
  segments: readonly string[],
): JsonPatchOperation[] {
  if (segments.length === 0) return ops.slice();
  const prefix = formatPointer(segments);
  return ops.map((op) => ({ ...op, path: prefix + op.path }));
}

// ---------------------------------------------------------------------------------------------
// Structural comparison
// ---------------------------------------------------------------------------------------------

/**
 * A plain object (prototype `Object.prototype` or null): anything else assigned by an edit (a
 * `Date`, a `Map`, a class instance) compares as a replaced value, which validation then refuses.
 */

function isPlainArray(value: unknown): value is JsonValue[] {
  return Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype;
}

/** Deep equality of JSON values (key order ignored); shared references are O(1). */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length || !isPlainArray(a) || !isPlainArray(b)) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i]!, b[i]!)) return false;
    return true;
  }
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const k of keys) {
    if (!Object.hasOwn(b, k) || !jsonEqual(a[k]!, b[k]!)) return false;
  }
  return true;
}

/**
 * RFC 6902 ops that turn `before` into `after` when applied in order. Objects are compared key by
 * key; arrays element-wise after stripping their common prefix and suffix, with the length
 * difference expressed as adds or removes at the end of the changed middle (or one `replace` of
 * the whole array when that is fewer ops); anything else is a `replace`. Subtrees that are the
 * same reference are skipped in O(1), so comparing a document with an edited copy that shares its
 * unchanged parts costs about the size of the change.
 */
export function compareValues(before: JsonValue, after: JsonValue, basePath = ''): JsonPatchOperation[] {
  const ops: JsonPatchOperation[] = [];
  compareInto(before, after, basePath, ops);
  return ops;
}

/** The paths an edit wrote (mutative's record of its draft), as a trie of object keys and indexes. */
interface WrittenPaths {
  /** Something was written at this very path: compare it whole. */
  here: boolean;
  children: Map<string, WrittenPaths>;
}

/**
 * {@link compareValues} where the edit's written paths are known (`paths`, as mutative records
 * them; each a list of keys and indexes): the same ops, but an object is walked only along the
 * members written, since every other member is the very value `before` holds. A wide object an
 * edit changed one member of is copied by mutative, and comparing it member by member would
 * enumerate all its keys again (~1 ms for 5,000 keys).
 */
export function compareAlong(
  before: JsonValue,
  after: JsonValue,
  paths: readonly (readonly (string | number)[])[],
): JsonPatchOperation[] {
  const root: WrittenPaths = { here: false, children: new Map() };
  for (const path of paths) {
    let node = root;
    for (const segment of path) {
      const key = String(segment);
      let child = node.children.get(key);
      if (!child) {
        child = { here: false, children: new Map() };
        node.children.set(key, child);
      }
      node = child;
    }
    node.here = true;
  }
  const ops: JsonPatchOperation[] = [];
  compareWritten(before, after, '', root, ops);
  return ops;
}

function compareWritten(
  before: JsonValue,
  after: JsonValue,
  path: string,
  written: WrittenPaths,
  ops: JsonPatchOperation[],
): void {
  if (before === after) return;
  // Written here, or not two objects (arrays compare cheaply by their shared elements): whole.
  if (written.here || !isPlainObject(before) || !isPlainObject(after)) {
    compareInto(before, after, path, ops);
    return;
  }
  const start = ops.length;
  // A member nobody wrote is kept as it was: it survives (see compareObjects).
  let survivors = false;
  for (const key in before) {
    if (!written.children.has(key)) {
      survivors = true;
      break;
    }
  }
  for (const [key, child] of written.children) {
    const p = `${path}/${escapePointerSegment(key)}`;
    const inBefore = Object.hasOwn(before, key);
    const inAfter = Object.hasOwn(after, key);
    if (inBefore && !inAfter) ops.push({ op: 'remove', path: p });
    else if (!inBefore && inAfter) ops.push({ op: 'add', path: p, value: after[key]! });
    else if (inBefore && inAfter) {
      const a = after[key]!;
      const b = before[key]!;
      if (a === b || (typeof a === 'object' && a !== null) || (typeof b === 'object' && b !== null)) {
        survivors = true;
      }
      compareWritten(b, a, p, child, ops);
    }
  }
  if (!survivors && path !== '' && ops.length - start > 1) {
    ops.length = start;
    ops.push({ op: 'replace', path, value: after });
  }
}

function compareInto(before: JsonValue, after: JsonValue, path: string, ops: JsonPatchOperation[]): void {
  if (before === after) return;
  if (Array.isArray(before)) {
    if (isPlainArray(after)) compareArrays(before, after, path, ops);
    else ops.push({ op: 'replace', path, value: after });
    return;
  }
  if (isPlainObject(before) && isPlainObject(after)) {
    compareObjects(before, after, path, ops);
    return;
  }
  // Scalars (=== already failed) or a change of type.
  ops.push({ op: 'replace', path, value: after });
}

/**
 * Member by member; but an object of which nothing survives (every member of `after` is new or a
 * changed scalar, e.g. a section replaced by another object) is one `replace` when that is fewer
 * ops: the same values travel either way, and the event reads as what the edit did.
 */
function compareObjects(
  before: JsonObject,
  after: JsonObject,
  path: string,
  ops: JsonPatchOperation[],
): void {
  const start = ops.length;
  let survivors = false;
  let kept = 0;
  for (const key of Object.keys(before)) {
    if (!Object.hasOwn(after, key)) {
      ops.push({ op: 'remove', path: `${path}/${escapePointerSegment(key)}` });
      continue;
    }
    kept++;
    const a = after[key]!;
    const b = before[key]!;
    // The common case in a wide object an edit copied: the member is shared, nothing to build.
    if (a === b) {
      survivors = true;
      continue;
    }
    if ((typeof a === 'object' && a !== null) || (typeof b === 'object' && b !== null)) survivors = true;
    compareInto(b, a, `${path}/${escapePointerSegment(key)}`, ops);
  }
  // Members of `after` beyond those kept are new; none when the counts agree (the usual edit).
  const afterKeys = Object.keys(after);
  if (afterKeys.length > kept) {
    for (const key of afterKeys) {
      if (!Object.hasOwn(before, key)) {
        ops.push({ op: 'add', path: `${path}/${escapePointerSegment(key)}`, value: after[key]! });
      }
    }
  }
  if (!survivors && path !== '' && ops.length - start > 1) {
    ops.length = start;
    ops.push({ op: 'replace', path, value: after });
  }
}

function compareArrays(
  before: JsonValue[],
  after: JsonValue[],
  path: string,
  ops: JsonPatchOperation[],
): void {
  const n = before.length;
  const m = after.length;
  const min = Math.min(n, m);
  let prefix = 0;
  while (prefix < min && jsonEqual(before[prefix]!, after[prefix]!)) prefix++;
  let suffix = 0;
  while (suffix < min - prefix && jsonEqual(before[n - 1 - suffix]!, after[m - 1 - suffix]!)) suffix++;
  if (prefix === n && n === m) return;

  const start = ops.length;
  // The changed middle: before[prefix, n - suffix) → after[prefix, m - suffix).
  const bm = n - suffix - prefix;
  const am = m - suffix - prefix;
  const common = Math.min(bm, am);
  for (let i = prefix; i < prefix + common; i++) compareInto(before[i]!, after[i]!, `${path}/${i}`, ops);
  if (am > bm) {
    for (let i = prefix + common; i < prefix + am; i++)
      ops.push({ op: 'add', path: `${path}/${i}`, value: after[i]! });
  } else if (bm > am) {
    // Each removal shifts the rest left: remove the same index repeatedly, from the last one
    // wanted backwards so indexes stay valid in either reading.
    for (let i = prefix + bm - 1; i >= prefix + common; i--) ops.push({ op: 'remove', path: `${path}/${i}` });
  }
  if (ops.length - start > 1 && ops.length - start > m) {
    ops.length = start;
    ops.push({ op: 'replace', path, value: after });
  }
}

// ---------------------------------------------------------------------------------------------
// Diff
// ---------------------------------------------------------------------------------------------

/** A Diff that says "nothing changed". */
export function emptyDiff(version: number): Diff {
  return { hasChanges: false, version, jsonPatch: [], mergePatch: {}, mongoUpdate: {} };
}

/** One node of the trie of changed paths (object keys, and indexes of arrays that change in place). */
interface PathNode {
  children: Map<string, PathNode> | undefined;
  /** This path changed as a whole: its descendants are covered by it. */
  terminal: boolean;
  /** Whether the path exists in `after` (else it was removed), and its value there. */
  present: boolean;
  value: JsonValue | undefined;
  /** Set on a non-terminal node whose value is an array changed in place: its children are indexes. */
  array: JsonValue[] | undefined;
}

function newNode(): PathNode {
  return { children: undefined, terminal: false, present: false, value: undefined, array: undefined };
}

function isRootOp(op: JsonPatchOperation): boolean {
  // mutative reports a returned new document as `{ op: 'replace', path: [] }`, even with
  // `pathAsArray: false`.
  const path = op.path as unknown;
  return path === '' || (Array.isArray(path) && path.length === 0);
}

/**
 * A derived notation is left out of the Diff when it would be larger than this many times the
 * size of `jsonPatch`, plus {@link DERIVED_SLACK} bytes: what an RFC 7396 merge patch (any change
 * in an array) or a MongoDB `$set` (an insert or removal in an array) must send whole, when the
 * array is large. Twice leaves room for the notations' own overhead (a `$set` path or a merge
 * patch's nesting against an op's path); the slack keeps them for small arrays, where whole is cheap.
 */
const DERIVED_FACTOR = 2;
const DERIVED_SLACK = 1024;

/**
 * Builds the whole Diff from a correct RFC 6902 op list (mutative's recording, or
 * {@link compareValues}' output), `before` and `after` (which may share structure).
 *
 * Cost: proportional to the ops and their paths, plus, when a whole object is replaced by another
 * object, the widths of those two objects (for the merge patch). The document itself is never
 * walked or copied; values in the Diff share structure with `after`.
 *
 * Each op path is cut at the first point where `after` no longer has a container to descend into:
 * at a scalar, at a missing key (a removal), or at an array whose elements the ops insert or
 * remove (index-wise `$set` cannot express a shift: the whole array is set). An array the ops
 * only change in place or append to is descended into: `$set` of `"a.3"`, `"a.3.b"`. Paths
 * covered by a shorter changed path are dropped, so `$set a` and `$set a.b` never both appear.
 *
 * A root replacement (mutative's answer when the edit returns a new document) is first turned into
 * structural ops with {@link compareValues}; the returned `jsonPatch` then holds those.
 *
 * RFC 7396 limits: a merge patch replaces an array whole, and cannot say "set this member to
 * null", because null means "remove". An object member that is null in `after` therefore comes
 * out of `mergePatch` as a removal (a changed member set to null), or is dropped when it sits
 * inside an object the patch adds: applying `mergePatch` yields `after` with those null members
 * removed. `jsonPatch` and `mongoUpdate` carry nulls exactly.
 *
 * Proportion: `mergePatch` and `mongoUpdate` are left out when they would be much larger than
 * `jsonPatch` (see {@link DERIVED_FACTOR}), so a one-element change of a large array never stores
 * the array; `jsonPatch` is always there.
 */
export function buildDiff(
  before: JsonObject,
  after: JsonObject,
  jsonPatch: JsonPatchOperation[],
  version: number,
): Diff {
  let ops = jsonPatch;
  for (const op of ops) {
    if (isRootOp(op)) {
      ops = compareValues(before, after);
      break;
    }
  }
  if (ops.length === 0) return emptyDiff(version);

  const shifted = shiftedArrays(before, ops);
  const root = newNode();
  for (const op of ops) insertChangedPath(root, after, parsePointer(op.path), shifted);

  const out: Emitted = { before, $set: {}, $unset: {}, setCount: 0, unsetCount: 0, segments: [] };
  const mergePatch: JsonObject = {};
  emit(root, mergePatch, out);

  const mongoUpdate: MongoUpdate = {};
  if (out.setCount > 0) mongoUpdate.$set = out.$set;
  if (out.unsetCount > 0) mongoUpdate.$unset = out.$unset;
  const diff: Diff = { hasChanges: true, version, jsonPatch: ops };
  const budget =
    DERIVED_FACTOR * jsonSize(ops as unknown as JsonValue, Number.POSITIVE_INFINITY) + DERIVED_SLACK;
  if (jsonSize(mergePatch, budget) <= budget) diff.mergePatch = mergePatch;
  if (jsonSize(mongoUpdate as JsonObject, budget) <= budget) diff.mongoUpdate = mongoUpdate;
  return diff;
}

/**
 * About the length of `JSON.stringify(value)` (strings counted without escapes, in UTF-16
 * units), or some number over `budget` as soon as it passes it: the walk stops there, so
 * measuring a notation that sends a large array whole costs the budget, not the array.
 */
export function jsonSize(value: JsonValue, budget: number): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2;
    case 'number':
    case 'boolean':
      return String(value).length;
    default:
      break;
  }
  if (value === null) return 4;
  let size = 2;
  if (Array.isArray(value)) {
    for (const element of value) {
      size += 1 + jsonSize(element, budget - size);
      if (size > budget) return size;
    }
  } else {
    for (const key in value) {
      size += key.length + 4 + jsonSize(value[key]!, budget - size);
      if (size > budget) return size;
    }
  }
  return size;
}

/**
 * JSON Pointers of the arrays that `ops` insert into or remove from (as opposed to changing
 * elements in place, or appending at the current end): those a MongoDB `$set` of indexes cannot
 * express. Lengths are followed through the ops in order, from `before`; an array not in
 * `before` counts as shifted (an earlier op that made it covers it anyway).
 */
function shiftedArrays(before: JsonObject, ops: readonly JsonPatchOperation[]): Set<string> {
  const shifted = new Set<string>();
  const lengths = new Map<string, number | undefined>();
  for (const op of ops) {
    const segments = parsePointer(op.path);
    if (segments.length === 0) continue;
    const parent = formatPointer(segments.slice(0, -1));
    if (shifted.has(parent)) continue;
    let length = lengths.get(parent);
    if (!lengths.has(parent)) {
      const value = getAt(before, segments.slice(0, -1), true);
      length = Array.isArray(value) ? value.length : undefined;
      lengths.set(parent, length);
    }
    if (length === undefined) continue; // the parent is no array (or none of `before`'s)
    const key = segments[segments.length - 1]!;
    const index = /^(0|[1-9]\d*)$/.test(key) ? Number(key) : -1;
    if (op.op === 'replace' && index >= 0 && index < length) continue;
    if (op.op === 'add' && index === length) {
      lengths.set(parent, length + 1);
      continue;
    }
    shifted.add(parent);
  }
  return shifted;
}

interface Emitted {
  before: JsonObject;
  $set: Record<string, JsonValue>;
  $unset: Record<string, ''>;
  setCount: number;
  unsetCount: number;
  /** Keys from the root to the node being visited. */
  segments: string[];
}

/**
 * Walks the trie once, emitting the MongoDB update into `out` and the merge patch into `merge`
 * (`undefined` inside an array, which the merge patch carries whole).
 */
function emit(node: PathNode, merge: JsonObject | undefined, out: Emitted): void {
  if (!node.children) return;
  const segments = out.segments;
  for (const [key, child] of node.children) {
    segments.push(key);
    if (child.terminal) {
      const dotted = segments.length === 1 ? key : segments.join('.');
      if (child.present) {
        const value = child.value!;
        out.$set[dotted] = value;
        out.setCount++;
        if (merge && isPlainObject(value)) {
          const old = getAt(out.before, segments);
          merge[key] = isPlainObject(old) ? mergeDiff(old, value) : value;
        } else if (merge) {
          merge[key] = value;
        }
      } else {
        out.$unset[dotted] = '';
        out.unsetCount++;
        if (merge) merge[key] = null;
      }
    } else if (child.array) {
      if (merge) merge[key] = child.array;
      emit(child, undefined, out);
    } else {
      const sub: JsonObject | undefined = merge && {};
      if (merge) merge[key] = sub!;
      emit(child, sub, out);
    }
    segments.pop();
  }
}

/** Adds the changed path of one op (cut as described in {@link buildDiff}) to the trie. */
function insertChangedPath(root: PathNode, after: JsonObject, segs: string[], shifted: Set<string>): void {
  let node = root;
  let cur: JsonObject | JsonValue[] = after;
  let pointer = '';
  for (let i = 0; i < segs.length; i++) {
    const key = segs[i]!;
    if (node.terminal) return; // covered by a shorter changed path
    const parent = node;
    let children = node.children;
    if (!children) {
      children = new Map();
      node.children = children;
    }
    let child = children.get(key);
    if (!child) {
      child = newNode();
      children.set(key, child);
    }
    node = child;
    let next: JsonValue | undefined;
    if (Array.isArray(cur)) {
      // Arrays descended into only grow (shiftedArrays), so every index op names an element.
      next = /^(0|[1-9]\d*)$/.test(key) ? cur[Number(key)] : undefined;
      if (next === undefined) {
        markTerminal(parent, true, cur);
        return;
      }
    } else if (!Object.hasOwn(cur, key)) {
      markTerminal(node, false, undefined);
      return;
    } else {
      next = cur[key]!;
    }
    pointer += `/${escapePointerSegment(key)}`;
    if (i === segs.length - 1) {
      markTerminal(node, true, next);
      return;
    }
    if (isPlainObject(next)) {
      cur = next;
    } else if (Array.isArray(next) && !shifted.has(pointer)) {
      node.array = next;
      cur = next;
    } else {
      markTerminal(node, true, next);
      return;
    }
  }
}

function markTerminal(node: PathNode, present: boolean, value: JsonValue | undefined): void {
  node.terminal = true;
  node.children = undefined; // everything below is covered
  node.array = undefined;
  node.present = present;
  node.value = value;
}

/** The value at `segs` (object keys; also array indexes with `throughArrays`), or `undefined`. */
function getAt(obj: JsonObject, segs: readonly string[], throughArrays = false): JsonValue | undefined {
  let cur: JsonValue | undefined = obj;
  for (const key of segs) {
    if (throughArrays && Array.isArray(cur)) {
      cur = /^(0|[1-9]\d*)$/.test(key) ? cur[Number(key)] : undefined;
      continue;
    }
    if (!isPlainObject(cur) || !Object.hasOwn(cur, key)) return undefined;
    cur = cur[key];
  }
  return cur;
}

/**
 * RFC 7396 patch turning object `before` into object `after`: recurses into members that are
 * objects on both sides, removed members become null, everything else is sent whole.
 */
function mergeDiff(before: JsonObject, after: JsonObject): JsonObject {
  const patch: JsonObject = {};
  for (const key of Object.keys(before)) {
    if (!Object.hasOwn(after, key)) patch[key] = null;
  }
  for (const key of Object.keys(after)) {
    const a = after[key]!;
    if (!Object.hasOwn(before, key)) {
      patch[key] = a;
      continue;
    }
    const b = before[key]!;
    if (a === b) continue;
    if (isPlainObject(a) && isPlainObject(b)) {
      const sub = mergeDiff(b, a);
      if (Object.keys(sub).length > 0) patch[key] = sub;
    } else {
      patch[key] = a;
    }
  }
  return patch;
}
