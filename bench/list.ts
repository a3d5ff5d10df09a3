/**
 * List: `findMany({}, { sort: { score: -1 }, limit: 1000 })` over 100,000 documents, before and
 * after sort, skip and limit moved into the database (issue 13, "Reads bounded in work and bytes").
 *
 * - **before**: what `findMany` did until then, kept here as the baseline: every candidate read
 *   (memory: every document cloned; SQL: `SELECT data … WHERE collection = $1`), then
 *   `findInMemory` (mingo) filtered, sorted and limited them in JavaScript.
 * - **after**: `findMany` as it is: on PostgreSQL and PGlite one statement that sorts and limits
 *   in the database (only the 1,000 documents leave it); in memory a top-k heap over the stored
 *   documents, cloning only the 1,000 returned.
 * - **after, filter not exact in SQL**: `{ level: { $ne: 3 } }` (SQL can only narrow `$ne`), so
 *   the candidates are read in pages and a heap keeps the best 1,000: memory stays bounded, the
 *   work does not (every candidate crosses from the database).
 *
 * Each round runs the contenders in turn (rotated); the figure is the median over the rounds.
 * Every round checks that each contender returned the same 1,000 ids as the baseline.
 */
import { isDeepStrictEqual } from 'node:util';
import { createStorage, type Database, type JsonObject, memoryDatabase, type Storage } from '../src/index.js';
import { pgDatabase, type SqlDatabase } from '../src/pg.js';
import { pgliteDatabase } from '../src/pglite.js';
import { findInMemory } from '../src/storage/mongo.js';
import { type BenchModule, type BenchOptions, formatNumber, type Section, table } from './harness.js';
import { type BenchPostgres, startPostgres } from './support/postgres.js';
import { machineLine, median, ms, ratio, rotate } from './support/stats.js';

const COLLECTION = 'list_bench';
const QUERY = { sort: { score: -1 as const }, limit: 1000 };
const INEXACT = { level: { $ne: 3 } };

interface Contender {
  name: string;
  run(): Promise<JsonObject[]>;
}

interface Row {
  backend: string;
  medians: Map<string, number>;
}

/** Document i, the same on every backend: a score with ties, a level, ~100 bytes of padding. */
const documentSql = `jsonb_build_object('_id', 'd' || lpad(i::text, 6, '0'), 'version', 1,
  'score', (i * 7919) % 50021, 'level', i % 7, 'name', 'player ' || i, 'pad', repeat('x', 100))`;

function documentJs(i: number): JsonObject {
  const id = `d${String(i).padStart(6, '0')}`;
  return {
    _id: id,
    version: 1,
    score: (i * 7919) % 50021,
    level: i % 7,
    name: `player ${i}`,
    pad: 'x'.repeat(100),
  };
}

async function fillSql(db: SqlDatabase, count: number): Promise<void> {
  await db.collection(COLLECTION); // creates the tables
  await db.driver.query(
    `INSERT INTO eventsync_documents (collection, id, version, data)
     SELECT $1, 'd' || lpad(i::text, 6, '0'), 1, ${documentSql} FROM generate_series(1, $2) i`,
    [COLLECTION, count],
  );
}

async function fillMemory(db: Database, count: number): Promise<void> {
  const backend = await db.collection(COLLECTION);
  for (let i = 1; i <= count; i++) {
    const data = documentJs(i);
    await backend.insert({ id: data._id as string, version: 1, data });
  }
}

function contenders(db: Database, storage: Storage<JsonObject & { _id: string }>): Contender[] {
  const before = async (): Promise<JsonObject[]> => {
    let all: JsonObject[];
    if (db.kind === 'memory') {
      // The old memory `find`: every document cloned, in insertion order.
      all = await (await db.collection(COLLECTION)).find({});
    } else {
      // The old SQL `find` for an empty filter (no order, no limit).
      const rows = await (db as SqlDatabase).driver.query<{ data: JsonObject }>(
        'SELECT data FROM eventsync_documents WHERE collection = $1 AND TRUE',
        [COLLECTION],
      );
      all = rows.map((r) => r.data);
    }
    return findInMemory(all, {}, QUERY);
  };
  return [
    { name: 'before', run: before },
    { name: 'after', run: () => storage.findMany({}, QUERY) as Promise<JsonObject[]> },
    {
      name: 'after, filter not exact in SQL',
      run: () => storage.findMany(INEXACT, QUERY) as Promise<JsonObject[]>,
    },
  ];
}

async function measureBackend(
  opts: BenchOptions,
  backend: string,
  db: Database,
  count: number,
  rounds: number,
): Promise<Row> {
  const storage = await createStorage<JsonObject & { _id: string }>({ db, collection: COLLECTION });
  const list = contenders(db, storage);
  const expected = (await list[0]!.run()).map((d) => d._id);
  const expectedInexact = findInMemory(await (await db.collection(COLLECTION)).find({}), INEXACT, QUERY).map(
    (d) => d._id,
  );
  const times = new Map<string, number[]>(list.map((c) => [c.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const c of rotate(list, round)) {
      const t0 = performance.now();
      const found = await c.run();
      times.get(c.name)!.push(performance.now() - t0);
      const want = c.name.includes('not exact') ? expectedInexact : expected;
      if (
        !isDeepStrictEqual(
          found.map((d) => d._id),
          want,
        )
      ) {
        throw new Error(`${backend} ${c.name}: not the baseline's answer`);
      }
    }
    opts.progress(
      `list: ${backend} round ${round + 1}/${rounds} (${count.toLocaleString('en-US')} documents)`,
    );
  }
  return { backend, medians: new Map([...times].map(([name, t]) => [name, median(t)])) };
}

async function run(opts: BenchOptions): Promise<Section> {
  const count = opts.quick ? 10_000 : 100_000;
  const rounds = opts.quick ? 3 : 7;
  const rows: Row[] = [];
  let pgVersion = '';

  const memory = memoryDatabase();
  await fillMemory(memory, count);
  rows.push(await measureBackend(opts, 'memory', memory, count, rounds));
  await memory.close();

  const pglite = await pgliteDatabase({ notify: false });
  await fillSql(pglite, count);
  rows.push(await measureBackend(opts, 'PGlite', pglite, count, rounds));
  await pglite.close();

  let server: BenchPostgres | undefined;
  try {
    server = await startPostgres();
    pgVersion = server.version;
    const pg = await pgDatabase({ connectionString: server.url, notify: false });
    await fillSql(pg, count);
    await pg.driver.query('VACUUM ANALYZE eventsync_documents');
    rows.push(await measureBackend(opts, 'PostgreSQL', pg, count, rounds));
    await pg.close();
  } finally {
    await server?.stop();
  }
  return { markdown: render(rows, count, rounds, pgVersion) };
}

function render(rows: Row[], count: number, rounds: number, pgVersion: string): string {
  const n = formatNumber(count);
  const body = rows.map((r) => {
    const before = r.medians.get('before')!;
    const after = r.medians.get('after')!;
    const inexact = r.medians.get('after, filter not exact in SQL')!;
    return [r.backend, ms(before), ms(after), ratio(before / after), ms(inexact)];
  });
  return [
    `## List: 1,000 of ${n} documents, sorted`,
    '',
    `\`findMany({}, { sort: { score: -1 }, limit: 1000 })\` over ${n} documents of ~200 bytes`,
    '(scores with ties), median ms over ' +
      `${rounds} rounds (contenders rotated each round; each answer checked against the baseline's).`,
    '**before**: what `findMany` did until issue 13, kept in `bench/list.ts` as the baseline: every',
    'document read (memory: cloned) and `findInMemory` (mingo) sorting and limiting in JavaScript.',
    '**after**: `findMany` now: PostgreSQL and PGlite sort and limit in one statement (only the page',
    'leaves the database); memory keeps a top-k heap over the stored documents and clones only the',
    'page. **not exact in SQL**: the same sort and limit with `{ level: { $ne: 3 } }`, which SQL',
    'can only narrow: the candidates come in pages and a heap keeps the best 1,000 (memory bounded,',
    'work not: every candidate still crosses from the database).',
    '',
    table(
      ['backend', 'before (ms)', 'after (ms)', 'before / after', 'after, filter not exact in SQL (ms)'],
      body,
      ['l', 'r', 'r', 'r', 'r'],
    ),
    '',
    '`npm run bench -- --only list`',
    '',
    machineLine([pgVersion, 'PGlite in process']),
  ].join('\n');
}

export const list: BenchModule = { name: 'list', run };
