/**
 * A `Database` over a SQL driver: migrates once, hands out collection backends and its one event
 * log, and runs the one LISTEN that feeds every `subscribe` and `watchCommits` of this database.
 */

import type {
  CollectionBackend,
  CollectionOptions,
  CommittedChange,
  Database,
} from '../../core/collection-backend.js';
import { ClosedError, EventSyncError, ValidationError } from '../../core/errors.js';
import type { EventBackend } from '../../core/event-backend.js';
import { assertCollectionName } from '../../core/ids.js';
import { Announcer } from './announcer.js';
import { SqlCollection, type SqlContext } from './collection.js';
import type { SqlDriver } from './driver.js';
import type { SqlEventContext } from './event-context.js';
import { sqlEventBackend } from './events.js';
import type { FeedOptions } from './feed.js';
import { CHANGES_CHANNEL, parseNotification } from './notifications.js';
import { filterIndexSql, migrate } from './schema.js';
import { mapSqlError } from './sqlstate.js';

export interface SqlDatabaseOptions {
  /**
   * Announce every committed write with NOTIFY (after its commit: see announcer.ts) so that
   * `subscribe` (here and in every other process on the database) sees it. Default true. Off
   * saves the announcements when nobody watches; `subscribe` then fails.
   */
  notify?: boolean;
  /** Told about a change listener that threw, a notification that isn't ours, or announcements that could not be sent. Default: ignored. */
  onError?: (error: EventSyncError) => void;
  /** How the event feed waits for writers still in flight (see `listAfterServerSeq` in feed.ts). */
  feed?: FeedOptions;
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

class SqlDatabaseImpl implements SqlDatabase, SqlContext, SqlEventContext {
  readonly kind: 'pglite' | 'pg';
  readonly driver: SqlDriver;
  readonly notify: boolean;
  readonly eventLog: EventBackend;
  readonly #announcer: Announcer | undefined;
  readonly #onError: (error: EventSyncError) => void;
  readonly #listeners = new Map<string, Set<Listener>>();
  readonly #commitListeners = new Set<() => void>();
  /** Collections whose filter index this process has made sure of. */
  readonly #filterIndexes = new Set<string>();
  /** Collection listeners and commit listeners: the LISTEN runs while this is above 0. */
  #listenerCount = 0;
  /** The running LISTEN (or its start), while anyone subscribes. */
  #listening: Promise<() => Promise<void>> | undefined;
  #closed = false;

  constructor(driver: SqlDriver, options: SqlDatabaseOptions) {
    this.kind = driver.kind;
    this.driver = driver;
    this.notify = options.notify ?? true;
    this.#onError = options.onError ?? (() => {});
    this.eventLog = sqlEventBackend(this, options.feed);
    if (this.notify) {
      this.#announcer = new Announcer(
        (payloads) => driver.notify(CHANGES_CHANNEL, payloads),
        (error) => this.#onError(mapSqlError(error, 'announce committed changes')),
      );
    }
  }

  announce(payload: string): void {
    this.#announcer?.announce(payload);
  }

  async collection(name: string, options: CollectionOptions = {}): Promise<CollectionBackend> {
    this.assertOpen();
    if (typeof name !== 'string' || name === '')
      throw new ValidationError('a collection name must be a non-empty string');
    if (options.filterIndex) {
      assertCollectionName(name);
      if (!this.#filterIndexes.has(name)) {
        try {
          await this.driver.query(filterIndexSql(name));
        } catch (error) {
          throw mapSqlError(error, `create the filter index of ${JSON.stringify(name)}`);
        }
        this.#filterIndexes.add(name);
      }
    }
    return new SqlCollection(this, name, options.filterIndex === true);
  }

  async events(): Promise<EventBackend> {
    this.assertOpen();
    return this.eventLog;
  }

  assertOpen(): void {
    if (this.#closed) throw new ClosedError('the database');
  }

  async subscribe(collection: string, listener: Listener): Promise<() => Promise<void>> {
    this.#assertNotify('subscribe');
    let set = this.#listeners.get(collection);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(collection, set);
    }
    // Wrapped, so that one function subscribed twice is two subscriptions.
    const entry: Listener = (change) => listener(change);
    set.add(entry);
    return this.#listen(() => {
      set.delete(entry);
      if (set.size === 0 && this.#listeners.get(collection) === set) this.#listeners.delete(collection);
    });
  }

  /** Calls `onCommit` after every committed write that recorded an event, and every appended event (any collection, any process). */
  async watchCommits(onCommit: () => void): Promise<() => Promise<void>> {
    this.#assertNotify('watchCommits');
    const entry = () => onCommit();
    this.#commitListeners.add(entry);
    return this.#listen(() => this.#commitListeners.delete(entry));
  }

  #assertNotify(what: string): void {
    this.assertOpen();
    if (!this.notify) {
      throw new EventSyncError(
        'internal',
        `${what} needs notifications: this database was created with notify: false`,
      );
    }
  }

  /** Counts one more listener (whose removal is `remove`), starting the LISTEN if needed. */
  async #listen(remove: () => void): Promise<() => Promise<void>> {
    this.#listenerCount++;
    let removed = false;
    const drop = () => {
      if (removed) return;
      removed = true;
      remove();
      this.#listenerCount--;
    };
    this.#listening ??= this.driver.listen(CHANGES_CHANNEL, (text) => this.#dispatch(text));
    const listening = this.#listening;
    try {
      await listening;
    } catch (error) {
      if (this.#listening === listening) this.#listening = undefined;
      drop();
      throw mapSqlError(error, 'listen for changes');
    }
    return async () => {
      if (removed) return;
      drop();
      if (this.#listenerCount > 0 || this.#listening !== listening) return;
      this.#listening = undefined;
      await (await listening)().catch(() => {});
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.#commitListeners.clear();
    this.#listenerCount = 0;
    const listening = this.#listening;
    this.#listening = undefined;
    const stop = await listening?.catch(() => undefined);
    await stop?.().catch(() => {});
    await this.#announcer?.flush();
    await this.driver.close();
  }

  #dispatch(text: string): void {
    const notification = parseNotification(text);
    if (notification === undefined) {
      this.#onError(
        new EventSyncError('internal', `ignored a notification that is not a change: ${text.slice(0, 200)}`),
      );
      return;
    }
    if (notification.serverSeq !== undefined) {
      for (const onCommit of this.#commitListeners) this.#call(() => onCommit(), 'a commit watcher');
    }
    const change = notification.change;
    const set = change && this.#listeners.get(change.collection);
    if (change === undefined || set === undefined) return;
    for (const listener of set) this.#call(() => listener(change), 'a change listener');
  }

  #call(fn: () => void, who: string): void {
    try {
      fn();
    } catch (error) {
      this.#onError(new EventSyncError('internal', `${who} threw`, { cause: error }));
    }
  }
}
