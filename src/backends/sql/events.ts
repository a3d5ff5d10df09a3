/**
 * The event log in SQL (PGlite and PostgreSQL): `eventsync_events`, `eventsync_streams` (heads),
 * `eventsync_snapshots`, `eventsync_state_vectors`, `eventsync_clients` (schema.ts, migration 2;
 * client owners: migration 5).
 *
 * Appending an event is one statement: upsert the stream head (`last_seq + 1`, the actor's clock
 * counter + 1) and insert the event from the head's new values; then it is announced (announcer.ts). `collection.ts` puts the
 * same head upsert and insert behind a document write in one CTE (`recordingCte`), so a change and
 * its event commit together or not at all (I1) in one round trip.
 */

import { EventSyncError, ValidationError } from '../../core/errors.js';
import type { Acknowledgement, EventBackend, EventRange, StreamHead } from '../../core/event-backend.js';
import type {
  EventDraft,
  EventOperation,
  Snapshot,
  StateVector,
  SyncEvent,
  VectorClock,
} from '../../core/events.js';
import { newObjectId } from '../../core/ids.js';
import type { Diff, JsonObject } from '../../core/json.js';
import { sleep } from '../../core/sleep.js';
import type { SqlDriver, SqlQueryable } from './driver.js';
import { mapSqlError } from './sqlstate.js';

/** The NOTIFY channel every write announces itself on (changes, and events appended on their own). */
export const CHANGES_CHANNEL = 'eventsync_changes';

/** What the event log needs from its database. */
export interface SqlEventContext {
  readonly driver: SqlDriver;
  readonly notify: boolean;
  assertOpen(): void;
  /** Sends a notification once what it announces has committed (see announcer.ts). */
  announce(payload: string): void;
  watchCommits(onCommit: () => void): Promise<() => Promise<void>>;
}

/** What a recorded write's statement returns about its event. */
export interface AssignedRow {
  seq: number | string;
  server_seq: number | string;
  vector_clock: VectorClock;
}

/**
 * The head upsert and event insert that follow a document write `w` in one CTE (`w` is the name
 * of the write's CTE; it returns one row when the write happened, none when it did not).
 * Parameters from `$first`: client id, event id, timestamp, diff (jsonb or NULL), metadata
 * (jsonb or NULL). `operation`, `version` and `metadata` (default: the metadata parameter) are
 * SQL expressions (they may read `w`).
 * Leaves the CTEs `h` (the new head) and `e` (the event: seq, server_seq, vector_clock) for the
 * caller's final SELECT.
 *
 * Why seq and every actor's counter stay gapless (I2), with several writers in several processes:
 * - Writers of one document are serialised by its row: the conditional UPDATE, the DELETE and
 *   INSERT … ON CONFLICT DO NOTHING wait for a concurrent writer's row lock (or unique-index
 *   entry) and then re-check their condition against the committed row, so of two writers
 *   expecting the same version only one writes (READ COMMITTED's re-check on the locked row).
 * - Only a write that happened reaches the head upsert (`SELECT … FROM w`), and the upsert
 *   itself takes the head row's lock: `INSERT … ON CONFLICT DO UPDATE` always updates the latest
 *   committed head (it waits for a concurrent holder and never skips), so every event, atomic or
 *   appended, gets `last_seq + 1` and `clock[client] + 1` of the head left by the previous one.
 * - The upsert, the event insert and the write are one statement: a failure of any part (a
 *   constraint, a trigger, a crash) undoes all of it, so no seq is taken without its event.
 * - The head row is never deleted with the document: delete and re-create continue the count.
 */
export function recordingCte(
  w: string | undefined,
  first: number,
  operation: string,
  version: string,
  metadata?: string,
): string {
  const [client, id, at, diff, meta] = [0, 1, 2, 3, 4].map((i) => `$${first + i}`);
  return `h AS (
      INSERT INTO eventsync_streams AS s (collection, document_id, last_seq, vector_clock)
      SELECT $1, $2, 1, jsonb_build_object(${client}::text, 1)${w ? ` FROM ${w}` : ''}
      ON CONFLICT (collection, document_id) DO UPDATE SET
        last_seq = s.last_seq + 1,
        vector_clock = jsonb_set(s.vector_clock, ARRAY[${client}::text],
          to_jsonb(COALESCE((s.vector_clock ->> ${client}::text)::bigint, 0) + 1))
      RETURNING last_seq, vector_clock
    ), e AS (
      INSERT INTO eventsync_events
        (collection, document_id, seq, id, at, operation, version, client_id, actor_seq, vector_clock, diff, metadata)
      SELECT $1, $2, h.last_seq, ${id}, ${at}, ${operation}, ${version}, ${client}::text,
        (h.vector_clock ->> ${client}::text)::bigint, h.vector_clock, ${diff}::jsonb, ${metadata ?? `${meta}::jsonb`}
      FROM h${w ? ` CROSS JOIN ${w}` : ''}
      RETURNING seq, server_seq, vector_clock
    )`;
}

/** The parameters `recordingCte` takes, in its order, for `draft` (`diffJson`: its diff as JSON, when already made). */
export function recordingParams(
  draft: EventDraft,
  eventId: string,
  at: number,
  diffJson?: string,
): unknown[] {
  return [
    draft.clientId,
    eventId,
    at,
    diffJson ?? (draft.diff === undefined ? null : JSON.stringify(draft.diff)),
    draft.metadata === undefined ? null : JSON.stringify(draft.metadata),
  ];
}

/** The event as the caller sees it: the draft plus what the database assigned. */
export function assembleEvent(draft: EventDraft, eventId: string, at: number, row: AssignedRow): SyncEvent {
  const event: SyncEvent = {
    id: eventId,
    collection: draft.collection,
    documentId: draft.documentId,
    seq: Number(row.seq),
    serverSeq: Number(row.server_seq),
    timestamp: at,
    operation: draft.operation,
    version: draft.version,
    clientId: draft.clientId,
    vectorClock: row.vector_clock,
  };
  if (draft.diff !== undefined) event.diff = draft.diff;
  if (draft.metadata !== undefined) event.metadata = draft.metadata;
  return event;
}

/** Appends `draft` on its own: head upsert + event insert, one statement on `q`. */
export async function appendEvent(q: SqlQueryable, draft: EventDraft): Promise<SyncEvent> {
  const eventId = newObjectId();
  const at = Date.now();
  const params: unknown[] = [
    draft.collection,
    draft.documentId,
    draft.operation,
    draft.version,
    ...recordingParams(draft, eventId, at),
  ];
  const [row] = await q.query<AssignedRow>(sql.append, params);
  if (row === undefined) throw new EventSyncError('internal', 'appending an event returned no row');
  return assembleEvent(draft, eventId, at, row);
}

/** The notification of an event appended on its own (no `op`: a wake-up for feeds, not a document change). */
export function eventOnlyPayload(event: SyncEvent): string {
  return `{"c":${JSON.stringify(event.collection)},"id":${JSON.stringify(event.documentId)},"s":${event.seq},"ss":${event.serverSeq}}`;
}

const appendCte = recordingCte(undefined, 5, '$3', '$4');

const columns = `collection, document_id, seq, from_seq, server_seq, id, at, operation, version, client_id,
  vector_clock, diff, metadata`;

/**
 * A read of one document's events (ordered by seq), in two forms: as rows, and as one row holding
 * a JSON array of them (text, parsed once). A catch-up reads thousands of events: PGlite parses
 * every field of every row in JavaScript, on this thread, which costs more than PostgreSQL
 * building the JSON (10,000 events: ~150 ms instead of ~330 ms); `pg` parses rows faster and
 * while the server is still sending them, so there the array was slower (162 ms against 116 ms;
 * `bench/catch-up.ts`, service rows).
 */
interface Listing {
  rows: string;
  oneJsonArray: string;
}

function listing(select: string): Listing {
  return {
    rows: select,
    oneJsonArray: `SELECT json_agg(r ORDER BY r.seq)::text AS events FROM (${select}) r`,
  };
}

/**
 * Settled: every transaction with an xid below the horizon ($1) has ended. xmin >= X implies
 * xmax >= X, so each xid below X is below xmax and not in the running list: it completed.
 */
const settledFast = 'pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8';

/**
 * The slow path, once the fast check has failed: a transaction running in this statement's
 * snapshot with an xid below the horizon (in its running list, or between its xmax and the
 * horizon: assigned, not completed) holds us up only if it may have inserted an event, i.e.
 * unless the lock table shows it alive *and* without any lock on `eventsync_events`. An event
 * writer locks that table (RowExclusiveLock, taken before the INSERT evaluates the serverSeq
 * default) and keeps the lock until it ends; `pg_locks` is read once (MATERIALIZED) and
 * `pg_lock_status` copies the fast-path relation locks before the main lock table (where
 * transaction id locks live), so a writer seen alive by its xid lock was seen with its table
 * lock too. Unrelated long transactions (a batch job writing other tables, the state-vector
 * flushes) then don't stall the feed.
 */
const blockersCte = `l AS MATERIALIZED (
      SELECT locktype, transactionid, virtualtransaction FROM pg_locks
      WHERE granted AND ((locktype = 'transactionid' AND mode = 'ExclusiveLock')
        OR (locktype = 'relation' AND relation = 'eventsync_events'::regclass))
    ),`;
const settledSlow = `NOT EXISTS (
        SELECT 1 FROM (
          SELECT x FROM pg_snapshot_xip(pg_current_snapshot()) AS x
          UNION ALL
          SELECT g::text::xid8 FROM generate_series(
            pg_snapshot_xmax(pg_current_snapshot())::text::bigint, $1::text::bigint - 1) AS g
        ) AS running(x)
        WHERE running.x < $1::xid8 AND NOT EXISTS (
          SELECT 1 FROM l AS t
          WHERE t.locktype = 'transactionid' AND t.transactionid = xid(running.x) AND NOT EXISTS (
            SELECT 1 FROM l AS r WHERE r.locktype = 'relation' AND r.virtualtransaction = t.virtualtransaction
          )
        )
      )`;

const sql = {
  append: `WITH ${appendCte} SELECT seq, server_seq, vector_clock FROM e`,
  list: listing(`SELECT ${columns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND seq > $3 AND ($4::bigint IS NULL OR seq <= $4)
    ORDER BY seq LIMIT $5`),
  listUnseen: listing(`SELECT ${columns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND actor_seq > COALESCE(($3::jsonb ->> client_id)::numeric, 0)
    ORDER BY seq`),
  listAfterVersion: listing(`SELECT ${columns} FROM eventsync_events
    WHERE collection = $1 AND document_id = $2 AND version > $3 ORDER BY seq`),
  head: 'SELECT last_seq, vector_clock FROM eventsync_streams WHERE collection = $1 AND document_id = $2',
  // How far serverSeq has been handed out (not how far it committed).
  feedLimit: `SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS l FROM eventsync_server_seq`,
  /**
   * The horizon X: one past the largest xid of the transactions alive now that hold a lock on
   * the events table (0 when none), as an xid8. Not the snapshot's xmax: that is one past the
   * latest *completed* xid, and a writer that took its xid after the last one to complete is
   * above it while still running (measured: snapshot `771:771:` with xid 771 running and
   * holding an uncommitted serverSeq). pg_locks has 32-bit xids: each is widened next to this
   * statement's xmax (live xids are within 2^31 of it).
   */
  feedHorizon: `WITH ${blockersCte} m AS (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS m)
    SELECT COALESCE(max(m.m + CASE WHEN w.d < 2147483648 THEN w.d ELSE w.d - 4294967296 END) + 1, 0)::text AS x
    FROM m LEFT JOIN LATERAL (
      SELECT ((t.transactionid::text::bigint - m.m % 4294967296) % 4294967296 + 4294967296) % 4294967296 AS d
      FROM l AS t WHERE t.locktype = 'transactionid' AND EXISTS (
        SELECT 1 FROM l AS r WHERE r.locktype = 'relation' AND r.virtualtransaction = t.virtualtransaction
      )
    ) w ON true`,
  /** The all-collections feed's first read: the events after $1 as they are, $2 at most (see `listAfterServerSeq`). */
  feedAsIs: `SELECT ${columns} FROM eventsync_events WHERE server_seq > $1 ORDER BY server_seq LIMIT $2`,
  /**
   * $1 horizon (xid8), $2 after, $3 limit, $4 the feed limit, $5 the collection (when
   * `byCollection`). One row with `settled` false and no event, or `settled` true and the
   * events (a row of NULLs when none). `pg_current_snapshot()` is this statement's own snapshot:
   * the one the events are read with.
   *
   * One collection's range is written as row comparisons on (collection, server_seq): with
   * `collection = $5 AND server_seq > $2`, a generic plan (prepared statements) walks the
   * server_seq index and filters, which reads every other collection's events too (measured:
   * 300 ms instead of 0.06 ms for a rare collection among 600k events).
   */
  feed: (slow: boolean, byCollection: boolean) => `WITH ${slow ? blockersCte : ''} s AS (
      SELECT ${slow ? settledSlow : settledFast} AS settled
    )
    SELECT s.settled, e.* FROM s LEFT JOIN LATERAL (
      SELECT ${columns} FROM eventsync_events
      WHERE s.settled AND ${byCollection ? feedOfCollection : 'server_seq > $2 AND server_seq <= $4 ORDER BY server_seq'}
      LIMIT $3
    ) e ON true`,
  settled: (slow: boolean) => `WITH ${slow ? blockersCte : ''} s AS (
      SELECT ${slow ? settledSlow : settledFast} AS settled
    ) SELECT settled FROM s`,
  deleteEvents: `WITH d AS (
      DELETE FROM eventsync_events WHERE collection = $1 AND document_id = $2 AND seq <= $3 RETURNING 1
    ) SELECT count(*) AS n FROM d`,
  deleteRange: `DELETE FROM eventsync_events WHERE collection = $1 AND document_id = $2 AND seq BETWEEN $3 AND $4
    RETURNING seq, server_seq`,
  insertEvent: `INSERT INTO eventsync_events
    (collection, document_id, seq, from_seq, server_seq, id, at, operation, version, client_id, actor_seq,
     vector_clock, diff, metadata)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::jsonb, $14::jsonb)`,
  // Keyset paging over the union of heads and snapshots, in the database's (deterministic) order.
  // $1 limit, then the collection and/or the key to start after; one text per shape (index use).
  streams: (byCollection: boolean, after: boolean) => {
    const where = [
      byCollection ? 'collection = $2' : '',
      after
        ? `(collection, document_id) > ($${byCollection ? 3 : 2}::text, $${byCollection ? 4 : 3}::text)`
        : '',
    ].filter(Boolean);
    const filter = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
    return `SELECT collection, document_id FROM (
      SELECT collection, document_id FROM eventsync_streams${filter}
      UNION
      SELECT collection, document_id FROM eventsync_snapshots${filter}
    ) u ORDER BY collection, document_id LIMIT $1`;
  },
  putSnapshot: `INSERT INTO eventsync_snapshots (collection, document_id, seq, version, state, vector_clock, created_at)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7)
    ON CONFLICT (collection, document_id, seq) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state,
      vector_clock = EXCLUDED.vector_clock, created_at = EXCLUDED.created_at`,
  latestSnapshot: `SELECT seq, version, state, vector_clock, created_at FROM eventsync_snapshots
    WHERE collection = $1 AND document_id = $2 AND ($3::bigint IS NULL OR seq <= $3)
    ORDER BY seq DESC LIMIT 1`,
  deleteSnapshots: `WITH d AS (
      DELETE FROM eventsync_snapshots WHERE collection = $1 AND document_id = $2 AND seq < $3 RETURNING 1
    ) SELECT count(*) AS n FROM d`,
  // Conditional upsert: the row moves only forwards (the ON CONFLICT update re-checks its WHERE
  // against the latest committed row). When it did not move, the stored row is read in the same
  // statement.
  putStateVector: `WITH u AS (
      INSERT INTO eventsync_state_vectors AS v (client_id, collection, document_id, vector_clock, last_seq, updated_at)
      VALUES ($1, $2, $3, $4::jsonb, $5, $6)
      ON CONFLICT (client_id, collection, document_id) DO UPDATE SET vector_clock = EXCLUDED.vector_clock,
        last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at
      WHERE v.last_seq < EXCLUDED.last_seq
      RETURNING vector_clock, last_seq, updated_at
    )
    SELECT vector_clock, last_seq, updated_at FROM u
    UNION ALL
    SELECT vector_clock, last_seq, updated_at FROM eventsync_state_vectors
    WHERE client_id = $1 AND collection = $2 AND document_id = $3 AND NOT EXISTS (SELECT 1 FROM u)`,
  /**
   * A batch of acknowledgements (`putStateVectors`), one statement: $1..$6 arrays of client id,
   * collection, document id, last seq, vector clock (JSON text or NULL), updated at; $7 clients
   * to register besides the acknowledging ones. The conditional upsert of `putStateVector`, for
   * the rows whose seq the document has reached (the join with its head drops the others); a
   * missing clock is the head's, or the event's at that seq, or {} when compacted away. The
   * furthest of a key's duplicates is kept (one upsert may not touch a row twice). Rows go in key order, so two instances' batches lock shared rows in the same order (no deadlock).
   */
  putStateVectors: `WITH a AS (
      SELECT DISTINCT ON (client_id, collection, document_id) *
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])
        AS a(client_id, collection, document_id, last_seq, vector_clock, updated_at)
      ORDER BY client_id, collection, document_id, last_seq DESC
    ), c AS (
      INSERT INTO eventsync_clients (client_id)
      SELECT client_id FROM (SELECT client_id FROM a UNION SELECT unnest($7::text[])) k ORDER BY client_id
      ON CONFLICT DO NOTHING
    )
    INSERT INTO eventsync_state_vectors AS v (client_id, collection, document_id, vector_clock, last_seq, updated_at)
    SELECT a.client_id, a.collection, a.document_id,
      COALESCE(a.vector_clock::jsonb, CASE WHEN a.last_seq = s.last_seq THEN s.vector_clock END,
        (SELECT e.vector_clock FROM eventsync_events e
          WHERE e.collection = a.collection AND e.document_id = a.document_id AND e.seq = a.last_seq),
        '{}'::jsonb),
      a.last_seq, a.updated_at
    FROM a JOIN eventsync_streams s ON s.collection = a.collection AND s.document_id = a.document_id
    WHERE a.last_seq <= s.last_seq
    ORDER BY a.client_id, a.collection, a.document_id
    ON CONFLICT (client_id, collection, document_id) DO UPDATE SET vector_clock = EXCLUDED.vector_clock,
      last_seq = EXCLUDED.last_seq, updated_at = EXCLUDED.updated_at
    WHERE v.last_seq < EXCLUDED.last_seq`,
  getStateVector: `SELECT vector_clock, last_seq, updated_at FROM eventsync_state_vectors
    WHERE client_id = $1 AND collection = $2 AND document_id = $3`,
  registerClient: 'INSERT INTO eventsync_clients (client_id) VALUES ($1) ON CONFLICT DO NOTHING',
  // Always updates (to the owner it has, or to $2 when it has none), so RETURNING gives the owner
  // even when a racing claim committed it after this statement began.
  claimClient: `INSERT INTO eventsync_clients AS k (client_id, principal) VALUES ($1, $2)
    ON CONFLICT (client_id) DO UPDATE SET principal = COALESCE(k.principal, EXCLUDED.principal)
    RETURNING principal`,
  unregisterClient: `WITH v AS (DELETE FROM eventsync_state_vectors WHERE client_id = $1)
    DELETE FROM eventsync_clients WHERE client_id = $1`,
  isRegistered: 'SELECT 1 AS ok FROM eventsync_clients WHERE client_id = $1',
};

/** The feed's statement (exported for a plan test). */
export const feedSql = (slow: boolean, byCollection: boolean): string => sql.feed(slow, byCollection);

const feedOfCollection = `(collection, server_seq) > ($5::text, $2::bigint)
        AND (collection, server_seq) <= ($5::text, $4::bigint)
      ORDER BY collection, server_seq`;

interface StateVectorRow {
  vector_clock: VectorClock;
  last_seq: number | string;
  updated_at: number | string;
}

function stateVectorOf(
  clientId: string,
  collection: string,
  documentId: string,
  row: StateVectorRow,
): StateVector {
  return {
    clientId,
    collection,
    documentId,
    vectorClock: row.vector_clock,
    lastSeq: Number(row.last_seq),
    updatedAt: Number(row.updated_at),
  };
}

interface EventRow {
  collection: string;
  document_id: string;
  seq: number | string;
  from_seq: number | string | null;
  server_seq: number | string;
  id: string;
  at: number | string;
  operation: EventOperation;
  version: number | string;
  client_id: string;
  vector_clock: VectorClock;
  diff: Diff | null;
  metadata: JsonObject | null;
}

function toEvent(row: EventRow): SyncEvent {
  const event: SyncEvent = {
    id: row.id,
    collection: row.collection,
    documentId: row.document_id,
    seq: Number(row.seq),
    serverSeq: Number(row.server_seq),
    timestamp: Number(row.at),
    operation: row.operation,
    version: Number(row.version),
    clientId: row.client_id,
    vectorClock: row.vector_clock,
  };
  if (row.from_seq !== null) event.fromSeq = Number(row.from_seq);
  if (row.diff !== null) event.diff = row.diff;
  if (row.metadata !== null) event.metadata = row.metadata;
  return event;
}

export interface FeedOptions {
  /** How long `listAfterServerSeq` waits for in-flight writers before returning nothing new. Default 2,000 ms. */
  settleTimeoutMs?: number;
}

export class SqlEventBackend implements EventBackend {
  readonly #ctx: SqlEventContext;
  readonly #settleTimeoutMs: number;
  /** The largest serverSeq `latestServerSeq` found settled so far (settled stays settled). */
  #settled = 0;

  constructor(ctx: SqlEventContext, options: FeedOptions = {}) {
    this.#ctx = ctx;
    this.#settleTimeoutMs = options.settleTimeoutMs ?? 2000;
  }

  async append(draft: EventDraft): Promise<SyncEvent> {
    this.#ctx.assertOpen();
    try {
      const event = await appendEvent(this.#ctx.driver, draft);
      if (this.#ctx.notify) this.#ctx.announce(eventOnlyPayload(event));
      return event;
    } catch (error) {
      throw mapSqlError(error, `append an event of ${describe(draft.collection, draft.documentId)}`);
    }
  }

  async list(collection: string, documentId: string, range: EventRange = {}): Promise<SyncEvent[]> {
    const { afterSeq = 0, toSeq, limit } = range;
    return this.#listEvents(`list the events of ${describe(collection, documentId)}`, sql.list, [
      collection,
      documentId,
      afterSeq,
      toSeq ?? null,
      limit ?? null,
    ]);
  }

  async listUnseen(collection: string, documentId: string, clock: VectorClock): Promise<SyncEvent[]> {
    for (const [clientId, count] of Object.entries(clock)) {
      if (typeof count !== 'number' || !Number.isFinite(count)) {
        throw new ValidationError(`vector clock entry ${JSON.stringify(clientId)} must be a number`);
      }
    }
    return this.#listEvents(`list the unseen events of ${describe(collection, documentId)}`, sql.listUnseen, [
      collection,
      documentId,
      JSON.stringify(clock),
    ]);
  }

  async listAfterVersion(collection: string, documentId: string, afterVersion: number): Promise<SyncEvent[]> {
    return this.#listEvents(
      `list the events after version ${afterVersion} of ${describe(collection, documentId)}`,
      sql.listAfterVersion,
      [collection, documentId, afterVersion],
    );
  }

  async head(collection: string, documentId: string): Promise<StreamHead | undefined> {
    const [row] = await this.#run<{ last_seq: number | string; vector_clock: VectorClock }>(
      `read the stream head of ${describe(collection, documentId)}`,
      sql.head,
      [collection, documentId],
    );
    return row && { lastSeq: Number(row.last_seq), vectorClock: row.vector_clock };
  }

  /**
   * The feed. PostgreSQL hands out sequence values before commit, so a transaction that commits
   * later can carry a smaller serverSeq than one already committed: reading "everything committed
   * after N" could return N+2 while N+1 is still in flight, and a reader that moves on to N+2
   * would never see N+1.
   *
   * The common case takes one statement: read the events after `after` as they are. When their
   * serverSeqs run after+1, after+2, … without a hole, nothing can still commit among them
   * (a serverSeq is taken once, and the unique index keeps a compaction's merged event from
   * reusing one twice), so they are returned as they are. A hole is a writer still in flight, one
   * that rolled back, or events deleted by compaction; only then, and for one collection's feed
   * (other collections' events are holes to it), is the settled read below used:
   *
   * 1. L = how far the sequence has been handed out (`last_value`; CACHE 1, so every value <= L
   *    was taken by a writer before this read). L <= after: nothing to return.
   * 2. In a later statement, X = one past the xid of every transaction alive then that holds a
   *    lock on the events table (`feedHorizon`).
   * 3. Return the events with after < serverSeq <= L, read in a snapshot in which every xid
   *    below X has ended (`settledFast`, `settledSlow`); while that does not hold, wait a little
   *    and re-check.
   *
   * Why no event with serverSeq <= L can commit after step 3: the column default
   * (`eventsync_next_server_seq()`) makes the writing transaction take its xid *before* its
   * serverSeq, and the INSERT locks the events table before that. A writer holding s <= L took s
   * before step 1, so during step 2 it had either ended (and step 3's later snapshot sees it if
   * it committed) or was alive with its xid and table lock, so its xid is below X and step 3
   * waits for it. Events > L are left for the next call, which repeats the argument.
   *
   * Waiting: an event writer's transaction usually ends within milliseconds; after the first
   * failed check, `settledSlow` also ignores running transactions that never touched the events
   * table. If writers are still in flight after `settleTimeoutMs`, this returns `[]` (nothing
   * past `after` is certain yet): callers poll again, and the writer's commit notifies them.
   * PGlite has one connection, so no other transaction runs during these statements: the first
   * read has a hole only after a rollback or a compaction, and the check always holds there.
   */
  async listAfterServerSeq(
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]> {
    const doing = `read the event feed${collection === undefined ? '' : ` of ${JSON.stringify(collection)}`}`;
    if (limit <= 0) {
      this.#ctx.assertOpen();
      return [];
    }
    if (collection === undefined) {
      const rows = await this.#run<EventRow>(doing, sql.feedAsIs, [afterServerSeq, limit]);
      if (rows.length === 0) return [];
      if (rows.every((r, i) => Number(r.server_seq) === afterServerSeq + 1 + i)) return rows.map(toEvent);
    }
    return this.#settledRead(doing, collection, afterServerSeq, limit);
  }

  /** Steps 1–3 of `listAfterServerSeq`. */
  async #settledRead(
    doing: string,
    collection: string | undefined,
    afterServerSeq: number,
    limit: number,
  ): Promise<SyncEvent[]> {
    const [{ l } = { l: 0 }] = await this.#run<{ l: number | string }>(doing, sql.feedLimit, []);
    const handedOut = Number(l);
    if (handedOut <= afterServerSeq) return [];
    const [{ x } = { x: '0' }] = await this.#run<{ x: string }>(doing, sql.feedHorizon, []);
    const params = [x, afterServerSeq, limit, handedOut];
    if (collection !== undefined) params.push(collection);
    const deadline = Date.now() + this.#settleTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const rows = await this.#run<EventRow & { settled: boolean }>(
        doing,
        sql.feed(attempt > 0, collection !== undefined),
        params,
      );
      if (rows[0]?.settled) return rows.filter((r) => r.id !== null).map(toEvent);
      if (Date.now() >= deadline) return [];
      await sleep(Math.min(2 ** attempt, 50));
    }
  }

  /**
   * A serverSeq at or below which every event has committed or never will (a feed started after
   * it misses nothing that commits later): how far the sequence was handed out, once the
   * writers that may hold a value up to there have ended (steps 1–3 of `listAfterServerSeq`).
   * When they are still running after `settleTimeoutMs`, the last value this backend found
   * settled (0 at first).
   */
  async latestServerSeq(): Promise<number> {
    const doing = 'read the latest settled serverSeq';
    const [{ l } = { l: 0 }] = await this.#run<{ l: number | string }>(doing, sql.feedLimit, []);
    const handedOut = Number(l);
    if (handedOut <= this.#settled) return this.#settled;
    const [{ x } = { x: '' }] = await this.#run<{ x: string }>(doing, sql.feedHorizon, []);
    const deadline = Date.now() + this.#settleTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const [row] = await this.#run<{ settled: boolean }>(doing, sql.settled(attempt > 0), [x]);
      if (row?.settled) {
        this.#settled = Math.max(this.#settled, handedOut);
        return this.#settled;
      }
      if (Date.now() >= deadline) return this.#settled;
      await sleep(Math.min(2 ** attempt, 50));
    }
  }

  watchCommits(onCommit: () => void): Promise<() => Promise<void>> {
    return this.#ctx.watchCommits(onCommit);
  }

  async deleteEvents(collection: string, documentId: string, throughSeq: number): Promise<number> {
    const [row] = await this.#run<{ n: number | string }>(
      `delete the events through seq ${throughSeq} of ${describe(collection, documentId)}`,
      sql.deleteEvents,
      [collection, documentId, throughSeq],
    );
    return Number(row?.n ?? 0);
  }

  /**
   * Deletes `fromSeq`..`seq` and inserts `merged` in their place, in one transaction. The merged
   * event takes the serverSeq of the last event it replaces, so feed readers past it don't see
   * it again and readers before it see it where that event was. When that last event is gone
   * already (another compaction got there first), nothing is inserted.
   */
  async replaceEvents(merged: SyncEvent & { fromSeq: number }): Promise<void> {
    const { collection, documentId } = merged;
    this.#ctx.assertOpen();
    try {
      await this.#ctx.driver.transaction(async (q) => {
        const gone = await q.query<{ seq: number | string; server_seq: number | string }>(sql.deleteRange, [
          collection,
          documentId,
          merged.fromSeq,
          merged.seq,
        ]);
        const last = gone.find((r) => Number(r.seq) === merged.seq);
        if (last === undefined) return;
        await q.query(sql.insertEvent, [
          collection,
          documentId,
          merged.seq,
          merged.fromSeq,
          last.server_seq,
          merged.id,
          merged.timestamp,
          merged.operation,
          merged.version,
          merged.clientId,
          merged.vectorClock[merged.clientId] ?? 0,
          JSON.stringify(merged.vectorClock),
          merged.diff === undefined ? null : JSON.stringify(merged.diff),
          merged.metadata === undefined ? null : JSON.stringify(merged.metadata),
        ]);
      });
    } catch (error) {
      throw mapSqlError(
        error,
        `replace events ${merged.fromSeq}..${merged.seq} of ${describe(collection, documentId)}`,
      );
    }
  }

  async streams(
    collection: string | undefined,
    after: [string, string] | undefined,
    limit: number,
  ): Promise<[string, string][]> {
    const params: unknown[] = [limit];
    if (collection !== undefined) params.push(collection);
    if (after !== undefined) params.push(after[0], after[1]);
    const rows = await this.#run<{ collection: string; document_id: string }>(
      'list event streams',
      sql.streams(collection !== undefined, after !== undefined),
      params,
    );
    return rows.map((r) => [r.collection, r.document_id]);
  }

  async putSnapshot(snapshot: Snapshot): Promise<void> {
    await this.#run(
      `store a snapshot of ${describe(snapshot.collection, snapshot.documentId)}`,
      sql.putSnapshot,
      [
        snapshot.collection,
        snapshot.documentId,
        snapshot.seq,
        snapshot.version,
        snapshot.state === null ? null : JSON.stringify(snapshot.state),
        JSON.stringify(snapshot.vectorClock),
        snapshot.createdAt,
      ],
    );
  }

  async latestSnapshot(
    collection: string,
    documentId: string,
    atOrBeforeSeq?: number,
  ): Promise<Snapshot | undefined> {
    const [row] = await this.#run<{
      seq: number | string;
      version: number | string;
      state: JsonObject | null;
      vector_clock: VectorClock;
      created_at: number | string;
    }>(`read a snapshot of ${describe(collection, documentId)}`, sql.latestSnapshot, [
      collection,
      documentId,
      atOrBeforeSeq ?? null,
    ]);
    return (
      row && {
        collection,
        documentId,
        seq: Number(row.seq),
        version: Number(row.version),
        state: row.state,
        vectorClock: row.vector_clock,
        createdAt: Number(row.created_at),
      }
    );
  }

  async deleteSnapshots(collection: string, documentId: string, beforeSeq: number): Promise<number> {
    const [row] = await this.#run<{ n: number | string }>(
      `delete snapshots of ${describe(collection, documentId)}`,
      sql.deleteSnapshots,
      [collection, documentId, beforeSeq],
    );
    return Number(row?.n ?? 0);
  }

  async putStateVector(vector: StateVector): Promise<StateVector> {
    const [row] = await this.#run<StateVectorRow>(
      `store the state vector of ${JSON.stringify(vector.clientId)} for ${describe(vector.collection, vector.documentId)}`,
      sql.putStateVector,
      [
        vector.clientId,
        vector.collection,
        vector.documentId,
        JSON.stringify(vector.vectorClock),
        vector.lastSeq,
        vector.updatedAt,
      ],
    );
    const { clientId, collection, documentId } = vector;
    // No row: a racing writer's row committed after this statement's snapshot; read it now.
    if (row === undefined) return (await this.getStateVector(clientId, collection, documentId)) ?? vector;
    return stateVectorOf(clientId, collection, documentId, row);
  }

  async putStateVectors(acks: readonly Acknowledgement[], clients: readonly string[]): Promise<void> {
    if (acks.length === 0 && clients.length === 0) {
      this.#ctx.assertOpen();
      return;
    }
    await this.#run(`store ${acks.length} acknowledgements`, sql.putStateVectors, [
      acks.map((a) => a.clientId),
      acks.map((a) => a.collection),
      acks.map((a) => a.documentId),
      acks.map((a) => a.lastSeq),
      acks.map((a) => (a.vectorClock === undefined ? null : JSON.stringify(a.vectorClock))),
      acks.map((a) => a.updatedAt),
      clients,
    ]);
  }

  async getStateVector(
    clientId: string,
    collection: string,
    documentId: string,
  ): Promise<StateVector | undefined> {
    const [row] = await this.#run<StateVectorRow>(
      `read the state vector of ${JSON.stringify(clientId)} for ${describe(collection, documentId)}`,
      sql.getStateVector,
      [clientId, collection, documentId],
    );
    return row && stateVectorOf(clientId, collection, documentId, row);
  }

  async registerClient(clientId: string): Promise<void> {
    await this.#run(`register client ${JSON.stringify(clientId)}`, sql.registerClient, [clientId]);
  }

  async claimClient(clientId: string, principal: string): Promise<string> {
    const [row] = await this.#run<{ principal: string }>(
      `claim client ${JSON.stringify(clientId)}`,
      sql.claimClient,
      [clientId, principal],
    );
    return row!.principal;
  }

  async unregisterClient(clientId: string): Promise<void> {
    await this.#run(`unregister client ${JSON.stringify(clientId)}`, sql.unregisterClient, [clientId]);
  }

  async isRegistered(clientId: string): Promise<boolean> {
    const rows = await this.#run(`look up client ${JSON.stringify(clientId)}`, sql.isRegistered, [clientId]);
    return rows.length > 0;
  }

  /** Runs a `Listing` in the form that is faster on this driver (see `Listing`). */
  async #listEvents(doing: string, statement: Listing, params: unknown[]): Promise<SyncEvent[]> {
    if (this.#ctx.driver.kind === 'pglite') {
      const [row] = await this.#run<{ events: string | null }>(doing, statement.oneJsonArray, params);
      // json_agg of no rows is NULL.
      return row?.events ? (JSON.parse(row.events) as EventRow[]).map(toEvent) : [];
    }
    return (await this.#run<EventRow>(doing, statement.rows, params)).map(toEvent);
  }

  async #run<R>(doing: string, text: string, params: unknown[]): Promise<R[]> {
    this.#ctx.assertOpen();
    try {
      return await this.#ctx.driver.query<R>(text, params);
    } catch (error) {
      throw mapSqlError(error, doing);
    }
  }
}

function describe(collection: string, documentId: string): string {
  return `${JSON.stringify(documentId)} in ${JSON.stringify(collection)}`;
}
