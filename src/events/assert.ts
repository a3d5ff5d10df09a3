/** Argument checks shared by the event modules: bad input becomes a `ValidationError` before any I/O. */

import { ValidationError } from '../core/errors.js';
import type { VectorClock } from '../core/events.js';
import { assertCollectionName, assertId } from '../core/ids.js';

export function assertSeq(value: unknown, name: string): asserts value is number {
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    throw new ValidationError(`${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
}

export function assertVectorClock(clock: unknown, name = 'vectorClock'): asserts clock is VectorClock {
  if (typeof clock !== 'object' || clock === null || Array.isArray(clock)) {
    throw new ValidationError(`${name} must be an object of client id → count`);
  }
  for (const [clientId, count] of Object.entries(clock)) {
    if (!Number.isSafeInteger(count) || (count as number) < 0) {
      throw new ValidationError(`${name}[${JSON.stringify(clientId)}] must be a non-negative integer`);
    }
  }
}

export function assertDocumentRef(collection: string, documentId: string): void {
  assertCollectionName(collection);
  assertId(documentId);
}
