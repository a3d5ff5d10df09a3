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

/**
 * The statement that writes a record only while it is at the mid before, returning a row when it
 * did: `first` (mid 1) finds no row (or one at last_mid 0, which counts as none, as `read` says);
 * a later mid updates the row at `mid - 1`. Its values are SQL expressions (`outcome`: jsonb),
 * read from `from` when given: `keepMutationRecord` here, and the recording statement of a
 * mutation's write (`keptRecordSql` in recording.ts, from its event).
 */
export function keepRecordSql(
  first: boolean,
  v: { name: string; mid: string; outcome: string; at: string },
  from?: string,
): string {
  if (first) {
    return `INSERT INTO eventsync_mutations AS r (client_id, last_mid, outcome, updated_at)
      SELECT ${v.name}, ${v.mid}::bigint, ${v.outcome}, ${v.at}::bigint${from ? ` FROM ${from}` : ''}
      ON CONFLICT (client_id) DO UPDATE
        SET last_mid = EXCLUDED.last_mid, outcome = EXCLUDED.outcome, updated_at = EXCLUDED.updated_at
        WHERE r.last_mid = 0
      RETURNING 1`;
  }
  return `UPDATE eventsync_mutations AS r
      SET last_mid = ${v.mid}::bigint, outcome = ${v.outcome}, updated_at = ${v.at}::bigint${from ? ` FROM ${from}` : ''}
      WHERE r.client_id = ${v.name} AND r.last_mid = ${v.mid}::bigint - 1
      RETURNING 1`;
}

/** `keepMutationRecord`'s statements: $1 client id, $2 mid, $3 outcome, $4 updated_at. */
const params = { name: '$1::text', mid: '$2', outcome: '$3::jsonb', at: '$4' };
const keep = { first: keepRecordSql(true, params), next: keepRecordSql(false, params) };

const sql = {
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
    const statement = lastMid === 1 ? keep.first : keep.next;
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
