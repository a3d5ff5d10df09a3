/** What a JavaScript value is, as the checks of every layer ask it. Browser-safe; imports nothing. */

/**
 * Whether `value` is a plain object: what `JSON.parse` makes of `{…}`, and all that a document
 * may hold as an object (prototype `Object.prototype`, or `null`). Arrays, class instances,
 * `Date`, `Map`, `RegExp` and the like are not: mingo reads none of them as an object either (so
 * their members are never taken for query or update operators), and the storage refuses them.
 */
export function isPlainObject(value: unknown): value is { [key: string]: unknown } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** `value`'s kind for an error message: `null`, `an array`, `a number`, `an instance of Date`, … */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) {
    const ctor = Object.getPrototypeOf(value)?.constructor?.name;
    return ctor && ctor !== 'Array' ? `an instance of ${ctor}` : 'an array';
  }
  if (typeof value !== 'object') return typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`;
  const ctor = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor
    ?.name;
  return ctor ? `an instance of ${ctor}` : 'an object with a custom prototype';
}
