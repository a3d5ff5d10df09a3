/**
 * `createHandler` mounted in Express and Fastify, before and after their body parsers. Before:
 * it reads the raw body. After: the stream was consumed already; it takes the parsed `req.body`
 * when the framework left it on the request, and otherwise answers a 500 that names the cause at
 * once. Never a request that waits forever for an `end` that already fired.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryDatabase } from '../../src/backends/memory/memory-database.js';
import type { Logger } from '../../src/events/logger.js';
import { createHandler } from '../../src/server/attach.js';
import { SyncEngine } from '../../src/sync/engine.js';
import { http } from './http-client.js';

const errors: unknown[] = [];
const logger: Logger = { error: (details) => errors.push(details), warn() {}, info() {}, debug() {} };
let engine: SyncEngine;
const db = memoryDatabase();

beforeAll(async () => {
  engine = await SyncEngine.create({ db, logger });
});
afterAll(async () => {
  await engine.close();
  await db.close();
});

const create = (url: string, id: string) =>
  http(url, 'POST', '/api/games', {
    body: { _id: id, gold: 1 },
    headers: { 'content-type': 'application/json' },
  });

describe('createHandler under Express', () => {
  it.each([
    ['before express.json()', false],
    ['after express.json()', true],
  ])('writes %s', async (_name, parserFirst) => {
    const handler = createHandler(engine);
    const app = express();
    const mount = () => app.use((req, res, next) => handler.handle(req, res) || next());
    if (parserFirst) app.use(express.json());
    mount();
    if (!parserFirst) app.use(express.json());
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const id = parserFirst ? 'express-after' : 'express-before';
      const answer = await create(url, id);
      expect([answer.status, answer.body._id]).toEqual([201, id]);
      const patched = await http(url, 'PATCH', `/api/games/${id}`, {
        body: { $inc: { gold: 2 } },
        headers: { 'content-type': 'application/json' },
      });
      expect(patched.body.gold).toBe(3);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('createHandler under Fastify', () => {
  it('writes from an onRequest hook (before Fastify reads the body)', async () => {
    const handler = createHandler(engine);
    const app = Fastify();
    app.addHook('onRequest', (req, reply, done) => {
      if (handler.handle(req.raw, reply.raw)) reply.hijack();
      else done();
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      expect((await create(url, 'fastify-before')).status).toBe(201);
    } finally {
      await app.close();
    }
  });

  it('answers a 500 naming the cause at once from a preHandler hook (the body was read into Fastify’s request)', async () => {
    const handler = createHandler(engine);
    const app = Fastify();
    app.post('/api/games', async () => 'not reached');
    app.addHook('preHandler', (req, reply, done) => {
      if (handler.handle(req.raw, reply.raw)) reply.hijack();
      else done();
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      errors.length = 0;
      const answer = await create(url, 'fastify-after');
      expect([answer.status, answer.body.error.code]).toEqual([500, 'internal']);
      expect((errors[0] as { err: Error }).err.message).toContain(
        'the request body was read before eventsync saw the request',
      );
      expect((await http(url, 'GET', '/api/games/fastify-after')).status).toBe(404);
    } finally {
      await app.close();
    }
  });
});
