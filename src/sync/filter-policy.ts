/**
 * The one rule for filters that come from outside the process: REST lists, SSE collection
 * streams and WebSocket collection subscriptions all check a filter here before it reaches a
 * query. Trusted server code keeps MongoDB's whole filter language (`Storage.findMany`).
 *
 * Why each refusal: `$regex` and `$expr` (`$regexMatch`, `$range`, `$reduce`, …) can stall or
 * abort the process with one short request (catastrophic backtracking; a `$range` of 150 million
 * numbers is a fatal V8 allocation); `$where`, `$function` and `$accumulator` run code;
 * `$jsonSchema` and `$text` are costly and not needed by clients. The size limits bound what one
 * filter costs per document: its text, its nesting and the length of its `$in`/`$nin`/`$all` lists.
 */

import { ValidationError } from '../core/errors.js';
import { isPlainObject } from '../core/values.js';
import { assertFilter } from '../storage/mongo.js';
import type { Filter } from '../storage/types.js';

export interface FilterLimits {
  /** Largest filter, as JSON text in UTF-8 bytes. */
  maxFilterBytes: number;
  /** Deepest nesting of objects and arrays (`{ a: { $in: [ … ] } }` is 3). */
  maxFilterDepth: number;
  /** Longest `$in`, `$nin` or `$all` list. */
  maxFilterListLength: number;
}

const refusedOperators = new Set([
  '$expr',
  '$regex',
  '$options',
  '$where',
  '$function',
  '$accumulator',
  '$jsonSchema',
  '$text',
]);

const listOperators = new Set(['$in', '$nin', '$all']);

/** Throws `ValidationError` (400 `validation`, error frame) unless a remote caller may run `filter`. */
export function assertRemoteFilter(filter: unknown, limits: FilterLimits): asserts filter is Filter {
  if (!isPlainObject(filter))
    throw new ValidationError('a filter is a JSON object like { level: { $gte: 2 } }');
  const stack: Array<{ node: unknown; depth: number }> = [{ node: filter, depth: 1 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    if (depth > limits.maxFilterDepth) {
      throw new ValidationError(`filters may nest at most ${limits.maxFilterDepth} levels deep`);
    }
    if (Array.isArray(node)) {
      for (const child of node) stack.push({ node: child, depth: depth + 1 });
      continue;
    }
    for (const [key, child] of Object.entries(node)) {
      if (refusedOperators.has(key)) {
        throw new ValidationError(`${key} is not allowed in filters sent by clients`);
      }
      if (listOperators.has(key) && Array.isArray(child) && child.length > limits.maxFilterListLength) {
        throw new ValidationError(`${key} lists may hold at most ${limits.maxFilterListLength} values`);
      }
      stack.push({ node: child, depth: depth + 1 });
    }
  }
  // Nesting is bounded now, so this is cheap; the caller's text may have had spaces, this has none.
  if (Buffer.byteLength(JSON.stringify(filter)) > limits.maxFilterBytes) {
    throw new ValidationError(`filters are limited to ${limits.maxFilterBytes} bytes of JSON`);
  }
  assertFilter(filter);
}

/** A sort from a remote caller: at most 8 field paths (no operators), each 1 or -1. */
export function assertRemoteSort(sort: unknown): asserts sort is Record<string, 1 | -1> {
  const valid =
    isPlainObject(sort) &&
    Object.keys(sort).length <= 8 &&
    Object.entries(sort).every(
      ([path, direction]) =>
        (direction === 1 || direction === -1) &&
        path.length <= 256 &&
        path.split('.').every((segment) => segment !== '' && !segment.startsWith('$')),
    );
  if (!valid) {
    throw new ValidationError(
      'sort must be a JSON object of at most 8 field paths, each 1 (ascending) or -1 (descending)',
    );
  }
}
