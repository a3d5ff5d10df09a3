/**
 * Mutation records in SQL (`eventsync_mutations`, schema.ts migration 6): per client id, the
 * last mutation id applied or refused and its answer (see `MutationRecord`). An applied
 * mutation's record is written by its write statement (`keptRecordSql` in recording.ts), any
 * other answer's by `keepMutationRecord` here; both only while the record is at the mid before.
 */
import type { MutationRecord } from '../../core/event-backend.js';
import type { JsonObject } from '../../core/json.js';
import { SqlEventPart } from './event-context.js';

interface RecordRow {
  last_mid: number | string;
  outcome: JsonObject;
  updated_at: number | string;
}

const sql = {
  // `keepMutationRecord`: only while the record is at the mid before. A first mid finds no row
  // (or one at last_mid 0, which counts as none, as `read` says).
  keepFirst: `INSERT INTO eventsync_mutations AS m (client_id, last_mid, outcome, updated_at)
    VALUES ($1, $2, $3::jsonb, $4)
    ON CONFLICT (client_id) DO UPDATE
      SET last_mid = EXCLUDED.last_mid, outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at
      WHERE m.last_mid = 0
    RETURNING 1`,
  keepNext: `UPDATE eventsync_mutations SET last_mid = $2::bigint, outcome = $3::jsonb, updated_at = $4
    WHERE client_id = $1 AND last_mid = $2::bigint - 1
    RETURNING 1`,
  read: `SELECT last_mid, outcome, updated_at FROM eventsync_mutations
    WHERE client_id = $1 AND last_mid > 0`,
  // starts_with, not LIKE: a prefix holding _ or % means itself.
  prune: 'DELETE FROM eventsync_mutations WHERE starts_with(client_id, $1) AND updated_at < $2',
};

const toRecord = (clientId: string, row: RecordRow | undefined): MutationRecord | undefined =>
  row === undefined || Number(row.last_mid) === 0
    ? undefined
    : { clientId, lastMid: Number(row.last_mid), outcome: row.outcome, updatedAt: Number(row.updated_at) };

/** `EventBackend.mutationRecord`, `keepMutationRecord` and `pruneMutationRecords`. */
export class SqlMutationRecords extends SqlEventPart {
  async keepMutationRecord(record: MutationRecord): Promise<boolean> {
    const { clientId, lastMid, outcome, updatedAt } = record;
    const doing = `keep the mutation record of ${JSON.stringify(clientId)}`;
    const statement = lastMid === 1 ? sql.keepFirst : sql.keepNext;
    const rows = await this.run(doing, statement, [clientId, lastMid, JSON.stringify(outcome), updatedAt]);
    return rows.length === 1;
  }

  async mutationRecord(clientId: string): Promise<MutationRecord | undefined> {
    const doing = `read the mutation record of ${JSON.stringify(clientId)}`;
    const [row] = await this.run<RecordRow>(doing, sql.read, [clientId]);
    return toRecord(clientId, row);
  }

  async pruneMutationRecords(prefix: string, updatedBefore: number): Promise<number> {
    const doing = `prune the mutation records of ${JSON.stringify(prefix)}…`;
    const rows = await this.run<{ n: number }>(
      doing,
      `WITH d AS (${sql.prune} RETURNING 1) SELECT count(*)::int AS n FROM d`,
      [prefix, updatedBefore],
    );
    return rows[0]?.n ?? 0;
  }
}
