/**
 * Experiment, not part of `npm run bench` (session 10, issue 17): what PostgreSQL pays for the
 * statement shapes of a mutation against a REST PATCH, on simplified tables, with 100 loops over a
 * pool of 10. `rest`: read, write CTE (document, head, event), notify. `now`: the mutation as
 * src/sync/mutations.ts runs it (BEGIN, record lock upsert, read, write CTE, record upsert,
 * COMMIT, notify). `proposed`: the design in docs/DEVELOPMENT.md (read the record, read, the write
 * CTE with a record upsert conditioned on last_mid, notify). Run: `npx tsx bench/experiments/mutation-statements.ts`.
 */
import pg from 'pg';
import { startPostgres } from '../support/postgres.js';

const server = await startPostgres();
const pool = new pg.Pool({ connectionString: server.url, max: 10 });
await pool.query(`CREATE TABLE d (id text PRIMARY KEY, version bigint, data jsonb);
CREATE TABLE h (id text PRIMARY KEY, last_seq bigint);
CREATE TABLE ev (doc text, seq bigint, data jsonb, PRIMARY KEY (doc, seq));
CREATE TABLE m (client text PRIMARY KEY, last_mid bigint, outcome jsonb, updated_at bigint);`);
const N = 100;
for (let i = 0; i < N; i++) {
  await pool.query(`INSERT INTO d VALUES ($1, 1, '{"gold":0}')`, [`d${i}`]);
  await pool.query(`INSERT INTO h VALUES ($1, 1)`, [`d${i}`]);
  await pool.query(`INSERT INTO m VALUES ($1, 0, '{}', 0)`, [`c${i}`]);
}
const write = (
  extra = '',
) => `WITH w AS (UPDATE d SET version = version + 1, data = $2::jsonb WHERE id = $1 AND version = $3 RETURNING version),
  hh AS (UPDATE h SET last_seq = last_seq + 1 FROM w WHERE h.id = $1 RETURNING last_seq),
  e AS (INSERT INTO ev SELECT $1, hh.last_seq, $2::jsonb FROM hh RETURNING seq)${extra}
  SELECT e.seq FROM e`;
const plain = { name: 'plain', text: write() };
const withRecord = {
  name: 'withrec',
  text: write(`, mm AS (INSERT INTO m (client, last_mid, outcome, updated_at) SELECT $4, $5, $6::jsonb || jsonb_build_object('seq', e.seq), 0 FROM e
    ON CONFLICT (client) DO UPDATE SET last_mid = EXCLUDED.last_mid, outcome = EXCLUDED.outcome WHERE m.last_mid = $5 - 1 RETURNING 1)`).replace(
    'SELECT e.seq FROM e',
    'SELECT e.seq, (SELECT count(*) FROM mm) AS recorded FROM e',
  ),
};
const read = { name: 'read', text: 'SELECT version, data FROM d WHERE id = $1' };
const readRec = { name: 'readrec', text: 'SELECT last_mid, outcome FROM m WHERE client = $1' };
const lock = {
  name: 'lock',
  text: `INSERT INTO m AS x (client, last_mid, outcome, updated_at) VALUES ($1, 0, '{}', 0) ON CONFLICT (client) DO UPDATE SET client = x.client RETURNING last_mid, outcome`,
};
const put = {
  name: 'put',
  text: `INSERT INTO m (client, last_mid, outcome, updated_at) VALUES ($1, $2, $3::jsonb, 0) ON CONFLICT (client) DO UPDATE SET last_mid = EXCLUDED.last_mid, outcome = EXCLUDED.outcome`,
};
const notify = { name: 'notify', text: `SELECT pg_notify('x', $1)` };
type Op = (i: number) => Promise<void>;
const rest: Op = async (i) => {
  const id = `d${i}`;
  const { rows } = await pool.query({ ...read, values: [id] });
  const v = Number(rows[0].version);
  await pool.query({ ...plain, values: [id, JSON.stringify({ gold: v }), v] });
  await pool.query({ ...notify, values: [id] });
};
const now: Op = async (i) => {
  const id = `d${i}`;
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const r = await c.query({ ...lock, values: [`c${i}`] });
    const { rows } = await c.query({ ...read, values: [id] });
    const v = Number(rows[0].version);
    await c.query({ ...plain, values: [id, JSON.stringify({ gold: v }), v] });
    await c.query({ ...put, values: [`c${i}`, Number(r.rows[0].last_mid) + 1, '{"type":"mutated"}'] });
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  await pool.query({ ...notify, values: [id] });
};
const proposed: Op = async (i) => {
  const id = `d${i}`;
  const r = await pool.query({ ...readRec, values: [`c${i}`] });
  const mid = Number(r.rows[0].last_mid) + 1;
  const { rows } = await pool.query({ ...read, values: [id] });
  const v = Number(rows[0].version);
  const w = await pool.query({
    ...withRecord,
    values: [id, JSON.stringify({ gold: v }), v, `c${i}`, mid, '{"type":"mutated"}'],
  });
  if (Number(w.rows[0]?.recorded) !== 1) throw new Error('record moved');
  await pool.query({ ...notify, values: [id] });
};
const cpuPg = async () => {
  const fs = await import('node:fs');
  let t = 0;
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!s.includes('(postgres')) continue;
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      t += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return t * 10;
};
async function run(name: string, op: Op, ms: number) {
  const end = performance.now() + ms;
  let n = 0;
  const pg0 = await cpuPg();
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      while (performance.now() < end) {
        await op(i);
        n++;
      }
    }),
  );
  const c1 = process.cpuUsage(c0);
  const pg1 = (await cpuPg()) - pg0;
  console.log(
    `${name.padEnd(9)} ${Math.round(n / (ms / 1000))} ops/s  pg ${(pg1 / n).toFixed(3)} ms/op  node ${((c1.user + c1.system) / 1000 / n).toFixed(3)} ms/op`,
  );
}
const shapes = [
  ['rest', rest],
  ['now', now],
  ['proposed', proposed],
] as const;
for (const [n, op] of shapes) await run(n, op, 1000); // warm-up
for (let round = 0; round < 3; round++) for (const [n, op] of shapes) await run(n, op, 3000);
await pool.end();
await server.stop();
