/**
 * A `Database` over a SQL driver: migrates once, hands out collection backends, and runs the one
 * LISTEN that feeds every `subscribe` of this database.
 */
import type { EventBackend } from '../../events/backend.js';
import { ClosedError, EventSyncError, ValidationError } from '../../protocol/errors.js';
import type { CollectionBackend, CommittedChange, Database } from '../../storage/backend.js';
import { CHANGES_CHANNEL, parsePayload, SqlCollection, type SqlContext } from './collection.js';
import type { SqlDriver } from './driver.js';
import { migrate } from './schema.js';
import { mapSqlError } from './sqlstate.js';

export interface SqlDatabaseOptions {
  /**
   * Announce every write with NOTIFY so that `subscribe` (here and in every other process on the
   * database) sees it. Default true. Off saves the payload's cost on each write when nobody
   * watches; `subscribe` then fails.
   */
  notify?: boolean;
  /** Told about a change listener that threw, or a notification that isn't ours. Default: ignored. */
  onError?: (error: EventSyncError) => void;
}

export interface SqlDatabase extends Database {
  readonly kind: 'pglite' | 'pg';
  readonly driver: SqlDriver;
}

/** Migrates the database (once per process start, cheap when up to date) and returns it. `close()` closes the driver. */
export async function createSqlDatabase(
  driver: SqlDriver,
  options: SqlDatabaseOptions = {},
): Promise<SqlDatabase> {
  try {
    await migrate(driver);
  } catch (error) {
    throw mapSqlError(error, 'create the eventsync tables');
  }
  return new SqlDatabaseImpl(driver, options);
}

type Listener = (change: CommittedChange) => void;

class SqlDatabaseImpl implements SqlDatabase, SqlContext {
  readonly kind: 'pglite' | 'pg';
  readonly driver: SqlDriver;
  readonly notify: boolean;
  readonly #onError: (error: EventSyncError) => void;
  readonly #listeners = new Map<string, Set<Listener>>();
  #listenerCount = 0;
  /** The running LISTEN (or its start), while anyone subscribes. */
  #listening: Promise<() => Promise<void>> | undefined;
  #closed = false;

  constructor(driver: SqlDriver, options: SqlDatabaseOptions) {
    this.kind = driver.kind;
    this.driver = driver;
    this.notify = options.notify ?? true;
    this.#onError = options.onError ?? (() => {});
  }

  async collection(name: string): Promise<CollectionBackend> {
    this.assertOpen();
    if (typeof name !== 'string' || name === '')
      throw new ValidationError('a collection name must be a non-empty string');
    return new SqlCollection(this, name);
  }

  async events(): Promise<EventBackend> {
    throw new EventSyncError('internal', 'the event log on SQL backends is not built yet');
  }

  assertOpen(): void {
    if (this.#closed) throw new ClosedError('the database');
  }

  async subscribe(collection: string, listener: Listener): Promise<() => Promise<void>> {
    this.assertOpen();
    if (!this.notify) {
      throw new EventSyncError(
        'internal',
        'subscribe needs notifications: this database was created with notify: false',
      );
    }
    let set = this.#listeners.get(collection);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(collection, set);
    }
    // Wrapped, so that one function subscribed twice is two subscriptions.
    const entry: Listener = (change) => listener(change);
    set.add(entry);
    this.#listenerCount++;
    let removed = false;
    const remove = () => {
      if (removed) return;
      removed = true;
      set.delete(entry);
      if (set.size === 0 && this.#listeners.get(collection) === set) this.#listeners.delete(collection);
      this.#listenerCount--;
    };
    this.#listening ??= this.driver.listen(CHANGES_CHANNEL, (text) => this.#dispatch(text));
    const listening = this.#listening;
    try {
      await listening;
    } catch (error) {
      if (this.#listening === listening) this.#listening = undefined;
      remove();
      throw mapSqlError(error, 'listen for changes');
    }
    return async () => {
      if (removed) return;
      remove();
      if (this.#listenerCount > 0 || this.#listening !== listening) return;
      this.#listening = undefined;
      await (await listening)().catch(() => {});
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#listenerCount = 0;
    const listening = this.#listening;
    this.#listening = undefined;
    const stop = await listening?.catch(() => undefined);
    await stop?.().catch(() => {});
    await this.driver.close();
  }

  #dispatch(text: string): void {
    const change = parsePayload(text);
    if (change === undefined) {
      this.#onError(
        new EventSyncError('internal', `ignored a notification that is not a change: ${text.slice(0, 200)}`),
      );
      return;
    }
    const set = this.#listeners.get(change.collection);
    if (set === undefined) return;
    for (const listener of set) {
      try {
        listener(change);
      } catch (error) {
        this.#onError(new EventSyncError('internal', 'a change listener threw', { cause: error }));
      }
    }
  }
}
