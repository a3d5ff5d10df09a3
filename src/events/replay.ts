/**
 * Rebuilds a document at any seq from its newest usable snapshot plus the events after it.
 * The rebuilt state equals what the storage held right after that event (null while deleted).
 */

import { EventSyncError, ValidationError } from '../core/errors.js';
import type { EventBackend } from '../core/event-backend.js';
import { firstSeq, follows } from '../core/event-order.js';
import type { DocumentPosition, SyncEvent } from '../core/events.js';
import { applyEvents } from './apply.js';
import { assertDocumentRef, assertSeq } from './assert.js';

/** What replay rebuilds: the document at one seq (the public name of a `DocumentPosition`). */
export type ReplayResult = DocumentPosition;

/** The state before the first event. */
export const EMPTY: Readonly<ReplayResult> = Object.freeze({
  state: null,
  seq: 0,
  version: 0,
  vectorClock: {},
});

/** A concurrent compaction can delete the events after the snapshot just read: read again this often. */
const ATTEMPTS = 3;

/**
 * The document at `toSeq` (default: its last seq). Starts from the newest snapshot at or before
 * `toSeq` and applies the events after it, checking they follow one another without a gap.
 *
 * Throws `ValidationError` for a `toSeq` past the document's last seq, and
 * `EventSyncError('not_found')` when the events needed were compacted away (deleted, or merged
 * into an event that spans `toSeq`) and no snapshot covers them.
 */
export async function replay(
  backend: EventBackend,
  collection: string,
  documentId: string,
  toSeq?: number,
): Promise<ReplayResult> {
  assertDocumentRef(collection, documentId);
  if (toSeq !== undefined) assertSeq(toSeq, 'toSeq');
  const lastSeq = (await backend.head(collection, documentId))?.lastSeq ?? 0;
  const target = toSeq ?? lastSeq;
  if (target > lastSeq) {
    throw new ValidationError(
      `cannot replay ${collection}/${documentId} to seq ${target}: its last seq is ${lastSeq}`,
      '/toSeq',
    );
  }
  if (target === 0) return { ...EMPTY, vectorClock: {} };

  for (let attempt = 1; ; attempt++) {
    const snapshot = await backend.latestSnapshot(collection, documentId, target);
    const base = snapshot ?? EMPTY;
    if (base.seq === target) return fromSnapshot(base);
    const events = await backend.list(collection, documentId, { afterSeq: base.seq, toSeq: target });
    if (follows(events, base.seq) && events.at(-1)!.seq === target) return replayFrom(base, events);
    // Compaction may have moved on between the two reads: a newer snapshot then covers the gap.
    const newer = await backend.latestSnapshot(collection, documentId, target);
    if (attempt < ATTEMPTS && newer && newer.seq > base.seq) continue;
    throw compactedAway(collection, documentId, target, base.seq, events);
  }
}

/** Applies `events` (which must follow `base.seq` without a gap) to a snapshot or replay result. */
export function replayFrom(base: DocumentPosition, events: readonly SyncEvent[]): ReplayResult {
  const state = applyEvents(base.state, events, base.seq);
  const last = events.at(-1);
  return last
    ? { state, seq: last.seq, version: last.version, vectorClock: last.vectorClock }
    : fromSnapshot(base);
}

/** The position alone: a snapshot's identity and `createdAt` left out. */
function fromSnapshot(base: DocumentPosition): ReplayResult {
  return { state: base.state, seq: base.seq, version: base.version, vectorClock: base.vectorClock };
}

function compactedAway(
  collection: string,
  documentId: string,
  target: number,
  baseSeq: number,
  events: readonly SyncEvent[],
): EventSyncError {
  const first = events[0] ? firstSeq(events[0]) : target + 1;
  const missing =
    first > baseSeq + 1
      ? `events ${baseSeq + 1}..${Math.min(first - 1, target)} were compacted away`
      : `seq ${target} lies inside an event merged by compaction`;
  return new EventSyncError(
    'not_found',
    `cannot replay ${collection}/${documentId} to seq ${target}: ${missing}, and no snapshot ` +
      `at or before seq ${target} covers them (the newest starts ${baseSeq === 0 ? 'nowhere' : `at seq ${baseSeq}`})`,
  );
}
