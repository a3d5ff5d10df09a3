/** Hand-made events of one document for the client's unit tests: create, then `gold` changes. */
import { creationDiff } from '../../src/core/drafts.js';
import type { SyncEvent } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';

export function created(seq: number, doc: JsonObject, documentId = 'd1', collection = 'games'): SyncEvent {
  return {
    id: `e${seq}`,
    collection,
    documentId,
    seq,
    serverSeq: seq,
    timestamp: 0,
    operation: 'create',
    diff: creationDiff({ _id: documentId, version: 1, ...doc }, 1),
    version: 1,
    clientId: 'writer',
    vectorClock: { writer: seq },
  };
}

/** Sets `gold` to `gold` (the document must exist). */
export function setGold(seq: number, gold: number, documentId = 'd1', collection = 'games'): SyncEvent {
  return {
    id: `e${seq}`,
    collection,
    documentId,
    seq,
    serverSeq: seq,
    timestamp: 0,
    operation: 'update',
    diff: {
      hasChanges: true,
      version: seq,
      jsonPatch: [
        { op: 'replace', path: '/gold', value: gold },
        { op: 'replace', path: '/version', value: seq },
      ],
      mergePatch: { gold, version: seq },
      mongoUpdate: { $set: { gold, version: seq } },
    },
    version: seq,
    clientId: 'writer',
    vectorClock: { writer: seq },
  };
}

export function deleted(seq: number, documentId = 'd1', collection = 'games'): SyncEvent {
  return {
    id: `e${seq}`,
    collection,
    documentId,
    seq,
    serverSeq: seq,
    timestamp: 0,
    operation: 'delete',
    version: seq,
    clientId: 'writer',
    vectorClock: { writer: seq },
  };
}

/** create at 1, then gold = 10, 20, … at 2, 3, …: events 1..n. */
export function history(n: number, documentId = 'd1', collection = 'games'): SyncEvent[] {
  const out = [created(1, { gold: 0 }, documentId, collection)];
  for (let seq = 2; seq <= n; seq++) out.push(setGold(seq, (seq - 1) * 10, documentId, collection));
  return out;
}

export const stateAt = (seq: number, documentId = 'd1'): JsonObject => ({
  _id: documentId,
  version: seq === 1 ? 1 : seq,
  gold: (seq - 1) * 10,
});
