/** Snapshots in SQL: a document's state at a seq (`eventsync_snapshots`, schema.ts, migration 2). */
import type { Snapshot, VectorClock } from '../../core/events.js';
import type { JsonObject } from '../../core/json.js';
import { describe, SqlEventPart } from './event-context.js';

const sql = {
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
};

interface SnapshotRow {
  seq: number | string;
  version: number | string;
  state: JsonObject | null;
  vector_clock: VectorClock;
  created_at: number | string;
}

/** `EventBackend`'s snapshots: `putSnapshot`, `latestSnapshot`, `deleteSnapshots`. */
export class SqlSnapshots extends SqlEventPart {
  async putSnapshot(snapshot: Snapshot): Promise<void> {
    await this.run(
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
    const [row] = await this.run<SnapshotRow>(
      `read a snapshot of ${describe(collection, documentId)}`,
      sql.latestSnapshot,
      [collection, documentId, atOrBeforeSeq ?? null],
    );
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
    const [row] = await this.run<{ n: number | string }>(
      `delete snapshots of ${describe(collection, documentId)}`,
      sql.deleteSnapshots,
      [collection, documentId, beforeSeq],
    );
    return Number(row?.n ?? 0);
  }
}
