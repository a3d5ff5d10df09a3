/**
 * What one write may do to a document: how large the document may become, and how far an
 * index in an update operator path may reach past the end of an array. Checked before the
 * work they bound (the size before any diff, the index before mingo runs), so a hostile
 * request costs about its own size. Browser-safe, like validate.ts: no Node built-ins.
 */

import { TooLargeError, ValidationError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';

export interface StorageLimits {
  /**
   * Largest document, in bytes of its JSON (UTF-8), that a write may leave. Default 1 MiB; at
   * most 16 MiB (MongoDB's own limit). A larger write fails with `too_large` and writes nothing.
   */
  maxDocumentBytes?: number;
  /**
   * How many elements one index in an update operator path may add to an array: with `n`, an
   * update may write index `i` of an array of length `L` only if `i < L + n`, where `L` counts
   * the lower indexes the same update writes past the end (so `{ "a.3": x, "a.4": y }` on three
   * elements is two steps of one). Default 1: an index may append, never leave a gap. Past 1
   * the gap is filled with nulls, as MongoDB does. At most 1024. A larger reach fails with
   * `validation` before anything runs.
   */
  maxArrayGrowth?: number;
}

export type ResolvedLimits = Required<StorageLimits>;

export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;
/** Ten times the largest game state or form we expect, and small enough that a document is cheap to send whole. */
export const DEFAULT_MAX_DOCUMENT_BYTES = 1024 * 1024;
/** An index equal to the length appends (the MongoDB way to set "the next element"); anything further is a gap. */
export const DEFAULT_MAX_ARRAY_GROWTH = 1;
/** Bounds the nulls one index can make (and the ops of their diff) whatever the document limit. */
export const MAX_ARRAY_GROWTH = 1024;

/** The limits with defaults filled in; throws `ValidationError` for a value out of range. */
export function resolveLimits(limits: StorageLimits = {}): ResolvedLimits {
  if (typeof limits !== 'object' || limits === null) throw new ValidationError('limits is an object');
  const maxDocumentBytes = limits.maxDocumentBytes ?? DEFAULT_MAX_DOCUMENT_BYTES;
  const maxArrayGrowth = limits.maxArrayGrowth ?? DEFAULT_MAX_ARRAY_GROWTH;
  if (
    !Number.isSafeInteger(maxDocumentBytes) ||
    maxDocumentBytes < 1 ||
    maxDocumentBytes > MAX_DOCUMENT_BYTES
  ) {
    throw new ValidationError(
      `limits.maxDocumentBytes must be an integer from 1 to ${MAX_DOCUMENT_BYTES} (16 MiB)`,
    );
  }
  if (!Number.isSafeInteger(maxArrayGrowth) || maxArrayGrowth < 0 || maxArrayGrowth > MAX_ARRAY_GROWTH) {
    throw new ValidationError(`limits.maxArrayGrowth must be an integer from 0 to ${MAX_ARRAY_GROWTH}`);
  }
  return { maxDocumentBytes, maxArrayGrowth };
}

/**
 * `doc` as JSON, after checking that it fits in `maxBytes` bytes of UTF-8; throws
 * `TooLargeError` when it does not. Measured exactly, with `JSON.stringify` (native, one pass,
 * and its output is what the SQL backends store, so they are handed it instead of making their
 * own): an estimator walking the document in JavaScript would cost as much before stopping
 * early only for documents that are over the limit anyway.
 */
export function jsonWithin(doc: JsonValue, maxBytes: number, what?: string): string {
  const json = JSON.stringify(doc);
  // UTF-8 takes at most 3 bytes per UTF-16 unit (4 per surrogate pair): count only when it matters.
  if (json.length * 3 > maxBytes) {
    const bytes = utf8Bytes(json);
    if (bytes > maxBytes) throw new TooLargeError(bytes, maxBytes, what);
  }
  return json;
}

/** UTF-8 length of well-formed text (the storage refuses lone surrogates). */
export function utf8Bytes(text: string): number {
  const buffer = (globalThis as { Buffer?: { byteLength(s: string, e: 'utf8'): number } }).Buffer;
  if (buffer) return buffer.byteLength(text, 'utf8');
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // 2 bytes below U+0800, 3 above; a surrogate unit is half of a 4-byte pair.
    if (c >= 0x80) bytes += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
  }
  return bytes;
}
