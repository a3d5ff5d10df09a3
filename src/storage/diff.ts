/**
 * Diffs of one write, in the three notations of {@link Diff}.
 *
 * The storage gets a correct RFC 6902 op list for free from mutative's recording when the edit
 * mutates its draft; when the edit returns a new document instead, mutative only says "the root
 * was replaced", and {@link compareValues} computes the ops structurally. {@link buildDiff} then
 * derives the merge patch and the MongoDB update from the ops, in time proportional to the change:
 * it never walks or copies the whole document.
 */
import type { Diff, JsonObject, JsonPatchOperation, JsonValue, MongoUpdate } from './types.js';

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

function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Deep equality of JSON values (key order ignored); shared references are O(1). */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i]!, b[i]!)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
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

function compareInto(before: JsonValue, after: JsonValue, path: string, ops: JsonPatchOperation[]): void {
  if (before === after) return;
  if (Array.isArray(before)) {
    if (Array.isArray(after)) compareArrays(before, after, path, ops);
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

function compareObjects(
  before: JsonObject,
  after: JsonObject,
  path: string,
  ops: JsonPatchOperation[],
): void {
  for (const key of Object.keys(before)) {
    const p = `${path}/${escapePointerSegment(key)}`;
    if (!Object.hasOwn(after, key)) ops.push({ op: 'remove', path: p });
    else compareInto(before[key]!, after[key]!, p, ops);
  }
  for (const key of Object.keys(after)) {
    if (!Object.hasOwn(before, key)) {
      ops.push({ op: 'add', path: `${path}/${escapePointerSegment(key)}`, value: after[key]! });
    }
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

/** One node of the trie of changed paths (object keys only). */
interface PathNode {
  children: Map<string, PathNode> | undefined;
  /** This path changed as a whole: its descendants are covered by it. */
  terminal: boolean;
  /** Whether the path exists in `after` (else it was removed), and its value there. */
  present: boolean;
  value: JsonValue | undefined;
}

function newNode(): PathNode {
  return { children: undefined, terminal: false, present: false, value: undefined };
}

function isRootOp(op: JsonPatchOperation): boolean {
  // mutative reports a returned new document as `{ op: 'replace', path: [] }`, even with
  // `pathAsArray: false`.
  const path = op.path as unknown;
  return path === '' || (Array.isArray(path) && path.length === 0);
}

/**
 * Builds the whole Diff from a correct RFC 6902 op list (mutative's recording, or
 * {@link compareValues}' output), `before` and `after` (which may share structure).
 *
 * Cost: proportional to the ops and their paths, plus, when a whole object is replaced by another
 * object, the widths of those two objects (for the merge patch). The document itself is never
 * walked or copied; values in the Diff share structure with `after`.
 *
 * Each op path is cut at the first point where `after` no longer has a plain object to descend
 * into: at an array (index-wise `$set`/merge cannot express inserts and removals, so a change
 * anywhere under an array re-sends the whole array), at a scalar, or at a missing key (a removal).
 * Paths covered by a shorter changed path are dropped, so `$set a` and `$set a.b` never both appear.
 *
 * A root replacement (mutative's answer when the edit returns a new document) is first turned into
 * structural ops with {@link compareValues}; the returned `jsonPatch` then holds those.
 *
 * RFC 7396 limit: a merge patch cannot say "set this member to null", because null means
 * "remove". An object member that is null in `after` therefore comes out of `mergePatch` as a
 * removal (a changed member set to null), or is dropped when it sits inside an object the patch
 * adds: applying `mergePatch` yields `after` with those null members removed. `jsonPatch` and
 * `mongoUpdate` carry nulls exactly.
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

  const root = newNode();
  for (const op of ops) insertChangedPath(root, after, parsePointer(op.path));

  const out: Emitted = { before, $set: {}, $unset: {}, setCount: 0, unsetCount: 0, segments: [] };
  const mergePatch: JsonObject = {};
  emit(root, mergePatch, out);

  const mongoUpdate: MongoUpdate = {};
  if (out.setCount > 0) mongoUpdate.$set = out.$set;
  if (out.unsetCount > 0) mongoUpdate.$unset = out.$unset;
  return { hasChanges: true, version, jsonPatch: ops, mergePatch, mongoUpdate };
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

/** Walks the trie once, emitting the MongoDB update into `out` and the merge patch into `merge`. */
function emit(node: PathNode, merge: JsonObject, out: Emitted): void {
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
        if (isPlainObject(value)) {
          const old = getAt(out.before, segments);
          merge[key] = isPlainObject(old) ? mergeDiff(old, value) : value;
        } else {
          merge[key] = value;
        }
      } else {
        out.$unset[dotted] = '';
        out.unsetCount++;
        merge[key] = null;
      }
    } else {
      const sub: JsonObject = {};
      merge[key] = sub;
      emit(child, sub, out);
    }
    segments.pop();
  }
}

/** Adds the changed path of one op (cut as described in {@link buildDiff}) to the trie. */
function insertChangedPath(root: PathNode, after: JsonObject, segs: string[]): void {
  let node = root;
  let cur: JsonObject = after;
  for (let i = 0; i < segs.length; i++) {
    const key = segs[i]!;
    if (node.terminal) return; // covered by a shorter changed path
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
    if (!Object.hasOwn(cur, key)) {
      markTerminal(node, false, undefined);
      return;
    }
    const next: JsonValue = cur[key]!;
    if (!isPlainObject(next) || i === segs.length - 1) {
      markTerminal(node, true, next);
      return;
    }
    cur = next;
  }
}

function markTerminal(node: PathNode, present: boolean, value: JsonValue | undefined): void {
  node.terminal = true;
  node.children = undefined; // everything below is covered
  node.present = present;
  node.value = value;
}

function getAt(obj: JsonObject, segs: readonly string[]): JsonValue | undefined {
  let cur: JsonValue | undefined = obj;
  for (const key of segs) {
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
