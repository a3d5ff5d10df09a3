/**
 * What only the SQL event log does (the event backend and the recording writes straight, no
 * EventSyncStorage on top): recording with notifications off, and how many statements the feed
 * and a flush of acknowledgements take. Run by pglite.int.test.ts and pg.int.test.ts against
 * their driver; what every backend must do is in test/conformance/event-backend.suite.ts (the
 * primitives) and events.suite.ts (EventSyncStorage).
 */
import { describe, expect, it } from 'vitest';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import type { EventRecord } from '../../src/core/event-backend.js';
import type { SyncEvent } from '../../src/core/events.js';
import { SyncService } from '../../src/index.js';
import { diff, doc, draft, sectionWrite, withDatabase } from '../conformance/backend-fixtures.js';
import { openEvents } from '../conformance/event-backend.suite.js';
import { countingDatabase } from '../support/counting-driver.js';

export interface SqlEventsTarget {
  name: string;
  /** A database instance; two calls are two instances on the same data (like two server processes). */
  open(options?: { notify?: boolean }): Promise<SqlDatabase>;
}

export function sqlEventsSuite(target: SqlEventsTarget): void {
  describe(`${target.name}: SQL event log`, () => {
    const withDb = (fn: (db: SqlDatabase) => Promise<void>, options?: { notify?: boolean }) =>
      withDatabase(() => target.open(options), fn);

    it('records the same with notifications off', () =>
      withDb(
        async (db) => {
          const [c, events, name] = await openEvents(db);
          const r: EventRecord = { clientId: 'x' };
          expect((await c.insert(doc('a', 1, { s: {} }), r))?.event?.seq).toBe(1);
          expect((await c.replace(doc('a', 2, { s: {} }), 1, diff(2), r))?.event?.seq).toBe(2);
          expect((await c.replaceSection(sectionWrite('a', 0, { version: 1 }), r))?.event?.seq).toBe(3);
          expect((await c.delete('a', r))?.event?.seq).toBe(4);
          expect((await events.append(draft(name, 'a', 'x')))?.seq).toBe(5);
          expect((await events.list(name, 'a')).map((e) => [e.operation, e.vectorClock.x])).toEqual([
            ['create', 1],
            ['update', 2],
            ['update_section', 3],
            ['delete', 4],
            ['update', 5],
          ]);
          await expect(events.watchCommits(() => {})).rejects.toThrow(/notify: false/);
        },
        { notify: false },
      ));

    it('reads the whole feed in one statement when no serverSeq is missing; past a hole, settles first', () =>
      withDb(async (db) => {
        const counted = await countingDatabase(db);
        try {
          const [c, , name] = await openEvents(db);
          const events = await counted.db.events();
          const r: EventRecord = { clientId: 'f' };
          const start = (await events.append(draft(name, 'start', 'f'))).serverSeq;
          await c.insert(doc('a', 1), r);
          await c.replace(doc('a', 2), 1, diff(2), r);
          const ours = (all: SyncEvent[]) => all.filter((e) => e.collection === name);
          // Other test files write to the same PostgreSQL: a writer of theirs in flight is a hole
          // for a moment. One of a few reads shows the single statement.
          const reads: number[] = [];
          for (let i = 0; i < 3 && !reads.includes(1); i++) {
            const { result, statements } = await counted.during(() =>
              events.listAfterServerSeq(undefined, start, 1000),
            );
            expect(ours(result).map((e) => `${e.documentId}/${e.seq}`)).toEqual(['a/1', 'a/2']);
            reads.push(statements.length);
          }
          expect(reads).toContain(1);

          // A transaction that rolls back took a serverSeq and leaves a hole: the read after it
          // settles (sequence, horizon, read) and returns what follows the hole.
          const hole = (await events.append(draft(name, 'start', 'f', 2))).serverSeq;
          await expect(
            c.transaction(async (tx) => {
              await tx.insert(doc('gone', 1), r);
              throw new Error('rolled back');
            }),
          ).rejects.toThrow('rolled back');
          const after = (await c.replace(doc('a', 3), 2, diff(3), r))!.event!;
          const { result, statements } = await counted.during(() =>
            events.listAfterServerSeq(undefined, hole, 1000),
          );
          expect(ours(result).map((e) => e.serverSeq)).toEqual([after.serverSeq]);
          expect(statements.length).toBeGreaterThanOrEqual(4);
          // One collection's feed cannot tell holes from other collections' events: it always settles.
          const { statements: ofOne } = await counted.during(() => events.listAfterServerSeq(name, hole, 10));
          expect(ofOne.length).toBeGreaterThanOrEqual(3);
        } finally {
          await counted.db.close();
        }
      }));

    it('writes a flush of acknowledgements in one statement, whatever their number', () =>
      withDb(async (db) => {
        const counted = await countingDatabase(db);
        try {
          const [c, , name] = await openEvents(db);
          const r: EventRecord = { clientId: 'w' };
          for (const id of ['a', 'b']) {
            await c.insert(doc(id, 1), r);
            for (let v = 2; v <= 5; v++) await c.replace(doc(id, v), v - 1, diff(v), r);
          }
          const service = new SyncService(await counted.db.events(), { ackFlushMs: 60_000 });
          const clients = Array.from({ length: 100 }, (_, i) => `${name}_c${i}`);
          // 100 clients × 2 documents × 5 acknowledgements each, as a server's sessions make them.
          const { statements: noted } = await counted.during(async () => {
            for (const client of clients) await service.registerClient(client);
            for (let seq = 1; seq <= 5; seq++)
              for (const client of clients)
                for (const id of ['a', 'b'])
                  await service.acknowledge(client, name, id, seq, undefined, { reached: true });
          });
          expect(noted).toEqual([]);
          const { statements: flushed } = await counted.during(() => service.flush());
          expect(flushed.length).toBe(1);
          const events = await db.events();
          expect(await events.getStateVector(clients[42]!, name, 'b')).toMatchObject({
            lastSeq: 5,
            vectorClock: { w: 5 },
          });
          expect(await events.isRegistered(clients[99]!)).toBe(true);
          // Nothing noted since: a flush sends nothing.
          expect((await counted.during(() => service.flush())).statements).toEqual([]);
          // Older positions in a later batch leave the stored ones, and an older seq gets its own clock.
          const other = new SyncService(await counted.db.events(), { ackFlushMs: 60_000 });
          await other.registerClient(clients[0]!);
          await other.acknowledge(clients[0]!, name, 'a', 3, undefined, { reached: true });
          await expect(other.acknowledge(`${name}_new`, name, 'a', 3)).rejects.toMatchObject({
            code: 'not_found',
          });
          await other.registerClient(`${name}_new`);
          await other.acknowledge(`${name}_new`, name, 'a', 3, undefined, { reached: true });
          expect((await counted.during(() => other.close())).statements.length).toBe(1);
          expect((await events.getStateVector(clients[0]!, name, 'a'))?.lastSeq).toBe(5);
          expect(await events.getStateVector(`${name}_new`, name, 'a')).toMatchObject({
            lastSeq: 3,
            vectorClock: { w: 3 },
          });
        } finally {
          await counted.db.close();
        }
      }));
  });
}
