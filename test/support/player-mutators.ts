/**
 * Mutators of a `Player` collection for the mutation tests (test/sync/mutations.test.ts,
 * test/server/mutate.test.ts): one of each kind (arguments, refusal, no-op, throw, create,
 * delete, results too large or not JSON).
 */
import type { Database } from '../../src/core/collection-backend.js';
import { MutationRefused } from '../../src/core/errors.js';
import { defineMutators, type Mutators } from '../../src/core/mutators.js';
import type { BaseDocument } from '../../src/storage/types.js';
import { SyncEngine } from '../../src/sync/engine.js';

export interface Player {
  _id: string;
  version: number;
  gold: number;
  xp: number;
  level: number;
  note?: string;
}

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

/** `{ amount }`, a positive integer: an args schema (anything with `parse`) the mutator tests share. */
export const amount = {
  parse(input: unknown): { amount: number } {
    const value = (input as { amount?: unknown } | undefined)?.amount;
    if (!Number.isInteger(value) || (value as number) < 1)
      throw new Error('amount must be a positive integer');
    return { amount: value as number };
  },
};

export const playerMutators = defineMutators<Player>({
  addGold: {
    args: amount,
    run(draft, { amount }: { amount: number }) {
      draft.gold += amount;
      return { gold: draft.gold };
    },
  },
  levelUp(draft) {
    if (draft.xp < 100) throw new MutationRefused('not_enough_xp', 'levelling up needs 100 XP');
    draft.xp -= 100;
    draft.level += 1;
  },
  touch() {
    // Changes nothing.
  },
  explode(draft) {
    draft.gold = -1;
    throw new Error('secret internals');
  },
  spawn: {
    create: true,
    run(draft) {
      Object.assign(draft, { gold: 10, xp: 0, level: 1 });
    },
  },
  retire(draft, _args, ctx) {
    ctx.delete();
    return { goldLeft: draft.gold };
  },
  hoard() {
    return 'x'.repeat(200_000);
  },
  badResult() {
    return new Date() as unknown as string;
  },
});

/** An engine whose `collection` has the player mutators; principal `mallory` may write nothing. */
export async function openMutationEngine(
  db: Database,
  collection: string,
  more: Mutators<Player> = {},
): Promise<SyncEngine> {
  return SyncEngine.create({
    db,
    logger: quiet,
    authenticate: ({ token }) => (token ? { id: token } : undefined),
    authorize: (principal, action) => action !== 'write' || principal.id !== 'mallory',
    mutators: { [collection]: { ...playerMutators, ...more } as Mutators<BaseDocument> },
  });
}
