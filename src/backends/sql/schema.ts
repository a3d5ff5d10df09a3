/**
 * The tables, as numbered migrations applied once per database. `migrate` takes a transaction-scoped
 * advisory lock first, so processes starting together apply each migration exactly once; the
 * statements are idempotent anyway (IF NOT EXISTS) in case a migration table was lost.
 *
 * Naming: every table is `eventsync_<plural noun>` (`eventsync_documents`, `eventsync_events`,
 * `eventsync_snapshots`, …), keyed by `(collection, id)` or `(collection, document_id, …)` so the
 * tables can later be distributed by document; indexes are `<table>_<columns>_<kind>`.
 */
import { isCollectionName } from '../../core/ids.js';
import type { SqlDriver } from './driver.js';

export interface Migration {
  id: number;
  name: string;
  /** Run in order, one statement each, inside the migration's transaction. */
  statements: string[];
}

export const migrations: readonly Migration[] = [
  {
    id: 1,
    name: 'documents',
    statements: [
      `CREATE TABLE IF NOT EXISTS eventsync_documents (
        collection text NOT NULL,
        id text NOT NULL,
        version bigint NOT NULL,
        data jsonb NOT NULL,
        PRIMARY KEY (collection, id)
      )`,
      // Dropped by migration 3 (per-collection indexes instead). No collection column in it: a GIN
      // index on text needs the btree_gin extension.
      `CREATE INDEX IF NOT EXISTS eventsync_documents_data_gin
        ON eventsync_documents USING gin (data jsonb_path_ops)`,
    ],
  },
  {
    id: 2,
    name: 'events',
    statements: [
      // One order over all events (the feeds' serverSeq). CACHE 1 (the default) matters: the feed
      // reads `last_value` as "every value up to here has been handed out" (see feed.ts).
      'CREATE SEQUENCE IF NOT EXISTS eventsync_server_seq AS bigint CACHE 1',
      // The default of `eventsync_events.server_seq`: gives the writing transaction its xid (if it
      // has none yet) *before* it takes the value, which is what lets the feed wait for every
      // transaction that may still commit a smaller serverSeq (see `listAfterServerSeq` in feed.ts).
      `CREATE OR REPLACE FUNCTION eventsync_next_server_seq() RETURNS bigint
        LANGUAGE sql VOLATILE PARALLEL UNSAFE
        AS $$ SELECT CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('eventsync_server_seq') END $$`,
      // A document's stream head: last seq and vector clock. Outlives the document (delete and
      // re-create continue the count) and every compaction of its events.
      `CREATE TABLE IF NOT EXISTS eventsync_streams (
        collection text NOT NULL,
        document_id text NOT NULL,
        last_seq bigint NOT NULL,
        vector_clock jsonb NOT NULL,
        PRIMARY KEY (collection, document_id)
      )`,
      // `actor_seq` is `vector_clock ->> client_id`, so "events a clock has not seen" is a plain
      // comparison. `from_seq` is set on an event compaction merged from seqs from_seq..seq.
      `CREATE TABLE IF NOT EXISTS eventsync_events (
        collection text NOT NULL,
        document_id text NOT NULL,
        seq bigint NOT NULL,
        from_seq bigint,
        server_seq bigint NOT NULL DEFAULT eventsync_next_server_seq(),
        id text NOT NULL,
        at bigint NOT NULL,
        operation text NOT NULL CHECK (operation IN ('create', 'update', 'update_section', 'delete')),
        version bigint NOT NULL,
        client_id text NOT NULL,
        actor_seq bigint NOT NULL,
        vector_clock jsonb NOT NULL,
        diff jsonb,
        metadata jsonb,
        PRIMARY KEY (collection, document_id, seq),
        CONSTRAINT eventsync_events_server_seq_key UNIQUE (server_seq)
      )`,
      `CREATE INDEX IF NOT EXISTS eventsync_events_collection_server_seq_idx
        ON eventsync_events (collection, server_seq)`,
      `CREATE TABLE IF NOT EXISTS eventsync_snapshots (
        collection text NOT NULL,
        document_id text NOT NULL,
        seq bigint NOT NULL,
        version bigint NOT NULL,
        state jsonb,
        vector_clock jsonb NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (collection, document_id, seq)
      )`,
      `CREATE TABLE IF NOT EXISTS eventsync_state_vectors (
        client_id text NOT NULL,
        collection text NOT NULL,
        document_id text NOT NULL,
        vector_clock jsonb NOT NULL,
        last_seq bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (client_id, collection, document_id)
      )`,
      `CREATE TABLE IF NOT EXISTS eventsync_clients (
        client_id text PRIMARY KEY,
        registered_at timestamptz NOT NULL DEFAULT now()
      )`,
    ],
  },
  {
    id: 3,
    name: 'filter indexes per collection',
    statements: [
      // The GIN index over every collection's documents made every write dearer (~20% at 8
      // connections); collections that want one opt in (`filterIndex`, `filterIndexSql` below).
      'DROP INDEX IF EXISTS eventsync_documents_data_gin',
    ],
  },
  {
    id: 4,
    name: 'document incarnations',
    statements: [
      // Names a document from its create to its delete: an ETag or a precondition of a deleted
      // document must never match its successor with the same id (which restarts at version 1).
      'CREATE SEQUENCE IF NOT EXISTS eventsync_incarnations',
      'ALTER TABLE eventsync_documents ADD COLUMN IF NOT EXISTS incarnation bigint',
      "UPDATE eventsync_documents SET incarnation = nextval('eventsync_incarnations') WHERE incarnation IS NULL",
      "ALTER TABLE eventsync_documents ALTER COLUMN incarnation SET DEFAULT nextval('eventsync_incarnations')",
      'ALTER TABLE eventsync_documents ALTER COLUMN incarnation SET NOT NULL',
    ],
  },
  {
    id: 5,
    name: 'client owners',
    statements: [
      // The principal a client id belongs to (`claimClient`): only it may use the id. NULL for
      // clients registered before this migration, or without a principal: the first principal to
      // use one claims it.
      'ALTER TABLE eventsync_clients ADD COLUMN IF NOT EXISTS principal text',
    ],
  },
  {
    id: 6,
    name: 'mutation records',
    statements: [
      // Per client id (or REST idempotency key, `rest:<principal>:<key>`): the last mutation id
      // applied or refused and its answer, written in the transaction of the mutation's write
      // (docs/MUTATIONS.md). last_mid 0 is a row locked before any mutation committed: no record.
      `CREATE TABLE IF NOT EXISTS eventsync_mutations (
        client_id text PRIMARY KEY,
        last_mid bigint NOT NULL,
        outcome jsonb NOT NULL,
        updated_at bigint NOT NULL
      )`,
    ],
  },
];

/**
 * The partial GIN index of one collection's documents, for `data @@ jsonpath` filters (see
 * filter.ts). The collection is a literal (collection names are `[a-z_][a-z0-9_]*`), and so is it
 * in the filtered reads that should use the index: a generic plan cannot match a partial index's
 * predicate against a parameter. Named by a hash too: identifiers stop at 63 characters.
 */
export function filterIndexSql(collection: string): string {
  if (!isCollectionName(collection)) throw new Error(`not a collection name: ${collection}`);
  return `CREATE INDEX IF NOT EXISTS ${filterIndexName(collection)}
    ON eventsync_documents USING gin (data jsonb_path_ops) WHERE collection = '${collection}'`;
}

export function filterIndexName(collection: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < collection.length; i++) hash = Math.imul(hash ^ collection.charCodeAt(i), 0x01000193);
  return `eventsync_documents_gin_${collection.slice(0, 24)}_${(hash >>> 0).toString(16).padStart(8, '0')}`;
}

/** `pg_advisory_xact_lock` key for migrations: the bytes of "evsync". */
export const MIGRATION_LOCK = 0x657673796e63;

/** Applies the migrations this database lacks. Cheap (one query) when it is up to date. */
export async function migrate(driver: SqlDriver): Promise<void> {
  const latest = migrations[migrations.length - 1]!.id;
  if ((await appliedIds(driver)).has(latest)) return;
  await driver.transaction(async (q) => {
    await q.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
    await q.query(`CREATE TABLE IF NOT EXISTS eventsync_migrations (
      id integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const rows = await q.query<{ id: number }>('SELECT id FROM eventsync_migrations');
    const applied = new Set(rows.map((r) => r.id));
    for (const migration of migrations) {
      if (applied.has(migration.id)) continue;
      for (const statement of migration.statements) await q.query(statement);
      await q.query('INSERT INTO eventsync_migrations (id, name) VALUES ($1, $2)', [
        migration.id,
        migration.name,
      ]);
    }
  });
}

async function appliedIds(driver: SqlDriver): Promise<Set<number>> {
  const [{ present }] = (await driver.query<{ present: boolean }>(
    "SELECT to_regclass('eventsync_migrations') IS NOT NULL AS present",
  )) as [{ present: boolean }];
  if (!present) return new Set();
  const rows = await driver.query<{ id: number }>('SELECT id FROM eventsync_migrations');
  return new Set(rows.map((r) => r.id));
}
