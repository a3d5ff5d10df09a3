/**
 * A child process for the multi-process event log tests (pg.int.test.ts): concurrent writers
 * editing documents through the real storage stack (`createStorage` on `pgDatabase`), each
 * recording its events as its own client id.
 *
 *   node --import tsx test/support/event-writer.ts '<json WriterConfig>'
 *
 * Prints `progress <n>` lines (successful writes so far) while it runs, then one line
 * `done <json>` with the events each writer heard committed: `{ [clientId]: { [documentId]: n } }`.
 * With `operations` omitted it runs until killed (the crash test SIGKILLs it).
 */
import { createStorage, type DocumentStorage, EventSyncError } from '../../src/index.js';
import { pgDatabase } from '../../src/pg.js';

export interface WriterConfig {
  databaseUrl: string;
  /** The connections' application_name, so the parent can wait for them to be gone. */
  applicationName: string;
  collection: string;
  documents: string[];
  /** One writer (its own storage instance, so its own retry loop and no shared queue) per id. */
  clientIds: string[];
  /** Writes per writer; omitted: forever. */
  operations?: number;
  /** Writers whose id is listed here sometimes delete a document (re-created by whoever edits it next). */
  deleters?: string[];
  /** Print `progress` every this many writes. Default 50. */
  progressEvery?: number;
}

interface Doc {
  _id: string;
  version: number;
  [key: string]: unknown;
}

const config = JSON.parse(process.argv[2] ?? '{}') as WriterConfig;
const retry = { maxRetries: 1000, retryDelay: 1, maxRetryDelay: 20, timeout: 60_000 };
const pick = <V>(values: readonly V[]): V => values[Math.floor(Math.random() * values.length)]!;

const url = new URL(config.databaseUrl);
url.searchParams.set('application_name', config.applicationName);
const db = await pgDatabase({
  connectionString: url.toString(),
  max: config.clientIds.length,
  notify: false,
});

const heard: Record<string, Record<string, number>> = {};
let writes = 0;
const progressEvery = config.progressEvery ?? 50;

async function writer(clientId: string): Promise<void> {
  const storage = (await createStorage<Doc>({ db, collection: config.collection })) as DocumentStorage<Doc>;
  const mine: Record<string, number> = {};
  heard[clientId] = mine;
  const rec = storage.recordingAs({
    record: { clientId, metadata: { by: clientId } },
    onEvent: (event) => {
      mine[event.documentId] = (mine[event.documentId] ?? 0) + 1;
    },
  });
  const deleter = config.deleters?.includes(clientId) ?? false;
  for (let i = 0; config.operations === undefined || i < config.operations; i++) {
    const id = pick(config.documents);
    const roll = Math.random();
    try {
      if (deleter && roll < 0.15) {
        await rec.deleteOne(id);
      } else if (roll < 0.3) {
        await rec.updateSection(
          id,
          pick(['inventory', 'stats']),
          (section: Record<string, unknown>) => {
            section[pick(['a', 'b', 'c'])] = Math.floor(Math.random() * 1000);
            section.last = clientId;
          },
          retry,
        );
      } else {
        await rec.findOneAndUpdate(
          id,
          (d) => {
            d.count = ((d.count as number | undefined) ?? 0) + 1;
            d.by = clientId;
            const log = (d.log as string[] | undefined) ?? [];
            log.push(`${clientId}:${i}`);
            d.log = log.length > 5 ? log.slice(-5) : log;
            if (Math.random() < 0.3) d[`k${Math.floor(Math.random() * 4)}`] = { nested: [i, { s: 'é"\\' }] };
            if (Math.random() < 0.2) delete d[`k${Math.floor(Math.random() * 4)}`];
          },
          retry,
        );
      }
    } catch (error) {
      if (!EventSyncError.is(error, 'not_found')) throw error;
      await rec.findOneAndUpsert({ _id: id, count: 0, created: clientId, inventory: {}, stats: {} });
    }
    writes++;
    if (writes % progressEvery === 0) process.stdout.write(`progress ${writes}\n`);
  }
}

await Promise.all(config.clientIds.map(writer));
process.stdout.write(`done ${JSON.stringify(heard)}\n`);
await db.close();
