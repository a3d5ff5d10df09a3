/**
 * The one storage conformance suite. Every backend runs it unchanged through a factory:
 * `open()` returns a new handle on the same data each time (a new pool on PostgreSQL), so
 * "several instances" means what it means in production.
 */

import fc from 'fast-check';
import { applyPatch } from 'fast-json-patch';
import { apply as applyMergePatch } from 'json-merge-patch';
import { update as mingoUpdate, Query } from 'mingo';
import { afterAll, describe, expect, it } from 'vitest';
import type { JsonObject } from '../../src/core/json.js';
import { createStorage, type Database, EventSyncError, type Storage } from '../../src/index.js';
import { findInMemory } from '../../src/storage/mongo.js';
import type { Filter } from '../../src/storage/types.js';
import {
  filterCorpus,
  filterDocuments,
  mixedDocuments,
  mixedSorts,
  pageCorpus,
  sortCorpus,
  sortFilterNames,
} from './filter-corpus.js';

export interface StorageBackendFactory {
  name: string;
  open(): Promise<Database>;
}

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  level?: number;
  tags?: string[];
  items?: { name: string; qty: number }[];
  inventory?: Record<string, unknown>;
  stats?: Record<string, unknown>;
  [key: string]: unknown;
}

let collections = 0;

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

/**
 * Holds an edit at one point: `reached` resolves once the edit got there (so its read happened
 * before what the test does next), `open()` lets it go on.
 */
const gateAt = () => {
  const reached = deferred();
  const opened = deferred();
  return {
    reached: reached.promise,
    open: opened.resolve,
    async pass() {
      reached.resolve();
      await opened.promise;
    },
  };
};

const clone = <V>(v: V): V => structuredClone(v);

export function storageSuite(backend: StorageBackendFactory): void {
  describe(`storage conformance: ${backend.name}`, () => {
    const opened: Database[] = [];
    afterAll(async () => {
      await Promise.all(opened.map((db) => db.close()));
    });

    /** `count` storages on one fresh collection, each on its own database handle. */
    async function storages<T extends Game = Game>(
      count = 1,
      versionField?: string,
      options: { filterIndex?: boolean } = {},
    ): Promise<Storage<T>[]> {
      const collection = `conf_${process.pid}_${++collections}`;
      return Promise.all(
        Array.from({ length: count }, async () => {
          const db = await backend.open();
          opened.push(db);
          return createStorage<T>({ db, collection, ...options, ...(versionField ? { versionField } : {}) });
        }),
      );
    }
    const one = async () => (await storages(1))[0]!;

    const expectCode = async (promise: Promise<unknown>, code: string) => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(EventSyncError.is(error), `expected error code ${code}, got ${String(error)}`).toBe(true);
      expect((error as EventSyncError).code).toBe(code);
    };

    describe('create and read', () => {
      it('creates with a generated ObjectId and version 1, and finds it', async () => {
        const games = await one();
        const { doc, created } = await games.findOneAndUpsert({ name: 'a', gold: 0 });
        expect(created).toBe(true);
        expect(doc._id).toMatch(/^[0-9a-f]{24}$/);
        expect(doc.version).toBe(1);
        expect(await games.findOne(doc._id)).toEqual(doc);
        expect(await games.findOne('absent')).toBeUndefined();
      });

      it('upsert of an existing id returns it unchanged', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g1', name: 'first', gold: 1 });
        const again = await games.findOneAndUpsert({ _id: 'g1', name: 'second', gold: 2 });
        expect(again.created).toBe(false);
        expect(again.doc).toMatchObject({ name: 'first', gold: 1, version: 1 });
      });

      it('10 concurrent upserts of one id create exactly one document and all return it', async () => {
        const instances = await storages(5);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            instances[i % 5]!.findOneAndUpsert({ _id: 'same', name: `writer ${i}`, gold: i }),
          ),
        );
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const winner = results.find((r) => r.created)!.doc;
        for (const r of results) expect(r.doc).toEqual(winner);
        expect(await instances[0]!.findMany({})).toEqual([winner]);
      });
    });

    describe('findOneAndUpdate', () => {
      it('applies a mutating edit, bumps the version and returns the diff', async () => {
        const games = await one();
        const { doc } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 10, tags: ['a'] });
        const { doc: next, diff } = await games.findOneAndUpdate('g', (d) => {
          d.gold += 50;
          d.tags!.push('b');
        });
        expect(next).toMatchObject({ gold: 60, tags: ['a', 'b'], version: 2 });
        expect(diff.hasChanges).toBe(true);
        expect(diff.version).toBe(2);
        expect(applyPatch(clone(doc), clone(diff.jsonPatch)).newDocument).toEqual(next);
        expect(applyMergePatch(clone(doc), clone(diff.mergePatch!))).toEqual(next);
        const viaMongo = clone(doc);
        mingoUpdate(viaMongo, diff.mongoUpdate as never);
        expect(viaMongo).toEqual(next);
        expect(await games.findOne('g')).toEqual(next);
      });

      it('accepts an edit that returns a new document; the storage keeps _id and owns the version', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        const { doc, diff } = await games.findOneAndUpdate('g', (d) => ({
          ...d,
          name: 'renamed',
          version: 99,
        }));
        expect(doc).toEqual({ _id: 'g', name: 'renamed', gold: 1, version: 2 });
        expect(diff.jsonPatch).toContainEqual({ op: 'replace', path: '/name', value: 'renamed' });
      });

      it('a no-op edit writes nothing and keeps the version', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        const { doc, diff } = await games.findOneAndUpdate('g', (d) => {
          d.gold = 1;
          d.version = 42;
        });
        expect(diff).toMatchObject({ hasChanges: false, version: 1, jsonPatch: [] });
        expect(doc.version).toBe(1);
        expect((await games.findOne('g'))!.version).toBe(1);
      });

      it('uses a configurable version field and overrides edits of it', async () => {
        const [games] = await storages<Game & { rev: number }>(1, 'rev');
        const { doc } = await games!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 } as never);
        expect(doc.rev).toBe(1);
        const { doc: next } = await games!.findOneAndUpdate('g', (d) => {
          d.gold = 2;
          d.rev = 1000;
        });
        expect(next.rev).toBe(2);
        expect(games!.versionField).toBe('rev');
      });

      it('refuses to change _id, and throws not_found for a missing document', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        await expectCode(
          games.findOneAndUpdate('g', (d) => {
            d._id = 'other';
          }),
          'validation',
        );
        await expectCode(
          games.findOneAndUpdate('missing', (d) => {
            d.gold = 1;
          }),
          'not_found',
        );
        expect((await games.findOne('g'))!.version).toBe(1);
      });

      it('re-runs the edit on fresh state after a conflict, and gives up with version_conflict', async () => {
        const [a, b] = await storages(2);
        await a!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 0 });
        const gate = gateAt();
        let runs = 0;
        const slow = a!.findOneAndUpdate('g', async (d) => {
          runs++;
          if (runs === 1) await gate.pass();
          d.gold += 1;
        });
        await gate.reached;
        await b!.findOneAndUpdate('g', (d) => {
          d.gold += 10;
        });
        gate.open();
        expect((await slow).doc.gold).toBe(11);
        expect(runs).toBe(2);

        const gate2 = gateAt();
        const failing = a!.findOneAndUpdate(
          'g',
          async (d) => {
            await gate2.pass();
            d.gold += 1;
          },
          { maxRetries: 0 },
        );
        await gate2.reached;
        await b!.updateOne('g', { $inc: { gold: 100 } });
        gate2.open();
        await expectCode(failing, 'version_conflict');
        expect((await a!.findOne('g'))!.gold).toBe(111);
      });

      // SQL storages start an edit from the state they last wrote (no read); these hold either way.
      it('edits what another instance deleted and re-created up to the same version as the new document', async () => {
        const [a, b] = await storages(2);
        await a!.findOneAndUpsert({ _id: 'g', name: 'old', gold: 0 });
        await a!.findOneAndUpdate('g', (d) => {
          d.gold += 1;
        });
        await b!.deleteOne('g');
        await b!.findOneAndUpsert({ _id: 'g', name: 'new', gold: 100 });
        await b!.updateOne('g', { $inc: { gold: 1 } });
        const { doc, diff } = await a!.findOneAndUpdate('g', (d) => {
          d.gold += 1;
        });
        expect(doc).toMatchObject({ name: 'new', gold: 102, version: 3 });
        expect(diff.jsonPatch).toContainEqual({ op: 'replace', path: '/gold', value: 102 });
        expect(await b!.findOne('g')).toEqual(doc);
      });

      it('decides an edit that throws or changes nothing on the current document, not on what this instance wrote last', async () => {
        const [a, b] = await storages(2);
        await a!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        await a!.updateOne('g', { $inc: { gold: 1 } });
        await b!.updateOne('g', { $set: { gold: 50 } });
        const spend = (d: Game) => {
          if (d.gold < 10) throw new Error('not enough gold');
          d.gold -= 10;
        };
        expect((await a!.findOneAndUpdate('g', spend)).doc.gold).toBe(40);
        await b!.updateOne('g', { $set: { gold: 60 } });
        const { doc, diff } = await a!.findOneAndUpdate('g', (d) => {
          if (d.gold >= 50) d.rich = true;
        });
        expect(diff.hasChanges).toBe(true);
        expect(doc).toMatchObject({ gold: 60, rich: true });
        await b!.updateOne('g', { $set: { gold: 5 } });
        await expect(a!.findOneAndUpdate('g', spend)).rejects.toThrow('not enough gold');
        const unchanged = await a!.findOneAndUpdate('g', (d) => {
          if (d.gold > 50) d.rich = false;
        });
        expect(unchanged.diff.hasChanges).toBe(false);
        expect(unchanged.doc).toMatchObject({ gold: 5, rich: true });
      });

      it('no lost update: 50 concurrent increments through 5 instances end exactly +50', async () => {
        const instances = await storages(5);
        await instances[0]!.findOneAndUpsert({ _id: 'hot', name: 'hot', gold: 0 });
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            instances[i % 5]!.findOneAndUpdate(
              'hot',
              (d) => {
                d.gold += 1;
              },
              { maxRetries: 100, retryDelay: 1, maxRetryDelay: 20, timeout: 30_000 },
            ),
          ),
        );
        const final = await instances[0]!.findOne('hot');
        expect(final!.gold).toBe(50);
        expect(final!.version).toBe(51);
      });
    });

    describe('updateOne and updateOneWithPipeline', () => {
      it('applies every supported operator with MongoDB semantics and a real diff', async () => {
        const games = await one();
        const { doc: before } = await games.findOneAndUpsert({
          _id: 'g',
          name: 'n',
          gold: 10,
          level: 5,
          tags: ['a', 'b'],
          items: [
            { name: 'sword', qty: 1 },
            { name: 'potion', qty: 3 },
          ],
          stats: { hp: 10, mp: 4, old: 1 },
        });
        const operators = {
          $set: { 'stats.hp': 20, 'stats.new.deep': true },
          $unset: { 'stats.mp': '' },
          $inc: { gold: 5, 'stats.mp2': 2 },
          $push: { tags: 'c' },
          $pull: { items: { name: 'sword' } },
          $addToSet: { 'stats.badges': 'x' },
          $min: { level: 3 },
          $max: { 'stats.top': 7 },
          $rename: { 'stats.old': 'stats.renamed' },
        };
        const { doc, diff } = await games.updateOne('g', operators);
        const expected = clone(before) as Record<string, unknown>;
        mingoUpdate(expected, operators as never);
        expected.version = 2;
        expect(doc).toEqual(expected);
        expect(applyPatch(clone(before), clone(diff.jsonPatch)).newDocument).toEqual(doc);
        expect(await games.findOne('g')).toEqual(doc);
      });

      it('refuses unknown operators and bad paths, writing nothing', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        await expectCode(games.updateOne('g', { $frobnicate: { gold: 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $set: { '__proto__.polluted': 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $set: { $where: 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $set: { gold: () => 1 } }), 'validation');
        expect(await games.findOne('g')).toEqual({ _id: 'g', name: 'n', gold: 1, version: 1 });
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });

      it('follows MongoDB type rules: an operator on the wrong type is validation, writing nothing', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1, tags: ['a'], none: null });
        await expectCode(games.updateOne('g', { $inc: { name: 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $mul: { name: 2 } }), 'validation');
        await expectCode(games.updateOne('g', { $push: { gold: 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $pop: { name: 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $inc: { gold: 'lots' } }), 'validation');
        // A field inside a string, a null or (by name) an array cannot be created; a $rename
        // there would drop the value it moves.
        await expectCode(games.updateOne('g', { $set: { 'tags.x': 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $inc: { 'name.x': 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $set: { 'none.x': 1 } }), 'validation');
        await expectCode(games.updateOne('g', { $rename: { gold: 'tags.x' } }), 'validation');
        expect(await games.findOne('g')).toEqual({
          _id: 'g',
          name: 'n',
          gold: 1,
          tags: ['a'],
          none: null,
          version: 1,
        });
      });

      it('runs $set/$unset pipeline stages with expressions that see pre-update values', async () => {
        const games = await one();
        const { doc: before } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 10, level: 2 });
        const { doc, diff } = await games.updateOneWithPipeline('g', [
          { $set: { gold: { $add: ['$gold', 200] }, bonus: { $multiply: ['$level', 10] } } },
          { $unset: ['level'] },
        ]);
        expect(doc).toEqual({ _id: 'g', name: 'n', gold: 210, bonus: 20, version: 2 });
        expect(applyPatch(clone(before), clone(diff.jsonPatch)).newDocument).toEqual(doc);
        await expectCode(games.updateOneWithPipeline('g', [{ $lookup: { from: 'x' } }]), 'validation');
      });
    });

    describe('updateSection', () => {
      it('edits a section with its own version and creates it when absent', async () => {
        const games = await one();
        const { doc: before } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        const { doc, diff } = await games.updateSection<{ sword?: number }>('g', 'inventory', (s) => {
          s.sword = 1;
        });
        expect(doc.inventory).toEqual({ sword: 1, version: 1 });
        expect(doc.version).toBe(2);
        expect(diff.version).toBe(2);
        const { doc: again } = await games.updateSection<{ sword: number }>('g', 'inventory', (s) => {
          s.sword += 1;
        });
        expect(again.inventory).toEqual({ sword: 2, version: 2 });
        expect(again.version).toBe(3);
        expect(applyPatch(clone(before), clone(diff.jsonPatch)).newDocument).toEqual(doc);
      });

      it('concurrent edits of different sections do not conflict; of the same section they do', async () => {
        const [a, b] = await storages(2);
        await a!.findOneAndUpsert({
          _id: 'g',
          name: 'n',
          gold: 1,
          inventory: { version: 1 },
          stats: { version: 1 },
        });
        const gate = gateAt();
        const slow = a!.updateSection<{ potions?: number }>(
          'g',
          'inventory',
          async (s) => {
            await gate.pass();
            s.potions = 3;
          },
          { maxRetries: 0 },
        );
        await gate.reached;
        await b!.updateSection<{ hp?: number }>('g', 'stats', (s) => {
          s.hp = 100;
        });
        gate.open();
        const { doc } = await slow;
        expect(doc.inventory).toEqual({ potions: 3, version: 2 });
        expect(doc.stats).toEqual({ hp: 100, version: 2 });
        expect(doc.version).toBe(3);

        const gate2 = gateAt();
        const loser = a!.updateSection<{ potions: number }>(
          'g',
          'inventory',
          async (s) => {
            await gate2.pass();
            s.potions += 1;
          },
          { maxRetries: 0 },
        );
        await gate2.reached;
        await b!.updateSection<{ potions: number }>('g', 'inventory', (s) => {
          s.potions += 10;
        });
        gate2.open();
        await expectCode(loser, 'version_conflict');
        expect((await a!.findOne('g'))!.inventory).toEqual({ potions: 13, version: 3 });
      });

      it('a whole-document edit inside a section bumps that section, so a racing section edit retries', async () => {
        const [a, b] = await storages(2);
        await a!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1, inventory: { version: 1, potions: 0 } });
        const gate = gateAt();
        let runs = 0;
        const sectionEdit = a!.updateSection<{ potions: number }>('g', 'inventory', async (s) => {
          runs++;
          if (runs === 1) await gate.pass();
          s.potions += 1;
        });
        await gate.reached;
        const { doc: mid } = await b!.findOneAndUpdate('g', (d) => {
          (d.inventory as { potions: number }).potions += 10;
        });
        expect(mid.inventory).toEqual({ version: 2, potions: 10 });
        gate.open();
        const { doc } = await sectionEdit;
        expect(runs).toBe(2);
        expect(doc.inventory).toEqual({ version: 3, potions: 11 });
      });

      it('refuses paths that cannot be sections', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1, tags: ['a'] });
        for (const path of ['', 'version', '_id', 'tags', 'a..b', '$x', 'missing.child', 'items.0']) {
          await expectCode(
            games.updateSection('g', path, (s: Record<string, unknown>) => {
              s.x = 1;
            }),
            'validation',
          );
        }
      });
    });

    describe('delete and transactions', () => {
      it('deleteOne returns the deleted document, then nothing', async () => {
        const games = await one();
        const { doc } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        expect(await games.deleteOne('g')).toEqual(doc);
        expect(await games.findOne('g')).toBeUndefined();
        expect(await games.deleteOne('g')).toBeUndefined();
        const { doc: again } = await games.findOneAndUpsert({ _id: 'g', name: 'again', gold: 2 });
        expect(again.version).toBe(1);
      });

      it('expectedVersion: deletes and edits only the version the caller read, else version_conflict and nothing changes', async () => {
        const [games, other] = await storages(2);
        await games!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        await other!.updateOne('g', { $inc: { gold: 1 } }); // version 2, made by another instance
        await expectCode(games!.deleteOne('g', { expectedVersion: 1 }), 'version_conflict');
        await expectCode(
          games!.updateOne('g', { $set: { gold: 9 } }, { expectedVersion: 1 }),
          'version_conflict',
        );
        await expectCode(
          games!.findOneAndUpdate(
            'g',
            (d) => {
              d.gold = 9;
            },
            { expectedVersion: 1 },
          ),
          'version_conflict',
        );
        await expectCode(games!.deleteOne('g', { expectedVersion: 0 }), 'validation');
        expect(await games!.findOne('g')).toMatchObject({ version: 2, gold: 2 });
        const { doc } = await games!.updateOne('g', { $set: { gold: 3 } }, { expectedVersion: 2 });
        expect(doc).toMatchObject({ version: 3, gold: 3 });
        expect(await games!.deleteOne('g', { expectedVersion: 3 })).toEqual(doc);
        expect(await games!.findOne('g')).toBeUndefined();
        expect(await games!.deleteOne('g', { expectedVersion: 3 })).toBeUndefined();
      });

      it('incarnations: kept by updates, new after delete and re-create; expectedIncarnation refuses another', async () => {
        const [games, other] = await storages(2);
        const created = await games!.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
        const edited = await games!.updateOne('g', { $inc: { gold: 1 } });
        expect(edited.incarnation).toBe(created.incarnation);
        expect(await games!.findEntry('g')).toEqual({
          doc: { _id: 'g', name: 'n', gold: 2, version: 2 },
          version: 2,
          incarnation: created.incarnation,
        });
        // Another instance deletes and re-creates it, back up to version 2.
        await other!.deleteOne('g');
        const again = await other!.findOneAndUpsert({ _id: 'g', name: 'other', gold: 7 });
        await other!.updateOne('g', { $inc: { gold: 1 } });
        expect(again.incarnation).not.toBe(created.incarnation);
        const old = { expectedVersion: 2, expectedIncarnation: created.incarnation };
        await expectCode(games!.updateOne('g', { $set: { gold: 0 } }, old), 'version_conflict');
        await expectCode(games!.deleteOne('g', old), 'version_conflict');
        await expectCode(games!.deleteOne('g', { expectedIncarnation: 'x' }), 'validation');
        // Past PostgreSQL's bigint: refused as input, not failed as a cast (internal).
        const tooBig = { expectedIncarnation: '9999999999999999999' };
        await expectCode(games!.deleteOne('g', tooBig), 'validation');
        await expectCode(games!.updateOne('g', { $set: { gold: 0 } }, tooBig), 'validation');
        expect(await games!.findOne('g')).toEqual({ _id: 'g', name: 'other', gold: 8, version: 2 });
        const now = { expectedVersion: 2, expectedIncarnation: again.incarnation };
        expect((await games!.updateOne('g', { $inc: { gold: 1 } }, now)).doc.gold).toBe(9);
        expect(await games!.deleteOne('g', { expectedIncarnation: again.incarnation })).toMatchObject({
          gold: 9,
        });
        expect(await games!.findEntry('g')).toBeUndefined();
      });

      it('withTransaction commits all writes together, and a throw rolls back all of them', async () => {
        const games = await one();
        await games.findOneAndUpsert({ _id: 'a', name: 'a', gold: 1 });
        await games.findOneAndUpsert({ _id: 'b', name: 'b', gold: 1 });
        await games.withTransaction(async (tx) => {
          await tx.updateOne('a', { $inc: { gold: 1 } });
          await tx.findOneAndUpsert({ _id: 'c', name: 'c', gold: 0 });
          await tx.deleteOne('b');
        });
        expect((await games.findMany({}, { sort: { _id: 1 } })).map((g) => [g._id, g.gold])).toEqual([
          ['a', 2],
          ['c', 0],
        ]);
        await expect(
          games.withTransaction(async (tx) => {
            await tx.updateOne('a', { $inc: { gold: 100 } });
            await tx.deleteOne('c');
            await tx.findOneAndUpsert({ _id: 'd', name: 'd', gold: 0 });
            throw new Error('boom');
          }),
        ).rejects.toThrow('boom');
        expect(
          (await games.findMany({}, { sort: { _id: 1 } })).map((g) => [g._id, g.gold, g.version]),
        ).toEqual([
          ['a', 2, 2],
          ['c', 0, 1],
        ]);
      });

      it('a nested withTransaction that throws rolls back its own writes only; a tx used after its end refuses with closed', async () => {
        const games = await one();
        let escaped: Storage<Game> | undefined;
        await games.withTransaction(async (tx) => {
          escaped = tx;
          await tx.findOneAndUpsert({ _id: 'outer', name: 'outer', gold: 0 });
          await expect(
            tx.withTransaction(async (inner) => {
              await inner.findOneAndUpsert({ _id: 'inner', name: 'inner', gold: 0 });
              await inner.updateOne('outer', { $inc: { gold: 5 } });
              throw new Error('inner fails');
            }),
          ).rejects.toThrow('inner fails');
          await tx.updateOne('outer', { $inc: { gold: 1 } });
        });
        expect((await games.findMany({})).map((g) => [g._id, g.gold, g.version])).toEqual([['outer', 1, 2]]);
        await expectCode(escaped!.findOne('outer'), 'closed');
        await expectCode(escaped!.updateOne('outer', { $inc: { gold: 1 } }), 'closed');
      });
    });

    describe('watch', () => {
      it('streams create, update and delete made through another instance, and ends on abort', async () => {
        const [watcher, writer] = await storages(2);
        const abort = new AbortController();
        const stream = watcher!.watch({ signal: abort.signal });
        await stream.ready;
        const seen: { operation: string; version: number; gold?: number; hasDiff: boolean }[] = [];
        const done = (async () => {
          for await (const change of stream) {
            seen.push({
              operation: change.operation,
              version: change.version,
              gold: change.data.gold,
              hasDiff: change.diff !== undefined,
            });
            if (seen.length === 3) abort.abort();
          }
        })();
        await writer!.findOneAndUpsert({ _id: 'w', name: 'w', gold: 1 });
        await writer!.updateOne('w', { $inc: { gold: 1 } });
        await writer!.deleteOne('w');
        await done;
        expect(seen).toEqual([
          { operation: 'create', version: 1, gold: 1, hasDiff: false },
          { operation: 'update', version: 2, gold: 2, hasDiff: true },
          { operation: 'delete', version: 2, gold: 2, hasDiff: false },
        ]);
      });

      it('filters by operation and id, and announces transaction writes only after commit', async () => {
        const [games] = await storages(1);
        const abort = new AbortController();
        const stream = games!.watch({ signal: abort.signal, operations: ['update'], ids: ['x'] });
        await stream.ready;
        const seen: number[] = [];
        const done = (async () => {
          for await (const change of stream) seen.push(change.version);
        })();
        await games!.findOneAndUpsert({ _id: 'x', name: 'x', gold: 0 });
        await games!.findOneAndUpsert({ _id: 'y', name: 'y', gold: 0 });
        await games!.updateOne('y', { $inc: { gold: 1 } });
        await games!
          .withTransaction(async (tx) => {
            await tx.updateOne('x', { $inc: { gold: 1 } });
            throw new Error('rolled back');
          })
          .catch(() => undefined);
        await games!.updateOne('x', { $inc: { gold: 5 } });
        await expect.poll(() => seen, { timeout: 5_000 }).toEqual([2]);
        abort.abort();
        await done;
      });
    });

    describe('findMany', () => {
      it.each([false, true])(
        'matches mingo on a fixed corpus of filters (filterIndex: %s)',
        async (filterIndex) => {
          const games = (await storages(1, undefined, { filterIndex }))[0]!;
          for (const doc of filterDocuments) await games.findOneAndUpsert(clone(doc) as never);
          const stored = await games.findMany({});
          for (const { name, filter } of filterCorpus) {
            const expected = stored.filter((d) => new Query(filter).test(d)).map((d) => d._id);
            const actual = (await games.findMany(filter)).map((d) => d._id);
            expect(actual.sort(), `${name}: ${JSON.stringify(filter)}`).toEqual(expected.sort());
          }
        },
      );

      it('sorts, skips and limits as mingo does over the natural order (filter corpus)', async () => {
        const games = await one();
        for (const doc of filterDocuments) await games.findOneAndUpsert(clone(doc) as never);
        // The backend's natural order: mingo's sort is stable, so ties keep it.
        const stored = (await games.findMany({})) as unknown as JsonObject[];
        const filters = filterCorpus.filter((c) => sortFilterNames.includes(c.name));
        expect(filters).toHaveLength(sortFilterNames.length);
        for (const { name, filter } of filters) {
          for (const sort of sortCorpus) {
            for (const page of pageCorpus) {
              const options = { sort, ...page };
              const expected = findInMemory(stored, filter, options).map((d) => d._id);
              const actual = (await games.findMany(filter, options)).map((d) => d._id);
              expect(actual, `${name}: ${JSON.stringify(filter)} ${JSON.stringify(options)}`).toEqual(
                expected,
              );
            }
          }
        }
        // Without a sort: the natural order, skipped and limited.
        for (const { name, filter } of filterCorpus) {
          const expected = findInMemory(stored, filter, { skip: 1, limit: 5 }).map((d) => d._id);
          const actual = (await games.findMany(filter, { skip: 1, limit: 5 })).map((d) => d._id);
          expect(actual, name).toEqual(expected);
        }
      });

      it('orders mixed types, missing fields, nested paths and ties as mingo does', async () => {
        const docs = await one();
        for (const doc of mixedDocuments) await docs.findOneAndUpsert(clone(doc) as never);
        const stored = (await docs.findMany({})) as unknown as JsonObject[];
        for (const sort of mixedSorts) {
          for (const page of [{}, { limit: 1 }, { limit: 7 }, { skip: 5, limit: 6 }, { skip: 19 }]) {
            const options = { sort, ...page };
            const expected = findInMemory(stored, {}, options).map((d) => d._id);
            expect(
              (await docs.findMany({}, options)).map((d) => d._id),
              JSON.stringify(options),
            ).toEqual(expected);
          }
        }
      });

      it('matches mingo for random data, filters, sorts, skips and limits', async () => {
        const docs = await one();
        const scalar = fc.oneof(
          fc.integer({ min: -2, max: 3 }),
          fc.constantFrom(0.5, 'x', 'X', '', '\uffff', '😀', true, false, null),
        );
        const value = fc.oneof(
          { weight: 6, arbitrary: scalar },
          { weight: 1, arbitrary: fc.array(scalar, { maxLength: 2 }) },
          { weight: 2, arbitrary: fc.dictionary(fc.constantFrom('c', '0'), scalar, { maxKeys: 2 }) },
        );
        const document = fc.dictionary(fc.constantFrom('a', 'b'), value, { maxKeys: 2 });
        const data = fc
          .sample(document, { numRuns: 40, seed: 11 })
          .map((d, i) => ({ ...d, _id: `r${i % 7}${i}` }));
        for (const doc of data) await docs.findOneAndUpsert(clone(doc) as never);
        const stored = (await docs.findMany({})) as unknown as JsonObject[];
        const filter = fc.constantFrom<Filter>(
          {},
          { a: { $gte: 0 } },
          { $or: [{ a: 'x' }, { b: { $in: [1, true, ''] } }] },
          { b: { $exists: true } },
          { a: { $ne: 1 } },
          { 'a.c': { $lt: 3 } },
        );
        const path = fc.constantFrom('a', 'b', 'a.c', 'b.0', '_id');
        const sort = fc.dictionary(path, fc.constantFrom<1 | -1>(1, -1), { minKeys: 1, maxKeys: 2 });
        const options = fc.record(
          { sort, skip: fc.integer({ min: 0, max: 5 }), limit: fc.integer({ min: 0, max: 6 }) },
          { requiredKeys: [] },
        );
        await fc.assert(
          fc.asyncProperty(filter, options, async (f, o) => {
            const expected = findInMemory(stored, f, o).map((d) => d._id);
            expect((await docs.findMany(f, o)).map((d) => d._id)).toEqual(expected);
          }),
          { numRuns: 150, seed: 5 },
        );
      });

      it('sorts, skips, limits and projects', async () => {
        const games = await one();
        for (let i = 0; i < 10; i++) {
          await games.findOneAndUpsert({ _id: `g${i}`, name: `game ${i}`, gold: i * 10, level: i % 3 });
        }
        const page = await games.findMany(
          { gold: { $gte: 20 } },
          { sort: { level: -1, gold: 1 }, skip: 1, limit: 3, projection: { name: 1, level: 1 } },
        );
        expect(page).toEqual([
          { _id: 'g5', name: 'game 5', level: 2 },
          { _id: 'g8', name: 'game 8', level: 2 },
          { _id: 'g4', name: 'game 4', level: 1 },
        ]);
        expect(Object.keys(page[0]!).sort()).toEqual(['_id', 'level', 'name']);
        await expectCode(games.findMany({ gold: { $frob: 1 } }), 'validation');
        await expectCode(games.findMany({ $where: 'true' }), 'validation');
        await expectCode(games.findMany({}, { limit: -1 }), 'validation');
      });
    });

    describe('bad input changes nothing', () => {
      const badDocuments: [string, () => unknown][] = [
        ['a function', () => ({ name: 'x', gold: 1, f: () => 1 })],
        ['undefined in an array', () => ({ name: 'x', gold: 1, a: [1, undefined] })],
        ['a BigInt', () => ({ name: 'x', gold: 1n })],
        ['NaN', () => ({ name: 'x', gold: Number.NaN })],
        ['Infinity', () => ({ name: 'x', gold: Number.POSITIVE_INFINITY })],
        [
          'a cycle',
          () => {
            const o: Record<string, unknown> = { name: 'x', gold: 1 };
            o.self = o;
            return o;
          },
        ],
        ['a __proto__ key', () => JSON.parse('{"name":"x","gold":1,"nested":{"__proto__":{"polluted":1}}}')],
        ['a constructor key', () => ({ name: 'x', gold: 1, constructor: 1 })],
        ['a prototype key', () => ({ name: 'x', gold: 1, prototype: 1 })],
        ['a $-prefixed key', () => ({ name: 'x', gold: 1, nested: { $set: 1 } })],
        ['a Date', () => ({ name: 'x', gold: 1, at: new Date() })],
        // What PostgreSQL's jsonb cannot hold is refused on every backend alike.
        ['NUL in a string', () => ({ name: 'x\u0000y', gold: 1 })],
        ['NUL in a key', () => ({ name: 'x', gold: 1, nested: { 'a\u0000b': 1 } })],
        ['a lone surrogate in a string', () => ({ name: 'x\ud800', gold: 1 })],
        ['a lone surrogate in a key', () => ({ name: 'x', gold: 1, nested: { '\udc00': 1 } })],
        ['an invalid id', () => ({ _id: 'has/slash', name: 'x', gold: 1 })],
        ['an empty id', () => ({ _id: '', name: 'x', gold: 1 })],
        ['a numeric id', () => ({ _id: 5, name: 'x', gold: 1 })],
      ];

      for (const [what, make] of badDocuments) {
        it(`refuses a document with ${what}`, async () => {
          const games = await one();
          await expectCode(games.findOneAndUpsert(make() as never), 'validation');
          expect(await games.findMany({})).toEqual([]);
        });

        if (what.includes('id')) continue;
        it(`refuses an edit that introduces ${what}`, async () => {
          const games = await one();
          const { doc } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 1 });
          const bad = make() as Record<string, unknown>;
          await expectCode(
            games.findOneAndUpdate('g', (d) => {
              d.payload = bad;
            }),
            'validation',
          );
          await expectCode(
            games.findOneAndUpdate('g', (d) => ({ ...d, payload: bad })),
            'validation',
          );
          expect(await games.findOne('g')).toEqual(doc);
        });
      }

      it('refuses invalid ids everywhere', async () => {
        const games = await one();
        for (const id of ['', 'a/b', 'x'.repeat(200), '../etc', 'a b']) {
          await expectCode(games.findOne(id), 'validation');
          await expectCode(games.updateOne(id, { $set: { gold: 1 } }), 'validation');
          await expectCode(games.deleteOne(id), 'validation');
        }
      });

      it('a closed storage refuses calls with code closed', async () => {
        const games = await one();
        await games.close();
        await expectCode(games.findOne('g'), 'closed');
      });
    });

    describe('limits', () => {
      async function limited(limits?: { maxDocumentBytes?: number; maxArrayGrowth?: number }) {
        const db = await backend.open();
        opened.push(db);
        const collection = `conf_${process.pid}_${++collections}`;
        return createStorage<Game>({ db, collection, ...(limits ? { limits } : {}) });
      }

      it('refuses with too_large every write that would leave a document over maxDocumentBytes', async () => {
        const games = await limited({ maxDocumentBytes: 2048 });
        const big = 'x'.repeat(2048);
        await expectCode(games.findOneAndUpsert({ _id: 'new', name: big, gold: 0 }), 'too_large');
        expect(await games.findOne('new')).toBeUndefined();
        const { doc } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 0, inventory: {} });
        await expectCode(games.updateOne('g', { $set: { name: big } }), 'too_large');
        await expectCode(games.updateOne('g', { $push: { tags: big } }), 'too_large');
        await expectCode(games.updateOneWithPipeline('g', [{ $set: { name: big } }]), 'too_large');
        await expectCode(
          games.findOneAndUpdate('g', (d) => {
            d.name = big;
          }),
          'too_large',
        );
        await expectCode(
          games.findOneAndUpdate('g', (d) => ({ ...d, name: big })),
          'too_large',
        );
        await expectCode(
          games.updateSection('g', 'inventory', (s) => {
            s.note = big;
          }),
          'too_large',
        );
        // A section that fits, in a document that would not.
        await games.updateOne('g', { $set: { name: 'y'.repeat(1500) } });
        await expectCode(
          games.updateSection('g', 'inventory', (s) => {
            s.note = 'z'.repeat(600);
          }),
          'too_large',
        );
        expect(await games.findOne('g')).toEqual({ ...doc, name: 'y'.repeat(1500), version: 2 });
      });

      it('counts bytes of UTF-8, and allows 1 MiB by default', async () => {
        const small = await limited({ maxDocumentBytes: 200 });
        // 60 × "é" is 120 bytes in UTF-8 (60 characters).
        await small.findOneAndUpsert({ _id: 'a', name: 'é'.repeat(60), gold: 0 });
        await expectCode(small.findOneAndUpsert({ _id: 'b', name: 'é'.repeat(90), gold: 0 }), 'too_large');
        const games = await limited();
        await games.findOneAndUpsert({ _id: 'g', name: 'x'.repeat(1000 * 1024), gold: 0 });
        await expectCode(games.updateOne('g', { $set: { more: 'x'.repeat(50 * 1024) } }), 'too_large');
      });

      it('refuses the 27-byte {"$set":{"arr.10000000":1}} at once with validation, changing nothing', async () => {
        const games = await limited();
        const { doc } = await games.findOneAndUpsert({
          _id: 'g',
          name: 'n',
          gold: 0,
          tags: ['a', 'b', 'c'],
          arr: [1],
        });
        const body = '{"$set":{"arr.10000000":1}}';
        expect(Buffer.byteLength(body)).toBe(27);
        const before = await games.findOne('g');
        const started = performance.now();
        await expectCode(games.updateOne('g', JSON.parse(body)), 'validation');
        await expectCode(games.updateOne('g', { $set: { 'tags.4': 'e' } }), 'validation');
        expect(performance.now() - started).toBeLessThan(1000);
        expect(await games.findOne('g')).toEqual(before);
        // Appending by index is fine, and so is a gap when the storage allows one.
        const { doc: appended, diff } = await games.updateOne('g', { $set: { 'tags.3': 'd' } });
        expect(appended.tags).toEqual(['a', 'b', 'c', 'd']);
        expect(diff.mongoUpdate).toEqual({ $set: { 'tags.3': 'd', version: 2 } });
        const gaps = await limited({ maxArrayGrowth: 3 });
        await gaps.findOneAndUpsert({ ...doc });
        const { doc: padded } = await gaps.updateOne('g', { $set: { 'tags.5': 'f' } });
        expect(padded.tags).toEqual(['a', 'b', 'c', null, null, 'f']);
      });

      it('stores a change in a large array at about the size of the change', async () => {
        const games = await limited();
        const items = Array.from({ length: 5000 }, (_, i) => ({ name: `item ${i}`, qty: i }));
        const { doc } = await games.findOneAndUpsert({ _id: 'g', name: 'n', gold: 0, items });
        const pushed = await games.updateOne('g', { $push: { items: { name: 'new', qty: 1 } } });
        expect(pushed.diff.jsonPatch).toEqual([
          { op: 'add', path: '/items/5000', value: { name: 'new', qty: 1 } },
          { op: 'replace', path: '/version', value: 2 },
        ]);
        expect(pushed.diff.mongoUpdate).toEqual({
          $set: { 'items.5000': { name: 'new', qty: 1 }, version: 2 },
        });
        expect(pushed.diff.mergePatch).toBeUndefined(); // RFC 7396 would resend the array
        const popped = await games.updateOne('g', { $pop: { items: -1 } });
        expect(popped.diff.jsonPatch).toEqual([
          { op: 'remove', path: '/items/0' },
          { op: 'replace', path: '/version', value: 3 },
        ]);
        expect(popped.diff.mongoUpdate).toBeUndefined();
        const changed = await games.updateOne('g', { $inc: { 'items.7.qty': 1 } });
        expect(changed.diff.mongoUpdate).toEqual({ $set: { 'items.7.qty': 9, version: 4 } });
        for (const { diff } of [pushed, popped, changed])
          expect(JSON.stringify(diff).length).toBeLessThan(400);
        let state: unknown = clone(doc);
        for (const { diff } of [pushed, popped, changed])
          state = applyPatch(state, clone(diff.jsonPatch)).newDocument;
        expect(state).toEqual(await games.findOne('g'));
      });
    });
  });
}
