/**
 * What a committed write announces on PostgreSQL's NOTIFY (sent after the commit, see
 * announcer.ts), and how a listener reads it back (database.ts): one channel, one JSON payload
 * per write or appended event.
 */
import type { ChangeOperation, CommittedChange } from '../../core/collection-backend.js';
import type { SyncEvent } from '../../core/events.js';
import type { Diff, JsonObject } from '../../core/json.js';
import { isPlainObject } from '../../core/values.js';

/** The NOTIFY channel every write announces itself on (changes, and events appended on their own). */
export const CHANGES_CHANNEL = 'eventsync_changes';
/** Payloads above this many bytes lose `data` (then `diff`): NOTIFY's hard limit is 8,000. */
export const NOTIFY_PAYLOAD_LIMIT = 7000;

/**
 * The NOTIFY payload, JSON: `{c: collection, id, op: 'create'|'update'|'delete', v: version,
 * data?, diff?, s?, ss?}`. `data` is the document after the change (before it, for deletes);
 * `diff` is there for updates; `s` and `ss` are the seq and serverSeq of the event the write
 * recorded. When the payload would exceed NOTIFY_PAYLOAD_LIMIT bytes `data` is left out, and
 * `diff` too if still too big; listeners then read the document themselves.
 *
 * An event appended on its own (`EventBackend.append`) notifies `{c, id, s, ss}`, without `op`:
 * a wake-up for event feeds, not a document change.
 */
export interface ChangePayload {
  c: string;
  id: string;
  op?: ChangeOperation;
  v?: number;
  data?: JsonObject;
  diff?: Diff;
  s?: number;
  ss?: number;
}

/**
 * A committed write of one collection, as its notification tells it: the document and diff as
 * the JSON texts already made for the statement (no second stringify of the data), and the seq
 * and serverSeq of the event it recorded, if any.
 */
export interface WriteNotice {
  id: string;
  op: ChangeOperation;
  version: number;
  dataJson: string;
  diffJson?: string;
  event?: Pick<SyncEvent, 'seq' | 'serverSeq'>;
}

/** The notification of a write to `collection`, cut to fit NOTIFY_PAYLOAD_LIMIT. */
export function payload(collection: string, write: WriteNotice): string {
  const { id, op, version, dataJson, diffJson, event } = write;
  const seqs = event ? `,"s":${event.seq},"ss":${event.serverSeq}` : '';
  const head = `{"c":${JSON.stringify(collection)},"id":${JSON.stringify(id)},"op":"${op}","v":${version}${seqs}`;
  const diff = diffJson === undefined ? '' : `,"diff":${diffJson}`;
  const full = `${head},"data":${dataJson}${diff}}`;
  if (fits(full)) return full;
  if (diff && fits(`${head}${diff}}`)) return `${head}${diff}}`;
  return `${head}}`;
}

/** The notification of an event appended on its own (no `op`: a wake-up for feeds, not a document change). */
export function eventOnlyPayload(event: SyncEvent): string {
  return `{"c":${JSON.stringify(event.collection)},"id":${JSON.stringify(event.documentId)},"s":${event.seq},"ss":${event.serverSeq}}`;
}

function fits(text: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most payloads are decided without counting.
  if (text.length * 3 <= NOTIFY_PAYLOAD_LIMIT) return true;
  return text.length <= NOTIFY_PAYLOAD_LIMIT && Buffer.byteLength(text) <= NOTIFY_PAYLOAD_LIMIT;
}

const operations = new Set<string>(['create', 'update', 'delete']);

/** A parsed notification: a document change (maybe with its event's seqs), or only an event. */
export interface Notification {
  collection: string;
  id: string;
  change?: CommittedChange;
  /** Set when the notification is about a recorded event. */
  serverSeq?: number;
}

/** Parses a NOTIFY payload; undefined when it isn't one of ours. */
export function parseNotification(text: string): Notification | undefined {
  let p: Partial<ChangePayload>;
  try {
    p = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof p !== 'object' || p === null) return undefined;
  if (typeof p.c !== 'string' || typeof p.id !== 'string') return undefined;
  const event = typeof p.s === 'number' && typeof p.ss === 'number';
  const notification: Notification = { collection: p.c, id: p.id };
  if (event) notification.serverSeq = p.ss;
  if (p.op === undefined && event) return notification;
  if (typeof p.v !== 'number' || typeof p.op !== 'string' || !operations.has(p.op)) return undefined;
  const change: CommittedChange = { collection: p.c, id: p.id, operation: p.op, version: p.v };
  if (isPlainObject(p.data)) change.data = p.data;
  if (isPlainObject(p.diff)) change.diff = p.diff as Diff;
  if (event) Object.assign(change, { seq: p.s, serverSeq: p.ss });
  notification.change = change;
  return notification;
}
