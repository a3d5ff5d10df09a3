/**
 * MongoDB query filters and update operators, typed by the document they apply to (in the manner
 * of the MongoDB driver's `Filter<T>` and `UpdateFilter<T>`): dotted paths are checked against
 * `T` (`paths.ts`), values against the type at the path, and each operator against what it
 * applies to (`$inc` a number, `$push` an array). For an untyped document (`JsonObject`, any type
 * with a string index signature, or `BaseDocument` with nothing but `_id`) they are the plain
 * JSON shapes they always were. Types only: the storage and the browser client share them.
 */
import type { PathEntries, PathEntry } from './paths.js';

/**
 * Whether `T` names its members: not `any`, no string index signature (`JsonObject`,
 * `Record<string, unknown>`), and more than an `_id` (`BaseDocument`, the untyped default).
 */
type IsTyped<T> = 0 extends 1 & T
  ? false
  : string extends keyof T
    ? false
    : [Exclude<keyof T, '_id'>] extends [never]
      ? false
      : true;

/**
 * A MongoDB query filter on documents of type `T`: field paths with a value of the type there (an
 * element, for an array) or query operators, and `$and`/`$or`/`$nor` of filters. Operators
 * `$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or` run in the database where it can;
 * everything mingo supports works. Untyped `T`: any JSON object.
 */
export type Filter<T = Record<string, unknown>> =
  IsTyped<T> extends true ? TypedFilter<T> : Record<string, unknown>;

type TypedFilter<T> = {
  [E in PathEntries<T, 'filter'> as E['path']]?: Condition<E['value']>;
} & RootOperators<T>;

interface RootOperators<T> {
  $and?: Filter<T>[];
  $or?: Filter<T>[];
  $nor?: Filter<T>[];
  /** An aggregation expression over the document (`{ $gt: ['$spent', '$budget'] }`): not checked. */
  $expr?: Record<string, unknown>;
  $comment?: string;
}

/** The type at a path, without `undefined` (JSON holds no `undefined`). */
type Defined<V> = Exclude<V, undefined>;

type ElementOf<V> = V extends readonly (infer E)[] ? E : never;

/** What a filter path may be compared with: its value, or one element of an array there. */
type Operand<V> = Defined<V> | ElementOf<Defined<V>>;

/** A filter's condition on one path: a value (a RegExp for a string) or query operators. */
type Condition<V> = Operand<V> | StringPattern<Operand<V>> | QueryOperators<V>;

type StringPattern<V> = [Extract<V, string>] extends [never] ? never : RegExp;

/** The query operators on a path holding `V`; those that do not apply to `V` take nothing (`never`). */
interface QueryOperators<V> {
  $eq?: Operand<V>;
  $ne?: Operand<V>;
  $gt?: Operand<V>;
  $gte?: Operand<V>;
  $lt?: Operand<V>;
  $lte?: Operand<V>;
  $in?: readonly (Operand<V> | StringPattern<Operand<V>>)[];
  $nin?: readonly (Operand<V> | StringPattern<Operand<V>>)[];
  $exists?: boolean;
  $type?: string | number | readonly (string | number)[];
  $not?: QueryOperators<V> | StringPattern<Operand<V>>;
  $regex?: [Extract<Operand<V>, string>] extends [never] ? never : string | RegExp;
  $options?: [Extract<Operand<V>, string>] extends [never] ? never : string;
  $mod?: [Extract<Operand<V>, number>] extends [never] ? never : [divisor: number, remainder: number];
  $size?: [ElementOf<Defined<V>>] extends [never] ? never : number;
  $all?: [ElementOf<Defined<V>>] extends [never] ? never : readonly ElementOf<Defined<V>>[];
  $elemMatch?: [ElementOf<Defined<V>>] extends [never] ? never : ElementFilter<ElementOf<Defined<V>>>;
}

/** A condition on an array's elements (`$elemMatch`, `$pull`): a filter of an object element, else operators. */
type ElementFilter<E> = E extends object ? Filter<E> : QueryOperators<E>;

/**
 * MongoDB update operators on documents of type `T`: `$set` takes the type at the path;
 * `$inc`/`$mul` only numeric paths; `$min`/`$max` only comparable ones (number, string, Date);
 * `$push $addToSet $pull $pullAll $pop` only arrays, with their element type; `$unset` any path;
 * `$rename` a path (not inside an array) to a new dotted name. Untyped `T`: any operators object.
 */
export type UpdateOperators<T = Record<string, unknown>> =
  IsTyped<T> extends true ? TypedUpdate<PathEntries<T, 'update'>> : Record<string, Record<string, unknown>>;

/** The update operators over one document type's paths (`Entries`). */
interface TypedUpdate<Entries extends PathEntry> {
  $set?: { [E in Entries as E['path']]?: Defined<E['value']> };
  $unset?: { [E in Entries as E['path']]?: '' | 1 | true };
  $inc?: { [E in Entries as OnlyIf<E, number>]?: number };
  $mul?: { [E in Entries as OnlyIf<E, number>]?: number };
  $min?: { [E in Entries as OnlyIf<E, Comparable>]?: Defined<E['value']> };
  $max?: { [E in Entries as OnlyIf<E, Comparable>]?: Defined<E['value']> };
  $push?: { [E in Entries as OnlyIf<E, readonly unknown[]>]?: PushOperand<ElementOf<Defined<E['value']>>> };
  $addToSet?: {
    [E in Entries as OnlyIf<E, readonly unknown[]>]?: AddOperand<ElementOf<Defined<E['value']>>>;
  };
  $pull?: { [E in Entries as OnlyIf<E, readonly unknown[]>]?: PullOperand<ElementOf<Defined<E['value']>>> };
  $pullAll?: { [E in Entries as OnlyIf<E, readonly unknown[]>]?: readonly ElementOf<Defined<E['value']>>[] };
  $pop?: { [E in Entries as OnlyIf<E, readonly unknown[]>]?: 1 | -1 };
  $rename?: { [E in Entries as E['inArray'] extends false ? E['path'] : never]?: string };
}

type Comparable = number | string | Date;

/** The entry's path when its value (`undefined` aside) is a `Kind`, else nothing. */
type OnlyIf<E extends PathEntry, Kind> = [Defined<E['value']>] extends [Kind] ? E['path'] : never;

type PushOperand<E> =
  | E
  | {
      $each: readonly E[];
      $position?: number;
      $slice?: number;
      $sort?: 1 | -1 | Record<string, 1 | -1>;
    };

type AddOperand<E> = E | { $each: readonly E[] };

type PullOperand<E> = E | ElementFilter<E>;

/**
 * The dotted paths of `T` where a section can be: an object member of an object, all the way
 * down (no array element). Untyped `T`: any path.
 */
export type SectionPath<T> = IsTyped<T> extends true ? SectionEntry<T>['path'] : string;

type SectionEntry<T> =
  Extract<PathEntries<T, 'update'>, { inArray: false; value: object | undefined }> extends infer E
    ? E extends PathEntry
      ? IsSection<Defined<E['value']>> extends true
        ? E
        : never
      : never
    : never;

type IsSection<V> = [V] extends [readonly unknown[] | Date | RegExp | Uint8Array]
  ? false
  : [V] extends [object]
    ? true
    : false;

/** The section object at `path` of `T` (what an `updateSection` edit gets); untyped: any JSON object. */
export type SectionAt<T, P extends string> =
  IsTyped<T> extends true ? Defined<Extract<SectionEntry<T>, { path: P }>['value']> : Record<string, unknown>;
