/**
 * Fault injection for the event log, the one use of mocks in the backend tests. SQL: a test-only
 * trigger on `eventsync_events` that fails every insert made by a connection whose
 * `application_name` is listed in `eventsync_test_faults`. Databases opened with their own
 * application name (`openPg({ applicationName })`) can so be made to fail alone, while other
 * tests share the server; on PGlite (one connection) the fault holds for every database on that
 * PGlite until restored. Memory: the event log's two ways in (`publish`, `append`) replaced.
 */
import type { MemoryEventLog } from '../../src/backends/memory/memory-events.js';
import type { SqlDatabase } from '../../src/backends/sql/database.js';
import type { Database } from '../../src/core/collection-backend.js';

export const INJECTED_FAULT = 'injected event insert failure';

const setup = [
  'CREATE TABLE IF NOT EXISTS eventsync_test_faults (application_name text PRIMARY KEY)',
  `CREATE OR REPLACE FUNCTION eventsync_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF EXISTS (SELECT 1 FROM eventsync_test_faults WHERE application_name = current_setting('application_name')) THEN
      RAISE EXCEPTION '${INJECTED_FAULT}';
    END IF;
    RETURN NEW;
  END $$`,
  `CREATE OR REPLACE TRIGGER eventsync_test_fault BEFORE INSERT ON eventsync_events
    FOR EACH ROW EXECUTE FUNCTION eventsync_test_fault()`,
];

/** Makes every event insert by `db`'s connections fail until the returned function is called. */
export async function injectEventFault(database: Database): Promise<() => Promise<void>> {
  const db = database as SqlDatabase;
  // Serialised: CREATE OR REPLACE from two test files at once can fail ("tuple concurrently updated").
  await db.driver.transaction(async (q) => {
    await q.query("SELECT pg_advisory_xact_lock(hashtext('eventsync_test_fault'))");
    for (const statement of setup) await q.query(statement);
  });
  const [{ name }] = (await db.driver.query<{ name: string }>(
    "SELECT current_setting('application_name') AS name",
  )) as [{ name: string }];
  await db.driver.query('INSERT INTO eventsync_test_faults VALUES ($1) ON CONFLICT DO NOTHING', [name]);
  return async () => {
    await db.driver.query('DELETE FROM eventsync_test_faults WHERE application_name = $1', [name]);
  };
}

/** Makes every event a memory database publishes (alone or at a transaction's commit) fail until the returned function is called. */
export async function injectMemoryEventFault(db: Database): Promise<() => Promise<void>> {
  const log = (await db.events()) as MemoryEventLog;
  const { publish, append } = log;
  const fail = () => {
    throw new Error(INJECTED_FAULT);
  };
  log.publish = fail;
  log.append = async () => fail();
  return async () => {
    log.publish = publish;
    log.append = append;
  };
}
