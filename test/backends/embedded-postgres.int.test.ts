/**
 * The tests' PostgreSQL starts wherever the checkout lives, as root too (issue 18): as root,
 * initdb and postgres run as the `postgres` user, which cannot reach binaries inside a checkout
 * other users cannot traverse. Here the binaries are copied into a `mkdtemp` directory (mode 0700,
 * like a checkout under /root), shown unreachable for `postgres`, and the server still starts
 * from there and answers a query.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { installedNativeDir, startEmbeddedPostgres } from '../support/embedded-postgres.js';

describe('the embedded PostgreSQL of the tests', () => {
  it('starts as root from binaries in a directory the postgres user cannot traverse', async (context) => {
    if (userInfo().uid !== 0) context.skip('runs as root only: other users start PostgreSQL as themselves');
    const checkout = await mkdtemp(join(tmpdir(), 'eventsync-private-checkout-'));
    try {
      expect((await stat(checkout)).mode & 0o777).toBe(0o700);
      const native = join(checkout, 'native');
      await cp(installedNativeDir(), native, { recursive: true, verbatimSymlinks: true });
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const direct = spawnSync(join(native, 'bin', 'initdb'), ['--version'], { uid, timeout: 10_000 });
      expect(direct.error?.message).toMatch(/EACCES/);

      const server = await startEmbeddedPostgres({
        database: 'private_checkout',
        dirPrefix: 'eventsync-pg-private-',
        nativeDir: native,
      });
      try {
        const client = new pg.Client({ connectionString: server.url });
        await client.connect();
        try {
          const { rows } = await client.query<{ db: string }>('SELECT current_database() AS db');
          expect(rows).toEqual([{ db: 'private_checkout' }]);
        } finally {
          await client.end();
        }
      } finally {
        await server.stop();
      }
    } finally {
      await rm(checkout, { recursive: true, force: true });
    }
  }, 60_000);
});
