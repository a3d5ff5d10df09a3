/**
 * What may be stored: plain JSON with keys that are safe as MongoDB field names, as dotted paths
 * and against prototype pollution. Everything here throws {@link ValidationError} (code
 * `'validation'`) with a message that says what to do and the JSON Pointer of the problem.
 *
 * Browser-safe: no Node built-ins.
 */

import { ValidationError } from '../core/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { describeValue, isPlainObject } from '../core/values.js';
import { formatPointer, parsePointer } from './diff.js';

/** Deepest nesting of objects/arrays accepted, counting the document itself as level 1. */
export const MAX_DEPTH = 100;

const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Why `key` cannot be an object key in a document, or `undefined` when it can. Keys must be
 * non-empty, must not be `__proto__`/`constructor`/`prototype` (prototype pollution), must not
 * start with `$` (MongoDB operators) and must not contain `.` (dotted paths) or NUL.
 */
export function keyProblem(key: string): string | undefined {
  if (key.length === 0) return 'empty object keys are not allowed: give the member a name';
  if (RESERVED_KEYS.has(key)) {
    return `the key ${JSON.stringify(key)} is reserved (it could alter object prototypes): rename the member`;
  }
  if (key.charCodeAt(0) === 36 /* $ */) {
    return `keys starting with "$" are reserved for update operators: rename ${JSON.stringify(key)}`;
  }
  if (key.indexOf('.') !== -1) {
    return `keys must not contain "." (it separates the parts of dotted paths): rename ${JSON.stringify(key)}`;
  }
  if (key.indexOf('\0') !== -1) return 'keys must not contain the NUL character: rename the member';
  if (!wellFormed(key)) return 'keys must be valid Unicode (a lone surrogate is not): rename the member';
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const wellFormed: (s: string) => boolean =
  typeof (String.prototype as { isWellFormed?: unknown }).isWellFormed === 'function'
    ? (s) => (s as string & { isWellFormed(): boolean }).isWellFormed()
    : (s) => !LONE_SURROGATE.test(s);

/**
 * Why `text` cannot be stored as a string (a value or a key), or `undefined` when it can. What
 * PostgreSQL's `jsonb` cannot hold is refused on every backend, so memory, PGlite and PostgreSQL
 * accept exactly the same documents: a NUL character, and a lone UTF-16 surrogate (half of a
 * pair, not Unicode text; it has no UTF-8 form).
 */
export function stringProblem(text: string): string | undefined {
  if (text.indexOf('\0') !== -1)
    return 'strings must not contain the NUL character (\\u0000): PostgreSQL cannot store it';
  if (!wellFormed(text)) {
    return 'strings must be valid Unicode: this one holds half of a surrogate pair (e.g. a string cut in the middle of an emoji)';
  }
  return undefined;
}

/** Asserts `value` is a JSON document: a plain object holding only JSON values (see {@link assertJsonValue}). */
export function assertJsonDocument(value: unknown, path = ''): asserts value is JsonObject {
  if (!isPlainObject(value)) {
    throw new ValidationError(`a document must be a plain object, not ${describeValue(value)}`, path);
  }
  assertJsonValue(value, path);
}

/**
 * Asserts `value` is plain JSON: plain objects (prototype `Object.prototype` or null), arrays,
 * strings, finite numbers, booleans and null, with keys allowed by {@link keyProblem}, nested at
 * most {@link MAX_DEPTH} levels in all, counting `levelsAbove` levels above `value` (e.g. the
 * depth in the document where it will be stored). Repeated references to one object are fine;
 * cycles are not. `path` (a JSON Pointer) only prefixes the paths in errors.
 */
export function assertJsonValue(value: unknown, path = '', levelsAbove = 0): asserts value is JsonValue {
  new Checker(path).check(value, levelsAbove + 1);
}

/**
 * Asserts that the values written by RFC 6902-style ops are JSON and that the keys they create are
 * allowed, in time proportional to the ops (the rest of the document was checked when stored).
 * An `add`/`replace` without a value is refused: that is how mutative reports `undefined` (e.g.
 * `arr.push(undefined)` or `draft.x = undefined`) and functions.
 */
export function assertPatchValues(
  ops: readonly { op: string; path: string | readonly (string | number)[]; value?: unknown }[],
): void {
  for (const op of ops) {
    let segments: string[];
    try {
      segments = parsePointer(op.path);
    } catch (e) {
      throw new ValidationError(`invalid JSON Pointer ${JSON.stringify(op.path)} in a patch`, '', {
        cause: e,
      });
    }
    const path = typeof op.path === 'string' ? op.path : formatPointer(segments);
    if (op.op === 'remove') continue;
    if (op.op !== 'add' && op.op !== 'replace') {
      throw new ValidationError(
        `unsupported patch operation ${JSON.stringify(op.op)}: use add, replace or remove`,
        path,
      );
    }
    if (!Object.hasOwn(op, 'value') || op.value === undefined) {
      throw new ValidationError(
        'a value was set to undefined (or to a function), which JSON cannot store: ' +
          'use `delete obj.key` to remove a member, `splice` to remove an array element, or null',
        path,
      );
    }
    if (segments.length === 0) {
      assertJsonDocument(op.value, path);
      continue;
    }
    const problem = keyProblem(segments[segments.length - 1]!);
    if (problem) throw new ValidationError(problem, path);
    new Checker(path).check(op.value, segments.length + 1);
  }
}

/** The recursive check; recursion is bounded by {@link MAX_DEPTH}, so deep input cannot overflow the stack. */
class Checker {
  /** Segments from `basePath` to the value being checked. */
  private readonly segments: string[] = [];
  /**
   * Containers that hold containers: -1 while being checked (seeing one again then is a cycle),
   * then the height of their subtree, so a repeated reference is checked once and still counts
   * toward the depth. Containers holding only scalars are left out (most of them, in typical
   * documents): they cannot be part of a cycle, and checking one again costs only its own members,
   * so the total work stays linear in the number of references.
   */
  private readonly heights = new Map<object, number>();

  constructor(private readonly basePath: string) {}

  private fail(message: string, extra?: string): never {
    const segs = extra === undefined ? this.segments : [...this.segments, extra];
    throw new ValidationError(message, this.basePath + formatPointer(segs));
  }

  /** Checks `value` sitting at nesting `level`; returns the height of its subtree (0 for scalars). */
  check(value: unknown, level: number): number {
    if (typeof value !== 'object' || value === null) {
      this.checkScalar(value);
      return 0;
    }
    const known = this.heights.get(value);
    if (known === -1) this.fail('the value contains a cycle (an object inside itself): JSON cannot store it');
    if (known !== undefined) {
      if (level + known - 1 > MAX_DEPTH) this.tooDeep();
      return known;
    }
    if (level > MAX_DEPTH) this.tooDeep();
    const height = Array.isArray(value) ? this.checkArray(value, level) : this.checkObject(value, level);
    if (height > 0) this.heights.set(value, height + 1);
    return height + 1;
  }

  private checkScalar(value: unknown): void {
    switch (typeof value) {
      case 'string': {
        const problem = stringProblem(value);
        if (problem) this.fail(problem);
        return;
      }
      case 'number':
        if (!Number.isFinite(value)) {
          this.fail(`${value} is not a JSON number: store null, a finite number or a string instead`);
        }
        return;
      case 'undefined':
        this.fail('undefined is not JSON: use `delete obj.key` to remove a member, or null');
        break;
      case 'bigint':
        this.fail('a BigInt is not JSON: store it as a number (if it fits) or a decimal string');
        break;
      case 'function':
        this.fail('a function is not JSON data: store plain values only');
        break;
      case 'symbol':
        this.fail('a symbol is not JSON: store a string instead');
    }
  }

  /** The elements of `arr`; returns the height of the tallest (0 when all are scalars). */
  private checkArray(arr: unknown[], level: number): number {
    if (Object.getPrototypeOf(arr) !== Array.prototype) {
      this.fail(`${describeValue(arr)} is not plain JSON: store a plain array`);
    }
    let height = 0;
    for (let i = 0; i < arr.length; i++) {
      const item = arr[i];
      if (item === undefined) {
        this.fail(
          i in arr
            ? 'undefined in an array is not JSON (it would turn into null): use null, or splice the element out'
            : 'the array has a hole (a missing element, which would turn into null): use null, or splice',
          String(i),
        );
      }
      height = this.checkMember(arr, String(i), item, level, height);
    }
    return height;
  }

  /** The keys and members of `obj`; returns the height of the tallest member (0 when all are scalars). */
  private checkObject(obj: object, level: number): number {
    if (!isPlainObject(obj)) this.fail(`${describeValue(obj)} is not plain JSON: ${advice(obj)}`);
    if (Object.getOwnPropertySymbols(obj).length > 0) {
      this.fail('symbol-keyed members are not JSON (they would be dropped): use string keys');
    }
    let height = 0;
    for (const key of Object.keys(obj)) {
      const problem = keyProblem(key);
      if (problem) this.fail(problem, key);
      const item = obj[key];
      if (item === undefined) {
        this.fail(
          `undefined is not JSON (the member would be dropped): use \`delete obj[${JSON.stringify(key)}]\` to remove it, or null`,
          key,
        );
      }
      height = this.checkMember(obj, key, item, level, height);
    }
    return height;
  }

  /**
   * Checks `item`, the member `key` of `container` (at `level`), given the tallest `height` among
   * the members before it; returns the tallest after it. A valid scalar, the common case, costs
   * one type test and no path bookkeeping.
   */
  private checkMember(container: object, key: string, item: unknown, level: number, height: number): number {
    if (typeof item === 'object' && item !== null) {
      // The first container inside marks this one as being checked (see `heights`).
      if (height === 0) this.heights.set(container, -1);
      this.segments.push(key);
      const h = this.check(item, level + 1);
      this.segments.pop();
      return Math.max(h, height);
    }
    if (!isValidScalar(item)) {
      this.segments.push(key);
      this.checkScalar(item);
      this.segments.pop();
    }
    return height;
  }

  private tooDeep(): never {
    this.fail(`the value is nested more than ${MAX_DEPTH} levels deep (or contains a cycle): flatten it`);
  }
}

/** Whether `value` (not an object) is a JSON scalar the storage takes. */
function isValidScalar(value: unknown): boolean {
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value);
    case 'string':
      return stringProblem(value) === undefined;
    case 'boolean':
      return true;
    default:
      return value === null;
  }
}

function advice(obj: object): string {
  if (obj instanceof Date) return 'store date.toISOString() or a millisecond timestamp';
  if (obj instanceof Map)
    return 'store Object.fromEntries(map) (string keys) or an array of [key, value] pairs';
  if (obj instanceof Set) return 'store an array ([...set])';
  if (ArrayBuffer.isView(obj) || obj instanceof ArrayBuffer)
    return 'store an array of numbers or a base64 string';
  return 'store a plain object (e.g. { ...value } or value.toJSON())';
}

// ---------------------------------------------------------------------------------------------
// Versions and incarnations a caller names (ids and collection names: src/core/ids.ts)
// ---------------------------------------------------------------------------------------------

/** A document version a caller names (e.g. `expectedVersion`): a positive safe integer. */
export function assertVersion(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ValidationError(
      `${name} must be a positive integer (a version the document had), not ${String(value)}`,
    );
  }
}

/** The largest incarnation a backend gives: PostgreSQL's `bigint` (the memory backend counts from 1). */
const MAX_INCARNATION = 9223372036854775807n;

/**
 * An incarnation a caller names (e.g. `expectedIncarnation`, from an ETag): decimal digits of a
 * number up to {@link MAX_INCARNATION}, as the storage gives them. A larger one is refused here:
 * SQL would fail to cast it (an `internal` error) rather than find no such document.
 */
export function assertIncarnation(value: unknown): asserts value is string {
  if (typeof value !== 'string' || !/^[0-9]{1,19}$/.test(value) || BigInt(value) > MAX_INCARNATION) {
    throw new ValidationError(
      `expectedIncarnation must be an incarnation the storage gave (decimal digits), not ${JSON.stringify(value)}`,
    );
  }
}
