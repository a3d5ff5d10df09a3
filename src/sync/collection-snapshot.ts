/**
 * The reads behind a collection subscription's snapshot, a page at a time: the next matching
 * documents in `_id` order (keyset, so a page costs the same wherever it starts), and each
 * document's state at one seq. The session decides what to send and when (it paces the frames
 * to the socket and holds live events meanwhile); nothing here waits for a client.
 */
import type { DocumentPosition } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import type { Filter } from '../storage/types.js';
import { andFilters } from './read-scope.js';
import type { CollectionReader, SessionHost } from './session-host.js';

/** Documents in a collection subscription's first page, before their size is known. */
export const FIRST_PAGE_DOCUMENTS = 32;
/** At most this many documents in one page, however small they are. */
export const MAX_PAGE_DOCUMENTS = 256;

/** How long snapshots work before the event loop takes other callbacks. */
const TURN_MS = 10;
/** When the current turn began (shared by every snapshot of the process). */
let turnStarted = performance.now();
/** Snapshots waiting for a turn, first come first served. */
const waiting: (() => void)[] = [];

/**
 * Resolves at once while the current turn lasts; once snapshot work ran `TURN_MS`, after other
 * callbacks (I/O included) had their turn of the event loop. An in-process database (PGlite,
 * memory) answers through promises only, so reads in a loop never reach the event loop by
 * themselves. The turn is shared: snapshots over it go one per turn of the event loop, so
 * twenty of them hold it as long as one does, not twenty times as long.
 */
export function nextTurn(): Promise<void> {
  if (performance.now() - turnStarted < TURN_MS) return Promise.resolve();
  return new Promise((resolve) => {
    waiting.push(resolve);
    if (waiting.length === 1) setImmediate(giveTurn);
  });
}

function giveTurn(): void {
  turnStarted = performance.now();
  waiting.shift()?.();
  if (waiting.length > 0) setImmediate(giveTurn);
}

/** The first `limit` documents matching `filter` with an `_id` after `after` (all when undefined), in `_id` order. */
export async function readPage(
  storage: CollectionReader,
  filter: Filter,
  after: string | undefined,
  limit: number,
): Promise<JsonObject[]> {
  const where = after === undefined ? filter : andFilters(filter, { _id: { $gt: after } });
  return (await storage.findMany(where, { sort: { _id: 1 }, limit })) as JsonObject[];
}

/** About this many bytes of documents in one page: one read of an in-process database holds the event loop. */
const PAGE_BYTES = 512 * 1024;

/**
 * How many documents the next page may hold, judged by the frames of the page before: about
 * `PAGE_BYTES` of them, and no more than the catch-up window takes (half of `maxBufferedBytes`,
 * see `CatchUpWindow`), so large documents are read a few at a time and small ones in large pages.
 */
export function nextPageSize(maxBufferedBytes: number, frameBytes: number, frames: number): number {
  if (frames === 0) return MAX_PAGE_DOCUMENTS;
  const bytes = Math.min(PAGE_BYTES, maxBufferedBytes / 2);
  const fit = Math.floor(bytes / Math.max(1, frameBytes / frames));
  return Math.min(MAX_PAGE_DOCUMENTS, Math.max(1, fit));
}

/**
 * The documents `ids` each at one seq, read consistently: every stream head is read before and
 * after one read of all the documents, and where a head did not move, nothing was written to
 * that document in between (atomic writes move the document and its head together), so the
 * state is the one at that seq. About two reads per document instead of `currentSnapshot`'s
 * three; a document whose head moved is read again on its own with `currentSnapshot`.
 * In the order of `ids`.
 */
export async function readSnapshots(
  host: Pick<SessionHost, 'head' | 'currentSnapshot'>,
  storage: CollectionReader,
  collection: string,
  ids: readonly string[],
): Promise<DocumentPosition[]> {
  if (ids.length === 0) return [];
  // One after another, not all at once: a page must not take every pooled connection from other requests.
  const before: (number | undefined)[] = [];
  for (const id of ids) {
    await nextTurn();
    before.push((await host.head(collection, id))?.lastSeq);
  }
  const docs = await storage.findMany({ _id: { $in: [...ids] } }, { sort: { _id: 1 }, limit: ids.length });
  const byId = new Map((docs as JsonObject[]).map((doc) => [doc._id as string, doc]));
  const out: DocumentPosition[] = [];
  for (const [i, id] of ids.entries()) {
    await nextTurn();
    const head = await host.head(collection, id);
    if (head?.lastSeq === before[i]) {
      const state = byId.get(id) ?? null;
      out.push({
        seq: head?.lastSeq ?? 0,
        version: state ? Number(state[storage.versionField] ?? 0) : 0,
        state,
        vectorClock: head?.vectorClock ?? {},
      });
    } else {
      out.push(await changing(host, collection, id));
    }
  }
  return out;
}

/** A document written to while its page was read: read on its own until it holds still. */
async function changing(
  host: Pick<SessionHost, 'currentSnapshot'>,
  collection: string,
  id: string,
): Promise<DocumentPosition> {
  const { seq, version, state, vectorClock } = await host.currentSnapshot(collection, id);
  return { seq, version, state, vectorClock };
}
