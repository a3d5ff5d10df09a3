/**
 * Mutation records in SQL (`eventsync_mutations`, schema.ts migration 6): per client id, the
 * last mutation id applied or refused and its answer (see `MutationRecord`). An applied
 * mutation's record is written by its write statement (`keptRecordSql` in recording.ts); the
 * collection backend's transactions lock and write the others here; the event log reads them
 * (welcome's `lastMid`).
 */
import type { MutationRecord } from '../../core/event-backend.js';
import type { JsonObject } from '../../core/json.js';
import type { SqlQueryable } from './driver.js';
import { SqlEventPart } from './event-context.js';

interface RecordRow {
  last_mid: number | string;
  outcome: JsonObject;
  updated_at: number | string;
}

const sql = {
  // One round trip that creates the row when absent and locks it either way: the no-op update of
  // an existing row takes its row lock (a racing transaction of the same client waits here, then
  // reads what that one committed), and RETURNING gives the row as it now is. last_mid 0: no record.
  lock: `INSERT INTO eventsync_mutations AS m (client_id, last_mid, outcome, updated_at)
    VALUES ($1, 0, '{}'::jsonb, 0)
    ON CONFLICT (client_id) DO UPDATE SET client_id = m.client_id
    RETURNING last_mid, outcome, updated_at`,
  put: `INSERT INTO eventsync_mutations (client_id, last_mid, outcome, updated_at)
    VALUES ($1, $2, $3::jsonb, $4)
    ON CONFLICT (client_id) DO UPDATE
      SET last_mid = EXCLUDED.last_mid, outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at`,
  read: `SELECT last_mid, outcome, updated_at FROM eventsync_mutations
    WHERE client_id = $1 AND last_mid > 0`,
  // starts_with, not LIKE: a prefix holding _ or % means itself.
  prune: 'DELETE FROM eventsync_mutations WHERE starts_with(client_id, $1) AND updated_at < $2',
};

const toRecord = (clientId: string, row: RecordRow | undefined): MutationRecord | undefined =>
  row === undefined || Number(row.last_mid) === 0
    ? undefined
    : { clientId, lastMid: Number(row.last_mid), outcome: row.outcome, updatedAt: Number(row.updated_at) };

/** Inside a transaction on `q`: the client's record, locked until the transaction ends. */
export async function lockMutationRecord(
  q: SqlQueryable,
  clientId: string,
): Promise<MutationRecord | undefined> {
  const [row] = await q.query<RecordRow>(sql.lock, [clientId]);
  return toRecord(clientId, row);
}

/** Inside the transaction that locked it: writes the record. */
export async function putMutationRecord(q: SqlQueryable, record: MutationRecord): Promise<void> {
  const { clientId, lastMid, outcome, updatedAt } = record;
  await q.query(sql.put, [clientId, lastMid, JSON.stringify(outcome), updatedAt]);
}

/** `EventBackend.mutationRecord`: the committed record, unlocked. */
export class SqlMutationRecords extends SqlEventPart {
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
