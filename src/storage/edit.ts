/**
 * Runs one edit function on a copy-on-write draft and returns the new value with the RFC 6902
 * operations that lead to it. The cost is the size of the change, not of the document:
 * mutative copies only the objects on the edited paths and records the patch as it goes.
 */
import { create, isDraft, rawReturn } from 'mutative';
import { ValidationError } from '../protocol/errors.js';
import { compareValues, formatPointer, parsePointer } from './diff.js';
import { jsonWithin } from './limits.js';
import type { EditFunction, JsonObject, JsonPatchOperation, JsonValue } from './types.js';
import { assertJsonDocument, assertPatchValues } from './validate.js';

const patchOptions = { enablePatches: { pathAsArray: false, arrayLengthAssignment: false } } as const;

export interface EditOutcome {
  after: JsonObject;
  ops: JsonPatchOperation[];
}

export interface EditTarget {
  versionField: string;
  /** The version of the edited root (the document, or a section) before the edit. */
  version: number;
  /** Fields of the root that must keep their value (`_id` for documents). */
  lockedFields: readonly string[];
  /** Refuse (`TooLargeError`) a result larger than this many bytes of JSON, naming it `what`. */
  sizeLimit?: { maxBytes: number; what: string };
}

const isPlainObject = (v: unknown): v is JsonObject =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Returns `undefined` when the edit changed nothing (besides version fields, which the storage owns).
 * Otherwise the root's version field is `version + 1`, and so is the version of every section
 * (a nested object with a numeric version field, reached through object keys only) the edit touched.
 */
export async function runEdit<T>(
  before: JsonObject,
  edit: EditFunction<T>,
  target: EditTarget,
): Promise<EditOutcome | undefined> {
  const { versionField } = target;
  let produced: [JsonObject, { op: string; path: unknown; value?: unknown }[]];
  try {
    const recipe = async (draft: T) => {
      const returned = await edit(draft);
      // A new document without drafts inside is taken as is (mutative would warn about it).
      return returned === undefined || returned === draft || holdsDraft(returned)
        ? returned
        : rawReturn(returned as object);
    };
    produced = (await create(before, recipe as never, patchOptions)) as never;
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('Either the value is returned')) {
      throw new ValidationError('an edit must either mutate the draft or return a new document, not both');
    }
    // mutative walks assigned values to finalize drafts inside them: a cycle never ends.
    if (error instanceof RangeError && /call stack/.test(error.message)) {
      throw new ValidationError('the edit produced a cyclic or too deeply nested value', '', {
        cause: error,
      });
    }
    throw error;
  }
  let [after, patches] = produced;
  let ops: JsonPatchOperation[];
  const replacedRoot = patches.length === 1 && (patches[0]!.path === '' || Array.isArray(patches[0]!.path));
  if (replacedRoot) {
    assertJsonDocument(after);
    // A returned document keeps the locked fields and the version of the one it replaces.
    after = { ...after };
    for (const field of target.lockedFields) restoreLocked(before, after, field);
    after[versionField] = before[versionField] as JsonValue;
    assertSize(after, target);
    ops = compareValues(before, after);
  } else {
    ops = patches as JsonPatchOperation[];
    assertPatchValues(ops);
    assertSize(after, target);
    ops = fewerOps(before, after, ops);
    for (const op of ops) {
      const first = parsePointer(op.path)[0];
      if (first !== undefined && target.lockedFields.includes(first)) {
        throw new ValidationError(`${first} is owned by the storage and cannot change`, `/${first}`);
      }
    }
  }
  ops = ops.filter((op) => !ownsVersion(before, after, op, target));
  if (ops.length === 0) return undefined;

  for (const section of touchedSections(before, ops, versionField)) {
    const parent = getIn(after, section.path.slice(0, -1)) as JsonObject;
    const key = section.path[section.path.length - 1]!;
    const value = parent[key];
    if (!isPlainObject(value)) continue;
    // Copied, because the edit may have assigned an object that is also used elsewhere.
    parent[key] = { ...value, [versionField]: section.version + 1 };
    ops.push({
      op: 'replace',
      path: formatPointer([...section.path, versionField]),
      value: section.version + 1,
    });
  }
  after[versionField] = target.version + 1;
  ops.push({
    op: versionField in before ? 'replace' : 'add',
    path: `/${versionField}`,
    value: target.version + 1,
  });
  return { after, ops };
}

/**
 * Checked once the edit's result is known to be JSON and before any diff work on it. The version
 * fields the storage sets afterwards are not counted: they change the size by a few digits.
 */
function assertSize(after: JsonObject, target: EditTarget): void {
  if (target.sizeLimit) jsonWithin(after, target.sizeLimit.maxBytes, target.sizeLimit.what);
}

/**
 * mutative lists a changed array index by index: removing the first of n elements comes out as
 * n - 1 replaces and a remove, each carrying an element. The structural compare strips the
 * common prefix and suffix first (one remove). Tried only past a few ops, where the difference
 * can matter; it costs about what mutative spent on the same containers.
 */
function fewerOps(before: JsonObject, after: JsonObject, ops: JsonPatchOperation[]): JsonPatchOperation[] {
  if (ops.length <= RECOMPARE_ABOVE) return ops;
  const compared = compareValues(before, after);
  return compared.length < ops.length ? compared : ops;
}

const RECOMPARE_ABOVE = 8;

/**
 * The storage owns the version field of the root and of every section: an operation on one is
 * dropped, and `after` gets the value back (its parent was copied by the edit, so this is safe).
 */
function ownsVersion(
  before: JsonObject,
  after: JsonObject,
  op: JsonPatchOperation,
  target: EditTarget,
): boolean {
  const segments = parsePointer(op.path);
  if (segments[segments.length - 1] !== target.versionField) return false;
  const parentPath = segments.slice(0, -1);
  const parentBefore = getIn(before, parentPath);
  const isRoot = parentPath.length === 0;
  if (!isRoot && !(isPlainObject(parentBefore) && typeof parentBefore[target.versionField] === 'number')) {
    return false;
  }
  const parentAfter = getIn(after, parentPath);
  if (isPlainObject(parentAfter) && isPlainObject(parentBefore)) {
    if (target.versionField in parentBefore)
      parentAfter[target.versionField] = parentBefore[target.versionField]!;
    else delete parentAfter[target.versionField];
  }
  return true;
}

/** Whether `value` holds a mutative draft; deeper than any valid document counts as yes (mutative then reports it). */
function holdsDraft(value: unknown, depth = 0): boolean {
  if (isDraft(value) || depth > 100) return true;
  if (typeof value !== 'object' || value === null) return false;
  for (const child of Object.values(value)) if (holdsDraft(child, depth + 1)) return true;
  return false;
}

function restoreLocked(before: JsonObject, after: JsonObject, field: string): void {
  if (!(field in after)) {
    if (field in before) after[field] = before[field] as JsonValue;
    return;
  }
  if (after[field] !== before[field]) {
    throw new ValidationError(`${field} is owned by the storage and cannot change`, `/${field}`);
  }
}

interface SectionBump {
  path: string[];
  version: number;
}

/** Sections (objects with a numeric version field) of `before` that contain, or are replaced by, a change. */
function touchedSections(before: JsonObject, ops: JsonPatchOperation[], versionField: string): SectionBump[] {
  const found = new Map<string, SectionBump>();
  for (const op of ops) {
    const segments = parsePointer(op.path);
    let node: JsonValue | undefined = before;
    for (let depth = 1; depth <= segments.length; depth++) {
      node = isPlainObject(node) ? node[segments[depth - 1]!] : undefined;
      if (!isPlainObject(node)) break;
      const version = node[versionField];
      const replacedWhole = depth === segments.length;
      if (typeof version === 'number' && !(replacedWhole && op.op === 'remove')) {
        const path = segments.slice(0, depth);
        found.set(formatPointer(path), { path, version });
      }
    }
  }
  return [...found.values()];
}

export function getIn(root: JsonValue, path: readonly string[]): JsonValue | undefined {
  let node: JsonValue | undefined = root;
  for (const key of path) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}
