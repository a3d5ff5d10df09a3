/**
 * Independent appliers of the three diff notations, for tests: fast-json-patch for RFC 6902
 * (with its validation on, so a `replace`/`remove` of something absent throws), json-merge-patch
 * for RFC 7396 and mingo's updater for MongoDB update documents. Inputs are cloned first.
 */
import jsonpatch from 'fast-json-patch';
import jmp from 'json-merge-patch';
import { update as mongoApply } from 'mingo';
import type { JsonObject, JsonPatchOperation, JsonValue, MongoUpdate } from '../../src/core/json.js';

const clone = <T>(value: T): T => structuredClone(value);

export function applyJsonPatch(doc: JsonValue, ops: readonly JsonPatchOperation[]): JsonValue {
  return jsonpatch.applyPatch(clone(doc), clone(ops) as jsonpatch.Operation[], true).newDocument as JsonValue;
}

export function applyMergePatch(doc: JsonObject, patch: JsonObject): JsonValue {
  return jmp.apply(clone(doc), clone(patch)) as JsonValue;
}

export function applyMongoUpdate(doc: JsonObject, update: MongoUpdate): JsonObject {
  const target = clone(doc);
  const modifier = clone(update) as Record<string, Record<string, unknown>>;
  if (Object.keys(modifier).length > 0) mongoApply(target, modifier);
  return target;
}

/** Whether `value` holds a null anywhere (what a merge patch cannot set). */
export function holdsNull(value: JsonValue): boolean {
  if (value === null) return true;
  if (typeof value !== 'object') return false;
  return (Array.isArray(value) ? value : Object.values(value)).some(holdsNull);
}
