/**
 * Reads are scoped before they are shaped: a list or a collection subscription ranges only over
 * the documents its principal may read, so no answer (which documents, their order, a `skip`, a
 * page's length) depends on a document the principal may not read. Without this, a filter like
 * `{ $or: [{ _id: 'mine' }, { _id: 'theirs', salary: { $gt: N } }] }` with a sort or a skip
 * turns a list into an oracle for hidden values (issue 15).
 *
 * The scope comes from the engine's `authorizeQuery` (a filter AND-ed into the client's), or,
 * without one, from `authorize` alone: then only documents already admitted may be filtered
 * ('per-document'; REST lists do that in memory, see `readableFinder` in src/server/pages.ts).
 */
import { assertFilter } from '../storage/mongo.js';
import type { Filter } from '../storage/types.js';

/** A filter no document matches (SQL: `FALSE`, no read). */
export const NOTHING: Filter = Object.freeze({ _id: { $in: [] } });

/**
 * What lists and collection subscriptions of one principal may range over: a filter to AND into
 * the query (`{}`: everything), or 'per-document' when only `authorize` knows, one document at a time.
 */
export type ReadScope = Filter | 'per-document';

/**
 * The scope an `authorizeQuery` answered, checked: `true` is everything, `false` nothing, an
 * object a filter (the whole filter language: this is server code). Anything else throws a plain
 * `Error`, which the transports log and answer as `internal`: a rule that returned nothing, or a
 * filter that does not parse, must fail loudly and closed, never open the collection.
 */
export function checkedScope(answer: unknown): Filter {
  if (answer === true) return {};
  if (answer === false) return NOTHING;
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) {
    throw new Error(`authorizeQuery must return a filter, true or false, not ${String(answer)}`);
  }
  try {
    assertFilter(answer as Filter);
  } catch (error) {
    throw new Error(`authorizeQuery returned an invalid filter: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return answer as Filter;
}

/** Both filters (`{ $and: [a, b] }`), or the one that is not empty. */
export function andFilters(a: Filter, b: Filter): Filter {
  if (Object.keys(a).length === 0) return b;
  if (Object.keys(b).length === 0) return a;
  return { $and: [a, b] };
}
