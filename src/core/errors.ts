/**
 * The errors eventsync throws, and sends as `{ code, message }`: one class, `EventSyncError`,
 * with a typed `code`, and a subclass per common case. The codes are part of the public contract
 * and of the wire (`ErrorCodes`: stable snake_case strings, never renamed, each saying whether
 * it is retryable, and `ErrorStatus` its HTTP status; `src/protocol/wire.ts` hands the table to the protocol).
 * Check an error with `EventSyncError.is(e, 'not_found')`, never `instanceof` or `error.name`,
 * so two copies of the package (or an error that crossed the wire) still agree.
 *
 * Browser-safe, and imports nothing: every layer (storage, backends, events, sync, server,
 * client) throws these.
 */

/**
 * Error codes: stable snake_case strings, never renamed, and whether sending the same request
 * again may succeed (`retryable`). Their HTTP statuses are `ErrorStatus`, below.
 */
export const ErrorCodes = {
  validation: { retryable: false },
  /** A frame or request that is not valid JSON, or does not match the protocol's schema. */
  bad_message: { retryable: false },
  unsupported_protocol: { retryable: false },
  /** No (valid) credentials: send `hello` with a token, or an Authorization header. */
  unauthorized: { retryable: false },
  /** The principal may not do this (read, subscribe or write) to this collection or document. */
  forbidden: { retryable: false },
  not_found: { retryable: false },
  /** REST: the path exists, the method does not (the answer's Allow header lists the ones that do). */
  method_not_allowed: { retryable: false },
  already_exists: { retryable: false },
  /** The document kept changing while it was read or written: the same request again may well succeed. */
  version_conflict: { retryable: true },
  /** Also a collection subscription whose filter matches more than `maxSubscriptionDocuments`. */
  too_large: { retryable: false },
  /** REST: a write whose body is not declared `Content-Type: application/json`. */
  unsupported_media_type: { retryable: false },
  /** Too many messages per second, or too many subscriptions on one connection. */
  rate_limited: { retryable: true },
  /** A `mutate` (or REST mutation) named a mutator the server does not define for the collection. */
  unknown_mutator: { retryable: false },
  /** The mutator refused the mutation (`MutationRefused`): the error's `reason` is the mutator's own code. */
  mutation_refused: { retryable: false },
  /** The mutator threw something other than `MutationRefused` (logged on the server; the message says no more). */
  mutation_failed: { retryable: false },
  /** A client's mutation id skipped ahead of the next one expected: resend from the one the message names. */
  out_of_order: { retryable: true },
  timeout: { retryable: true },
  closed: { retryable: true },
  internal: { retryable: true },
} as const satisfies Record<string, { retryable: boolean }>;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * The HTTP status each code is answered with (REST, and the refusals of SSE requests): a table of
 * its own so that a client bundle, which needs only `retryable`, leaves it out. `Record` makes a
 * new code fail to compile until it has a status.
 */
export const ErrorStatus: Record<ErrorCode, number> = {
  validation: 400,
  bad_message: 400,
  unsupported_protocol: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  already_exists: 409,
  version_conflict: 409,
  too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  unknown_mutator: 404,
  mutation_refused: 409,
  mutation_failed: 500,
  out_of_order: 409,
  timeout: 504,
  closed: 503,
  internal: 500,
};

export class EventSyncError extends Error {
  // Every class names itself: a minifier renames classes, and `name` is what a printed error shows.
  override name = 'EventSyncError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** Whether `error` carries an eventsync code (`code`, when given): whatever class or copy of the package made it. */
  static is(error: unknown, code?: ErrorCode): error is EventSyncError {
    if (typeof error !== 'object' || error === null) return false;
    const c = (error as { code?: unknown }).code;
    // Own keys only: `'constructor' in ErrorCodes` holds too.
    return typeof c === 'string' && Object.hasOwn(ErrorCodes, c) && (code === undefined || c === code);
  }
}

/** Bad input: not JSON, a forbidden key, an invalid id, an unknown operator. Nothing was written. */
export class ValidationError extends EventSyncError {
  override name = 'ValidationError';
  /** Where in the input the problem is, as a JSON Pointer ('' for the whole value). */
  readonly path: string;
  constructor(message: string, path = '', options?: { cause?: unknown }) {
    super('validation', path ? `${message} (at ${path})` : message, options);
    this.path = path;
  }
}

export class NotFoundError extends EventSyncError {
  override name = 'NotFoundError';
  constructor(
    readonly collection: string,
    readonly id: string,
  ) {
    super(
      'not_found',
      `document ${JSON.stringify(id)} not found in collection ${JSON.stringify(collection)}`,
    );
  }
}

export class AlreadyExistsError extends EventSyncError {
  override name = 'AlreadyExistsError';
  constructor(
    readonly collection: string,
    readonly id: string,
  ) {
    super('already_exists', `document ${JSON.stringify(id)} already exists in ${JSON.stringify(collection)}`);
  }
}

/** The edit kept losing the race for the document: raise `maxRetries`/`timeout`, or edit less often. */
export class VersionConflictError extends EventSyncError {
  override name = 'VersionConflictError';
  constructor(
    readonly collection: string,
    readonly id: string,
    readonly attempts: number,
    reason: string,
  ) {
    super(
      'version_conflict',
      `document ${JSON.stringify(id)} in ${JSON.stringify(collection)} kept changing under the edit ` +
        `(${attempts} attempts, ${reason}); raise maxRetries or timeout, or reduce concurrent writers`,
    );
  }
}

/**
 * Thrown by a mutator to refuse a mutation: `reason` is the mutator's own code (snake_case, e.g.
 * `not_enough_xp`), sent to the client with code `mutation_refused`. Nothing the mutation did is
 * kept; the refusal is recorded, so the same mutation resent gets the same answer.
 */
export class MutationRefused extends EventSyncError {
  override name = 'MutationRefused';
  readonly reason: string;
  constructor(reason: string, message: string) {
    super('mutation_refused', message);
    this.reason = reason;
  }
}

/** A document's version and incarnation (see `StoredEntry`), as expected or as found. */
export interface DocumentState {
  version?: number;
  incarnation?: string;
}

/**
 * A write that named the state it expects (`expectedVersion`, `expectedIncarnation`, REST
 * `If-Match`) found another: someone changed, or deleted and re-created, the document since the
 * caller read it. Read it again and decide anew.
 */
export class StaleVersionError extends EventSyncError {
  override name = 'StaleVersionError';
  constructor(
    readonly collection: string,
    readonly id: string,
    readonly states: { expected: DocumentState; actual: DocumentState },
  ) {
    const { expected, actual } = states;
    const what = `document ${JSON.stringify(id)} in ${JSON.stringify(collection)}`;
    const found =
      expected.incarnation !== undefined && actual.incarnation !== expected.incarnation
        ? 'was deleted and created again'
        : `is at version ${actual.version}, not ${expected.version}`;
    super('version_conflict', `${what} ${found}: it changed since it was read; read it again and retry`);
  }
}

/** A write whose document would be larger than the storage's `limits.maxDocumentBytes`. Nothing was written. */
export class TooLargeError extends EventSyncError {
  override name = 'TooLargeError';
  constructor(
    /** The size the document would have had, in bytes of JSON (UTF-8). */
    readonly bytes: number,
    /** The limit it exceeds, in the same unit. */
    readonly limit: number,
    what = 'the document',
  ) {
    super(
      'too_large',
      `${what} would be ${bytes} bytes of JSON, over the limit of ${limit} (limits.maxDocumentBytes)`,
    );
  }
}

export class ClosedError extends EventSyncError {
  override name = 'ClosedError';
  constructor(what: string, hint?: string) {
    super('closed', hint === undefined ? `${what} is closed` : `${what} is closed: ${hint}`);
  }

  /**
   * Whether `error` says that the object called (a database, a storage, a transaction) is closed
   * for good: calling it again cannot help. The code alone does not tell: a database server that
   * ended a connection also answers `closed` (SQLSTATE 57P01), and that is worth a retry. By name,
   * so that an error from another copy of the package counts too.
   */
  static override is(error: unknown): error is ClosedError {
    return EventSyncError.is(error, 'closed') && error.name === 'ClosedError';
  }

  /** A transaction's backend (or storage) used after its transaction committed or rolled back: on every backend alike. */
  static transactionEnded(): ClosedError {
    return new ClosedError(
      'the transaction',
      'use the tx given to withTransaction (or transaction) only inside its function, before it returns',
    );
  }
}
