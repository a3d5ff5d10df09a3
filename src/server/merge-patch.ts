/**
 * RFC 7396 JSON Merge Patch, applied in place (to a storage edit's copy-on-write draft, so the
 * recorded diff is exactly what the patch changed). A member set to `null` is removed; an object
 * merges into an object member; anything else (arrays included) replaces the member.
 */

import { ValidationError } from '../core/errors.js';
import { isPlainObject } from '../core/values.js';
import { keyProblem } from '../storage/validate.js';

type JsonRecord = Record<string, unknown>;

/**
 * Refuses keys a document may not hold (`__proto__`, `$…`, dotted, empty), anywhere in the patch,
 * before anything is assigned: `draft['__proto__'] = …` would not create a member.
 */
export function assertMergePatch(patch: unknown, path = ''): asserts patch is JsonRecord {
  if (!isPlainObject(patch)) throw new ValidationError('a merge patch is a JSON object', path);
  const stack: [unknown, string][] = [[patch, path]];
  while (stack.length > 0) {
    const [node, at] = stack.pop()!;
    if (Array.isArray(node)) {
      node.forEach((item, i) => {
        stack.push([item, `${at}/${i}`]);
      });
    } else if (isPlainObject(node)) {
      for (const [key, value] of Object.entries(node)) {
        const where = `${at}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
        const problem = keyProblem(key);
        if (problem) throw new ValidationError(problem, where);
        stack.push([value, where]);
      }
    }
  }
}

/** Applies `patch` to `target` in place (RFC 7396 section 2). Check it with `assertMergePatch` first. */
export function applyMergePatch(target: JsonRecord, patch: JsonRecord): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      if (Object.hasOwn(target, key)) delete target[key];
    } else if (isPlainObject(value)) {
      const current = target[key];
      if (isPlainObject(current) && Object.hasOwn(target, key)) applyMergePatch(current, value);
      else target[key] = withoutNulls(value);
    } else {
      target[key] = value;
    }
  }
}

/** The patch applied to `{}`: its object members without the `null` ones, recursively. */
function withoutNulls(patch: JsonRecord): JsonRecord {
  const out: JsonRecord = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) continue;
    out[key] = isPlainObject(value) ? withoutNulls(value) : value;
  }
  return out;
}
