/**
 * RFC 6902 (JSON Patch) operations on owned containers: `apply.ts` copies the containers on an
 * operation's path first, so the operation here may change them in place. All six operations
 * (`add`, `remove`, `replace`, `move`, `copy`, `test`), each checked as the RFC says: the target
 * (or its parent, for `add`) must be there, array indexes within bounds, `test` deep-equal.
 *
 * Hand-written rather than `fast-json-patch` because the client SDK bundles this file: that
 * library cost 3.4 KiB of the client's min+gzip bundle, this file well under 1 KiB. The
 * json-patch-test-suite and a property test against fast-json-patch keep it honest
 * (src/events/apply.test.ts). Browser-safe.
 */
import type { JsonObject, JsonValue } from '../core/json.js';
import { isPlainObject } from '../core/values.js';

/** A patch operation as RFC 6902 allows it (events from elsewhere may carry `move`/`copy`/`test`). */
export interface AnyOperation {
  op: string;
  path: string;
  from?: string;
  value?: JsonValue;
}

/** Why an operation does not apply (`apply.ts` turns it into a `ValidationError` of the event). */
export class PatchError extends Error {
  override name = 'PatchError';
}

/** A container and the key of a member of it (an array index, `-`, or an object key). */
type Slot = { parent: JsonObject | JsonValue[]; key: string };

const FORBIDDEN = new Set(['__proto__', 'constructor', 'prototype']);

/** RFC 6901 tokens of `pointer` (already checked well-formed), unescaped. */
export function tokensOf(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((token) => (token.indexOf('~') === -1 ? token : token.replace(/~1/g, '/').replace(/~0/g, '~')));
}

/** Applies `op` to `doc` (its containers on the path owned) and returns the document after it. */
export function applyOperation(doc: JsonValue | null, op: AnyOperation): JsonValue | null {
  switch (op.op) {
    case 'add':
      return put(doc, op.path, operandOf(op), true);
    case 'replace':
      return put(doc, op.path, operandOf(op), false);
    case 'remove':
      if (op.path === '') throw new PatchError('cannot remove the whole document');
      take(doc, op.path);
      return doc;
    case 'move': {
      const from = fromOf(op);
      if (op.path !== from && op.path.startsWith(`${from}/`)) {
        throw new PatchError(`cannot move ${JSON.stringify(from)} into itself`);
      }
      if (from === '') throw new PatchError('cannot move the whole document');
      return put(doc, op.path, take(doc, from), true);
    }
    case 'copy':
      // A copy of its own: the original may be a container this call owns and changes later.
      return put(doc, op.path, structuredClone(read(doc, fromOf(op))), true);
    case 'test':
      if (!jsonEqual(read(doc, op.path), operandOf(op)))
        throw new PatchError('test failed: the values differ');
      return doc;
    default:
      throw new PatchError(`unknown operation ${JSON.stringify(op.op)}`);
  }
}

function operandOf(op: AnyOperation): JsonValue {
  if (!('value' in op) || op.value === undefined)
    throw new PatchError(`${JSON.stringify(op.op)} needs a value`);
  return op.value;
}

function fromOf(op: AnyOperation): string {
  if (typeof op.from !== 'string') throw new PatchError(`${JSON.stringify(op.op)} needs a from pointer`);
  return op.from;
}

/** Sets the value at `pointer`: `adding` inserts (arrays) or creates (objects), else it must be there. */
function put(doc: JsonValue | null, pointer: string, value: JsonValue, adding: boolean): JsonValue | null {
  if (pointer === '') return value;
  const { parent, key } = slotOf(doc, pointer);
  if (Array.isArray(parent)) {
    const index = key === '-' && adding ? parent.length : indexOf(parent, key, adding);
    if (adding) parent.splice(index, 0, value);
    else parent[index] = value;
  } else {
    if (!adding && !Object.hasOwn(parent, key)) throw missing(pointer);
    parent[key] = value;
  }
  return doc;
}

/** Removes the value at `pointer` and returns it. */
function take(doc: JsonValue | null, pointer: string): JsonValue {
  const { parent, key } = slotOf(doc, pointer);
  if (Array.isArray(parent)) return parent.splice(indexOf(parent, key, false), 1)[0]!;
  if (!Object.hasOwn(parent, key)) throw missing(pointer);
  const value = parent[key]!;
  delete parent[key];
  return value;
}

function read(doc: JsonValue | null, pointer: string): JsonValue {
  if (pointer === '') {
    if (doc === null) throw missing(pointer);
    return doc;
  }
  const { parent, key } = slotOf(doc, pointer);
  if (Array.isArray(parent)) return parent[indexOf(parent, key, false)]!;
  if (!Object.hasOwn(parent, key)) throw missing(pointer);
  return parent[key]!;
}

/** The container that holds the member `pointer` names, and the member's key. */
function slotOf(doc: JsonValue | null, pointer: string): Slot {
  const tokens = tokensOf(pointer);
  let node: JsonValue | null = doc;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (FORBIDDEN.has(token)) throw new PatchError(`forbidden key ${JSON.stringify(token)} in path`);
    if (typeof node !== 'object' || node === null) throw missing(pointer);
    if (i === tokens.length - 1) return { parent: node, key: token };
    if (Array.isArray(node)) node = node[indexOf(node, token, false)]!;
    else if (Object.hasOwn(node, token)) node = node[token]!;
    else throw missing(pointer);
  }
  throw missing(pointer);
}

/** `key` as an index of `array`: an existing element, or (`adding`) also one past the end. */
function indexOf(array: readonly JsonValue[], key: string, adding: boolean): number {
  const index = /^(0|[1-9]\d*)$/.test(key) ? Number(key) : Number.NaN;
  if (!(index < array.length || (adding && index === array.length))) {
    throw new PatchError(`array index ${JSON.stringify(key)} is out of bounds (length ${array.length})`);
  }
  return index;
}

const missing = (pointer: string) => new PatchError(`nothing at ${JSON.stringify(pointer)}`);

/** Deep equality of JSON values (object member order aside). */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (Array.isArray(a))
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]!));
  if (!isPlainObject(a) || !isPlainObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k] as JsonValue, b[k] as JsonValue));
}
