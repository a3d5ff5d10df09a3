/**
 * The order, skip and limit of `findMany`, shared by every backend for the part of a find it
 * cannot answer in its database, without holding the whole collection.
 *
 * The answer is always mingo's: `findInMemory(matches, filter, { sort, skip, limit })` over every
 * matching document in the backend's *natural order* (memory: insertion order; PostgreSQL and
 * PGlite: the `id` column's order). mingo's sort is stable, so ties, and everything when there is
 * no sort, keep that natural order.
 *
 * Scalar sort values have a total order in mingo: null and missing (equal) < numbers < strings
 * (by UTF-16 code unit) < booleans. Over those, a heap of the best `skip + limit` matches gives
 * mingo's answer while reading the candidates page by page. A sort path that reaches an array
 * or an object, or runs through an array (`a.b` over `a: [{ b: 1 }]`), is compared by mingo in
 * ways that are not a total order: then only mingo itself over every match gives its answer,
 * and the find starts over collecting every match. Either way at most `maxBuffered` documents are
 * held when a limit was asked for (beyond it: `too_large`), so a bounded request stays bounded.
 */
import { Query } from 'mingo';
import type { Filter, FindOptions, SortSpec } from '../core/collection-backend.js';
import { EventSyncError, ValidationError } from '../core/errors.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import { findInMemory } from './mongo.js';

/** A sort value mingo orders totally (missing is `null`, as mingo groups it). */
export type Scalar = null | number | string | boolean;

/** A sort value only mingo itself can place: an array, an object, or a path through an array. */
export const UNORDERED: unique symbol = Symbol('unordered');

export interface SortKey {
  /** The path's object keys (or array indexes, all digits). */
  keys: string[];
  descending: boolean;
}

/** Throws `ValidationError` for what mingo would refuse: negative or fractional counts, an empty sort. */
export function assertFindOptions(options: FindOptions): void {
  for (const name of ['skip', 'limit'] as const) {
    const value = options[name];
    if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
      throw new ValidationError(`${name} must be a non-negative integer`, `/${name}`);
    }
  }
  const { sort } = options;
  if (
    sort !== undefined &&
    (typeof sort !== 'object' || sort === null || Array.isArray(sort) || Object.keys(sort).length === 0)
  ) {
    throw new ValidationError('sort must be an object of field paths, each 1 or -1', '/sort');
  }
}

/**
 * The sort's keys in mingo's order of precedence, or undefined when a path is one mingo may read
 * differently from a plain walk (an empty or `$` segment, `__proto__`): then mingo sorts.
 */
export function sortKeys(sort: SortSpec): SortKey[] | undefined {
  const keys: SortKey[] = [];
  for (const [path, direction] of Object.entries(sort)) {
    const segments = path.split('.');
    if (segments.some((s) => s === '' || s.startsWith('$') || s === '__proto__')) return undefined;
    // mingo: -1 is descending, anything else ascending.
    keys.push({ keys: segments, descending: direction === -1 });
  }
  return keys;
}

const isDigits = (s: string) => /^\d+$/.test(s);

/**
 * The value mingo sorts `doc` by at `keys`, when it is a scalar reached without passing through
 * an array (an all-digit key indexes an array, as in mingo); otherwise `UNORDERED`.
 */
export function scalarAt(doc: JsonObject, keys: readonly string[]): Scalar | typeof UNORDERED {
  let value: JsonValue | undefined = doc;
  for (const key of keys) {
    if (Array.isArray(value)) {
      if (!isDigits(key)) return UNORDERED;
      value = value[Number(key)];
    } else if (typeof value === 'object' && value !== null) {
      value = Object.hasOwn(value, key) ? value[key] : undefined;
    } else {
      return null;
    }
    if (value === undefined) return null;
  }
  return typeof value === 'object' && value !== null ? UNORDERED : (value as Scalar);
}

const rank = (v: Scalar): number =>
  v === null ? 0 : typeof v === 'number' ? 1 : typeof v === 'string' ? 2 : 3;

/** mingo's order of two scalars: null < numbers < strings (UTF-16 code units) < false < true. */
export function compareScalars(a: Scalar, b: Scalar): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (a === null || a === b) return 0;
  return (a as number | string | boolean) < (b as number | string | boolean) ? -1 : 1;
}

interface Entry {
  values: Scalar[];
  /** Position in the natural order: mingo's stable sort keeps ties in it. */
  seq: number;
  doc: JsonObject;
}

/** The `k` smallest entries seen, as a binary heap with the largest at the top. */
class TopK {
  readonly #heap: Entry[] = [];
  constructor(
    readonly k: number,
    readonly order: (a: Entry, b: Entry) => number,
  ) {}

  get size(): number {
    return this.#heap.length;
  }

  /** Keeps `entry` when it is among the k smallest so far. */
  offer(entry: Entry): void {
    const heap = this.#heap;
    if (heap.length < this.k) {
      heap.push(entry);
      this.#up(heap.length - 1);
    } else if (this.k > 0 && this.order(entry, heap[0]!) < 0) {
      heap[0] = entry;
      this.#down(0);
    }
  }

  sorted(): Entry[] {
    return [...this.#heap].sort(this.order);
  }

  #up(i: number): void {
    const heap = this.#heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.order(heap[i]!, heap[parent]!) <= 0) return;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #down(i: number): void {
    const heap = this.#heap;
    for (;;) {
      const left = 2 * i + 1;
      let top = i;
      if (left < heap.length && this.order(heap[left]!, heap[top]!) > 0) top = left;
      if (left + 1 < heap.length && this.order(heap[left + 1]!, heap[top]!) > 0) top = left + 1;
      if (top === i) return;
      [heap[i], heap[top]] = [heap[top]!, heap[i]!];
      i = top;
    }
  }
}

/** Pages of candidates (a superset of the matches) in natural order; called again to start over. */
export type Pages = () => Iterable<readonly JsonObject[]> | AsyncIterable<readonly JsonObject[]>;

/**
 * Runs one find over `pages`: exact matches (mingo) in mingo's order, after `skip`, at most `limit`.
 * `maxBuffered`: see the module doc. Synchronous pages are read synchronously (the memory
 * backend's find then sees one state of its rows).
 */
export async function findInPages(
  pages: Pages,
  filter: Filter,
  options: FindOptions,
  maxBuffered = Number.POSITIVE_INFINITY,
): Promise<JsonObject[]> {
  const test = matcher(filter);
  const keys = options.sort && sortKeys(options.sort);
  const limited = (options.limit ?? 0) > 0;
  let collector: Collector;
  if (!options.sort) collector = new FirstMatches(test, options);
  else if (keys && limited) collector = new BestMatches(test, keys, options, maxBuffered);
  else collector = new AllMatches(test, options, limited ? maxBuffered : Number.POSITIVE_INFINITY);
  await feed(pages, collector);
  if (collector instanceof BestMatches && collector.unordered) {
    // A sort value only mingo can place: start over with every match.
    collector = new AllMatches(test, options, maxBuffered);
    await feed(pages, collector);
  }
  return collector.result();
}

async function feed(pages: Pages, collector: Collector): Promise<void> {
  const source = pages();
  if (Symbol.iterator in source) {
    for (const page of source) if (!collector.add(page)) return;
  } else {
    for await (const page of source) if (!collector.add(page)) return;
  }
}

/** mingo's test for `filter`, with its errors as `ValidationError` (as `findInMemory` reports them). */
function matcher(filter: Filter): (doc: JsonObject) => boolean {
  const invalid = (error: unknown) =>
    new ValidationError(`invalid query: ${(error as Error).message}`, '', { cause: error });
  let query: Query;
  try {
    query = new Query(filter);
  } catch (error) {
    throw invalid(error);
  }
  return (doc) => {
    try {
      return query.test(doc);
    } catch (error) {
      throw invalid(error);
    }
  };
}

interface Collector {
  /** Takes the next page of candidates; false once it needs no more. */
  add(page: readonly JsonObject[]): boolean;
  result(): JsonObject[];
}

/** No sort: the first `skip + limit` matches in natural order; reading stops there. */
class FirstMatches implements Collector {
  readonly #found: JsonObject[] = [];
  #toSkip: number;
  readonly #limit: number;
  constructor(
    readonly test: (doc: JsonObject) => boolean,
    options: FindOptions,
  ) {
    this.#toSkip = options.skip ?? 0;
    this.#limit = options.limit || Number.POSITIVE_INFINITY;
  }

  add(page: readonly JsonObject[]): boolean {
    for (const doc of page) {
      if (!this.test(doc)) continue;
      if (this.#toSkip > 0) this.#toSkip--;
      else if (this.#found.push(doc) >= this.#limit) return false;
    }
    return true;
  }

  result(): JsonObject[] {
    return this.#found;
  }
}

/** A sort with a limit over scalar values: the best `skip + limit` matches in a heap. */
class BestMatches implements Collector {
  readonly #heap: TopK;
  readonly #skip: number;
  #seq = 0;
  unordered = false;

  constructor(
    readonly test: (doc: JsonObject) => boolean,
    readonly keys: SortKey[],
    options: FindOptions,
    readonly maxBuffered: number,
  ) {
    this.#skip = options.skip ?? 0;
    this.#heap = new TopK(this.#skip + (options.limit ?? 0), (a, b) => {
      for (let i = 0; i < keys.length; i++) {
        const c = compareScalars(a.values[i]!, b.values[i]!);
        if (c !== 0) return keys[i]!.descending ? -c : c;
      }
      return a.seq - b.seq;
    });
  }

  add(page: readonly JsonObject[]): boolean {
    for (const doc of page) {
      if (!this.test(doc)) continue;
      const values: Scalar[] = [];
      for (const key of this.keys) {
        const value = scalarAt(doc, key.keys);
        if (value === UNORDERED) {
          this.unordered = true;
          return false;
        }
        values.push(value);
      }
      this.#heap.offer({ values, seq: this.#seq++, doc });
      if (this.#heap.size > this.maxBuffered) throw tooMany(this.maxBuffered);
    }
    return true;
  }

  result(): JsonObject[] {
    return this.#heap
      .sorted()
      .slice(this.#skip)
      .map((e) => e.doc);
  }
}

/** Every match, then mingo: a sort without a limit, or one only mingo can order. */
class AllMatches implements Collector {
  readonly #found: JsonObject[] = [];
  constructor(
    readonly test: (doc: JsonObject) => boolean,
    readonly options: FindOptions,
    readonly maxBuffered: number,
  ) {}

  add(page: readonly JsonObject[]): boolean {
    for (const doc of page) {
      if (!this.test(doc)) continue;
      if (this.#found.push(doc) > this.maxBuffered) throw tooMany(this.maxBuffered);
    }
    return true;
  }

  result(): JsonObject[] {
    const { sort, skip, limit } = this.options;
    return findInMemory(this.#found, {}, { ...(sort ? { sort } : {}), skip, limit });
  }
}

function tooMany(max: number): EventSyncError {
  return new EventSyncError(
    'too_large',
    `this sort holds more than ${max} documents in memory (skip + limit, or every match when a sort ` +
      'path reaches arrays or objects); lower skip, narrow the filter, or sort by fields holding scalars',
  );
}

/** Splits an iterable into arrays of `size` (the memory backend's rows as pages). */
export function* pagesOf<V>(items: Iterable<V>, size: number): Generator<V[]> {
  let page: V[] = [];
  for (const item of items) {
    page.push(item);
    if (page.length === size) {
      yield page;
      page = [];
    }
  }
  if (page.length > 0) yield page;
}
