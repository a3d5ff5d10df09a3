/**
 * The mutators of the client mutation tests against a real server (mutation-convergence.test.ts,
 * mutations-e2e.test.ts): a ledger with gold and notes. `add` always changes the document,
 * `spend` refuses when gold is short, `note` appends (so the order mutations run in shows).
 */
import { defineMutators, MutationRefused } from '../../src/client.js';
import { amount } from '../support/player-mutators.js';

export interface Ledger {
  _id: string;
  gold: number;
  notes: string[];
}

const text = {
  parse(input: unknown): { text: string } {
    const value = (input as { text?: unknown } | undefined)?.text;
    if (typeof value !== 'string') throw new Error('text must be a string');
    return { text: value };
  },
};

export const ledgerMutators = defineMutators<Ledger>({
  add: {
    args: amount,
    run(draft, { amount }: { amount: number }) {
      draft.gold += amount;
      return { gold: draft.gold };
    },
  },
  spend: {
    args: amount,
    run(draft, { amount }: { amount: number }) {
      if (draft.gold < amount)
        throw new MutationRefused('not_enough_gold', `${amount} gold is more than there is`);
      draft.gold -= amount;
    },
  },
  note: {
    args: text,
    run(draft, { text }: { text: string }) {
      draft.notes.push(text);
    },
  },
});

export type LedgerMutation =
  | { name: 'add' | 'spend'; args: { amount: number } }
  | { name: 'note'; args: { text: string } };
