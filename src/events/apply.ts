/**
 * The one place an event is applied to a document: the server's replay, compaction and the
 * client SDK all go through here, so they cannot disagree on what an event means.
 *
 * Browser-safe on purpose (the client SDK uses it): no `node:*` imports.
 *
 * Copy-on-write: the input state and the events are never mutated. Before each patch operation
 * the containers on its path are shallow-copied (once per `applyEvent`/`applyEvents` call), so a
 * one-field change of a large document costs the length of the path, not the size of the
 * document (the operations themselves: json-patch.ts). The result therefore shares
 * unchanged subtrees with the input state and with the events' values: treat it as immutable.
 */

import { EventSyncError, ValidationError } from '../core/errors.js';
import { firstSeq } from '../core/event-order.js';
import type { SyncEvent } from '../core/events.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { isPlainObject } from '../core/values.js';
import { type AnyOperation, applyOperation, PatchError, tokensOf } from './json-patch.js';

/** Containers this call has copied: only these may be mutated. */
type Owned = Set<object>;

const describe = (event: SyncEvent) =>
  `event ${event.fromSeq !== undefined ? `${event.fromSeq}..` : ''}${event.seq} (${event.operation}) of ` +
  `${JSON.stringify(event.collection)}/${JSON.stringify(event.documentId)}`;

/**
 * The document after `event`, given the document before it (`null`: absent or deleted).
 *
 * - `create` needs `null` and yields the document its diff adds;
 * - `update` / `update_section` need a document and apply `diff.jsonPatch` in order;
 * - `delete` needs a document and yields `null`.
 *
 * Throws `ValidationError` when the event is malformed (unknown operation, missing diff) or its
 * patch does not apply to `state` (not RFC 6902, or a path that is not there, a failed `test`),
 * and `EventSyncError('internal')` when the operation does not fit the state (an update or delete
 * of nothing, a create of something): the state and the log disagree, which is a bug or lost
 * data, never something to paper over.
 */
export function applyEvent(state: JsonObject | null, event: SyncEvent): JsonObject | null {
  return applyOne(state, event, new Set());
}

/**
 * Applies `events` in order. Each event must follow the previous one without a gap: its
 * `fromSeq ?? seq` (merged events start at `fromSeq`) equals the previous event's `seq` + 1.
 * With `afterSeq`, the first event must follow it too (the seq `state` is at).
 */
export function applyEvents(
  state: JsonObject | null,
  events: readonly SyncEvent[],
  afterSeq?: number,
): JsonObject | null {
  // One owned set for the whole run: a container copied for one event stays ours for the next.
  const owned: Owned = new Set();
  let previous = afterSeq;
  let current = state;
  for (const event of events) {
    const first = firstSeq(event);
    if (previous !== undefined && first !== previous + 1) {
      throw new EventSyncError(
        'internal',
        `${describe(event)} does not follow seq ${previous}: expected it to start at ${previous + 1}` +
          (first > previous + 1 ? ` (seqs ${previous + 1}..${first - 1} are missing)` : ' (overlap)'),
      );
    }
    current = applyOne(current, event, owned);
    previous = event.seq;
  }
  return current;
}

function applyOne(state: JsonObject | null, event: SyncEvent, owned: Owned): JsonObject | null {
  switch (event.operation) {
    case 'delete':
      if (state === null) throw new EventSyncError('internal', `${describe(event)}: no document to delete`);
      return null;
    case 'create':
      if (state !== null) throw new EventSyncError('internal', `${describe(event)}: the document exists`);
      return patchOf(event, null, owned);
    case 'update':
    case 'update_section':
      if (state === null) throw new EventSyncError('internal', `${describe(event)}: no document to update`);
      return patchOf(event, state, owned);
    default:
      throw new ValidationError(
        `${describe(event)}: unknown operation ${JSON.stringify(event.operation)}`,
        '/operation',
      );
  }
}

function patchOf(event: SyncEvent, state: JsonObject | null, owned: Owned): JsonObject {
  const ops = event.diff?.jsonPatch as AnyOperation[] | undefined;
  if (!Array.isArray(ops)) {
    throw new ValidationError(`${describe(event)} has no diff.jsonPatch`, '/diff/jsonPatch');
  }
  let doc: JsonValue | null = state;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    try {
      doc = applyOp(doc, op, owned);
    } catch (error) {
      throw asEventError(event, op, i, error);
    }
  }
  if (!isPlainObject(doc)) {
    throw new ValidationError(`${describe(event)} does not leave an object document`, '/diff/jsonPatch');
  }
  return doc;
}

function applyOp(doc: JsonValue | null, op: AnyOperation, owned: Owned): JsonValue | null {
  if (typeof op !== 'object' || op === null || typeof op.path !== 'string') {
    throw new PatchError('the operation is not an object with a string path');
  }
  assertPointer(op.path);
  if (typeof op.from === 'string') assertPointer(op.from);
  // Root operations replace the whole value; the event's value is shared, not copied (see the header).
  if (op.path === '') return applyOperation(doc, op);
  if (typeof doc !== 'object' || doc === null) throw new PatchError(`nothing at ${JSON.stringify(op.path)}`);
  let root = own(doc, owned);
  root = ownPath(root, op.path, owned);
  if (op.op === 'move' && typeof op.from === 'string') root = ownPath(root, op.from, owned);
  return applyOperation(root, op);
}

/** RFC 6901: `/`-separated tokens, `~` only as `~0` or `~1`. */
const POINTER = /^(?:\/(?:[^~/]|~[01])*)*$/;

/** Throws for a pointer RFC 6901 forbids (json-patch.ts refuses array indexes like `01` or `1e0`). */
function assertPointer(pointer: string): void {
  if (!POINTER.test(pointer))
    throw new PatchError(`${JSON.stringify(pointer)} is not a JSON Pointer (RFC 6901)`);
}

/** `value` itself if this call owns it, else a shallow copy that it owns from now on. */
function own<V extends JsonObject | JsonValue[]>(value: V, owned: Owned): V {
  if (owned.has(value)) return value;
  const copy = (Array.isArray(value) ? value.slice() : { ...value }) as V;
  owned.add(copy);
  return copy;
}

/**
 * Makes every container strictly above the last segment of `pointer` owned, stopping where the
 * path leaves the document (the operation's validation then reports it). The last segment's
 * container is the one the operation mutates, so it must be owned; the value at the last
 * segment is replaced or removed as a whole and need not be.
 */
function ownPath(root: JsonObject | JsonValue[], pointer: string, owned: Owned): JsonObject | JsonValue[] {
  const tokens = tokensOf(pointer);
  let node: JsonObject | JsonValue[] = root;
  for (const token of tokens.slice(0, -1)) {
    let key: string | number = token;
    let child: JsonValue | undefined;
    if (Array.isArray(node)) {
      if (!/^(0|[1-9]\d*)$/.test(token)) return root;
      key = Number(token);
      child = node[key];
    } else {
      child = Object.hasOwn(node, token) ? node[token] : undefined;
    }
    if (typeof child !== 'object' || child === null) return root;
    const copy = own(child, owned);
    if (copy !== child) (node as Record<string | number, JsonValue>)[key] = copy;
    node = copy;
  }
  return root;
}

function asEventError(event: SyncEvent, op: AnyOperation, index: number, error: unknown): Error {
  const where = `/diff/jsonPatch/${index}`;
  const detail = error instanceof Error ? error.message.split('\n')[0] : String(error);
  const message = `${describe(event)}: ${JSON.stringify(op?.op)} at ${JSON.stringify(op?.path)} does not apply: ${detail}`;
  // Malformed, or well-formed but not fitting this document (a path that is not there, a failed
  // `test`): either way the patch is invalid for the state it was given.
  return new ValidationError(message, where, { cause: error });
}
