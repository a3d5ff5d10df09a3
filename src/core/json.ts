/**
 * JSON values and the diff of one write in its three notations: the shapes every layer shares
 * (storage, backends, events, sync, client). No I/O here.
 */
export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** RFC 6902 operation, as the storage produces them (no `move`/`copy`/`test`). */
export type JsonPatchOperation =
  | { op: 'add'; path: string; value: JsonValue }
  | { op: 'replace'; path: string; value: JsonValue }
  | { op: 'remove'; path: string };

/** `$set`/`$unset` with dotted paths, as MongoDB's `updateOne` takes them. */
export interface MongoUpdate {
  $set?: Record<string, JsonValue>;
  $unset?: Record<string, ''>;
}

/**
 * What one write changed, in up to three interchangeable notations.
 * `jsonPatch` (RFC 6902) is always there and exact, and costs about the size of the change.
 * `mergePatch` (RFC 7396) and `mongoUpdate` are there unless they would be much larger than
 * `jsonPatch` (more than twice its size plus 1 KiB): a merge patch carries any changed array
 * whole, and a `$set` carries whole an array whose elements were inserted or removed (changes in
 * place and appends are `$set`s of `"array.index"`), so a one-element change of a large array
 * comes with `jsonPatch` alone.
 * `mergePatch` cannot say "set this member to null": null means "remove" there, so a change that
 * stores a null object member comes out of `mergePatch` as a removal. `jsonPatch` and
 * `mongoUpdate` carry nulls exactly.
 */
export interface Diff {
  hasChanges: boolean;
  /** The document's version after the write (unchanged when `hasChanges` is false). */
  version: number;
  jsonPatch: JsonPatchOperation[];
  mergePatch?: JsonObject;
  mongoUpdate?: MongoUpdate;
}
