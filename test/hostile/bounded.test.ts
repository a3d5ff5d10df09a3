/**
 * Work and bytes per request stay bounded: an array index cannot pad a document, a one-element
 * append records a small event, event pages and lists stop at `maxPageBytes`, and a list over
 * many large documents holds the event loop less than 100 ms (memory and PGlite).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from '../server/http-client.js';
import { type Backend, healthzMs, startTarget, type Target, worstLoopDelay } from './support.js';

const DOCS = 1000;
const PAD = 'x'.repeat(10_000);

describe.each<Backend>(['memory', 'pglite'])('bounded work and bytes on %s', (backend) => {
  let target: Target;
  beforeAll(async () => {
    target = await startTarget(backend, { maxPageBytes: 256 * 1024 });
    const storage = await target.running.engine.collection('big');
    for (let i = 0; i < DOCS; i++)
      await storage.findOneAndUpsert({ _id: `d${String(i).padStart(4, '0')}`, gold: i, pad: PAD } as never);
    await storage.findOneAndUpsert({
      _id: 'arr',
      list: Array.from({ length: 50_000 }, (_, i) => i),
    } as never);
  }, 300_000);
  afterAll(() => target.close());

  it('refuses a 27-byte PATCH that would pad an array to ten million elements, at once, changing nothing', async () => {
    const before = await http(target.url, 'GET', '/api/big/arr');
    const delay = await worstLoopDelay(`${backend}: $set arr.10000000`, async () => {
      const answer = await http(target.url, 'PATCH', '/api/big/arr', {
        body: { $set: { 'list.10000000': 1 } },
      });
      expect([answer.status, answer.body.error.code]).toEqual([400, 'validation']);
    });
    expect(delay).toBeLessThanOrEqual(100);
    expect((await http(target.url, 'GET', '/api/big/arr')).body).toEqual(before.body);
  });

  it('records a one-element $push on a 50,000-element array as a small event', async () => {
    const answer = await http(target.url, 'PATCH', '/api/big/arr', { body: { $push: { list: 7 } } });
    expect(answer.status).toBe(200);
    const events = await target.running.engine.events.getEvents('big', 'arr', 1, 10);
    expect(events).toHaveLength(1);
    expect(JSON.stringify(events[0]).length).toBeLessThan(1024);
  });

  it('ends a list page at maxPageBytes and links the next one', async () => {
    const page = await http(
      target.url,
      'GET',
      '/api/big?limit=1000&sort={"_id":1}&filter={"gold":{"$gte":0}}',
    );
    expect(page.status).toBe(200);
    expect(page.text.length).toBeLessThan(256 * 1024 + 20_000);
    expect(page.body.length).toBeGreaterThan(0);
    expect(page.body.length).toBeLessThan(DOCS);
    expect(page.headers.link).toMatch(/rel="next"/);
  });

  it('answers lists over 1,000 documents of 10 KB without holding the event loop 100 ms', async () => {
    for (const query of ['?limit=1', '?sort={"gold":-1}&limit=10', '?filter={"gold":{"$gte":990}}&limit=5']) {
      const delay = await worstLoopDelay(`${backend}: GET /api/big${query}`, async () => {
        expect((await http(target.url, 'GET', `/api/big${query}`)).status).toBe(200);
      });
      expect(delay, query).toBeLessThanOrEqual(100);
    }
    expect(await healthzMs(target.url)).toBeLessThan(100);
  });
});
