/**
 * Runs one edit function on a copy-on-write draft and returns the new value with the RFC 6902
 * operations that lead to it. mutative copies only the objects on the edited paths; the ops are
 * then computed structurally ({@link compareValues}) from the finished result, version bumps
 * included, so they are valid and exact by construction: every `replace`/`remove` names a member
 * that exists, a deep-equal reassignment is no change, and a section replaced whole carries its
 * new version inside the replacing value. Comparing skips subtrees shared with `before`, so the
 * cost stays about the size of the change.
 */

import { create, isDraft, rawReturn } from 'mutative';
import { ValidationError } from '../core/errors.js';
import type { JsonObject, JsonPatchOperation, JsonValue } from '../core/json.js';
import { isPlainObject } from '../core/values.js';
import { compareAlong, compareValues, escapePointerSegment, formatPointer, parsePointer } from './diff.js';
import { jsonWithin } from './limits.js';
import type { EditFunction } from './types.js';
import { assertJsonDocument, assertPatchValues } from './validate.js';

/** A path a draft was written at, as mutative records it: object keys and array indexes. */
type WrittenPath = readonly (string | number)[];

/** mutative's options for an edit: patches recorded as key lists (used for where the draft was written). */
export const RECORD_PATHS = { enablePatches: { pathAsArray: true, arrayLengthAssignment: false } } as const;

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

/**
 * Returns `undefined` when the edit changed nothing (besides version fields, which the storage owns).
 * Otherwise the root's version field is `version + 1`, and so is the version of every section
 * (an object of `before` with a numeric version field, reached through object keys only) that
 * contains a change or is replaced by another object.
 */
export async function runEdit<T>(
  before: JsonObject,
  edit: EditFunction<T>,
  target: EditTarget,
): Promise<EditOutcome | undefined> {
  const { result, returned, written } = await produce(before, edit);
  return finishEdit(before, result, returned ? undefined : written, target);
}

/**
 * The second half of {@link runEdit}, once the edit ran: `result` is what mutative produced from
 * `before`, `written` the paths its draft recorded writes at (`undefined`: the edit returned a new
 * document rather than mutating its draft). Checks it, restores what the storage owns, bumps
 * versions and says the change as ops.
 */
export function finishEdit(
  before: JsonObject,
  result: JsonObject,
  written: readonly WrittenPath[] | undefined,
  target: EditTarget,
): EditOutcome | undefined {
  const returned = written === undefined;
  if (result === before) return undefined;
  if (returned) assertJsonDocument(result);
  // Our own root: versions are written into it (and into copies along their paths) below.
  const after = new CopyOnWrite({ ...result });
  if (returned) {
    for (const field of target.lockedFields) restoreLocked(before, after.root, field);
    after.root[target.versionField] = before[target.versionField] as JsonValue;
  }
  // A returned document may differ anywhere; a mutated draft only where it was written.
  const changes = written ? compareAlong(before, after.root, written) : compareValues(before, after.root);
  // Values written through the draft were not checked yet (a returned document was, whole).
  if (!returned) assertPatchValues(changes);
  if (target.sizeLimit) jsonWithin(after.root, target.sizeLimit.maxBytes, target.sizeLimit.what);
  const edits = changes.filter((op) => !restoreOwnedVersion(before, after, op, target));
  if (edits.length === 0) return undefined;
  for (const op of edits) {
    const first = parsePointer(op.path)[0];
    if (first !== undefined && target.lockedFields.includes(first)) {
      throw new ValidationError(`${first} is owned by the storage and cannot change`, `/${first}`);
    }
  }
  bumpVersions(before, after, edits, target);
  return { after: after.root, ops: edits };
}

/**
 * Writes the new versions into `after` and says them in `ops`: every touched section gets its
 * version + 1 (a section replaced whole by another object gets it inside the replacing value,
 * else as a `replace` of its version field, which exists in both), then the root, last. The ops
 * stay exactly those of the structural compare otherwise, so they stay valid: no member the
 * compare saw is touched but version fields, and no op names a path inside a replaced section.
 */
function bumpVersions(before: JsonObject, after: CopyOnWrite, ops: JsonPatchOperation[], target: EditTarget) {
  const { versionField } = target;
  for (const section of touchedSections(before, ops, versionField)) {
    if (!isPlainObject(getIn(after.root, section.path))) continue; // replaced by a non-object: gone
    const bumped = after.writable(section.path);
    bumped[versionField] = section.version + 1;
    const pointer = formatPointer(section.path);
    const whole = ops.find((op) => op.path === pointer);
    if (whole && whole.op !== 'remove') whole.value = bumped;
    else
      ops.push({
        op: 'replace',
        path: formatPointer([...section.path, versionField]),
        value: section.version + 1,
      });
  }
  after.root[versionField] = target.version + 1;
  ops.push({
    op: versionField in before ? 'replace' : 'add',
    path: `/${escapePointerSegment(versionField)}`,
    value: target.version + 1,
  });
}

/** Runs `edit` on a draft of `before`; `returned` says the edit returned a new document. */
async function produce<T>(
  before: JsonObject,
  edit: EditFunction<T>,
): Promise<{ result: JsonObject; returned: boolean; written: WrittenPath[] }> {
  let returned = false;
  try {
    const recipe = async (draft: T) => {
      const value = await edit(draft);
      if (value === undefined || value === draft) return value;
      returned = true;
      // A new document without drafts inside is taken as is (mutative would warn about it).
      return holdsDraft(value) ? value : rawReturn(value as object);
    };
    // The recorded patches only say where the edit wrote (see compareAlong), not the ops.
    const [result, patches] = (await create(before, recipe as never, RECORD_PATHS)) as unknown as [
      JsonObject,
      { path: WrittenPath }[],
    ];
    return { result, returned, written: patches.map((patch) => patch.path) };
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
}

/**
 * The finished document, written in place only through containers made here: an edit may have
 * assigned one object in several places, or one the caller still holds, so each container on a
 * written path is copied once before its first write.
 */
class CopyOnWrite {
  readonly #made = new WeakSet<object>();

  constructor(readonly root: JsonObject) {
    this.#made.add(root);
  }

  /** The object at `path` (object keys), copied along the way where not made here. */
  writable(path: readonly string[]): JsonObject {
    let node = this.root;
    for (const key of path) {
      let child = node[key] as JsonObject;
      if (!this.#made.has(child)) {
        child = { ...child };
        this.#made.add(child);
        node[key] = child;
      }
      node = child;
    }
    return node;
  }
}

/**
 * The storage owns the version field of the root and of every section: a change of one is
 * undone in `after` (returns true), and is not an edit.
 */
function restoreOwnedVersion(
  before: JsonObject,
  after: CopyOnWrite,
  op: JsonPatchOperation,
  target: EditTarget,
): boolean {
  const segments = parsePointer(op.path);
  if (segments[segments.length - 1] !== target.versionField) return false;
  const parentPath = segments.slice(0, -1);
  const parentBefore = getIn(before, parentPath);
  const isRoot = parentPath.length === 0;
  if (!isPlainObject(parentBefore)) return false;
  if (!isRoot && typeof parentBefore[target.versionField] !== 'number') return false;
  const parentAfter = after.writable(parentPath);
  if (target.versionField in parentBefore) {
    parentAfter[target.versionField] = parentBefore[target.versionField]!;
  } else {
    delete parentAfter[target.versionField];
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
        found.set(path.join('\u0000'), { path, version });
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
