/**
 * `Storage<T>` on top of any `CollectionBackend`. Everything with meaning lives here once:
 * validation, copy-on-write edits, diffs, version and section rules, conflict retries, the
 * per-document write queue, MongoDB filter semantics (mingo) and the change stream.
 */

import type {
  CollectionBackend,
  CommittedChange,
  StoredDocument,
  Written,
} from '../core/collection-backend.js';
import { ClosedError, NotFoundError, StaleVersionError, ValidationError } from '../core/errors.js';
import type { EventBackend } from '../core/event-backend.js';
import type { SyncEvent } from '../core/events.js';
import { assertId, newObjectId } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import type { SectionAt, SectionPath } from '../core/query.js';
import { isPlainObject } from '../core/values.js';
import { buildDiff, emptyDiff, formatPointer, prefixPatch } from './diff.js';
import { getIn, runEdit } from './edit.js';
import { assertFindOptions } from './find.js';
import { KeyedQueue } from './keyed-queue.js';
import { type LastWriteCache, LastWrites } from './last-writes.js';
import { jsonWithin, type ResolvedLimits, resolveLimits, type StorageLimits } from './limits.js';
import { applyPipeline, applyUpdateOperators, assertFilter, findInMemory } from './mongo.js';
import type { Recorder, RecordingStorage } from './recording.js';
import { CONFLICT, retryOnConflict } from './retry.js';
import type {
  BaseDocument,
  ChangeEvent,
  ChangeStream,
  DeleteOptions,
  EditFunction,
  EditOptions,
  EditResult,
  Filter,
  FindManyOptions,
  NewDocument,
  RetryOptions,
  StoredEntry,
  UpdateOperators,
  UpdatePipeline,
  WatchOptions,
} from './types.js';
import { assertIncarnation, assertJsonDocument, assertVersion } from './validate.js';

export interface StorageOptions {
  /** Name of the version field the storage owns. Default `"version"`. */
  versionField?: string;
  /** Retry defaults for every edit of this storage; each call can override them. */
  retry?: RetryOptions;
  /**
   * On database servers (PGlite, PostgreSQL), how many characters of JSON of the documents this
   * instance wrote last it keeps, so that its next edit of one skips the read (one round trip
   * instead of two; see last-writes.ts). Default 16 Mi (about 16 MB of documents); 0 turns it off.
   */
  lastWritesMaxChars?: number;
  /**
   * PGlite and PostgreSQL: index this collection's documents for `findMany` filters (and the sync
   * server's filtered subscriptions). Off by default, as in MongoDB (no index but `_id`): the
   * index makes every write of the collection dearer (measured in bench/write-path.ts). Without
   * it a filter reads the whole collection and mingo picks the matches.
   */
  filterIndex?: boolean;
  /** What one write may do: `maxDocumentBytes` (default 1 MiB) and `maxArrayGrowth` (default 1); see limits.ts. */
  limits?: StorageLimits;
}

const DEFAULT_LAST_WRITES_MAX_CHARS = 16 * 1024 * 1024;

/** Returned by a speculative attempt (on remembered state) that did not write: run it on a fresh read. */
const UNSURE: unique symbol = Symbol('unsure');

const ID = '_id';

/** What every view of one storage shares (see `recordingAs`). */
interface Shared {
  backend: CollectionBackend;
  retry: RetryOptions | undefined;
  /** Writes of one document from this instance run one after another (see KeyedQueue). Not used inside transactions. */
  queue: KeyedQueue | undefined;
  /** What this instance wrote last, for edits that skip the read (inside transactions: only forgets). */
  lastWrites: LastWriteCache | undefined;
  limits: ResolvedLimits;
  closed: boolean;
  watchers: Set<() => void>;
}

export class DocumentStorage<T extends BaseDocument> implements RecordingStorage<T> {
  readonly collection: string;
  readonly versionField: string;
  readonly #shared: Shared;
  readonly #backend: CollectionBackend;
  readonly #recorder: Recorder | undefined;

  constructor(
    backend: CollectionBackend,
    options: StorageOptions = {},
    shared?: Shared,
    recorder?: Recorder,
  ) {
    const lastWritesMaxChars = options.lastWritesMaxChars ?? DEFAULT_LAST_WRITES_MAX_CHARS;
    this.#shared = shared ?? {
      backend,
      retry: options.retry,
      queue: new KeyedQueue(),
      lastWrites:
        backend.readIsRoundTrip && lastWritesMaxChars > 0 ? new LastWrites(lastWritesMaxChars) : undefined,
      limits: resolveLimits(options.limits),
      closed: false,
      watchers: new Set(),
    };
    this.#backend = this.#shared.backend;
    this.collection = backend.collection;
    this.versionField = options.versionField ?? 'version';
    this.#recorder = recorder;
  }

  recordingAs(recorder: Recorder): DocumentStorage<T> {
    return new DocumentStorage<T>(this.#backend, { versionField: this.versionField }, this.#shared, recorder);
  }

  sharesDatabaseWith(events: EventBackend): boolean {
    return this.#backend.sharesDatabaseWith(events);
  }

  /** Its backend's writes keep `EventRecord.mutation` (every `CollectionBackend` must). */
  readonly keepsMutationRecords = true;

  /** The collection backend this storage keeps its documents in. */
  get backend(): CollectionBackend {
    return this.#backend;
  }

  async findOne(id: string): Promise<T | undefined> {
    this.#open();
    assertId(id);
    return toDoc<T>((await this.#backend.get(id))?.data);
  }

  async findEntry(id: string): Promise<StoredEntry<T> | undefined> {
    this.#open();
    assertId(id);
    const stored = await this.#backend.get(id);
    return stored && entryOf<T>(stored);
  }

  async findMany(typedFilter?: Filter<T>, options: FindManyOptions = {}): Promise<T[]> {
    this.#open();
    // Checked against T by the compiler; from here on the plain JSON filter it is.
    const filter = (typedFilter ?? {}) as Filter;
    assertFilter(filter);
    assertFindOptions(options);
    const { projection, ...order } = options;
    const found = await this.#backend.find(filter, order);
    // The backend answered filter, sort, skip and limit exactly; only the projection is left.
    return (projection ? findInMemory(found, {}, { projection }) : found) as unknown as T[];
  }

  async findOneAndUpsert(input: NewDocument<T>): Promise<{ doc: T; created: boolean; incarnation: string }> {
    this.#open();
    assertJsonDocument(input);
    const id = (input as { _id?: unknown })._id ?? newObjectId();
    assertId(id);
    const data: JsonObject = { ...(input as JsonObject), [ID]: id, [this.versionField]: 1 };
    const measured = jsonWithin(data, this.#shared.limits.maxDocumentBytes, this.#describe(id));
    // SQL backends store the JSON text: hand them the one made for measuring. (The memory
    // backend keeps objects; it would keep the text too.)
    const json = this.#backend.readIsRoundTrip ? measured : undefined;
    return this.#serial(id, async () => {
      // An insert racing a delete can find neither the row nor room for it: try again.
      for (;;) {
        const written = await this.#backend.insert({ id, version: 1, data, json }, this.#recorder?.record);
        if (written) {
          this.#shared.lastWrites?.remember(id, 1, written.token, measured, written.incarnation);
          await this.#heard(written, data);
          return { doc: toDoc<T>(data), created: true, incarnation: written.incarnation! };
        }
        const existing = await this.#backend.get(id);
        if (existing)
          return { doc: toDoc<T>(existing.data), created: false, incarnation: existing.incarnation! };
      }
    });
  }

  async findOneAndUpdate(
    id: string,
    edit: EditFunction<T>,
    options: EditOptions = {},
  ): Promise<EditResult<T>> {
    this.#open();
    assertId(id);
    const expected = this.#expectation(options);
    return this.#editWithRetries(id, options, async (stored, speculative) => {
      const stale = expected(stored);
      if (stale) {
        if (speculative) return UNSURE;
        throw stale;
      }
      let outcome: Awaited<ReturnType<typeof runEdit>>;
      try {
        outcome = await runEdit(stored.data, edit, {
          versionField: this.versionField,
          version: stored.version,
          lockedFields: [ID],
          sizeLimit: { maxBytes: this.#shared.limits.maxDocumentBytes, what: this.#describe(id) },
        });
      } catch (error) {
        // On remembered state, a throw may come from its being stale: decide on fresh state.
        if (speculative) return UNSURE;
        throw error;
      }
      if (!outcome) {
        if (speculative) return UNSURE;
        return {
          doc: toDoc<T>(stored.data),
          diff: emptyDiff(stored.version),
          incarnation: stored.incarnation,
        };
      }
      const version = stored.version + 1;
      const diff = buildDiff(stored.data, outcome.after, outcome.ops, version);
      const lastWrites = this.#shared.lastWrites;
      const json = this.#backend.readIsRoundTrip ? JSON.stringify(outcome.after) : undefined;
      const { incarnation } = stored;
      // Written only in the incarnation it was read from (a delete and re-create in between makes it retry).
      const written = await this.#backend.replace(
        { id, version, data: outcome.after, json, incarnation },
        stored.version,
        diff,
        this.#recorder?.record,
        stored.token,
      );
      if (!written) return CONFLICT;
      if (json !== undefined) lastWrites?.remember(id, version, written.token, json, incarnation);
      await this.#heard(written, outcome.after);
      return withEvent({ doc: toDoc<T>(outcome.after), diff, incarnation }, written);
    });
  }

  async updateOne(id: string, operators: UpdateOperators<T>, options?: EditOptions): Promise<EditResult<T>> {
    const { maxArrayGrowth } = this.#shared.limits;
    return this.findOneAndUpdate(
      id,
      (draft) => applyUpdateOperators(toJson(draft), operators as UpdateOperators, maxArrayGrowth),
      options,
    );
  }

  async updateOneWithPipeline(
    id: string,
    pipeline: UpdatePipeline,
    options?: EditOptions,
  ): Promise<EditResult<T>> {
    return this.findOneAndUpdate(id, (draft) => toDoc<T>(applyPipeline(toJson(draft), pipeline)), options);
  }

  updateSection<P extends SectionPath<T>>(
    id: string,
    path: P,
    edit: EditFunction<SectionAt<T, P>>,
    options?: RetryOptions,
  ): Promise<EditResult<T>>;
  updateSection<S extends object>(
    id: string,
    path: SectionPath<T>,
    edit: EditFunction<S>,
    options?: RetryOptions,
  ): Promise<EditResult<T>>;
  async updateSection(
    id: string,
    path: SectionPath<T>,
    edit: EditFunction<never>,
    options?: RetryOptions,
  ): Promise<EditResult<T>> {
    this.#open();
    assertId(id);
    const segments = assertSectionPath(path, [ID, this.versionField]);
    // Always on a fresh read: the section write checks only the section's version.
    this.#shared.lastWrites?.forget(id);
    return this.#editWithRetries(id, options, async (stored) => {
      const parent = getIn(stored.data, segments.slice(0, -1));
      const current = getIn(stored.data, segments);
      if (!isPlainObject(parent) || (current !== undefined && !isPlainObject(current))) {
        throw new ValidationError('a section must be an object inside an object', formatPointer(segments));
      }
      const sectionVersion = current === undefined ? 0 : Number(current[this.versionField] ?? 0);
      const { maxDocumentBytes } = this.#shared.limits;
      const outcome = await runEdit(current ?? {}, edit, {
        versionField: this.versionField,
        version: sectionVersion,
        lockedFields: [],
        // A section larger than the limit is refused before its diff; the document just below.
        sizeLimit: {
          maxBytes: maxDocumentBytes,
          what: `section ${JSON.stringify(path)} of ${this.#describe(id)}`,
        },
      });
      if (!outcome) return { doc: toDoc<T>(stored.data), diff: emptyDiff(stored.version) };
      // Measured as read: the section write keeps what others changed elsewhere meanwhile, whose
      // own writes were measured.
      jsonWithin(
        setIn(stored.data, segments, outcome.after, this.versionField, stored.version),
        maxDocumentBytes,
        this.#describe(id),
      );
      const sectionOps =
        current === undefined ? [{ op: 'add' as const, path: '', value: outcome.after }] : outcome.ops;
      const diffAt = memoizeLast((newVersion: number) =>
        buildDiff(
          stored.data,
          setIn(stored.data, segments, outcome.after, this.versionField, newVersion),
          [
            ...prefixPatch(sectionOps, segments),
            { op: 'replace', path: formatPointer([this.versionField]), value: newVersion },
          ],
          newVersion,
        ),
      );
      const written = await this.#backend.replaceSection(
        {
          id,
          path: segments,
          expectedSectionVersion: current === undefined ? undefined : sectionVersion,
          section: outcome.after,
          versionField: this.versionField,
          diff: diffAt,
        },
        this.#recorder?.record,
      );
      if (!written) return CONFLICT;
      this.#shared.lastWrites?.forget(id);
      await this.#heard(written, written.data);
      return withEvent({ doc: toDoc<T>(written.data), diff: diffAt(written.version) }, written);
    });
  }

  async deleteOne(id: string, options: DeleteOptions = {}): Promise<T | undefined> {
    this.#open();
    assertId(id);
    const expected = this.#expectation(options);
    const { expectedVersion: version, expectedIncarnation: incarnation } = options;
    return this.#serial(id, async () => {
      this.#shared.lastWrites?.forget(id);
      const deleted = await this.#backend.delete(id, this.#recorder?.record, { version, incarnation });
      if (deleted) {
        await this.#heard(deleted, undefined);
        return toDoc<T>(deleted.data);
      }
      // Absent, or not as expected: only the second is the caller's mistake.
      const current =
        version === undefined && incarnation === undefined ? undefined : await this.#backend.get(id);
      const stale = current && expected(current);
      if (stale) throw stale;
      return undefined;
    });
  }

  async withTransaction<R>(fn: (tx: DocumentStorage<T>) => Promise<R>): Promise<R> {
    this.#open();
    // Events of the transaction are heard only once it committed.
    const heard: [SyncEvent, JsonObject | undefined][] = [];
    const recorder = this.#recorder && {
      record: this.#recorder.record,
      onEvent: (event: SyncEvent, doc: JsonObject | undefined) => void heard.push([event, doc]),
    };
    const result = await this.#backend.transaction((txBackend) =>
      // No write queue inside: the transaction's own order is the order.
      fn(
        new DocumentStorage<T>(
          txBackend,
          { versionField: this.versionField },
          {
            ...this.#shared,
            backend: txBackend,
            queue: undefined,
            lastWrites: this.#shared.lastWrites?.forgetting(),
          },
          recorder,
        ),
      ),
    );
    for (const [event, doc] of heard) await this.#recorder?.onEvent(event, doc);
    return result;
  }

  watch(options: WatchOptions = {}): ChangeStream<T> {
    this.#open();
    return new BackendChangeStream<T>(this.#backend, options, this.#shared.watchers);
  }

  async close(): Promise<void> {
    this.#shared.closed = true;
    for (const stop of [...this.#shared.watchers]) stop();
  }

  #open(): void {
    if (this.#shared.closed)
      throw new ClosedError(`storage of collection ${JSON.stringify(this.collection)}`);
  }

  async #mustGet(id: string): Promise<StoredDocument> {
    const stored = await this.#backend.get(id);
    if (!stored) throw new NotFoundError(this.collection, id);
    return stored;
  }

  /**
   * One edit of a document: queued behind this instance's other writes of it, then `attempt` on
   * the stored document, again on fresh state (with backoff) each time it reports a conflict.
   * When this instance remembers what it last wrote of the document, the first attempt runs on
   * that instead of a read (`speculative`); it counts only if it wrote, and otherwise (stale
   * state, a no-op or a throw that may come from staleness) the edit starts over on a read.
   */
  #editWithRetries(
    id: string,
    options: RetryOptions | undefined,
    attempt: (
      stored: StoredDocument,
      speculative: boolean,
    ) => Promise<EditResult<T> | typeof CONFLICT | typeof UNSURE>,
  ): Promise<EditResult<T>> {
    return this.#serial(id, async () => {
      const remembered = this.#shared.lastWrites?.take(id);
      if (remembered) {
        const result = await attempt(remembered, true);
        if (result !== CONFLICT && result !== UNSURE) return result;
        if (result === CONFLICT) this.#shared.lastWrites?.stale(id);
      }
      return retryOnConflict(
        { collection: this.collection, id },
        { ...this.#shared.retry, ...options },
        async () => {
          const result = await attempt(await this.#mustGet(id), false);
          if (result === UNSURE) throw new Error('unreachable: only speculative attempts are unsure');
          return result;
        },
      );
    });
  }

  /**
   * Checks the caller's `expectedVersion`/`expectedIncarnation` (validated here, once) and returns
   * what tells whether a stored document meets them: `undefined`, or the error to throw.
   */
  #expectation(options: {
    expectedVersion?: number;
    expectedIncarnation?: string;
  }): (stored: StoredDocument) => StaleVersionError | undefined {
    const { expectedVersion, expectedIncarnation } = options;
    if (expectedVersion !== undefined) assertVersion(expectedVersion, 'expectedVersion');
    if (expectedIncarnation !== undefined) assertIncarnation(expectedIncarnation);
    return (stored) => {
      const otherVersion = expectedVersion !== undefined && stored.version !== expectedVersion;
      const otherIncarnation =
        expectedIncarnation !== undefined && stored.incarnation !== expectedIncarnation;
      if (!otherVersion && !otherIncarnation) return undefined;
      return new StaleVersionError(this.collection, stored.id, {
        expected: { version: expectedVersion, incarnation: expectedIncarnation },
        actual: { version: stored.version, incarnation: stored.incarnation },
      });
    };
  }

  #describe(id: string): string {
    return `document ${JSON.stringify(id)} of ${JSON.stringify(this.collection)}`;
  }

  #serial<R>(id: string, task: () => Promise<R>): Promise<R> {
    return this.#shared.queue ? this.#shared.queue.run(id, task) : task();
  }

  async #heard(written: Written, doc: JsonObject | undefined): Promise<void> {
    if (written.event) await this.#recorder?.onEvent(written.event, doc);
  }
}

function withEvent<T>(result: EditResult<T>, written: Written): EditResult<T> {
  if (written.event) result.event = written.event;
  return result;
}

/** Caches the last call: the section diff is asked for by the backend (for its notification) and then here. */
function memoizeLast<A, R>(fn: (arg: A) => R): (arg: A) => R {
  let last: { arg: A; result: R } | undefined;
  return (arg) => {
    if (!last || last.arg !== arg) last = { arg, result: fn(arg) };
    return last.result;
  };
}

function entryOf<T>(stored: StoredDocument): StoredEntry<T> {
  return { doc: toDoc<T>(stored.data), version: stored.version, incarnation: stored.incarnation! };
}

/** Documents are JSON objects at run time; `T` is what the caller says they look like. */
function toDoc<T>(data: JsonObject): T;
function toDoc<T>(data: JsonObject | undefined): T | undefined;
function toDoc<T>(data: JsonObject | undefined): T | undefined {
  return data as unknown as T | undefined;
}
const toJson = (doc: unknown) => doc as JsonObject;

/** `"a.b"` → `['a', 'b']`, refusing what cannot be a section: array indexes, `$` keys, the `_id` and version fields. */
function assertSectionPath(path: string, reservedTopLevel: string[]): string[] {
  const segments = typeof path === 'string' ? path.split('.') : [];
  const bad = (s: string) =>
    s === '' ||
    s.startsWith('$') ||
    /^\d+$/.test(s) ||
    s === '__proto__' ||
    s === 'constructor' ||
    s === 'prototype';
  if (segments.length === 0 || segments.some(bad) || reservedTopLevel.includes(segments[0]!)) {
    throw new ValidationError(
      `invalid section path ${JSON.stringify(path)}; use object keys like "inventory.weapons"`,
    );
  }
  return segments;
}

/** A copy of `root` with `value` at `path` and the root version set: only the objects on the path are copied. */
function setIn(
  root: JsonObject,
  path: string[],
  value: JsonObject,
  versionField: string,
  version: number,
): JsonObject {
  const copy: JsonObject = { ...root, [versionField]: version };
  let node = copy;
  for (let i = 0; i < path.length - 1; i++) {
    const child = { ...(node[path[i]!] as JsonObject) };
    node[path[i]!] = child;
    node = child;
  }
  node[path[path.length - 1]!] = value;
  return copy;
}

/** The async iterable behind `watch()`: buffers committed changes until the consumer takes them. */
class BackendChangeStream<T> implements ChangeStream<T> {
  readonly ready: Promise<void>;
  readonly #buffer: CommittedChange[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  #unsubscribe: (() => Promise<void>) | undefined;
  #stop: () => void;

  constructor(
    private readonly backend: CollectionBackend,
    private readonly options: WatchOptions,
    private readonly registry: Set<() => void>,
  ) {
    const stop = () => this.#end();
    this.#stop = stop;
    registry.add(stop);
    options.signal?.addEventListener('abort', stop, { once: true });
    this.ready = backend
      .subscribe((change) => {
        if (this.#wanted(change)) {
          this.#buffer.push(change);
          this.#wake?.();
        }
      })
      .then((unsubscribe) => {
        this.#unsubscribe = unsubscribe;
        if (this.#ended) void unsubscribe();
      });
    if (options.signal?.aborted) stop();
  }

  #wanted(change: CommittedChange): boolean {
    const { operations, ids } = this.options;
    return (!operations || operations.includes(change.operation)) && (!ids || ids.includes(change.id));
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.registry.delete(this.#stop);
    this.#wake?.();
    void this.#unsubscribe?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ChangeEvent<T>> {
    try {
      await this.ready;
      for (;;) {
        const change = this.#buffer.shift();
        if (change) {
          yield await this.#toEvent(change);
          continue;
        }
        if (this.#ended) return;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
      }
    } finally {
      this.#end();
    }
  }

  /** Changes too large for a notification arrive without data: look the document up (MongoDB's `updateLookup`). */
  async #toEvent(change: CommittedChange): Promise<ChangeEvent<T>> {
    const data = change.data ?? (await this.backend.get(change.id))?.data ?? { _id: change.id };
    const event: ChangeEvent<T> = {
      id: change.id,
      operation: change.operation,
      version: change.version,
      data: data as T,
    };
    if (change.diff) event.diff = change.diff;
    return event;
  }
}
