/**
 * The SQL backend on PGlite: one in-memory PGlite for this whole file (each costs ~300-700 MB);
 * every `open()` is another database instance on it, tests keep apart by collection name.
 */
import type { PGlite } from '@electric-sql/pglite';
import fc from 'fast-check';
import { Query } from 'mingo';
import { afterAll, describe, expect, it } from 'vitest';
import { translateFilter } from '../../src/backends/sql/filter.js';
import type { JsonObject, JsonValue } from '../../src/core/json.js';
import { pgliteDatabase, pgliteDriver } from '../../src/pglite.js';
import type { BackendTarget } from '../conformance/backend-fixtures.js';
import { catchupSuite } from '../conformance/catchup.suite.js';
import { collectionBackendSuite } from '../conformance/collection-backend.suite.js';
import { diffsSuite } from '../conformance/diffs.suite.js';
import { eventBackendSuite } from '../conformance/event-backend.suite.js';
import { eventsSuite } from '../conformance/events.suite.js';
import { storageSuite } from '../conformance/storage.suite.js';
import { closeSharedPglite, openPgliteDb, sharedPglite, uniqueCollection } from '../support/databases.js';
import { injectEventFault } from '../support/event-faults.js';
import { sqlEventsSuite } from './sql-events.js';
import { sqlPrimitivesSuite } from './sql-primitives.js';

afterAll(closeSharedPglite);

const backend: BackendTarget = {
  name: 'pglite',
  open: () => openPgliteDb(),
  openPeers: async () => [await openPgliteDb(), await openPgliteDb()],
  injectEventFault,
};
collectionBackendSuite(backend);
eventBackendSuite(backend);

sqlPrimitivesSuite({ name: 'pglite', open: (options) => openPgliteDb(options) });

sqlEventsSuite({ name: 'pglite', open: (options) => openPgliteDb(options) });

storageSuite({ name: 'pglite', open: () => openPgliteDb() });

diffsSuite({ name: 'pglite', open: () => openPgliteDb(), runs: 300 });

catchupSuite({ name: 'pglite', open: () => openPgliteDb(), propertyRuns: 20 });

eventsSuite({ name: 'pglite', open: () => openPgliteDb(), injectEventFault });

describe('pglite: one connection', () => {
  it('fails, rather than hangs, when a transaction queries the database outside itself', async () => {
    const db = await openPgliteDb();
    const c = await db.collection(uniqueCollection());
    const error = await c
      .transaction(async (tx) => {
        await tx.insert({ id: 'a', version: 1, data: { _id: 'a', version: 1 } });
        return c.get('a');
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/one transaction at a time/);
    expect(await c.get('a')).toBeUndefined();
    await db.close();
  });
});

describe('pglite: filters against mingo, random documents and filters', () => {
  // Small alphabets so that filters hit documents; nested arrays and mixed types on purpose.
  const key = fc.constantFrom('a', 'b', 'c');
  const scalar = fc.oneof(
    fc.integer({ min: -2, max: 3 }),
    fc.constantFrom(0.5, 'x', 'y', '', 'é', '\uffff', '😀', true, false, null),
  );
  const { value } = fc.letrec<{ value: JsonValue }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small' },
      scalar,
      scalar,
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(key, tie('value'), { maxKeys: 3 }),
    ),
  }));
  const document = fc.dictionary(key, value, { maxKeys: 3 });
  const path = fc
    .array(fc.oneof(key, key, key, fc.constantFrom('0', '1')), { minLength: 1, maxLength: 4 })
    .map((k) => k.join('.'));
  const condition = fc.oneof(
    scalar,
    value,
    ...['$eq', '$ne', '$gt', '$gte', '$lt', '$lte'].map((op) => fc.record({ [op]: scalar })),
    fc.record({ $in: fc.array(scalar, { maxLength: 3 }) }),
    fc.record({ $nin: fc.array(scalar, { maxLength: 3 }) }),
    fc.record({ $exists: fc.boolean() }),
    fc.record({ $size: fc.integer({ min: 0, max: 2 }) }),
    fc.record({ $all: fc.array(scalar, { maxLength: 2 }) }),
    fc.record({ $elemMatch: fc.record({ $gt: fc.integer({ min: 0, max: 2 }) }) }),
  );
  const { filter } = fc.letrec<{ leaf: Record<string, unknown>; filter: Record<string, unknown> }>((tie) => ({
    leaf: fc.dictionary(path, condition, { minKeys: 1, maxKeys: 2 }),
    filter: fc.oneof(
      { depthSize: 'small' },
      tie('leaf'),
      tie('leaf'),
      fc.record({ $or: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
      fc.record({ $and: fc.array(tie('filter'), { minLength: 1, maxLength: 3 }) }),
    ),
  }));

  it('find() returns what mingo matches, and an exact translation alone matches exactly that', async () => {
    const db = await openPgliteDb({ notify: false });
    const name = uniqueCollection('fuzz');
    const c = await db.collection(name);
    let exact = 0;
    const docs: JsonObject[] = fc
      .sample(document, { numRuns: 60, seed: 7 })
      .map((d, i) => ({ ...d, _id: `d${i}` }));
    for (const d of docs) await c.insert({ id: d._id as string, version: 1, data: d });
    await fc.assert(
      fc.asyncProperty(filter, async (f) => {
        let query: Query;
        try {
          query = new Query(f);
        } catch {
          return; // mingo rejects the filter; so will the storage
        }
        // mingo throws on some of these (e.g. hashing for `$in`); the storage can't match those either.
        const expected = docs.filter((d) => tryTest(query, d)).map((d) => d._id);
        const found = new Set((await c.find(f)).map((d) => d._id));
        expect(expected.filter((id) => !found.has(id))).toEqual([]);
        // What sort/skip/limit pushdown relies on: the SQL condition itself is mingo's match.
        const where = translateFilter(f, 2);
        // Where mingo throws on a document (its `$in` on objects), it has no answer to compare with.
        if (!where.exact || docs.some((d) => throws(query, d))) return;
        exact++;
        const rows = await db.driver.query<{ id: string }>(
          `SELECT id FROM eventsync_documents WHERE collection = $1 AND ${where.sql} ORDER BY id`,
          [name, ...where.params],
        );
        expect(rows.map((r) => r.id).sort(), JSON.stringify(f)).toEqual([...expected].sort());
      }),
      { numRuns: 400, seed: 42 },
    );
    expect(exact).toBeGreaterThan(10);
    await db.close();
  });

  it('filters translated exactly match exactly what mingo matches', async () => {
    const db = await openPgliteDb({ notify: false });
    const name = uniqueCollection('exact');
    const c = await db.collection(name);
    const docs: JsonObject[] = fc
      .sample(document, { numRuns: 80, seed: 8 })
      .map((d, i) => ({ ...d, _id: `d${i}` }));
    for (const d of docs) await c.insert({ id: d._id as string, version: 1, data: d });
    const operand = scalar.filter((v) => v !== null);
    const exactCondition = fc.oneof(
      operand,
      ...['$eq', '$gt', '$gte', '$lt', '$lte'].map((op) => fc.record({ [op]: operand })),
      fc.record({ $in: fc.array(operand, { maxLength: 3 }) }),
      fc.constant({ $exists: true }),
    );
    const { exactFilter } = fc.letrec<{
      exactLeaf: Record<string, unknown>;
      exactFilter: Record<string, unknown>;
    }>((tie) => ({
      exactLeaf: fc.dictionary(key, exactCondition, { minKeys: 1, maxKeys: 2 }),
      exactFilter: fc.oneof(
        { depthSize: 'small' },
        tie('exactLeaf'),
        tie('exactLeaf'),
        fc.record({ $or: fc.array(tie('exactFilter'), { minLength: 1, maxLength: 3 }) }),
        fc.record({ $and: fc.array(tie('exactFilter'), { minLength: 1, maxLength: 3 }) }),
      ),
    }));
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(exactFilter, async (f) => {
        const where = translateFilter(f, 2);
        const query = new Query(f);
        if (!where.exact || docs.some((d) => throws(query, d))) return;
        checked++;
        const expected = docs.filter((d) => query.test(d)).map((d) => d._id as string);
        const rows = await db.driver.query<{ id: string }>(
          `SELECT id FROM eventsync_documents WHERE collection = $1 AND ${where.sql}`,
          [name, ...where.params],
        );
        expect(rows.map((r) => r.id).sort(), JSON.stringify(f)).toEqual(expected.sort());
      }),
      { numRuns: 400, seed: 43 },
    );
    expect(checked).toBeGreaterThan(200);
    await db.close();
  });
});

function throws(query: Query, doc: JsonObject): boolean {
  try {
    query.test(doc);
    return false;
  } catch {
    return true;
  }
}

function tryTest(query: Query, doc: JsonObject): boolean {
  try {
    return query.test(doc);
  } catch {
    return false;
  }
}

describe('pglite: entry point', () => {
  it('leaves a PGlite it was given open', async () => {
    const pglite = await sharedPglite();
    const db = await pgliteDatabase({ db: pglite });
    expect(db.kind).toBe('pglite');
    await db.close();
    expect(pglite.closed).toBe(false);
  });

  it('closes a PGlite the driver owns', async () => {
    // A stand-in: a second real PGlite in this file would cost another ~700 MB.
    let closed = false;
    const fake = {
      get closed() {
        return closed;
      },
      close: async () => {
        closed = true;
      },
    } as unknown as PGlite;
    await pgliteDriver(fake).close();
    expect(closed).toBe(false);
    await pgliteDriver(fake, { closeDb: true }).close();
    expect(closed).toBe(true);
  });
});
