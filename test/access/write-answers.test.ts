/**
 * Write answers carry only what the principal may read (issue 15, item 4): over REST, an owner
 * (read and write), a reader (read only) and a write-only principal. The write-only one gets
 * from POST, PATCH and DELETE the id and the new version (and the ETag), never the document, and
 * an `If-Match` conflict that does not say which version the document is at. ETags name the
 * incarnation (item 6) and catch-up never reaches a deleted incarnation (item 7), for the same
 * three principals. On memory and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, memoryDatabase } from '../../src/index.js';
import { SyncEngine } from '../../src/sync/engine.js';
import type { Action } from '../../src/sync/types.js';
import { http } from '../server/http-client.js';
import { openPg, uniqueCollection } from '../support/databases.js';
import { type LoopbackServer, loopbackServer } from '../support/loopback-server.js';

const rights: Record<string, Action[]> = {
  owner: ['read', 'write'],
  reader: ['read'],
  writer: ['write'],
};

const backends: Record<string, () => Promise<Database>> = {
  memory: async () => memoryDatabase(),
  postgresql: () => openPg(),
};

for (const [backend, open] of Object.entries(backends)) {
  describe(`write answers, ${backend}`, () => {
    let server: LoopbackServer;
    let engine: SyncEngine;
    const notes = uniqueCollection('notes');
    const as = (
      who: string,
      method: string,
      path: string,
      body?: unknown,
      headers: Record<string, string> = {},
    ) =>
      http(`http://127.0.0.1:${server.port}`, method, `/api/${notes}${path}`, {
        body,
        headers: { authorization: `Bearer ${who}`, ...headers },
      });

    beforeAll(async () => {
      engine = await SyncEngine.create({
        db: await open(),
        authenticate: ({ token }) => (token && token in rights ? { id: token } : undefined),
        authorize: (p, action) => rights[p.id]!.includes(action),
      });
      server = await loopbackServer(engine);
    });
    afterAll(() => server.close());

    it('POST: the owner gets the document; the writer its id and version; the reader 403', async () => {
      const owner = await as('owner', 'POST', '', { _id: 'o1', salary: 91001 });
      expect([owner.status, owner.body]).toEqual([201, { _id: 'o1', salary: 91001, version: 1 }]);
      const writer = await as('writer', 'POST', '', { _id: 'w1', salary: 91001 });
      expect([writer.status, writer.body]).toEqual([201, { _id: 'w1', version: 1 }]);
      expect(writer.headers.etag).toMatch(/^"\d+-1"$/);
      expect(writer.headers.location).toBe(`/api/${notes}/w1`);
      expect((await as('reader', 'POST', '', { _id: 'r1' })).status).toBe(403);
      expect((await as('writer', 'GET', '/w1')).status).toBe(403);
    });

    it('PATCH (operators, merge patch, If-Match): the writer gets only the new version', async () => {
      const ops = await as('writer', 'PATCH', '/o1', { $inc: { salary: 1 } });
      expect([ops.status, ops.body]).toEqual([200, { _id: 'o1', version: 2 }]);
      expect(ops.headers.etag).toMatch(/^"\d+-2"$/);
      const merge = await as('writer', 'PATCH', '/o1', { note: 'x' }, { 'if-match': ops.headers.etag! });
      expect([merge.status, merge.body]).toEqual([200, { _id: 'o1', version: 3 }]);
      expect(merge.headers.etag).toBe(ops.headers.etag!.replace(/-2"$/, '-3"'));
      const owner = await as('owner', 'PATCH', '/o1', { $set: { note: 'y' } });
      expect(owner.body).toEqual({ _id: 'o1', salary: 91002, note: 'y', version: 4 });
      expect((await as('reader', 'PATCH', '/o1', { note: 'z' })).status).toBe(403);
    });

    it('an If-Match conflict tells the current version only to one who may read the document', async () => {
      const first = (await as('owner', 'GET', '/o1')).headers.etag!.replace(/-\d+"$/, '-1"');
      const writer = await as('writer', 'PATCH', '/o1', { note: 'z' }, { 'if-match': first });
      expect([writer.status, writer.body.error.code]).toEqual([409, 'version_conflict']);
      expect(writer.body.error.message).toBe(
        'document "o1" is not in the state If-Match names; read it again',
      );
      expect(writer.headers.etag).toBeUndefined();
      const owner = await as('owner', 'PATCH', '/o1', { note: 'z' }, { 'if-match': first });
      expect(owner.body.error.message).toContain(`document "o1" in "${notes}" is at version 4, not 1: `);
    });

    it('DELETE: the owner gets the deleted document; the writer its id and last version', async () => {
      const writer = await as('writer', 'DELETE', '/o1');
      expect([writer.status, writer.body]).toEqual([200, { _id: 'o1', version: 4 }]);
      const owner = await as('owner', 'DELETE', '/w1');
      expect([owner.status, owner.body]).toEqual([200, { _id: 'w1', salary: 91001, version: 1 }]);
      expect((await as('reader', 'DELETE', '/x')).status).toBe(403);
    });

    it("ETags name the incarnation: the writer's If-Match from a deleted document fails on its successor", async () => {
      const first = await as('writer', 'POST', '', { _id: 'inc', salary: 1 });
      await as('owner', 'DELETE', '/inc');
      const again = await as('owner', 'POST', '', { _id: 'inc', salary: 2 });
      expect(again.headers.etag).not.toBe(first.headers.etag);
      const stale = await as('writer', 'PATCH', '/inc', { salary: 0 }, { 'if-match': first.headers.etag! });
      expect([stale.status, stale.body.error.code]).toEqual([409, 'version_conflict']);
      const staleDelete = await as('writer', 'DELETE', '/inc', undefined, {
        'if-match': first.headers.etag!,
      });
      expect(staleDelete.status).toBe(409);
      expect((await as('owner', 'GET', '/inc')).body).toMatchObject({ salary: 2, version: 1 });
    });

    it('a reader of a re-created id never gets the deleted incarnation through /api/sync', async () => {
      await as('owner', 'POST', '', { _id: 'again', secret: 'first-owner' });
      await as('owner', 'PATCH', '/again', { secret: 'first-owner-2' });
      await as('owner', 'DELETE', '/again');
      await as('writer', 'POST', '', { _id: 'again', secret: 'second' });
      const sync = await http(`http://127.0.0.1:${server.port}`, 'POST', `/api/sync/${notes}/again`, {
        body: { afterSeq: 0 },
        headers: { authorization: 'Bearer reader' },
      });
      expect(sync.status).toBe(200);
      expect(sync.body.snapshot.state).toMatchObject({ secret: 'second', version: 1 });
      expect(JSON.stringify(sync.body)).not.toContain('first-owner');
      const writerSync = await http(`http://127.0.0.1:${server.port}`, 'POST', `/api/sync/${notes}/again`, {
        body: { afterSeq: 0 },
        headers: { authorization: 'Bearer writer' },
      });
      expect(writerSync.status).toBe(403);
    });
  });
}
