/**
 * Compaction keeps event logs from growing without bound, under a retention policy:
 *
 * - events covered by a document's latest snapshot (seq <= snapshot.seq) are deleted, as a
 *   prefix of the log: replay and catch-up start from the snapshot instead;
 * - with `mergeUpdates`, each run of consecutive `update` events after the snapshot becomes one
 *   event spanning `fromSeq..seq`, whose diff is the run's composition.
 *
 * Only events outside the latest `keepLatest` of their document and at least `olderThanMs` old
 * are touched, so clients that are a little behind still get plain events.
 *
 * Merges never span a snapshot's seq (they only happen after the latest one), so every
 * snapshot stays a valid starting point. Clients whose position falls inside a merged run, or
 * before the first remaining event, get a snapshot from `SyncService` instead of events.
 * Run one compaction at a time per collection; writes may go on meanwhile.
 */

import { EventSyncError, ValidationError } from '../core/errors.js';
import type { EventBackend } from '../core/event-backend.js';
import { firstSeq } from '../core/event-order.js';
import type { Snapshot, SyncEvent } from '../core/events.js';
import { assertCollectionName } from '../core/ids.js';
import type { Diff, JsonObject } from '../core/json.js';
import { buildDiff, compareValues } from '../storage/diff.js';
import { applyEvents } from './apply.js';
import { assertSeq } from './assert.js';

export interface CompactionPolicy {
  /** Keep at least the latest K events of each document untouched. Default 0. */
  keepLatest?: number;
  /** Only touch events at least this old (`now - timestamp >= olderThanMs`). Default: any age. */
  olderThanMs?: number;
  /** Also merge runs of consecutive `update` events after the latest snapshot. Default false. */
  mergeUpdates?: boolean;
}

export interface CompactionTotals {
  /** Documents visited. */
  documents: number;
  /** Events deleted because a snapshot covers them. */
  eventsRemoved: number;
  /** Events folded into merged events (a run of n leaves one event: the log shrinks by n - 1). */
  eventsMerged: number;
}

export interface CompactOptions {
  /** Only this collection's documents (default: all). */
  collection?: string;
  /** Called every `progressEvery` documents and once at the end, with the totals so far. */
  onProgress?: (progress: CompactionTotals) => void;
  /** Default 100. */
  progressEvery?: number;
  /** Documents read per page of `backend.streams`. Default 100. */
  pageSize?: number;
  /** The time ages are measured against (ms since the epoch). Default `Date.now()` at the start. */
  now?: number;
}

/** Compacts every document (of `options.collection`, or all) under `policy`; returns the totals. */
export async function compact(
  backend: EventBackend,
  policy: CompactionPolicy,
  options: CompactOptions = {},
): Promise<CompactionTotals> {
  assertPolicy(policy);
  const { collection, onProgress, progressEvery = 100, pageSize = 100, now = Date.now() } = options;
  if (collection !== undefined) assertCollectionName(collection);
  assertSeq(progressEvery, 'progressEvery');
  assertSeq(pageSize, 'pageSize');
  if (pageSize === 0) throw new ValidationError('pageSize must be at least 1');

  const totals: CompactionTotals = { documents: 0, eventsRemoved: 0, eventsMerged: 0 };
  let after: [string, string] | undefined;
  for (;;) {
    const page = await backend.streams(collection, after, pageSize);
    for (const [c, d] of page) {
      const done = await compactDocument(backend, c, d, policy, now);
      totals.documents += 1;
      totals.eventsRemoved += done.eventsRemoved;
      totals.eventsMerged += done.eventsMerged;
      if (progressEvery > 0 && totals.documents % progressEvery === 0) onProgress?.({ ...totals });
    }
    if (page.length < pageSize) break;
    after = page.at(-1);
  }
  onProgress?.({ ...totals });
  return totals;
}

/** Compacts one document's events under `policy`. */
export async function compactDocument(
  backend: EventBackend,
  collection: string,
  documentId: string,
  policy: CompactionPolicy,
  now = Date.now(),
): Promise<Omit<CompactionTotals, 'documents'>> {
  assertPolicy(policy);
  const snapshot = await backend.latestSnapshot(collection, documentId);
  const events = await backend.list(collection, documentId);
  const { keepLatest = 0, olderThanMs } = policy;
  const touchable = (i: number) =>
    i < events.length - keepLatest &&
    (olderThanMs === undefined || now - events[i]!.timestamp >= olderThanMs);

  // The covered prefix the policy lets go (deleteEvents removes a prefix).
  let removable = 0;
  while (
    snapshot &&
    removable < events.length &&
    events[removable]!.seq <= snapshot.seq &&
    touchable(removable)
  ) {
    removable++;
  }
  const eventsRemoved =
    removable > 0 ? await backend.deleteEvents(collection, documentId, events[removable - 1]!.seq) : 0;

  const eventsMerged = policy.mergeUpdates
    ? await mergeRuns(backend, snapshot, events, removable, (i) => touchable(i))
    : 0;
  return { eventsRemoved, eventsMerged };
}

/** Merges each run (length >= 2) of touchable `update` events after the snapshot; returns how many events went into merges. */
async function mergeRuns(
  backend: EventBackend,
  snapshot: Snapshot | undefined,
  events: readonly SyncEvent[],
  from: number,
  touchable: (i: number) => boolean,
): Promise<number> {
  const baseSeq = snapshot?.seq ?? 0;
  const mergeable = (i: number) =>
    events[i]!.seq > baseSeq && events[i]!.operation === 'update' && touchable(i);

  // Runs as [start, end) index ranges.
  const runs: [number, number][] = [];
  for (let i = from; i < events.length; ) {
    if (!mergeable(i)) {
      i++;
      continue;
    }
    let end = i + 1;
    while (end < events.length && mergeable(end)) end++;
    if (end - i >= 2) runs.push([i, end]);
    i = end;
  }
  if (runs.length === 0) return 0;

  // The states at the runs' edges: from the snapshot (or nothing), forward through the events.
  let index = events.findIndex((e) => e.seq > baseSeq);
  let state: JsonObject | null = snapshot?.state ?? null;
  let seq = baseSeq;
  let merged = 0;
  for (const [start, end] of runs) {
    const lead = events.slice(index, start);
    const run = events.slice(start, end);
    const before = applyEvents(state, lead, seq);
    const after = applyEvents(before, run, lead.at(-1)?.seq ?? seq);
    if (before === null || after === null) {
      throw new EventSyncError('internal', `update events of a missing document (seq ${run[0]!.seq})`);
    }
    await backend.replaceEvents(mergedEvent(run, before, after));
    merged += run.length;
    state = after;
    seq = run.at(-1)!.seq;
    index = end;
  }
  return merged;
}

/**
 * One event standing for `run`: identity, clock, actor, serverSeq and version of its last event;
 * `jsonPatch` is the run's patches in order (applies to the state before the run); `mergePatch`
 * and `mongoUpdate` are the net change from the state before the run to the state after it,
 * when `buildDiff` keeps them.
 * The last event's metadata is kept, with `mergedFrom` = the first seq covered.
 */
function mergedEvent(
  run: readonly SyncEvent[],
  before: JsonObject,
  after: JsonObject,
): SyncEvent & { fromSeq: number } {
  const first = run[0]!;
  const last = run.at(-1)!;
  const fromSeq = firstSeq(first);
  const net = buildDiff(before, after, compareValues(before, after), last.version);
  const diff: Diff = {
    hasChanges: true,
    version: last.version,
    jsonPatch: run.flatMap((e) => e.diff?.jsonPatch ?? []),
  };
  // Absent where the net change would be much larger in them than in jsonPatch (see buildDiff).
  if (net.mergePatch) diff.mergePatch = net.mergePatch;
  if (net.mongoUpdate) diff.mongoUpdate = net.mongoUpdate;
  return { ...last, fromSeq, diff, metadata: { ...last.metadata, mergedFrom: fromSeq } };
}

function assertPolicy(policy: CompactionPolicy): void {
  if (typeof policy !== 'object' || policy === null)
    throw new ValidationError('a compaction policy is an object');
  if (policy.keepLatest !== undefined) assertSeq(policy.keepLatest, 'keepLatest');
  if (
    policy.olderThanMs !== undefined &&
    (typeof policy.olderThanMs !== 'number' ||
      !(policy.olderThanMs >= 0) ||
      !Number.isFinite(policy.olderThanMs))
  ) {
    throw new ValidationError('olderThanMs must be a non-negative number of milliseconds');
  }
}
