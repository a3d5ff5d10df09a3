/**
 * State vectors in SQL: how far each client has applied each document, from its acknowledgements
 * (`eventsync_state_vectors`, schema.ts, migration 2). Rows only move forwards.
 */
import type { Acknowledgement } from '../../core/event-backend.js';
import type { StateVector, VectorClock } from '../../core/events.js';
import { describe, SqlEventPart } from './event-context.js';

const sql = {
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
};

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

/** `EventBackend`'s state vectors: `putStateVector`, `putStateVectors`, `getStateVector`. */
export class SqlStateVectors extends SqlEventPart {
  async putStateVector(vector: StateVector): Promise<StateVector> {
    const [row] = await this.run<StateVectorRow>(
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
      this.ctx.assertOpen();
      return;
    }
    await this.run(`store ${acks.length} acknowledgements`, sql.putStateVectors, [
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
    const [row] = await this.run<StateVectorRow>(
      `read the state vector of ${JSON.stringify(clientId)} for ${describe(collection, documentId)}`,
      sql.getStateVector,
      [clientId, collection, documentId],
    );
    return row && stateVectorOf(clientId, collection, documentId, row);
  }
}
