/**
 * Checks I1 and I2 over a whole collection after the fact: for every document, its events run
 * 1..N with no gap, every actor's counter runs 1..k over that actor's own events, each event's
 * vector clock is the previous one with its own actor's counter + 1, the last event's version is
 * the stored version, and replaying the events from nothing (RFC 6902 with fast-json-patch; a
 * creation is `add ''`, a delete gives null) reproduces the stored document exactly.
 */
import { applyPatch, type Operation } from 'fast-json-patch';
import { expect } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import type { SyncEvent, VectorClock } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';

export interface LogSummary {
  documents: number;
  events: number;
  /** Per actor: events of theirs per document. */
  byActor: Record<string, Record<string, number>>;
  deletes: number;
  /** Creations of a document that had been deleted before. */
  recreations: number;
}

export function replay(events: SyncEvent[]): JsonObject | null {
  let state: JsonObject | null = null;
  for (const event of events) {
    if (event.operation === 'delete') {
      state = null;
      continue;
    }
    const ops = structuredClone(event.diff!.jsonPatch) as Operation[];
    state = applyPatch(structuredClone(state), ops, true).newDocument as JsonObject;
  }
  return state;
}

export async function checkEventLog(db: SqlDatabase, collection: string): Promise<LogSummary> {
  const events = await db.events();
  const stored = new Map<string, JsonObject>();
  for (const data of await (await db.collection(collection)).find({})) stored.set(data._id as string, data);
  const streams = (await events.streams(collection, undefined, 100_000)).map(([, id]) => id);
  // Every stored document has events (no version without its event).
  expect([...stored.keys()].filter((id) => !streams.includes(id))).toEqual([]);
  const summary: LogSummary = {
    documents: streams.length,
    events: 0,
    byActor: {},
    deletes: 0,
    recreations: 0,
  };
  for (const id of streams) {
    const log = await events.list(collection, id);
    summary.events += log.length;
    expect(
      log.map((e) => e.seq),
      `seqs of ${id}`,
    ).toEqual(log.map((_, i) => i + 1));
    let clock: VectorClock = {};
    let deleted = false;
    for (const event of log) {
      const expected = { ...clock, [event.clientId]: (clock[event.clientId] ?? 0) + 1 };
      expect(event.vectorClock, `vector clock of ${id}/${event.seq}`).toEqual(expected);
      clock = event.vectorClock;
      const mine = summary.byActor[event.clientId] ?? {};
      summary.byActor[event.clientId] = mine;
      mine[id] = (mine[id] ?? 0) + 1;
      if (event.operation === 'delete') {
        summary.deletes++;
        deleted = true;
      } else if (event.operation === 'create' && deleted) {
        summary.recreations++;
        deleted = false;
      }
    }
    const head = await events.head(collection, id);
    expect(head, `head of ${id}`).toEqual({ lastSeq: log.length, vectorClock: clock });
    const doc = stored.get(id);
    const last = log[log.length - 1]!;
    if (doc === undefined) {
      expect(last.operation, `last event of deleted ${id}`).toBe('delete');
    } else {
      expect(last.version, `version of ${id}`).toBe(doc.version);
    }
    expect(replay(log), `replay of ${id}`).toEqual(doc ?? null);
  }
  return summary;
}
