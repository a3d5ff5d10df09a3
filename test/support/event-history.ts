/**
 * Writes a document through recording storage views (one per actor) and keeps, for every seq,
 * the document as the storage returned it and the event recorded: the oracle that replay,
 * compaction and catch-up are checked against.
 */
import { memoryDatabase } from '../../src/backends/memory/memory-database.js';
import type { Database } from '../../src/core/collection-backend.js';
import type { EventBackend } from '../../src/core/event-backend.js';
import type { SyncEvent, VectorClock } from '../../src/core/events.js';
import type { JsonObject } from '../../src/core/json.js';
import { SnapshotStore } from '../../src/events/snapshots.js';
import { createStorage } from '../../src/storage/create-storage.js';
import type { DocumentStorage } from '../../src/storage/document-storage.js';
import type { Storage } from '../../src/storage/types.js';

export interface Doc {
  _id: string;
  version: number;
  [key: string]: unknown;
}

export class History {
  /** `states[seq]`: the document right after event `seq` (`null` while deleted; `states[0]` is null). */
  readonly states: (JsonObject | null)[] = [null];
  /** `events[seq - 1]`: the event as recorded, before any compaction. */
  readonly events: SyncEvent[] = [];
  readonly #views = new Map<string, Storage<Doc>>();

  constructor(
    readonly storage: DocumentStorage<Doc>,
    readonly backend: EventBackend,
    readonly collection: string,
    readonly documentId: string,
  ) {}

  /** A storage view whose writes record events by `clientId`. */
  as(clientId: string): Storage<Doc> {
    let view = this.#views.get(clientId);
    if (!view) {
      view = this.storage.recordingAs({
        record: { clientId },
        onEvent: (event, doc) => {
          if (event.documentId !== this.documentId) return;
          if (event.seq !== this.states.length) {
            throw new Error(`event seq ${event.seq} heard after seq ${this.states.length - 1}`);
          }
          this.states.push(doc ? structuredClone(doc) : null);
          this.events.push(structuredClone(event));
        },
      });
      this.#views.set(clientId, view);
    }
    return view;
  }

  get lastSeq(): number {
    return this.events.length;
  }

  clockAt(seq: number): VectorClock {
    return seq === 0 ? {} : this.events[seq - 1]!.vectorClock;
  }

  versionAt(seq: number): number {
    return seq === 0 ? 0 : this.events[seq - 1]!.version;
  }

  /** The stored document now (`null` when absent). */
  async current(): Promise<JsonObject | null> {
    return ((await this.storage.findOne(this.documentId)) as JsonObject | undefined) ?? null;
  }
}

export async function openHistory(db: Database, collection: string, documentId = 'doc1'): Promise<History> {
  const storage = (await createStorage<Doc>({ db, collection })) as DocumentStorage<Doc>;
  return new History(storage, await db.events(), collection, documentId);
}

let counter = 0;
/** A collection name unique in this run. */
export function freshCollection(prefix = 'ev'): string {
  counter += 1;
  return `${prefix}_${process.pid}_${counter}_${Math.random().toString(36).slice(2, 6)}`;
}

/**
 * A fixed history of `doc1` by three actors: create, updates of every kind, sections, a delete
 * and a re-create, more updates. 24 events.
 */
export async function writeStandardHistory(h: History): Promise<void> {
  const server = h.as('server');
  const alice = h.as('alice');
  const bob = h.as('bob');
  const id = h.documentId;
  await server.findOneAndUpsert({ _id: id, name: 'game', gold: 0, tags: [], inv: {} });
  await alice.updateOne(id, { $inc: { gold: 10 } });
  await bob.updateOne(id, { $push: { tags: 'a' } });
  await alice.findOneAndUpdate(id, (d) => {
    d.level = 1;
  });
  await bob.updateSection(id, 'inv', (s: Record<string, unknown>) => {
    s.sword = 1;
  });
  await server.updateOne(id, { $set: { 'nested.deep': { x: [1, 2] } } });
  await alice.updateOne(id, { $push: { tags: 'b' } });
  await bob.updateOne(id, { $unset: { level: '' } });
  await alice.updateSection(id, 'inv', (s: Record<string, unknown>) => {
    s.shield = 2;
  });
  await server.updateOne(id, { $inc: { gold: -3 } });
  await bob.updateOneWithPipeline(id, [{ $set: { doubled: { $multiply: ['$gold', 2] } } }]);
  await alice.deleteOne(id);
  await bob.findOneAndUpsert({ _id: id, name: 'again', gold: 100 });
  for (let i = 0; i < 6; i++) await (i % 2 ? alice : bob).updateOne(id, { $inc: { gold: i + 1 } });
  await server.updateOne(id, { $set: { tags: ['x', 'y', 'z'] } });
  await alice.updateOne(id, { $push: { tags: 'w' } });
  await bob.findOneAndUpdate(id, (d) => ({ ...d, name: 'renamed' }));
  await alice.updateOne(id, { $set: { 'deep.a.b': null } });
  await server.updateOne(id, { $inc: { gold: 1 } });
}

/** A fresh memory database with the standard history written into one document. */
export async function standardHistory(): Promise<History> {
  const h = await openHistory(memoryDatabase(), freshCollection());
  await writeStandardHistory(h);
  return h;
}

/** Stores the snapshot the history had at `seq`. */
export function snapshotAt(h: History, seq: number) {
  return new SnapshotStore(h.backend).create(h.collection, h.documentId, {
    seq,
    version: h.versionAt(seq),
    state: h.states[seq]!,
    vectorClock: h.clockAt(seq),
  });
}
