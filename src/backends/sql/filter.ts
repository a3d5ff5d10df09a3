/**
 * MongoDB filter → SQL condition on `eventsync_documents`, returning a SUPERSET of the documents
 * mingo matches: a find re-checks every row with mingo, so matching more costs a little
 * reading, matching fewer loses documents. Whatever cannot be translated safely becomes `TRUE`,
 * or a weaker condition every match must meet ("the path's first key exists").
 * `translateFilter` also says when nothing was weakened (`exact`): then sort, skip and limit can
 * run in the database too (find.ts).
 *
 * Everything translatable becomes ONE SQL/JSON path predicate, `data @@ $n::jsonpath` (the path
 * text is a bound parameter, so the SQL text stays the same and statements can be prepared).
 * `@@` can use the GIN `jsonb_path_ops` index for `==` on a key path (`&&`/`||` of those too).
 * Lax-mode jsonpath unwraps arrays much like MongoDB: `$."tags" == "x"` is true when `tags` is
 * `"x"` or an array holding `"x"`, and a comparison is true when ANY item pair compares true
 * (items of another type are "unknown", never true, like MongoDB's type bracketing).
 *
 * | filter (on key path `a`, or `a.b…` = n keys)     | jsonpath                                          |
 * |--------------------------------------------------|---------------------------------------------------|
 * | `{a: 5}`, `{a: {$eq: 5}}` (number/string/bool)   | `$."a" == 5`                                      |
 * | `{a: {$gt: 5}}` (`$gte $lt $lte`; number/string) | `$."a" > 5`                                       |
 * | `{a: {$in: [1, "x"]}}` (scalars)                 | `($."a" == 1 \|\| $."a" == "x")`; `$in: []` → FALSE  |
 * | `{a: {$exists: true}}`                           | `exists($."a")` (dotted paths: first key exists)  |
 * | `{'a.b': 5}` (n ≥ 2 keys)                        | `($."a"[*]."b"[*][*][*] == 5 \|\| G)`, G below      |
 * | `{$and: [...]}` / several keys / several ops     | `(x && y)`                                        |
 * | `{$or: [...]}`                                   | `(x \|\| y)`                                        |
 * | `{_id: "x"}`, `{_id: {$in: [...]}}` at top level | SQL `id = $n` / `id = ANY($n::text[])` (primary key) |
 * | null/undefined operands (match missing fields)   | TRUE                                              |
 * | object/array/RegExp/Date operands, numeric path segments (`items.0.qty`), `$regex $size $elemMatch $all $mod` | `exists($."a")` (first key) |
 * | `$ne $nin $not $nor $exists:false $type $expr $where` …, unknown operators | TRUE                    |
 * | range on strings with code units ≥ U+D800        | `exists($."a")` (PostgreSQL orders by code point, JS by UTF-16 unit) |
 *
 * Dotted paths: mingo descends one array level per key and, where an array holds an array,
 * compares that inner array's items as if they sat at the end of the path (`{'a.b': 5}` matches
 * `{a: [[5]]}`), then flattens up to n levels at the end. `[*]` in lax mode yields the item
 * itself for non-arrays, so `[*]` after every key and n+1 of them at the end reach everything
 * mingo compares along the path; G (`$."a"[*].type() == "array"`, one per proper prefix) admits
 * every document with an array directly inside an array on the path. G is not indexable, so
 * dotted paths don't use the GIN index; single keys do.
 */

import { isPlainObject } from '../../core/values.js';

export type JsonPathCondition = string | boolean;

/** Deeper `$and`/`$or` nesting than this is left to mingo (TRUE). */
const MAX_DEPTH = 24;
/** Longer `$in` lists are left to mingo (weakened to "exists"). */
const MAX_IN = 1000;

export interface TranslatedFilter {
  /** A boolean SQL expression: `TRUE`, `FALSE`, or conditions joined by AND. */
  sql: string;
  params: unknown[];
  /**
   * Whether `sql` matches exactly what mingo matches (no part was weakened or left out), so that
   * the database can also sort, skip and limit (see find.ts). Only the translations a property
   * test checks for equality with mingo count: `_id` by the primary key, and single-key paths
   * with `$eq $gt $gte $lt $lte $in` of scalars, `$exists: true`, joined by `$and`/`$or`.
   */
  exact: boolean;
}

/** Set to false by any part of a translation that only narrows (a superset of mingo's matches). */
interface Exactness {
  exact: boolean;
}

/**
 * Translates `filter` into a WHERE fragment on the columns `id` and `data`, numbering its
 * parameters from `$firstParamIndex`.
 */
export function translateFilter(filter: Record<string, unknown>, firstParamIndex: number): TranslatedFilter {
  const params: unknown[] = [];
  const sql: string[] = [];
  const ctx: Exactness = { exact: true };
  const param = (value: unknown, cast: string) => {
    params.push(value);
    return `$${firstParamIndex + params.length - 1}::${cast}`;
  };
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(filter)) {
    const ids = key === '_id' ? idCondition(value) : undefined;
    if (ids === undefined) rest[key] = value;
    else if (ids.length === 0) return { sql: 'FALSE', params: [], exact: true };
    else if (ids.length === 1) sql.push(`id = ${param(ids[0], 'text')}`);
    else sql.push(`id = ANY(${param(ids, 'text[]')})`);
  }
  const path = filterToJsonPath(rest, 0, ctx);
  // FALSE only ever comes from `$in: []`, which matches nothing in mingo either.
  if (path === false) return { sql: 'FALSE', params: [], exact: true };
  if (path !== true) sql.push(`data @@ ${param(path, 'jsonpath')}`);
  return { sql: sql.length === 0 ? 'TRUE' : sql.join(' AND '), params, exact: ctx.exact };
}

/** The ids `{_id: …}` allows, when it is a string, `{$eq: string}` or `{$in: strings}`; else undefined. */
function idCondition(value: unknown): string[] | undefined {
  if (typeof value === 'string') return encodable(value) ? [value] : undefined;
  if (!isPlainObject(value)) return undefined;
  const keys = Object.keys(value);
  if (keys.length !== 1) return undefined;
  const operand = value[keys[0]!];
  if (keys[0] === '$eq') return typeof operand === 'string' && encodable(operand) ? [operand] : undefined;
  if (keys[0] === '$in' && Array.isArray(operand) && operand.length <= MAX_IN) {
    return operand.every((v) => typeof v === 'string' && encodable(v))
      ? [...new Set(operand as string[])]
      : undefined;
  }
  return undefined;
}

/** The filter as one jsonpath predicate; `true` when nothing narrows, `false` when nothing can match. */
export function filterToJsonPath(
  filter: Record<string, unknown>,
  depth = 0,
  ctx: Exactness = { exact: true },
): JsonPathCondition {
  if (depth > MAX_DEPTH || !isPlainObject(filter)) return inexact(ctx, true);
  const parts: JsonPathCondition[] = [];
  for (const [key, value] of Object.entries(filter)) {
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(value) || value.length === 0 || !value.every(isPlainObject)) {
        inexact(ctx, true);
        continue;
      }
      const each = value.map((f) => filterToJsonPath(f, depth + 1, ctx));
      parts.push(key === '$and' ? and(each) : or(each));
    } else if (key.startsWith('$')) {
      // $nor, $expr, $where, $jsonSchema, $comment, $text …: left to mingo.
      inexact(ctx, true);
    } else {
      parts.push(fieldCondition(key, value, ctx));
    }
  }
  return and(parts);
}

/** Notes that the translation is a superset only, and passes `condition` on. */
function inexact(ctx: Exactness, condition: JsonPathCondition): JsonPathCondition {
  ctx.exact = false;
  return condition;
}

function fieldCondition(key: string, value: unknown, ctx: Exactness): JsonPathCondition {
  const keys = key.split('.');
  if (keys.some((k) => k === '' || k === '__proto__' || !encodable(k))) return inexact(ctx, true);
  const path = new KeyPath(keys);
  // Dotted and numeric paths are widened (see KeyPath): never exact.
  if (!path.exact) inexact(ctx, true);
  if (isPlainObject(value)) {
    const ops = Object.keys(value);
    const dollar = ops.filter((k) => k.startsWith('$'));
    if (dollar.length === 0) return inexact(ctx, path.weak()); // object equality
    if (dollar.length !== ops.length) return inexact(ctx, true); // mingo rejects a mix; leave it to mingo
    return and(ops.map((op) => operatorCondition(path, op, value[op], ctx)));
  }
  return operatorCondition(path, '$eq', value, ctx);
}

const comparisons: Record<string, string> = { $eq: '==', $gt: '>', $gte: '>=', $lt: '<', $lte: '<=' };
/** Operators that never match a missing field (so the first key must exist) but aren't translated. */
const requireField = new Set(['$regex', '$size', '$elemMatch', '$all', '$mod']);

function operatorCondition(path: KeyPath, op: string, operand: unknown, ctx: Exactness): JsonPathCondition {
  const cmp = comparisons[op];
  if (cmp !== undefined) {
    if (operand === null || operand === undefined) return inexact(ctx, true); // matches missing fields too
    const literal = op === '$eq' ? eqLiteral(operand) : rangeLiteral(operand);
    return literal === undefined ? inexact(ctx, path.weak()) : path.compare(cmp, literal);
  }
  if (op === '$in') {
    if (!Array.isArray(operand)) return inexact(ctx, true);
    if (operand.some((v) => v === null || v === undefined)) return inexact(ctx, true);
    if (operand.length === 0) return false;
    const literals = operand.length <= MAX_IN ? operand.map(eqLiteral) : [undefined];
    if (literals.some((l) => l === undefined)) return inexact(ctx, path.weak());
    return path.anyEquals([...new Set(literals as string[])]);
  }
  if (op === '$exists') return operand ? path.exists() : inexact(ctx, true);
  if (requireField.has(op)) return inexact(ctx, path.weak());
  return inexact(ctx, true);
}

/** A jsonpath literal for equality with `value`, or undefined when it has none. */
function eqLiteral(value: unknown): string | undefined {
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') return Number.isFinite(value) ? JSON.stringify(value) : undefined;
  if (typeof value === 'string') return encodable(value) ? JSON.stringify(value) : undefined;
  return undefined;
}

/**
 * A literal for `< <= > >=`: numbers, and strings whose order is the same by UTF-16 code unit
 * (JavaScript, mingo) and by code point (PostgreSQL's jsonpath): a literal without code units
 * ≥ U+D800 orders the same against any string both ways.
 */
function rangeLiteral(value: unknown): string | undefined {
  if (typeof value === 'string' && /[\ud800-\uffff]/.test(value)) return undefined;
  return typeof value === 'boolean' ? undefined : eqLiteral(value);
}

/** A string PostgreSQL can hold in jsonb and jsonpath: no NUL, no lone surrogate. */
function encodable(s: string): boolean {
  return !s.includes('\u0000') && !loneSurrogate.test(s);
}
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

class KeyPath {
  readonly #keys: string[];
  readonly #quoted: string[];
  /** Has a purely numeric segment (`items.0.qty`): an array index or an object key in MongoDB. */
  readonly #numeric: boolean;

  constructor(keys: string[]) {
    this.#keys = keys;
    this.#quoted = keys.map((k) => `.${JSON.stringify(k)}`);
    this.#numeric = keys.some((k) => /^\d+$/.test(k));
  }

  /** Whether conditions on this path translate exactly: one key, not all digits. */
  get exact(): boolean {
    return this.#keys.length === 1 && !this.#numeric;
  }

  /** The necessary condition for anything that can't match a missing field: the first key exists. */
  weak(): string {
    return `exists($${this.#quoted[0]})`;
  }

  compare(op: string, literal: string): JsonPathCondition {
    if (this.#numeric) return this.weak();
    return or([`${this.#deep()} ${op} ${literal}`, this.#guard()]);
  }

  anyEquals(literals: string[]): JsonPathCondition {
    if (this.#numeric) return this.weak();
    const deep = this.#deep();
    return or([...literals.map((l) => `${deep} == ${l}`), this.#guard()]);
  }

  /**
   * `$exists: true`. On a dotted path mingo answers true whenever the parent path resolves to an
   * array holding anything (`{'c.b.a': {$exists: true}}` matches `{c: [{b: []}]}`), so only the
   * first key is required there.
   */
  exists(): string {
    return this.#keys.length === 1 ? `exists($${this.#quoted[0]})` : this.weak();
  }

  /** The path with array unwrapping after each key and n+1 levels at the end (see the module doc). */
  #deep(): string {
    if (this.#keys.length === 1) return `$${this.#quoted[0]}`;
    return `$${this.#quoted.join('[*]')}${'[*]'.repeat(this.#keys.length + 1)}`;
  }

  /** True when an array directly holds an array at some proper prefix of the path (mingo then compares its items). */
  #guard(): JsonPathCondition {
    const prefixes: string[] = [];
    for (let i = 1; i < this.#keys.length; i++) {
      prefixes.push(`$${this.#quoted.slice(0, i).join('[*]')}[*].type() == "array"`);
    }
    return or(prefixes);
  }
}

function and(parts: JsonPathCondition[]): JsonPathCondition {
  if (parts.includes(false)) return false;
  return join(
    parts.filter((p): p is string => p !== true),
    '&&',
    true,
  );
}

function or(parts: JsonPathCondition[]): JsonPathCondition {
  if (parts.includes(true)) return true;
  return join(
    parts.filter((p): p is string => p !== false),
    '||',
    false,
  );
}

/** Joins as a balanced tree, so a long `$in` doesn't nest thousands deep when PostgreSQL evaluates it. */
function join(parts: string[], op: string, empty: boolean): JsonPathCondition {
  if (parts.length === 0) return empty;
  if (parts.length === 1) return parts[0]!;
  if (parts.length === 2) return `(${parts[0]} ${op} ${parts[1]})`;
  const mid = Math.ceil(parts.length / 2);
  return `(${join(parts.slice(0, mid), op, empty)} ${op} ${join(parts.slice(mid), op, empty)})`;
}
