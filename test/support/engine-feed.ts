/**
 * Waiting for a sync engine's feed. Memory and PGlite hand a commit to the feed at once;
 * PostgreSQL's feed sees it some milliseconds later (a notification, then a settled read), so an
 * event committed just before a subscribe can be dispatched after it, and reach the new
 * subscription live (a collection's document as its create event instead of a snapshot). A test
 * that wants the writes before its subscribe in the snapshot waits for the feed first.
 */
import type { ServerMessage } from '../../src/protocol/messages.js';
import type { SyncEngine } from '../../src/sync/engine.js';
import { uniqueCollection } from './databases.js';

/**
 * Resolves once `engine`'s feed has dispatched every event committed before the call: a session
 * of its own follows a marker document in a collection of its own, and the marker's create,
 * written after those events, reaches it through the feed, which goes in commit order.
 * `token` is what the engine's `authenticate` takes, when it has one.
 */
export async function feedCaughtUp(engine: SyncEngine, token?: string, timeoutMs = 10_000): Promise<void> {
  const collection = uniqueCollection('feed');
  const frames: ServerMessage[] = [];
  let arrived!: () => void;
  const markerArrived = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const session = engine.connect(
    { headers: {}, url: '/sync' },
    {
      send: (frame) => {
        const message = JSON.parse(frame) as ServerMessage;
        frames.push(message);
        if (message.type === 'event') arrived();
      },
      close: () => {},
    },
  );
  try {
    await session.receive(JSON.stringify({ type: 'hello', protocol: 1, clientId: collection, token }));
    await session.receive(
      JSON.stringify({ type: 'subscribe', sub: 'marker', collection, documentId: 'marker' }),
    );
    if (!frames.some((m) => m.type === 'synced')) {
      throw new Error(`feedCaughtUp: the marker subscription failed: ${JSON.stringify(frames)}`);
    }
    await (await engine.collection(collection)).findOneAndUpsert({ _id: 'marker' });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`feedCaughtUp: no marker within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    await Promise.race([markerArrived, timedOut]).finally(() => clearTimeout(timer));
  } finally {
    session.close();
  }
}
