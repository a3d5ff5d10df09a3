import { describe, expect, it } from 'vitest';
import { memoryDatabase } from '../backends/memory/memory-database.js';
import { DocumentStorage } from '../storage/document-storage.js';
import type { Recorder, RecordingStorage } from '../storage/recording.js';
import type { BaseDocument, EditFunction, RetryOptions, Storage } from '../storage/types.js';
import { createEventStore } from './event-store.js';
import { EventSyncStorage } from './event-sync-storage.js';

interface Game extends BaseDocument {
  version: number;
  gold: number;
}

/** Another Storage<Game> than DocumentStorage (a plain object), handing every call to `inner`. */
function forwarding(inner: DocumentStorage<Game>): Storage<Game> {
  return {
    collection: inner.collection,
    versionField: inner.versionField,
    findOne: (id) => inner.findOne(id),
    findEntry: (id) => inner.findEntry(id),
    findMany: (filter, options) => inner.findMany(filter, options),
    findOneAndUpsert: (doc) => inner.findOneAndUpsert(doc),
    findOneAndUpdate: (id, edit, options) => inner.findOneAndUpdate(id, edit, options),
    updateOne: (id, operators, options) => inner.updateOne(id, operators, options),
    updateOneWithPipeline: (id, pipeline, options) => inner.updateOneWithPipeline(id, pipeline, options),
    // Overloaded, so its parameters take no types from the context: the implementation's.
    updateSection: ((id: string, path: never, edit: EditFunction<never>, options?: RetryOptions) =>
      inner.updateSection(id, path, edit, options)) as Storage<Game>['updateSection'],
    deleteOne: (id, options) => inner.deleteOne(id, options),
    withTransaction: (fn) => inner.withTransaction(fn),
    watch: (options) => inner.watch(options),
    close: () => inner.close(),
  };
}

async function open() {
  const db = memoryDatabase();
  const inner = new DocumentStorage<Game>(await db.collection('games'));
  return { inner, events: await createEventStore({ db }) };
}

describe('EventSyncStorage over any storage', () => {
  it('records atomically through any RecordingStorage, not only a DocumentStorage', async () => {
    const { inner, events } = await open();
    const recorders: Recorder[] = [];
    const storage: RecordingStorage<Game> = {
      ...forwarding(inner),
      withTransaction: (fn) => inner.withTransaction(fn),
      sharesDatabaseWith: (backend) => inner.sharesDatabaseWith(backend),
      recordingAs: (recorder) => {
        recorders.push(recorder);
        return inner.recordingAs(recorder);
      },
    };
    const sync = new EventSyncStorage<Game>(storage, events);
    await sync.findOneAndUpsert({ _id: 'g', gold: 1 });
    const { event } = await sync.updateOne('g', { $inc: { gold: 2 } }, { clientId: 'alice' });
    expect(recorders.map((r) => r.record.clientId)).toEqual(['server', 'alice']);
    expect(event).toMatchObject({ seq: 2, clientId: 'alice', operation: 'update' });
  });

  it("refuses 'atomic' over a storage that cannot record; 'best-effort' takes it", async () => {
    const { inner, events } = await open();
    expect(() => new EventSyncStorage<Game>(forwarding(inner), events)).toThrow(/consistency 'atomic'/);
    const bestEffort = new EventSyncStorage<Game>(forwarding(inner), events, { consistency: 'best-effort' });
    await bestEffort.findOneAndUpsert({ _id: 'g', gold: 1 });
    expect((await events.getEvents('games', 'g')).map((e) => e.operation)).toEqual(['create']);
  });
});
