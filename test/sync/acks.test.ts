/**
 * What acknowledgements cost the database through the sync engine: sessions' `ack` frames are
 * held in memory and written in one statement per `ackFlushMs`, and closing the engine writes
 * what is still held. Statements are counted through a wrapping driver, on PGlite and PostgreSQL
 * (not `syncBackends`: the memory backend has no statements to count).
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { Session } from '../../src/sync/session.js';
import { countingDatabase } from '../support/counting-driver.js';
import { closeSharedPglite, openPg, openPgliteDb, uniqueCollection } from '../support/databases.js';

afterAll(closeSharedPglite);

interface Counter {
  _id: string;
  version: number;
  n: number;
  [key: string]: unknown;
}

const SESSIONS = 20;
const FLUSH_MS = 300;

/** Statements of acknowledgements (state vectors, clients), not of the feed or the writes. */
const aboutAcks = (statements: string[]) =>
  statements.filter((s) => s.includes('eventsync_state_vectors') || s.includes('eventsync_clients'));

interface Client {
  session: Session;
  frames: { type: string; [key: string]: unknown }[];
}

function connect(engine: SyncEngine, clientId: string): Client {
  const frames: Client['frames'] = [];
  const session = engine.connect(
    { headers: {}, url: '/sync' },
    { send: (frame) => frames.push(JSON.parse(frame)), close: () => {} },
  );
  void session.receive(JSON.stringify({ type: 'hello', protocol: 1, clientId }));
  return { session, frames };
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const lastSeq = (c: Client) =>
  Math.max(0, ...c.frames.filter((f) => f.type === 'event').map((f) => (f.event as { seq: number }).seq));

describe.each([
  ['pglite', () => openPgliteDb()],
  ['pg', () => openPg()],
] as [string, () => Promise<SqlDatabase>][])('acknowledgements through the engine: %s', (_name, open) => {
  it('cost one statement per flush whatever the number of acks, and closing the engine writes the rest', async () => {
    const base = await open();
    const counted = await countingDatabase(base);
    const engine = await SyncEngine.create({ db: counted.db, limits: { ackFlushMs: FLUSH_MS } });
    try {
      const collection = uniqueCollection('acks');
      const docs = await engine.collection<Counter>(collection);
      await docs.findOneAndUpsert({ _id: 'd', n: 0 }, { clientId: 'w' });
      for (let i = 0; i < 4; i++) await docs.updateOne('d', { $inc: { n: 1 } }, { clientId: 'w' });
      const clients = Array.from({ length: SESSIONS }, (_, i) => connect(engine, `${collection}_${i}`));
      for (const c of clients) {
        void c.session.receive(JSON.stringify({ type: 'subscribe', sub: 's', collection, documentId: 'd' }));
      }
      await until(() => clients.every((c) => c.frames.some((f) => f.type === 'synced')));

      // Every session acknowledges each of the 5 events, as the SDK would while they arrive.
      const start = counted.statements.length;
      for (let seq = 1; seq <= 5; seq++) {
        await Promise.all(
          clients.map((c) =>
            c.session.receive(JSON.stringify({ type: 'ack', collection, documentId: 'd', seq })),
          ),
        );
      }
      expect(clients.flatMap((c) => c.frames.filter((f) => f.type === 'error'))).toEqual([]);
      expect(aboutAcks(counted.statements.slice(start))).toEqual([]);
      await until(() => aboutAcks(counted.statements.slice(start)).length > 0, FLUSH_MS * 10);
      await new Promise((resolve) => setTimeout(resolve, FLUSH_MS * 2));
      expect(aboutAcks(counted.statements.slice(start))).toHaveLength(1);
      const events = await base.events();
      const head = await events.head(collection, 'd');
      for (const i of [0, SESSIONS - 1]) {
        expect(await events.isRegistered(`${collection}_${i}`)).toBe(true);
        expect(await events.getStateVector(`${collection}_${i}`, collection, 'd')).toMatchObject({
          lastSeq: 5,
          vectorClock: head!.vectorClock,
        });
      }

      // Two more events, acknowledged, and the engine closed before the next flush is due.
      await docs.updateOne('d', { $inc: { n: 1 } }, { clientId: 'w' });
      await docs.updateOne('d', { $inc: { n: 1 } }, { clientId: 'x' });
      await until(() => clients.every((c) => lastSeq(c) === 7));
      const before = counted.statements.length;
      await Promise.all(
        clients.map((c) =>
          c.session.receive(JSON.stringify({ type: 'ack', collection, documentId: 'd', seq: 6 })),
        ),
      );
      await engine.close();
      expect(aboutAcks(counted.statements.slice(before))).toHaveLength(1);
      const clock6 = (await events.list(collection, 'd', { afterSeq: 5, toSeq: 6 }))[0]!.vectorClock;
      expect(await events.getStateVector(`${collection}_3`, collection, 'd')).toMatchObject({
        lastSeq: 6,
        vectorClock: clock6,
      });
    } finally {
      await engine.close();
      await counted.db.close();
      await base.close();
    }
  });
});
