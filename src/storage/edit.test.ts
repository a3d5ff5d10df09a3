import jsonpatch from 'fast-json-patch';
import { describe, expect, it } from 'vitest';
import { EventSyncError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import { runEdit } from './edit.js';

const doc = (): JsonObject => ({
  _id: 'g',
  version: 3,
  gold: 1,
  inventory: { version: 7, potions: 1, bag: { version: 2, coins: 0 } },
  tags: ['a'],
});
const target = { versionField: 'version', version: 3, lockedFields: ['_id'] };

describe('runEdit', () => {
  it('copies only the edited path of a large document', async () => {
    const players: JsonObject = {};
    for (let i = 0; i < 5_000; i++) players[`p${i}`] = { name: `player ${i}`, score: i, items: [1, 2, 3] };
    const before: JsonObject = { _id: 'big', version: 1, players, log: { entries: [] } };
    const outcome = await runEdit(
      before,
      (d: { players: Record<string, { score: number }> }) => {
        d.players.p42!.score = -1;
      },
      { ...target, version: 1 },
    );
    const after = outcome!.after as typeof before & { players: Record<string, JsonObject> };
    expect(after.players.p42!.score).toBe(-1);
    expect(after.players.p43).toBe(players.p43); // shared, not copied
    expect(after.log).toBe(before.log);
    expect((players.p42 as JsonObject).score).toBe(42); // the original is untouched
    expect(outcome!.ops).toEqual([
      { op: 'replace', path: '/players/p42/score', value: -1 },
      { op: 'replace', path: '/version', value: 2 },
    ]);
  });

  it('returns undefined for a no-op and for an edit of version fields only', async () => {
    expect(await runEdit(doc(), () => {}, target)).toBeUndefined();
    expect(
      await runEdit(
        doc(),
        (d: JsonObject) => {
          d.version = 10;
          (d.inventory as JsonObject).version = 99;
        },
        target,
      ),
    ).toBeUndefined();
  });

  it('bumps the root and every section on the path of a change, and only those', async () => {
    const outcome = await runEdit(
      doc(),
      (d: { inventory: { bag: { coins: number } } }) => {
        d.inventory.bag.coins = 5;
      },
      target,
    );
    expect(outcome!.after).toEqual({
      _id: 'g',
      version: 4,
      gold: 1,
      inventory: { version: 8, potions: 1, bag: { version: 3, coins: 5 } },
      tags: ['a'],
    });
    const untouched = await runEdit(
      doc(),
      (d: JsonObject) => {
        d.gold = 2;
      },
      target,
    );
    expect((untouched!.after.inventory as JsonObject).version).toBe(7);
  });

  it('bumps a section that is replaced whole, and keeps version edits out of the ops', async () => {
    const outcome = await runEdit(
      doc(),
      (d: JsonObject) => {
        d.inventory = { potions: 9, version: 1 };
      },
      target,
    );
    expect(outcome!.after.inventory).toEqual({ potions: 9, version: 8 });
    expect(outcome!.ops).toEqual([
      { op: 'replace', path: '/inventory', value: { potions: 9, version: 8 } },
      { op: 'replace', path: '/version', value: 4 },
    ]);
  });

  it('gives a valid patch when a section is replaced, created or deleted (each op names what is there)', async () => {
    const edits: ((d: JsonObject) => void)[] = [
      (d) => void Object.assign(d, { inventory: { q: 2 } }),
      (d) => void Object.assign(d, { inventory: { bag: { coins: 9 } } }),
      (d) => void Object.assign(d, { fresh: { version: 0, hp: 1 } }),
      (d) => void delete d.inventory,
      (d) => {
        (d.inventory as JsonObject).bag = { coins: 1 };
      },
    ];
    for (const edit of edits) {
      const before = doc();
      const outcome = await runEdit(before, edit, target);
      const applied = jsonpatch.applyPatch(structuredClone(before), structuredClone(outcome!.ops), true);
      expect(applied.newDocument).toEqual(outcome!.after);
    }
    const replaced = await runEdit(doc(), edits[0]!, target);
    expect(replaced!.ops).toEqual([
      { op: 'replace', path: '/inventory', value: { version: 8, q: 2 } },
      { op: 'replace', path: '/version', value: 4 },
    ]);
  });

  it('takes a deep-equal reassignment as no change', async () => {
    const same = await runEdit(
      doc(),
      (d: JsonObject) => {
        d.tags = ['a'];
        d.inventory = { version: 7, potions: 1, bag: { version: 2, coins: 0 } };
        d.gold = 1;
      },
      target,
    );
    expect(same).toBeUndefined();
    expect(await runEdit(doc(), (d: JsonObject) => JSON.parse(JSON.stringify(d)), target)).toBeUndefined();
  });

  it('refuses a non-plain object even where an empty object was (it would compare equal)', async () => {
    const before = { ...doc(), meta: {} };
    for (const value of [new Date(0), new Map(), Object.create({ inherited: 1 })]) {
      const error = await runEdit(
        before,
        (d: JsonObject) => {
          d.meta = value;
        },
        target,
      ).catch((e: unknown) => e);
      expect(EventSyncError.is(error, 'validation')).toBe(true);
    }
  });

  it('refuses to change a locked field and to mix mutation with a returned document', async () => {
    const codes = await Promise.all([
      runEdit(
        doc(),
        (d: JsonObject) => {
          d._id = 'x';
        },
        target,
      ).catch((e: unknown) => e),
      runEdit(doc(), (d: JsonObject) => ({ ...d, _id: 'x' }), target).catch((e: unknown) => e),
      runEdit(
        doc(),
        (d: JsonObject) => {
          d.gold = 5;
          return { ...d };
        },
        target,
      ).catch((e: unknown) => e),
    ]);
    for (const error of codes) expect(EventSyncError.is(error, 'validation')).toBe(true);
  });

  it('lets an edit function throw its own errors through', async () => {
    await expect(
      runEdit(
        doc(),
        () => {
          throw new TypeError('mine');
        },
        target,
      ),
    ).rejects.toThrow(TypeError);
  });
});

describe('runEdit: size and proportion', () => {
  it('refuses a result over sizeLimit before any diff, naming it', async () => {
    const limit = { maxBytes: 200, what: 'document "g"' };
    await expect(
      runEdit(doc(), (d: JsonObject) => ({ ...d, big: 'x'.repeat(200) }), { ...target, sizeLimit: limit }),
    ).rejects.toMatchObject({ code: 'too_large', limit: 200 });
    await expect(
      runEdit(
        doc(),
        (d: JsonObject) => {
          d.big = 'x'.repeat(200);
        },
        { ...target, sizeLimit: limit },
      ),
    ).rejects.toThrow(/^document "g" would be \d+ bytes/);
    expect(
      await runEdit(
        doc(),
        (d: JsonObject) => {
          d.gold = 2;
        },
        { ...target, sizeLimit: limit },
      ),
    ).toBeDefined();
  });

  it('says a removal at the front of an array as one op, not one per shifted element', async () => {
    const before: JsonObject = { ...doc(), list: Array.from({ length: 1000 }, (_, i) => ({ i })) };
    const outcome = await runEdit(before, (d: { list: unknown[] }) => void d.list.shift(), target);
    expect(outcome!.ops).toEqual([
      { op: 'remove', path: '/list/0' },
      { op: 'replace', path: '/version', value: 4 },
    ]);
  });
});
