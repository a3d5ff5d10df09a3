/**
 * Names, one rule each for every layer: ids (of documents, of clients, of principals: the
 * actors of events and the keys of vector clocks) and collection names. The storage, the event
 * modules, the protocol's schemas and the server all check them here. Browser-safe.
 */
import { ValidationError } from './errors.js';
import { describeValue } from './values.js';

/** Longest id accepted. */
export const MAX_ID_LENGTH = 128;

/**
 * An id: 1 to {@link MAX_ID_LENGTH} characters of `A-Z a-z 0-9 _ . : @ -`, not starting with
 * `.`, `:`, `@` or `-`. No `/`: SSE event ids are `collection/id/seq`, document keys
 * `collection/id`.
 */
export const ID_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$/;

/**
 * A collection name: 1 to 63 characters of lowercase `a-z`, `0-9` and `_`, starting with a letter
 * or `_`. Such a name is a valid unquoted PostgreSQL identifier (63 bytes is its limit, and
 * lowercase avoids case folding) and a valid MongoDB collection name.
 */
export const COLLECTION_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

export const isId = (value: unknown): value is string => typeof value === 'string' && ID_PATTERN.test(value);

export const isCollectionName = (value: unknown): value is string =>
  typeof value === 'string' && COLLECTION_NAME_PATTERN.test(value);

/** Asserts `id` is an id (see {@link ID_PATTERN}); `what` names it in the error (`document id`, `clientId`). */
export function assertId(id: unknown, what = 'document id'): asserts id is string {
  if (typeof id !== 'string')
    throw new ValidationError(`a ${what} must be a string, not ${describeValue(id)}`);
  if (!ID_PATTERN.test(id)) {
    throw new ValidationError(
      `invalid ${what} ${JSON.stringify(id.length > 140 ? `${id.slice(0, 140)}…` : id)}: ` +
        `use 1 to ${MAX_ID_LENGTH} characters of A-Z a-z 0-9 _ . : @ -, starting with a letter, digit or _`,
    );
  }
}

/** A client id (the actor recorded in events, a key of vector clocks) is an id like any other. */
export function assertClientId(clientId: unknown): asserts clientId is string {
  assertId(clientId, 'clientId');
}

/** Asserts `name` is a collection name (see {@link COLLECTION_NAME_PATTERN}). */
export function assertCollectionName(name: unknown): asserts name is string {
  if (!isCollectionName(name)) {
    throw new ValidationError(
      `invalid collection name ${typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : describeValue(name)}: ` +
        'use 1 to 63 characters of a-z 0-9 _, starting with a letter or _',
    );
  }
}

// ---- new ids -------------------------------------------------------------------------------------

let processPart: string | undefined;
let counter = 0;

function randomBytes(n: number): Uint8Array {
  const bytes = new Uint8Array(n);
  globalThis.crypto.getRandomValues(bytes);
  return bytes;
}

function hex(n: number, digits: number): string {
  return n.toString(16).padStart(digits, '0');
}

/**
 * A new 24-hex-digit MongoDB-style ObjectId: 4-byte big-endian seconds since the epoch, 5 random
 * bytes chosen once per process, a 3-byte counter starting at a random value. Sorts roughly by
 * creation time; unique within a process (16M ids per second) and, with overwhelming probability,
 * across processes. An id by {@link ID_PATTERN}.
 */
export function newObjectId(): string {
  if (processPart === undefined) {
    processPart = Array.from(randomBytes(5), (b) => hex(b, 2)).join('');
    const c = randomBytes(3);
    counter = (c[0]! << 16) | (c[1]! << 8) | c[2]!;
  }
  counter = (counter + 1) & 0xffffff;
  const seconds = Math.floor(Date.now() / 1000) >>> 0;
  return hex(seconds, 8) + processPart + hex(counter, 6);
}
