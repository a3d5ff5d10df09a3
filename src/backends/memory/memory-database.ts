/**
 * The in-process backend: unit tests, ephemeral use, and the reference model for property tests.
 * Documents are cloned in and out, so callers can never change stored state by accident.
 * Several storages opened on one `MemoryDatabase` see one another's writes and changes, like
 * several server instances on one PostgreSQL.
 */

import type {
  CollectionBackend,
  CommittedChange,
  Database,
  DeleteCondition,
  Filter,
  FindOptions,
  SectionWrite,
  StoredDocument,
  Written,
} from '../../core/collection-backend.js';
import { creationDiff, eventDraft, type WriteFacts } from '../../core/drafts.js';
import { ClosedError } from '../../core/errors.js';
import {
  type EventBackend,
  type EventRecord,
  type MutationRecord,
  MutationRecordMoved,
  type StreamHead,
} from '../../core/event-backend.js';
import type { EventDraft, EventOperation, SyncEvent } from '../../core/events.js';
import type { Diff, JsonObject } from '../../core/json.js';
import { getIn } from '../../storage/edit.js';
import { findInPages, pagesOf } from '../../storage/find.js';
import { MemoryEventLog, nextEvent } from './memory-events.js';
import { expects } from './memory-mutations.js';

type Rows = Map<string, StoredDocument>;
type Listener = (change: CommittedChange) => void;

const clone = <V>(value: V): V => structuredClone(value);

/** Incarnations are a counter: unique within the process, which is as long as memory keeps anything. */
let incarnations = 0;
const nextIncarnation = () => String(++incarnations);

/** Rows handed to `findInPages` at a time (it can stop between pages). */
const PAGE_ROWS = 1000;

function* dataOf(pages: Iterable<StoredDocument[]>): Generator<JsonObject[]> {
  for (const page of pages) yield page.map((row) => row.data);
}

/** A one-slot async lock: transactions hold it for their whole run; single writes wait for it. */
class Lock {
  #tail: Promise<void> = Promise.resolve();
  #held = false;

  get held(): boolean {
    return this.#held;
  }

  async acquire(): Promise<() => void> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = () => {
        this.#held = false;
        resolve();
      };
    });
    await previous;
    this.#held = true;
    return release;
  }

  /** Runs a synchronous write as soon as no transaction holds the lock, with no await in between. */
  async whenFree<R>(write: () => R): Promise<R> {
    while (this.#held) await this.#tail;
    return write();
  }
}

/** One collection of a database: its rows, the lock its transactions hold, its change listeners. */
interface CollectionState {
  readonly name: string;
  readonly rows: Rows;
  readonly lock: Lock;
  readonly listeners: Set<Listener>;
  /** The database's event log, and its check that refuses work once it is closed. */
  readonly log: MemoryEventLog;
  readonly assertOpen: () => void;
}

export class MemoryDatabase implements Database {
  readonly kind = 'memory' as const;
  readonly #collections = new Map<string, CollectionState>();
  #closed = false;
  /** Every collection, transaction and the event log refuse work once the database is closed, as SQL's do. */
  readonly #assertOpen = (): void => {
    if (this.#closed) throw new ClosedError('the database');
  };
  readonly #log = new MemoryEventLog(
    (collection, write) => this.#state(collection).lock.whenFree(write),
    this.#assertOpen,
  );

  #state(name: string): CollectionState {
    let state = this.#collections.get(name);
    if (!state) {
      state = {
        name,
        rows: new Map(),
        lock: new Lock(),
        listeners: new Set(),
        log: this.#log,
        assertOpen: this.#assertOpen,
      };
      this.#collections.set(name, state);
    }
    return state;
  }

  async collection(name: string): Promise<CollectionBackend> {
    this.#assertOpen();
    return new MemoryCollection(this.#state(name));
  }

  async events(): Promise<EventBackend> {
    this.#assertOpen();
    return this.#log;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

export function memoryDatabase(): MemoryDatabase {
  return new MemoryDatabase();
}

/** Where a writer puts what a write produced: straight into the database, or into a transaction's staging. */
interface WriteSink {
  read(id: string): StoredDocument | undefined;
  write(id: string, doc: StoredDocument | undefined): void;
  /** Adds the event for a write; returns it as the caller may see it. */
  record(draft: EventDraft): SyncEvent;
  announce(change: CommittedChange, event: SyncEvent | undefined): void;
  /** The mutation record `clientId`'s as this sink sees it (its staging first). */
  mutationRecord(clientId: string): MutationRecord | undefined;
  keepMutationRecord(record: MutationRecord): void;
}

/** Applies one write and reports the change; shared by plain writes and transactions. */
class Writer {
  constructor(
    readonly collection: string,
    readonly sink: WriteSink,
  ) {}

  /**
   * Records the event (when asked) and then stores `doc`: the event is built first, so a failure
   * there leaves the document as it was. Both happen in one synchronous step, so nobody sees one
   * without the other.
   */
  #commit(
    id: string,
    doc: StoredDocument | undefined,
    operation: EventOperation,
    change: CommittedChange,
    record: EventRecord | undefined,
    facts: WriteFacts,
  ): Written {
    const mutation = record?.mutation;
    // The record is checked before anything changes: a moved record leaves everything as it was.
    if (mutation && !expects(this.sink.mutationRecord(mutation.clientId), mutation.mid)) {
      throw new MutationRecordMoved(mutation.clientId);
    }
    const event =
      record && this.sink.record(eventDraft(this.collection, id, operation, change.version, record, facts));
    if (mutation && event) {
      const outcome = { ...mutation.outcome(), seq: event.seq, version: event.version };
      const { clientId, mid, updatedAt } = mutation;
      this.sink.keepMutationRecord({ clientId, lastMid: mid, outcome, updatedAt });
    }
    this.sink.write(id, doc);
    this.sink.announce(change, event);
    return event ? { event } : {};
  }

  insert(doc: StoredDocument, record?: EventRecord): Written | undefined {
    if (this.sink.read(doc.id)) return undefined;
    const change: CommittedChange = {
      collection: this.collection,
      id: doc.id,
      operation: 'create',
      version: doc.version,
      data: clone(doc.data),
    };
    const incarnation = nextIncarnation();
    const written = this.#commit(doc.id, { ...clone(doc), incarnation }, 'create', change, record, {
      diff: creationDiff(doc.data, doc.version),
    });
    return { ...written, incarnation };
  }

  replace(
    doc: StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
  ): Written | undefined {
    const current = this.sink.read(doc.id);
    if (current?.version !== expectedVersion) return undefined;
    if (doc.incarnation !== undefined && current.incarnation !== doc.incarnation) return undefined;
    const change: CommittedChange = {
      collection: this.collection,
      id: doc.id,
      operation: 'update',
      version: doc.version,
      data: clone(doc.data),
      diff,
    };
    const row = { ...clone(doc), incarnation: current.incarnation };
    return this.#commit(doc.id, row, 'update', change, record, { diff });
  }

  replaceSection(w: SectionWrite, record?: EventRecord): (StoredDocument & Written) | undefined {
    const current = this.sink.read(w.id);
    if (!current) return undefined;
    const parent = getIn(current.data, w.path.slice(0, -1));
    if (typeof parent !== 'object' || parent === null || Array.isArray(parent)) return undefined;
    const section = parent[w.path[w.path.length - 1]!] as JsonObject | undefined;
    const found = section === undefined ? undefined : Number(section[w.versionField] ?? 0);
    if (found !== w.expectedSectionVersion) return undefined;
    const version = current.version + 1;
    const data = clone(current.data);
    (getIn(data, w.path.slice(0, -1)) as JsonObject)[w.path[w.path.length - 1]!] = clone(w.section);
    data[w.versionField] = version;
    const next = { id: w.id, version, data, incarnation: current.incarnation };
    const diff = w.diff(version);
    const change: CommittedChange = {
      collection: this.collection,
      id: w.id,
      operation: 'update',
      version,
      data: clone(data),
      diff,
    };
    return {
      id: w.id,
      version,
      data: clone(data),
      ...this.#commit(w.id, next, 'update_section', change, record, { diff, section: w.path.join('.') }),
    };
  }

  delete(
    id: string,
    record?: EventRecord,
    expected: DeleteCondition = {},
  ): (StoredDocument & Written) | undefined {
    const current = this.sink.read(id);
    if (!current) return undefined;
    if (expected.version !== undefined && current.version !== expected.version) return undefined;
    if (expected.incarnation !== undefined && current.incarnation !== expected.incarnation) return undefined;
    const change: CommittedChange = {
      collection: this.collection,
      id,
      operation: 'delete',
      version: current.version,
      data: clone(current.data),
    };
    return {
      id,
      version: current.version,
      data: clone(current.data),
      ...this.#commit(id, undefined, 'delete', change, record, { deletedDocument: current.data }),
    };
  }
}

/** Adds a change listener to a collection (for it and for its transactions' backends, as on SQL). */
async function listen(state: CollectionState, listener: Listener): Promise<() => Promise<void>> {
  state.listeners.add(listener);
  return async () => {
    state.listeners.delete(listener);
  };
}

/** Tells a collection's listeners about a committed change (with its event's seqs, when it recorded one). */
function announce(state: CollectionState, change: CommittedChange, event: SyncEvent | undefined): void {
  if (event) Object.assign(change, { seq: event.seq, serverSeq: event.serverSeq });
  for (const listener of state.listeners) listener(change);
}

class MemoryCollection implements CollectionBackend {
  readonly readIsRoundTrip = false;
  readonly collection: string;
  readonly #writer: Writer;

  constructor(private readonly state: CollectionState) {
    const { name, log } = state;
    this.collection = name;
    this.#writer = new Writer(name, {
      read: (id) => state.rows.get(id),
      write: (id, doc) => (doc ? state.rows.set(id, doc) : state.rows.delete(id)),
      record: (draft) => {
        const event = nextEvent(log.headOf(draft.collection, draft.documentId), draft);
        log.publish([event]);
        return clone(event);
      },
      announce: (change, event) => announce(state, change, event),
      mutationRecord: (clientId) => log.mutations.get(clientId),
      keepMutationRecord: (record) => log.mutations.set(record),
    });
  }

  sharesDatabaseWith(events: EventBackend): boolean {
    return events === this.state.log;
  }

  async get(id: string): Promise<StoredDocument | undefined> {
    this.state.assertOpen();
    const row = this.state.rows.get(id);
    return row && clone(row);
  }

  async find(filter: Filter, options: FindOptions = {}): Promise<JsonObject[]> {
    this.state.assertOpen();
    // The stored documents themselves are read (synchronously, one state of the rows); only
    // what is returned is cloned.
    const rows = () => pagesOf(this.state.rows.values(), PAGE_ROWS);
    return (await findInPages(() => dataOf(rows()), filter, options)).map(clone);
  }

  insert(doc: StoredDocument, record?: EventRecord): Promise<Written | undefined> {
    return this.#write(record, () => this.#writer.insert(doc, record));
  }

  replace(
    doc: StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
  ): Promise<Written | undefined> {
    return this.#write(record, () => this.#writer.replace(doc, expectedVersion, diff, record));
  }

  replaceSection(write: SectionWrite, record?: EventRecord): Promise<(StoredDocument & Written) | undefined> {
    return this.#write(record, () => this.#writer.replaceSection(write, record));
  }

  delete(
    id: string,
    record?: EventRecord,
    expected?: DeleteCondition,
  ): Promise<(StoredDocument & Written) | undefined> {
    return this.#write(record, () => this.#writer.delete(id, record, expected));
  }

  /**
   * Runs a synchronous write once no transaction holds the collection (and the database is still
   * open then), and, for a write keeping a mutation record, none holds that record either (as
   * SQL's write waits for the record's row lock): it waits for the holder and tries again.
   */
  async #write<R>(record: EventRecord | undefined, write: () => R): Promise<R> {
    const { mutations } = this.state.log;
    const clientId = record?.mutation?.clientId;
    for (;;) {
      this.state.assertOpen();
      if (clientId !== undefined) await mutations.free(clientId);
      const done = await this.state.lock.whenFree(() => {
        this.state.assertOpen();
        // Taken again while this write waited for the collection: wait for that holder too.
        if (clientId !== undefined && mutations.held(clientId)) return undefined;
        return { written: write() };
      });
      if (done) return done.written;
    }
  }

  async transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    this.state.assertOpen();
    const release = await this.state.lock.acquire();
    const tx = new MemoryTransaction(this.state);
    try {
      const result = await fn(tx);
      tx.commit();
      return result;
    } finally {
      tx.end();
      release();
    }
  }

  async subscribe(listener: Listener): Promise<() => Promise<void>> {
    this.state.assertOpen();
    return listen(this.state, listener);
  }
}

/**
 * Writes go to an overlay, events to a staging list; both become visible, with their changes
 * announced, only on commit. The collection lock keeps other writers out meanwhile, so the
 * staged events' seqs stay right. A nested transaction that throws rolls back to where it began
 * (as a SQL savepoint does), and the outer one goes on.
 */
class MemoryTransaction implements CollectionBackend {
  readonly readIsRoundTrip = false;
  readonly collection: string;
  #overlay = new Map<string, StoredDocument | undefined>();
  readonly #changes: { change: CommittedChange; event: SyncEvent | undefined }[] = [];
  readonly #staged: SyncEvent[] = [];
  #heads = new Map<string, StreamHead>();
  /** Mutation records written by the transaction, published on commit. */
  #records = new Map<string, MutationRecord>();
  /** The releases of the client ids' record locks this transaction holds (until it ends). */
  readonly #recordLocks = new Map<string, () => void>();
  readonly #writer: Writer;
  #ended = false;

  constructor(private readonly state: CollectionState) {
    const { name, log } = state;
    this.collection = name;
    this.#writer = new Writer(name, {
      read: (id) => (this.#overlay.has(id) ? this.#overlay.get(id) : state.rows.get(id)),
      write: (id, doc) => this.#overlay.set(id, doc),
      record: (draft) => {
        const head = this.#heads.get(draft.documentId) ?? log.headOf(draft.collection, draft.documentId);
        const event = nextEvent(head, draft);
        this.#heads.set(draft.documentId, { lastSeq: event.seq, vectorClock: event.vectorClock });
        this.#staged.push(event);
        // The caller gets the staged event itself: its serverSeq is set when the transaction commits.
        return event;
      },
      announce: (change, event) => this.#changes.push({ change, event }),
      mutationRecord: (clientId) => this.#records.get(clientId) ?? log.mutations.get(clientId),
      keepMutationRecord: (record) => this.#records.set(record.clientId, record),
    });
  }

  #active(): void {
    this.state.assertOpen();
    if (this.#ended) throw ClosedError.transactionEnded();
  }

  sharesDatabaseWith(events: EventBackend): boolean {
    return events === this.state.log;
  }

  async get(id: string): Promise<StoredDocument | undefined> {
    this.#active();
    const row = this.#writer.sink.read(id);
    return row && clone(row);
  }

  async find(filter: Filter, options: FindOptions = {}): Promise<JsonObject[]> {
    this.#active();
    const ids = new Set([...this.state.rows.keys(), ...this.#overlay.keys()]);
    const rows = function* (sink: WriteSink) {
      for (const id of ids) {
        const row = sink.read(id);
        if (row) yield row;
      }
    };
    const pages = () => dataOf(pagesOf(rows(this.#writer.sink), PAGE_ROWS));
    return (await findInPages(pages, filter, options)).map(clone);
  }

  async insert(doc: StoredDocument, record?: EventRecord): Promise<Written | undefined> {
    await this.#holdRecordOf(record);
    return this.#writer.insert(doc, record);
  }

  async replace(
    doc: StoredDocument,
    expectedVersion: number,
    diff: Diff,
    record?: EventRecord,
  ): Promise<Written | undefined> {
    await this.#holdRecordOf(record);
    return this.#writer.replace(doc, expectedVersion, diff, record);
  }

  async replaceSection(
    write: SectionWrite,
    record?: EventRecord,
  ): Promise<(StoredDocument & Written) | undefined> {
    await this.#holdRecordOf(record);
    return this.#writer.replaceSection(write, record);
  }

  async delete(
    id: string,
    record?: EventRecord,
    expected?: DeleteCondition,
  ): Promise<(StoredDocument & Written) | undefined> {
    await this.#holdRecordOf(record);
    return this.#writer.delete(id, record, expected);
  }

  async transaction<R>(fn: (tx: CollectionBackend) => Promise<R>): Promise<R> {
    this.#active();
    // The savepoint: copies of the overlay and heads (rows are replaced on write, never changed
    // in place), and how many changes and events were staged.
    const overlay = new Map(this.#overlay);
    const heads = new Map(this.#heads);
    const records = new Map(this.#records);
    const [changes, staged] = [this.#changes.length, this.#staged.length];
    try {
      return await fn(this);
    } catch (error) {
      this.#overlay = overlay;
      this.#heads = heads;
      this.#records = records;
      this.#changes.length = changes;
      this.#staged.length = staged;
      throw error;
    }
  }

  async subscribe(listener: Listener): Promise<() => Promise<void>> {
    this.#active();
    return listen(this.state, listener);
  }

  /**
   * Before a write: checks the transaction is active and, for a write keeping a mutation record,
   * holds that record until the transaction ends (as SQL's row lock), so that no other write
   * keeps it meanwhile (plain writes and `keepMutationRecord` wait for the holder).
   */
  async #holdRecordOf(record: EventRecord | undefined): Promise<void> {
    this.#active();
    const clientId = record?.mutation?.clientId;
    if (clientId === undefined || this.#recordLocks.has(clientId)) return;
    const release = await this.state.log.mutations.lock(clientId);
    if (this.#ended) {
      release();
      throw ClosedError.transactionEnded();
    }
    this.#recordLocks.set(clientId, release);
  }

  /**
   * Makes the transaction visible: its events first (the step that can fail: then nothing is
   * applied, as when SQL's event insert fails), then its writes, then the announcements. One
   * synchronous step, so nobody sees a part.
   */
  commit(): void {
    this.#active();
    this.state.log.publish(this.#staged);
    for (const record of this.#records.values()) this.state.log.mutations.set(record);
    for (const [id, doc] of this.#overlay) {
      if (doc) this.state.rows.set(id, doc);
      else this.state.rows.delete(id);
    }
    for (const { change, event } of this.#changes) announce(this.state, change, event);
  }

  /** After commit or rollback: every further use is refused. */
  end(): void {
    this.#ended = true;
    for (const release of this.#recordLocks.values()) release();
    this.#recordLocks.clear();
  }
}
