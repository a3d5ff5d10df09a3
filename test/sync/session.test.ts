/**
 * A session on its own, against a fake host (`SessionHost`): no database, no engine, no socket.
 * The host keeps one document's event log in an array, answers `missingEvents` from it, and
 * publishes events to whoever follows, the way the engine's feed does; the sink records frames.
 */
import { describe, expect, it } from 'vitest';
import type { SyncEvent } from '../../src/core/events.js';
import { documentKey, sseEventId } from '../../src/protocol/wire.js';
import { SyncMetrics } from '../../src/sync/metrics.js';
import type { MutationAnswer, MutationCaller, MutationRequest } from '../../src/sync/mutations.js';
import { Session } from '../../src/sync/session.js';
import type { Delivery, Follower, SessionHost } from '../../src/sync/session-host.js';
import { defaultLimits, type Principal } from '../../src/sync/types.js';

const quiet = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} };

/** A host with one event log per document, in memory; documents in `forbidden` may not be read. */
class FakeHost implements SessionHost {
  readonly limits = defaultLimits;
  readonly metrics = new SyncMetrics();
  readonly logger = quiet;
  readonly authorizationTtlMs = 60_000;
  readonly forbidden = new Set<string>();
  readonly log = new Map<string, SyncEvent[]>();
  readonly followers = new Map<string, Set<Follower>>();
  /** What `missingEvents` was asked, in order. */
  readonly asked: { documentId: string; afterSeq?: number }[] = [];
  readonly acknowledged: { documentId: string; seq: number }[] = [];
  /** What `mutate` was asked, in order; each answered `mutated` with seq = mid. */
  readonly mutations: { caller: MutationCaller; request: MutationRequest }[] = [];
  readonly lastMids = new Map<string, number>();

  async authenticate(request: { token?: string }): Promise<Principal | undefined> {
    return request.token === 'refused' ? undefined : { id: 'alice' };
  }

  async authorize(_p: Principal, _action: string, collection: string, documentId?: string): Promise<boolean> {
    return documentId === undefined || !this.forbidden.has(documentKey(collection, documentId));
  }

  async readScope() {
    return {};
  }

  async claimClient(): Promise<void> {}

  async missingEvents(_clientId: string, collection: string, documentId: string, position?: object) {
    const afterSeq = position && 'afterSeq' in position ? (position.afterSeq as number) : 0;
    this.asked.push({ documentId, afterSeq });
    const events = this.log.get(documentKey(collection, documentId)) ?? [];
    return { events: events.filter((e) => e.seq > afterSeq) };
  }

  async currentSnapshot(): Promise<never> {
    throw new Error('not used: no collection subscriptions here');
  }

  async head() {
    return undefined;
  }

  async collection() {
    return { versionField: 'version', findMany: async () => [] };
  }

  async acknowledge(_clientId: string, _c: string, documentId: string, seq: number): Promise<void> {
    this.acknowledged.push({ documentId, seq });
  }

  follow(follower: Follower, collection: string, documentId: string): void {
    const key = documentKey(collection, documentId);
    this.followers.set(key, (this.followers.get(key) ?? new Set()).add(follower));
  }

  unfollow(follower: Follower, collection: string, documentId: string): void {
    this.followers.get(documentKey(collection, documentId))?.delete(follower);
  }

  async mutate(caller: MutationCaller, request: MutationRequest): Promise<MutationAnswer> {
    this.mutations.push({ caller, request });
    return { type: 'mutated', mid: request.mid, seq: request.mid };
  }

  async lastMid(clientId: string): Promise<number> {
    return this.lastMids.get(clientId) ?? 0;
  }

  followCollection(): void {}
  unfollowCollection(): void {}
  disconnected(): void {}

  /** Appends the next event of a document to its log; published to followers unless `silently`. */
  async write(documentId: string, { silently = false } = {}): Promise<SyncEvent> {
    const key = documentKey('games', documentId);
    const events = this.log.get(key) ?? [];
    this.log.set(key, events);
    const seq = events.length + 1;
    const event: SyncEvent = {
      id: `e${documentId}${seq}`,
      collection: 'games',
      documentId,
      seq,
      serverSeq: seq,
      timestamp: Date.now(),
      operation: seq === 1 ? 'create' : 'update',
      version: seq,
      clientId: 'writer',
      vectorClock: { writer: seq },
    };
    events.push(event);
    if (!silently) await this.publish(event);
    return event;
  }

  /** What the engine's feed does with one event: one delivery, to every follower of its document. */
  async publish(event: SyncEvent): Promise<void> {
    const delivery: Delivery = {
      event,
      key: documentKey(event.collection, event.documentId),
      eventId: sseEventId(event.collection, event.documentId, event.seq),
      frame: () => JSON.stringify({ type: 'event', event }),
      state: async () => null,
    };
    for (const follower of this.followers.get(delivery.key) ?? []) await follower.deliver(delivery);
  }
}

interface Frame {
  type: string;
  [key: string]: unknown;
}

function connect(host: FakeHost) {
  const frames: Frame[] = [];
  const closed: { code: number; reason: string }[] = [];
  const session = new Session(
    host,
    { headers: {}, url: '/sync' },
    {
      send: (frame) => frames.push(JSON.parse(frame)),
      close: (code, reason) => closed.push({ code, reason }),
    },
  );
  const seqs = () => frames.filter((f) => f.type === 'event').map((f) => (f.event as SyncEvent).seq);
  return { session, frames, closed, seqs };
}

async function welcomed(host: FakeHost) {
  const client = connect(host);
  await client.session.receive(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'c1' }));
  return client;
}

/** Resolves once the session's queued work and the repairs it started have run. */
const settled = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('a session against a fake host', () => {
  it('welcomes a hello, and refuses frames before it and credentials the host refuses', async () => {
    const host = new FakeHost();
    const early = connect(host);
    await early.session.receive(
      JSON.stringify({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g' }),
    );
    expect(early.frames).toEqual([
      expect.objectContaining({ type: 'error', code: 'unauthorized', ref: 'subscribe' }),
    ]);
    await early.session.receive(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'c1' }));
    expect(early.frames[1]).toMatchObject({ type: 'welcome', protocol: 1, clientId: 'c1' });

    const refused = connect(host);
    await refused.session.receive(
      JSON.stringify({ type: 'hello', protocol: 1, clientId: 'c2', token: 'refused' }),
    );
    expect(refused.frames).toEqual([expect.objectContaining({ type: 'error', code: 'unauthorized' })]);
    expect(refused.closed).toHaveLength(1);
    expect(refused.session.closed).toBe(true);
  });

  it('speaks protocols 1 and 2: welcome names the version of the hello; 3 is refused with close 4000', async () => {
    const host = new FakeHost();
    for (const protocol of [1, 2]) {
      const c = connect(host);
      await c.session.receive(JSON.stringify({ type: 'hello', protocol, clientId: `v${protocol}` }));
      expect(c.frames).toEqual([expect.objectContaining({ type: 'welcome', protocol })]);
    }
    const newer = connect(host);
    await newer.session.receive(JSON.stringify({ type: 'hello', protocol: 3, clientId: 'v3' }));
    expect(newer.frames).toEqual([
      expect.objectContaining({ type: 'error', code: 'unsupported_protocol', ref: 'hello' }),
    ]);
    expect(newer.frames[0]?.message).toContain('1 and 2');
    expect(newer.closed).toEqual([{ code: 4000, reason: 'unsupported protocol' }]);
  });

  it('answers a mutate of a protocol-1 session with mutation_error, and the session goes on', async () => {
    const host = new FakeHost();
    const c = await welcomed(host);
    const mutate = {
      type: 'mutate',
      mid: 1,
      collection: 'games',
      documentId: 'g',
      name: 'addGold',
      args: {},
    };
    await c.session.receive(JSON.stringify(mutate));
    expect(c.frames.at(-1)).toMatchObject({ type: 'mutation_error', mid: 1, code: 'unknown_mutator' });
    expect(c.frames.at(-1)?.message).toContain('protocol 2');
    expect(c.session.closed).toBe(false);
  });

  it('welcomes protocol 2 with lastMid, and hands each mutate to the host in order, under its client id', async () => {
    const host = new FakeHost();
    host.lastMids.set('m1', 4);
    const { session, frames } = connect(host);
    await session.receive(JSON.stringify({ type: 'hello', protocol: 2, clientId: 'm1' }));
    expect(frames).toEqual([expect.objectContaining({ type: 'welcome', protocol: 2, lastMid: 4 })]);
    const mutate = (mid: number) =>
      JSON.stringify({
        type: 'mutate',
        mid,
        collection: 'games',
        documentId: 'g',
        name: 'addGold',
        args: { n: mid },
      });
    await Promise.all([session.receive(mutate(5)), session.receive(mutate(6))]);
    expect(frames.slice(1)).toEqual([
      { type: 'mutated', mid: 5, seq: 5 },
      { type: 'mutated', mid: 6, seq: 6 },
    ]);
    expect(host.mutations.map((m) => m.request)).toEqual([
      { mid: 5, collection: 'games', documentId: 'g', name: 'addGold', args: { n: 5 } },
      { mid: 6, collection: 'games', documentId: 'g', name: 'addGold', args: { n: 6 } },
    ]);
    expect(host.mutations[0]!.caller).toEqual({
      principal: { id: 'alice' },
      clientId: 'm1',
      record: { kind: 'client' },
    });
    // Protocol 1 has no lastMid.
    const old = connect(host);
    await old.session.receive(JSON.stringify({ type: 'hello', protocol: 1, clientId: 'm2' }));
    expect(old.frames[0]).not.toHaveProperty('lastMid');
  });

  it('subscribes: subscribed, the missing events from the log, synced; then follows the document', async () => {
    const host = new FakeHost();
    for (let i = 0; i < 3; i++) await host.write('g');
    const { session, frames, seqs } = await welcomed(host);
    await session.receive(
      JSON.stringify({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g', afterSeq: 1 }),
    );
    expect(host.asked).toEqual([{ documentId: 'g', afterSeq: 1 }]);
    expect(frames.map((f) => f.type)).toEqual(['welcome', 'subscribed', 'event', 'event', 'synced']);
    expect(seqs()).toEqual([2, 3]);
    expect(host.followers.get('games/g')?.has(session)).toBe(true);
    expect(host.metrics.subscriptions).toBe(1);
  });

  it('refuses a subscribe the host does not authorize: an error for the sub, nothing followed', async () => {
    const host = new FakeHost();
    host.forbidden.add('games/secret');
    const { session, frames } = await welcomed(host);
    await session.subscribe({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'secret' });
    expect(frames.at(-1)).toMatchObject({ type: 'error', code: 'forbidden', ref: 's' });
    expect(host.followers.get('games/secret')?.size ?? 0).toBe(0);
    expect(host.asked).toEqual([]);
  });

  it('delivers a live event of a followed document once, with what the log holds before it', async () => {
    const host = new FakeHost();
    const { session, seqs } = await welcomed(host);
    // A typed subscribe, as SSE makes it (no frame to parse).
    await session.subscribe({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g' });
    const event = await host.write('g');
    await host.publish(event); // the feed delivering it twice: sent once
    expect(seqs()).toEqual([1]);
    expect(host.metrics.eventsDelivered).toBe(1);
    await session.receive(JSON.stringify({ type: 'ack', collection: 'games', documentId: 'g', seq: 1 }));
    expect(host.acknowledged).toEqual([{ documentId: 'g', seq: 1 }]);
  });

  it('repairs a gap: an event past the next seq waits while the missing ones are read from the log', async () => {
    const host = new FakeHost();
    const { session, seqs } = await welcomed(host);
    await session.subscribe({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g' });
    await host.write('g');
    await host.write('g', { silently: true }); // seq 2: the feed skipped it
    await host.write('g', { silently: true }); // seq 3
    await host.write('g'); // seq 4 arrives first
    await settled();
    expect(host.asked.at(-1)).toEqual({ documentId: 'g', afterSeq: 1 });
    expect(seqs()).toEqual([1, 2, 3, 4]);
  });

  it('unsubscribes: unsubscribed, the document no longer followed, its events no longer sent', async () => {
    const host = new FakeHost();
    const { session, frames, seqs } = await welcomed(host);
    await session.subscribe({ type: 'subscribe', sub: 's', collection: 'games', documentId: 'g' });
    await host.write('g');
    await session.unsubscribe({ type: 'unsubscribe', sub: 's' });
    expect(frames.at(-1)).toEqual({ type: 'unsubscribed', sub: 's' });
    expect(host.followers.get('games/g')?.size).toBe(0);
    expect(host.metrics.subscriptions).toBe(0);
    await host.write('g');
    expect(seqs()).toEqual([1]);
    await session.unsubscribe({ type: 'unsubscribe', sub: 's' });
    expect(frames.at(-1)).toMatchObject({ type: 'error', code: 'not_found', ref: 's' });
  });
});
