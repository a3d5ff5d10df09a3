/**
 * `pg` driver: a `pg.Pool` for queries and transactions, plus one dedicated `pg.Client` for LISTEN
 * (a pooled connection can't hold a LISTEN: it goes back to the pool between queries).
 */
import pg from 'pg';
import { ValidationError } from '../../../core/errors.js';
import { NOTIFY_SQL, type SqlDriver, type SqlQueryable } from '../driver.js';

export interface PgDriverOptions {
  /**
   * Use named prepared statements (parsed and planned once per connection, then reused). Default
   * true. Turn off behind a transaction-mode pooler (PgBouncer < 1.21) that can't keep them.
   */
  prepare?: boolean;
  /** Log listen-connection trouble (lost connection, reconnect failures). Default: silent. */
  onListenError?: (error: unknown) => void;
}

/** Statement names for texts seen so far; beyond this many distinct texts, statements go unnamed. */
const MAX_PREPARED = 500;
const RECONNECT_DELAY_MS = 1000;

/**
 * Whether `value` is a pool rather than a pool's config: it has `query` and `connect` functions.
 * Duck-typed, not `instanceof pg.Pool`: a pool made by another copy of `pg` (a linked package, a
 * monorepo) fails `instanceof`, and would otherwise be taken for a config, i.e. pg's defaults.
 */
export function isPgPool(value: unknown): value is pg.Pool {
  const candidate = value as { query?: unknown; connect?: unknown } | null | undefined;
  return typeof candidate?.query === 'function' && typeof candidate.connect === 'function';
}

/**
 * The connection settings of the LISTEN connection, which is a client of its own (see below): a
 * given pool's `options`, as every `pg.Pool` has them. Never pg's defaults in their place, which
 * could be another database than the pool's.
 */
function listenConfig(pool: pg.Pool): pg.ClientConfig {
  const { options } = pool as { options?: unknown };
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError(
      'the pool has no `options` (the connection settings every pg.Pool keeps), which eventsync needs to ' +
        'open its LISTEN connection to the same database: pass a pg.Pool, or connectionString instead',
      '/pool',
    );
  }
  return options as pg.ClientConfig;
}

/** A driver over `pool`, or over a pool it creates from `config` (and ends on `close()`). */
export function pgDriver(poolOrConfig: pg.Pool | pg.PoolConfig, options: PgDriverOptions = {}): SqlDriver {
  const ownsPool = !isPgPool(poolOrConfig);
  const pool = isPgPool(poolOrConfig) ? poolOrConfig : new pg.Pool(poolOrConfig);
  const listener = new ListenConnection(listenConfig(pool), options.onListenError);
  // An idle pooled connection that dies emits 'error' on the pool, which crashes the process when
  // nobody listens. The pool drops that connection by itself; a caller's own pool is theirs to watch.
  if (ownsPool) pool.on('error', () => {});
  const prepare = options.prepare ?? true;
  const names = new Map<string, string>();

  const statement = (text: string, params: readonly unknown[] | undefined): pg.QueryConfig => {
    const values = params as unknown[] | undefined;
    if (!prepare) return { text, values };
    let name = names.get(text);
    if (name === undefined && names.size < MAX_PREPARED) {
      name = `eventsync_${names.size + 1}`;
      names.set(text, name);
    }
    return name === undefined ? { text, values } : { name, text, values };
  };
  const on = (client: pg.Pool | pg.PoolClient): SqlQueryable => ({
    query: async <R>(text: string, params?: readonly unknown[]) =>
      (await client.query(statement(text, params))).rows as R[],
  });

  return {
    kind: 'pg',
    query: on(pool).query,
    async transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(on(client));
        await client.query('COMMIT');
        client.release();
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
          client.release();
        } catch (rollbackError) {
          // The connection is in an unknown state: destroy it rather than return it to the pool.
          client.release(rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError)));
        }
        throw error;
      }
    },
    listen: (channel, onPayload) => listener.listen(channel, onPayload),
    notify: (channel, payloads) => listener.notify(channel, payloads),
    async close() {
      await listener.close();
      if (ownsPool) await pool.end();
    },
  };
}

/**
 * One client holding every LISTEN of the driver, which also sends the driver's notifications
 * (so they never wait for, or hold, a pooled connection). When its connection fails while
 * anything listens, it reconnects (every second until it succeeds or the driver closes) and
 * LISTENs again; a notify connects it when it is down.
 *
 * Notifications committed while the connection is down are lost. Event feeds do not depend on
 * them: a notification only wakes `EventStore.subscribe` early, which also polls the event log
 * and so catches up from it. `watch()` change streams, which have no log to read, miss those
 * changes (a connection that fails with an error, and each failed reconnect, is reported to
 * `onListenError`). A silently dead connection is noticed only when TCP gives up (there is no
 * keepalive query).
 */
class ListenConnection {
  readonly #config: pg.ClientConfig;
  readonly #onError: (error: unknown) => void;
  readonly #handlers = new Map<string, Set<(payload: string) => void>>();
  #client: pg.Client | undefined;
  #connecting: Promise<pg.Client> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(config: pg.ClientConfig, onError: ((error: unknown) => void) | undefined) {
    // Named, so that it can be told apart in pg_stat_activity.
    this.#config = { ...config, application_name: config.application_name ?? 'eventsync_listen' };
    this.#onError = onError ?? (() => {});
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    if (this.#closed) throw new Error('the driver is closed');
    let set = this.#handlers.get(channel);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.#handlers.set(channel, set);
    }
    // Wrap so that the same function may listen twice and stop each separately.
    const handler = (payload: string) => onPayload(payload);
    set.add(handler);
    try {
      const client = await this.#connect();
      // A fresh connection LISTENs to every channel by itself (#open); an existing one needs this.
      if (first) await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (error) {
      set.delete(handler);
      if (set.size === 0) this.#handlers.delete(channel);
      throw error;
    }
    return async () => {
      const handlers = this.#handlers.get(channel);
      if (!handlers?.delete(handler) || handlers.size > 0) return;
      this.#handlers.delete(channel);
      const client = this.#client;
      if (client && !this.#closed) {
        await client.query(`UNLISTEN ${client.escapeIdentifier(channel)}`).catch(this.#onError);
      }
    };
  }

  async notify(channel: string, payloads: readonly string[]): Promise<void> {
    if (this.#closed) throw new Error('the driver is closed');
    const client = await this.#connect();
    await client.query({
      name: 'eventsync_notify',
      text: NOTIFY_SQL,
      values: [channel, JSON.stringify(payloads)],
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    this.#handlers.clear();
    const client = this.#client ?? (await this.#connecting?.catch(() => undefined));
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  #connect(): Promise<pg.Client> {
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #open(): Promise<pg.Client> {
    const client = new pg.Client(this.#config);
    client.on('notification', (message) => {
      const handlers = this.#handlers.get(message.channel);
      if (handlers === undefined) return;
      for (const handler of handlers) handler(message.payload ?? '');
    });
    const lost = (error?: unknown) => {
      if (this.#client !== client) return;
      this.#client = undefined;
      if (error !== undefined) this.#onError(error);
      client.end().catch(() => {});
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost());
    try {
      await client.connect();
      // This connection's only transactions are notifications, which are not durable anyway: their
      // commits need not wait for the WAL to reach the disk (PostgreSQL gives a notifying
      // transaction an xid, so it would). The writes they announce committed durably before.
      await client.query('SET synchronous_commit = off');
      for (const channel of this.#handlers.keys()) {
        await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
      }
    } catch (error) {
      client.end().catch(() => {});
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      throw new Error('the driver is closed');
    }
    this.#client = client;
    return client;
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#handlers.size === 0 || this.#reconnectTimer !== undefined) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#closed || this.#handlers.size === 0) return;
      this.#connect().catch((error) => {
        this.#onError(error);
        this.#scheduleReconnect();
      });
    }, RECONNECT_DELAY_MS);
    this.#reconnectTimer.unref();
  }
}
