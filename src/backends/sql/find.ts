/**
 * The statements behind `find` on PostgreSQL and PGlite (see src/storage/find.ts for the order
 * every backend gives: mingo's sort, ties and unsorted finds in natural order, here `ORDER BY id`).
 *
 * - **Pushed down**: when the filter translates exactly (`translateFilter(…).exact`), one
 *   statement answers the whole find: filter, order, `OFFSET` and `LIMIT` in the database (see
 *   `sortedStatement` for a sort). The sort keys follow mingo's order of scalars: rank (null and
 *   missing 0, number 1, string 2, boolean 3), then the number (`numeric`, exact: JSON numbers
 *   written from JavaScript order as the doubles they came from), then the string by UTF-16 code
 *   unit (`utf16Order`). A match with an array or object at a sort path, or a path through an
 *   array, is one mingo orders in ways SQL cannot follow: the statement says so, and then…
 * - **Pages**: candidates (the filter's superset condition) in id order, checked and ordered in
 *   process by `findInPages`, which stops reading as soon as it can (no sort: once `skip + limit`
 *   matched) and holds at most `MAX_SORT_BUFFER` documents for a sort with a limit. The first page
 *   is one keyset read; after it, the remaining candidates' ids are read `ID_ROWS` at a time and
 *   their documents fetched by primary key, `PAGE_ROWS` at a time. Not a keyset read per page:
 *   without statistics (PGlite never analyzes by itself) PostgreSQL plans `id > $n ORDER BY id
 *   LIMIT $m` as a scan and sort of every later row, which made a paged scan quadratic.
 */
import type { Filter, FindOptions } from '../../core/collection-backend.js';
import type { SortKey } from '../../storage/find.js';
import { sortKeys } from '../../storage/find.js';
import { translateFilter } from './filter.js';

const table = 'eventsync_documents';

/** Candidate documents per page when the database cannot answer a find by itself. */
export const PAGE_ROWS = 1000;
/** Candidate ids read at a time after the first page. */
export const ID_ROWS = 20_000;
/** At most this many documents are held in process for a sort the database could not run. */
export const MAX_SORT_BUFFER = 10_000;

export interface Statement {
  text: string;
  params: unknown[];
}

export interface FindPlan {
  /** The whole find in one statement (rows `{ data, unordered? }`), when the filter is exact. */
  pushed: Statement | undefined;
  /** Candidates in id order (rows `{ id, data }`): append the last id read ('' first) and how many. */
  page: Statement;
  /** The same candidates' ids only (rows `{ id }`), with the same two parameters appended. */
  ids: Statement;
  /** Documents by id (rows `{ id, data }`): append the ids (text[]). */
  byIds: Statement;
}

/** How `find(filter, options)` runs; undefined when the filter matches nothing. */
export function findPlan(
  collection: string,
  filterIndex: boolean,
  filter: Filter,
  options: FindOptions,
): FindPlan | undefined {
  // With a filter index, the collection is a literal (a checked name) that the partial index's
  // predicate can be matched against (schema.ts); the filter's parameters then start at $1.
  const translated = translateFilter(filter, filterIndex ? 1 : 2);
  if (translated.sql === 'FALSE') return undefined;
  const scope = filterIndex ? `collection = '${collection}'` : 'collection = $1';
  const params = filterIndex ? translated.params : [collection, ...translated.params];
  const where = `${scope} AND ${translated.sql}`;
  const n = params.length + 1;
  const keyset = `WHERE ${where} AND id > $${n} ORDER BY id LIMIT $${n + 1}`;
  const plan: FindPlan = {
    pushed: undefined,
    page: { text: `SELECT id, data FROM ${table} ${keyset}`, params },
    ids: { text: `SELECT id FROM ${table} ${keyset}`, params },
    byIds: {
      text: `SELECT id, data FROM ${table} WHERE collection = $1 AND id = ANY($2::text[])`,
      params: [collection],
    },
  };
  if (!translated.exact) return plan;
  const count = [options.limit || null, options.skip ?? 0];
  if (!options.sort) {
    const text = `SELECT data FROM ${table} WHERE ${where} ORDER BY id LIMIT $${n} OFFSET $${n + 1}`;
    return { ...plan, pushed: { text, params: [...params, ...count] } };
  }
  const keys = sortKeys(options.sort);
  return keys ? { ...plan, pushed: sortedStatement(where, params, keys, count) } : plan;
}

/**
 * A find with a sort, in one scan of the matches: each row's sort keys and whether mingo could
 * place it (`u`), computed once per row (the `OFFSET 0` subqueries keep PostgreSQL from
 * inlining a value into each of its uses, which would read the path again each time); the
 * matches sorted with `u` first, `skip + limit` of them kept (a top-N sort); the first row
 * always returned, without its document unless it belongs to the page, so that its `u` tells
 * whether any match was one only mingo can place.
 */
function sortedStatement(where: string, params: unknown[], keys: SortKey[], count: unknown[]): Statement {
  const all = [...params];
  const param = (value: unknown) => {
    all.push(value);
    return `$${all.length}::text[]`;
  };
  const values: string[] = [];
  const types: string[] = [];
  const columns: string[] = [];
  const order = ['u DESC'];
  const unordered: string[] = [];
  keys.forEach(({ keys: path, descending }, i) => {
    const v = `v${i}`;
    const t = `t${i}`;
    values.push(`data #> ${param(path)} AS ${v}`);
    types.push(`jsonb_typeof(${v}) AS ${t}`);
    columns.push(
      `CASE ${t} WHEN 'number' THEN 1 WHEN 'string' THEN 2 WHEN 'boolean' THEN 3 ELSE 0 END AS r${i}`,
      // Booleans share the numeric column: the rank keeps them apart from numbers.
      `CASE ${t} WHEN 'number' THEN ${v}::numeric WHEN 'boolean' THEN CASE WHEN ${v}::boolean THEN 1 ELSE 0 END END AS n${i}`,
      `CASE WHEN ${t} = 'string' THEN ${utf16Order(`(${v} #>> '{}')`)} END AS s${i}`,
    );
    const dir = descending ? ' DESC' : '';
    order.push(`r${i}${dir}`, `n${i}${dir}`, `s${i} COLLATE "C"${dir}`);
    unordered.push(`${t} IN ('array', 'object')`);
    // mingo maps a non-index key over an array (a value SQL's #> does not see).
    for (let j = 1; j < path.length; j++) {
      if (!/^\d+$/.test(path[j]!))
        unordered.push(`jsonb_typeof(data #> ${param(path.slice(0, j))}) = 'array'`);
    }
  });
  // `u` is never NULL (a missing path's type is): NULLs would sort first under `u DESC`.
  const skip = `$${all.length + 2}::bigint`;
  const limit = `$${all.length + 1}::bigint`;
  const by = `${order.join(', ')}, id`;
  const text = `SELECT CASE WHEN rn > ${skip} THEN data END AS data, u AS unordered FROM (
      SELECT data, u, row_number() OVER (ORDER BY ${by}) AS rn FROM (
        SELECT * FROM (
          SELECT id, data, ${columns.join(', ')}, COALESCE(${unordered.join(' OR ')}, false) AS u FROM (
            SELECT id, data, ${values.map((_, i) => `v${i}`).join(', ')}, ${types.join(', ')}
            FROM (SELECT id, data, ${values.join(', ')} FROM ${table} WHERE ${where} OFFSET 0) a OFFSET 0
          ) b
        ) c ORDER BY ${by} LIMIT ${skip} + ${limit}
      ) d
    ) e WHERE rn = 1 OR rn > ${skip} ORDER BY rn`;
  return { text, params: [...all, ...count] };
}

/**
 * `text` mapped so that its order in the "C" collation (by code point) is JavaScript's (by UTF-16
 * code unit). The two differ only between U+E000–U+FFFF and the code points above U+FFFF, which
 * UTF-16 puts first (surrogates are D800–DFFF): each U+E000–U+FFFF becomes U+10FFFF followed by
 * itself, and U+10FFFF itself becomes U+10FFFF U+0001, so that the mapped strings compare as the
 * originals do in UTF-16. Strings without those characters stay as they are.
 */
function utf16Order(text: string): string {
  const mapped = `regexp_replace(regexp_replace(${text}, '\\U0010FFFF', chr(1114111) || chr(1), 'g'), '([\\uE000-\\uFFFF])', chr(1114111) || '\\1', 'g')`;
  return `CASE WHEN ${text} ~ '[\\uE000-\\uFFFF\\U0010FFFF]' THEN ${mapped} ELSE ${text} END`;
}
