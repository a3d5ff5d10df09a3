/**
 * The demo's game mutators: `eventsync serve` runs them on the server (for the `games`
 * collection) and the demo page (`demo/main.ts`) registers the same ones to predict their effect.
 * So it lives in `core`: browser-safe, no I/O.
 */
import { MutationRefused, ValidationError } from '../core/errors.js';
import { defineMutators } from '../core/mutators.js';

/** The collection the demo page shows. */
export const DEMO_COLLECTION = 'games';

/** Experience per level: level L goes up once its experience reaches L × 100 (kept, not spent). */
export const XP_PER_LEVEL = 100;

export interface Game {
  _id: string;
  name: string;
  gold: number;
  experience: number;
  level: number;
  version?: number;
}

/** `{ amount }`: a whole number from 1 to 1,000 (a hand-written schema: the page bundles no zod). */
const amountArgs = {
  parse(input: unknown): { amount: number } {
    const amount = (input as { amount?: unknown } | null)?.amount;
    if (!Number.isInteger(amount) || (amount as number) < 1 || (amount as number) > 1000) {
      throw new ValidationError('amount must be a whole number from 1 to 1000', '/amount');
    }
    return { amount: amount as number };
  },
};

export const gameMutators = defineMutators<Game>({
  addGold: {
    args: amountArgs,
    run(game, { amount }: { amount: number }) {
      game.gold = (game.gold ?? 0) + amount;
    },
  },
  addXp: {
    args: amountArgs,
    run(game, { amount }: { amount: number }) {
      game.experience = (game.experience ?? 0) + amount;
    },
  },
  levelUp(game) {
    const level = game.level ?? 1;
    const needed = level * XP_PER_LEVEL;
    if ((game.experience ?? 0) < needed) {
      throw new MutationRefused('not_enough_xp', `level ${level + 1} needs ${needed} XP`);
    }
    game.level = level + 1;
  },
});
