/**
 * The dotted paths of a document type, each with the type found there: what the typed filters and
 * update operators (`query.ts`) check keys and values against. Types only, no code.
 *
 * A path names object members by key and array elements by index (`'items.0.name'`); update
 * paths also take the all-elements positional `$[]` (`'items.$[].name'`), and filter paths also
 * reach into array elements without an index (`'items.name'` matches when any element's `name`
 * does, as in MongoDB). Paths are followed {@link MAX_DEPTH} segments deep; below that, and below
 * a member holding its parent's own type (a tree), `any` or `unknown`, any path is accepted with
 * any value (as the MongoDB driver does), so recursive and very deep types cost the compiler a
 * bounded amount.
 */

/** Checked segments of a path; deeper ones are accepted unchecked. */
type MAX_DEPTH = 8;

/** `Shallower[D]` is `D - 1`, and `never` once the depth is spent. `D`: the segments left below the next one. */
type Shallower = [never, 0, 1, 2, 3, 4, 5, 6, 7, 8];

/** Values with no paths inside. */
type Leaf =
  | string
  | number
  | boolean
  | bigint
  | symbol
  | null
  | undefined
  | Date
  | RegExp
  | Uint8Array
  | ((...args: never[]) => unknown);

/** The type at a path that is not checked: anything goes there, as in an untyped document. */
// biome-ignore lint/suspicious/noExplicitAny: `any`, not `unknown`, so that every operator accepts an unchecked path
type Unchecked = any;

/** `update` paths take `$[]` for every element of an array; `filter` paths reach into elements without an index. */
export type PathMode = 'update' | 'filter';

/**
 * One path of a document type: the dotted `path`, the `value` type there (optional members
 * include `undefined`), and whether the path goes through an array element (`inArray`: no
 * section there, no `$rename`).
 */
export interface PathEntry {
  path: string;
  value: unknown;
  inArray: boolean;
}

/** Every path of `T` in `mode`, as a union of {@link PathEntry}. */
export type PathEntries<T, M extends PathMode> = EntriesOf<T, M, Shallower[MAX_DEPTH]>;

type EntriesOf<T, M extends PathMode, D extends number> = [D] extends [never]
  ? never
  : T extends Leaf
    ? never
    : T extends readonly (infer E)[]
      ? ElementEntries<T, E, M, D>
      : T extends object
        ? { [K in keyof T & string]-?: MemberEntries<T, K, T[K], M, D> }[keyof T & string]
        : never;

/**
 * `true` when the paths below `V` are not followed: `V` is `any` or `unknown`, or holds the very
 * type of its parent, or an array of it (a recursive type: a node's `children: Node[]`, `JsonValue`).
 * Following them would only repeat the parent's paths, once per level, until the depth is spent.
 */
type Unfollowed<Parent, V> = unknown extends V
  ? true
  : Same<Extract<NonNullable<V> | ElementOf<NonNullable<V>>, Parent>, Parent>;

type ElementOf<V> = V extends readonly (infer E)[] ? E : never;

/** Whether `A` and `B` are the same type (not merely assignable both ways). */
type Same<A, B> = (<G>() => G extends A ? 1 : 2) extends <G>() => G extends B ? 1 : 2 ? true : false;

/** A member `K` of `Parent` holding `V`: its own path, and the paths below it. */
type MemberEntries<Parent, K extends string, V, M extends PathMode, D extends number> =
  | { path: K; value: V; inArray: false }
  | (Unfollowed<Parent, V> extends true ? UncheckedBelow<K> : Below<K, NonNullable<V>, M, Shallower[D]>);

/** The paths below `prefix` inside `V`, or, when the depth is spent, every path below it unchecked. */
type Below<Prefix extends string, V, M extends PathMode, D extends number> = [D] extends [never]
  ? V extends Leaf
    ? never
    : UncheckedBelow<Prefix>
  : Prefixed<Prefix, EntriesOf<V, M, D>>;

type UncheckedBelow<Prefix extends string> = { path: `${Prefix}.${string}`; value: Unchecked; inArray: true };

/** `Entries` with `Prefix.` before each path. */
type Prefixed<Prefix extends string, Entries> = Entries extends {
  path: infer P extends string;
  value: infer V;
  inArray: infer A;
}
  ? { path: `${Prefix}.${P}`; value: V; inArray: A }
  : never;

/** Element segments of an array: an index, and in updates `$[]` (every element). */
type ElementSegment<M extends PathMode> = M extends 'update' ? `${number}` | '$[]' : `${number}`;

/**
 * The paths inside an array `A` of `E`: an element by index (or `$[]`) and the paths below it;
 * in filters also the elements' own paths, unprefixed (`'items.name'`).
 */
type ElementEntries<A, E, M extends PathMode, D extends number> = InArray<
  | { path: ElementSegment<M>; value: E; inArray: true }
  | (Unfollowed<A, E> extends true
      ? UncheckedBelow<ElementSegment<M>>
      : Below<ElementSegment<M>, NonNullable<E>, M, Shallower[D]>)
  | (M extends 'filter' ? ElementPaths<A, E, Shallower[D]> : never)
>;

/** In filters, the paths of an array's elements, reached without an index. */
type ElementPaths<A, E, D extends number> =
  Unfollowed<A, E> extends true
    ? { path: string; value: Unchecked; inArray: true }
    : [D] extends [never]
      ? NonNullable<E> extends Leaf
        ? never
        : { path: string; value: Unchecked; inArray: true }
      : EntriesOf<NonNullable<E>, 'filter', D>;

type InArray<Entries> = Entries extends { path: infer P; value: infer V }
  ? { path: P; value: V; inArray: true }
  : never;
