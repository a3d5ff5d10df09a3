/**
 * The event log in SQL (PGlite and PostgreSQL): one `EventBackend` made of parts, a file each.
 *
 * - `recording.ts`: the statement that records an event (stream head upsert + event insert),
 *   on its own or behind a document write in one CTE (collection.ts), so that a change and its
 *   event commit together or not at all (I1) and seq stays gapless (I2).
 * - `event-log.ts`: one document's events and stream head, compaction's deletes and
 *   replacements, the list of streams.
 * - `feed.ts`: every event in serverSeq order, and how far that order is settled.
 * - `snapshots.ts`, `state-vectors.ts`, `clients.ts`, `mutation-records.ts`: snapshots, what each
 *   client acknowledged, the client registry, each client's last mutation.
 *
 * Tables: `eventsync_events`, `eventsync_streams` (heads), `eventsync_snapshots`,
 * `eventsync_state_vectors`, `eventsync_clients` (schema.ts, migration 2; client owners:
 * migration 5). Appended events and recorded writes are announced after they commit
 * (notifications.ts, announcer.ts).
 */
import type { EventBackend } from '../../core/event-backend.js';
import { SqlClients } from './clients.js';
import type { SqlEventContext } from './event-context.js';
import { SqlEventLog } from './event-log.js';
import { type FeedOptions, SqlFeed } from './feed.js';
import { SqlMutationRecords } from './mutation-records.js';
import { SqlSnapshots } from './snapshots.js';
import { SqlStateVectors } from './state-vectors.js';

/** The event log of the database `ctx`: each method is its part's. */
export function sqlEventBackend(ctx: SqlEventContext, options: FeedOptions = {}): EventBackend {
  const log = new SqlEventLog(ctx);
  const feed = new SqlFeed(ctx, options);
  const snapshots = new SqlSnapshots(ctx);
  const stateVectors = new SqlStateVectors(ctx);
  const clients = new SqlClients(ctx);
  const mutations = new SqlMutationRecords(ctx);
  return {
    append: (draft) => log.append(draft),
    list: (collection, documentId, range) => log.list(collection, documentId, range),
    listUnseen: (collection, documentId, clock) => log.listUnseen(collection, documentId, clock),
    listAfterVersion: (collection, documentId, after) => log.listAfterVersion(collection, documentId, after),
    head: (collection, documentId) => log.head(collection, documentId),
    deleteEvents: (collection, documentId, throughSeq) =>
      log.deleteEvents(collection, documentId, throughSeq),
    replaceEvents: (merged) => log.replaceEvents(merged),
    streams: (collection, after, limit) => log.streams(collection, after, limit),

    listAfterServerSeq: (collection, after, limit) => feed.listAfterServerSeq(collection, after, limit),
    latestServerSeq: () => feed.latestServerSeq(),
    watchCommits: (onCommit) => feed.watchCommits(onCommit),

    putSnapshot: (snapshot) => snapshots.putSnapshot(snapshot),
    latestSnapshot: (collection, documentId, atOrBefore) =>
      snapshots.latestSnapshot(collection, documentId, atOrBefore),
    deleteSnapshots: (collection, documentId, before) =>
      snapshots.deleteSnapshots(collection, documentId, before),

    putStateVector: (vector) => stateVectors.putStateVector(vector),
    putStateVectors: (acks, clientIds) => stateVectors.putStateVectors(acks, clientIds),
    getStateVector: (clientId, collection, documentId) =>
      stateVectors.getStateVector(clientId, collection, documentId),

    registerClient: (clientId) => clients.registerClient(clientId),
    claimClient: (clientId, principal) => clients.claimClient(clientId, principal),
    unregisterClient: (clientId) => clients.unregisterClient(clientId),
    isRegistered: (clientId) => clients.isRegistered(clientId),
    mutationRecord: (clientId) => mutations.mutationRecord(clientId),
    keepMutationRecord: (record) => mutations.keepMutationRecord(record),
    pruneMutationRecords: (prefix, before) => mutations.pruneMutationRecords(prefix, before),
  };
}
