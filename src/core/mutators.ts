/**
 * Mutators: named functions the server owns that change one document, the only way a client
 * acts (see docs/MUTATIONS.md). The same definitions run on the server (authoritative, inside
 * `EventSyncStorage.findOneAndUpdate`) and on the client (to predict the outcome at once), so
 * they live here: browser-safe, no I/O.
 */
import { ValidationError } from './errors.js';

/** A mutator's name: 1 to 64 of `A-Z a-z 0-9 _`, starting with a letter or `_` (`addGold`). */
export const MUTATOR_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** A `MutationRefused` reason: a snake_case code of the mutator's own (`not_enough_xp`). */
export const REFUSAL_REASON_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

/** What a mutator knows besides the draft and its arguments. */
export interface MutationContext {
  /** Who asked: the server's principal. Absent on the client, where the mutator only predicts. */
  readonly principal?: { readonly id: string };
  /** The client that asked (its mutations run in `mid` order, each once). */
  readonly clientId: string;
  readonly collection: string;
  readonly documentId: string;
  /** The client's number for this mutation: 1, 2, 3, … per client id. */
  readonly mid: number;
  /**
   * Deletes the document instead of keeping the draft (what `run` returns is still the result).
   * The last call of a run wins: a run that throws after it deletes nothing.
   */
  delete(): void;
}

/** Anything with zod's `parse` (zod, valibot's wrappers, a hand-written check): throws on bad input. */
export interface ArgsSchema<A> {
  parse(input: unknown): A;
}

/**
 * A mutator's code: change `draft` in place (it is a copy-on-write draft of the document). What
 * it returns (JSON) is the mutation's `result`. It must be a pure function of the document and
 * its arguments: the server may run it again when the document changed under it, and the client
 * runs it to predict. Throw `MutationRefused` to refuse.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: mutators that change the draft return nothing
export type MutatorRun<T, A> = (draft: T, args: A, ctx: MutationContext) => unknown | void;

/** A mutator as an object: with a schema for its arguments (the server parses `args` with it before running; absent: any). */
export interface MutatorSpec<T, A> {
  args?: ArgsSchema<A>;
  run: MutatorRun<T, A>;
  /**
   * The mutator may create its document: when it does not exist, `run` gets the draft
   * `{ _id: documentId }` and what it leaves there is created. Without it, a missing document is
   * `not_found`.
   */
  create?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: a mutator's arguments are whatever its schema parses to
export type Mutator<T, A = any> = MutatorRun<T, A> | MutatorSpec<T, A>;

/** A collection's mutators, by name. */
export type Mutators<T> = Record<string, Mutator<T>>;

/** Declares a collection's mutators (checks their names; the type ties them to the document type). */
export function defineMutators<T, M extends Mutators<T> = Mutators<T>>(mutators: M): M {
  for (const name of Object.keys(mutators)) assertMutatorName(name);
  return mutators;
}

export function assertMutatorName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !MUTATOR_NAME_PATTERN.test(name)) {
    throw new ValidationError(
      `invalid mutator name ${JSON.stringify(name)}: use 1 to 64 of A-Z a-z 0-9 _, starting with a letter or _`,
    );
  }
}

/** The mutator `name` of `mutators` as a spec (`args` absent: any arguments), or `undefined`. */
export function mutatorNamed<T>(
  mutators: Mutators<T> | undefined,
  name: string,
): { args?: ArgsSchema<unknown>; run: MutatorRun<T, unknown>; create?: boolean } | undefined {
  if (!mutators || !Object.hasOwn(mutators, name)) return undefined;
  const mutator = mutators[name];
  if (typeof mutator === 'function') return { run: mutator };
  return mutator;
}
