/**
 * Writes docs/PROTOCOL.md from the protocol's zod schemas (`src/protocol/messages.ts`, through
 * `z.toJSONSchema`) and wire facts (`src/protocol/wire.ts`: error codes, close codes, event ids,
 * paths). The field tables, types and descriptions come from the schemas, the code tables from
 * wire.ts; the prose around them (lifecycle, when each error is sent) lives here, next to the examples, which are checked against the schemas on
 * every run. `npm run protocol:doc` rewrites the file; test/protocol/doc.test.ts fails when the
 * committed file differs from `protocolDoc()`. Biome formats Markdown too (`biome ci` checks it),
 * so the rendered text goes through `biome format` before it is written or compared.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import * as M from '../src/protocol/messages.js';
import {
  CloseCodes,
  closeCodeNotes,
  DEFAULT_PATHS,
  type ErrorCode,
  ErrorCodes,
  ErrorStatus,
  SSE_SUBSCRIPTION,
  sseEventId,
  sseStreamPath,
} from '../src/protocol/wire.js';
import { defaultLimits, type SyncLimits } from '../src/sync/types.js';

export const PROTOCOL_DOC_PATH = fileURLToPath(new URL('../docs/PROTOCOL.md', import.meta.url));

// ---- examples: one valid message per type (the tests round-trip them too) ------------------------

const updateEvent = {
  id: '6b05bf9a1fd01dc210ca9f4c',
  collection: 'games',
  documentId: 'g1',
  seq: 2,
  serverSeq: 17,
  timestamp: 1767225600123,
  operation: 'update',
  diff: {
    hasChanges: true,
    version: 2,
    jsonPatch: [
      { op: 'replace', path: '/gold', value: 50 },
      { op: 'replace', path: '/version', value: 2 },
    ],
    mergePatch: { gold: 50, version: 2 },
    mongoUpdate: { $set: { gold: 50, version: 2 } },
  },
  version: 2,
  clientId: 'game-server',
  vectorClock: { 'game-server': 2 },
} satisfies z.input<typeof M.SyncEvent>;

export const examples = {
  hello: { type: 'hello', protocol: M.PROTOCOL_VERSION, clientId: 'browser-7f3a', token: 'tok_alice' },
  subscribeDocument: { type: 'subscribe', sub: 'g1', collection: 'games', documentId: 'g1', afterSeq: 1 },
  subscribeCollection: {
    type: 'subscribe',
    sub: 'rich',
    collection: 'games',
    filter: { gold: { $gte: 50 } },
    known: { g1: 4, g7: 12 },
  },
  unsubscribe: { type: 'unsubscribe', sub: 'rich' },
  ack: { type: 'ack', collection: 'games', documentId: 'g1', seq: 2 },
  mutate: {
    type: 'mutate',
    mid: 7,
    collection: 'games',
    documentId: 'g1',
    name: 'addGold',
    args: { amount: 5 },
  },
  mutated: { type: 'mutated', mid: 7, seq: 3, version: 3 },
  mutationError: {
    type: 'mutation_error',
    mid: 8,
    code: 'mutation_refused',
    message: 'levelling up needs 100 XP',
    reason: 'not_enough_xp',
  },
  welcome: {
    type: 'welcome',
    protocol: M.PROTOCOL_VERSION,
    clientId: 'browser-7f3a',
    serverTime: 1767225600000,
  },
  subscribed: { type: 'subscribed', sub: 'g1' },
  snapshot: {
    type: 'snapshot',
    collection: 'games',
    documentId: 'g1',
    seq: 2,
    version: 2,
    state: { _id: 'g1', name: 'one', gold: 50, version: 2 },
    vectorClock: { 'game-server': 2 },
  },
  event: { type: 'event', event: updateEvent },
  synced: { type: 'synced', sub: 'g1' },
  leave: { type: 'leave', sub: 'rich', collection: 'games', documentId: 'g1', reason: 'unmatched' },
  unsubscribed: { type: 'unsubscribed', sub: 'rich' },
  error: { type: 'error', code: 'forbidden', message: 'you may not read games/secret1', ref: 'one' },
} as const;

export type ExampleName = keyof typeof examples;

// ---- the messages, in the order the document presents them ---------------------------------------

export interface MessageDoc {
  /** The schema's name in src/protocol/messages.ts (also its JSON Schema id). */
  id: string;
  heading: string;
  direction: 'client' | 'server';
  schema: z.ZodType;
  example: ExampleName;
  /** What the receiver does with it, beyond the schema's description. */
  notes: string;
}

export const messages: MessageDoc[] = [
  {
    id: 'Hello',
    heading: '`hello`',
    direction: 'client',
    schema: M.Hello,
    example: 'hello',
    notes:
      'Must be the first message. The server runs its `authenticate` hook with the HTTP upgrade request and ' +
      '`token`, then answers `welcome`. A protocol version it does not speak gets `error unsupported_protocol` ' +
      'and close 4000; refused credentials get `error unauthorized` and close 4001. `clientId` keys what the ' +
      'client acknowledges, so it belongs to one principal: the first to use it (a new id, or one registered ' +
      'with no owner) gets it, and another principal naming it gets `error forbidden` and close 4003, ' +
      'changing nothing. Use an unguessable id (the SDK makes a random UUID). A second `hello` on the ' +
      'same connection gets `error bad_message`. A connection that has not been welcomed within ' +
      '`helloTimeoutMs` is closed with 4408.',
  },
  {
    id: 'SubscribeDocument',
    heading: '`subscribe` (document)',
    direction: 'client',
    schema: M.SubscribeDocument,
    example: 'subscribeDocument',
    notes:
      'The server asks `authorize(principal, "read", collection, documentId)`; refused: `error forbidden` ' +
      '(ref: `sub`) and no subscription. Otherwise `subscribed`, then the catch-up: with `afterSeq`, exactly ' +
      'the events after it (a `snapshot` first when those events were compacted away, when the tail is long, ' +
      'or when `afterSeq` is past the end of the log); with `vectorClock`, the events the clock has not seen ' +
      '(or a snapshot); with neither, everything from seq 1 (or a snapshot and the tail). `afterSeq` wins when ' +
      'both are sent. Then `synced`, then live events. A subscription to a document that does not exist yet ' +
      'is fine: its events arrive once it is created. A `sub` already in use on the connection gets ' +
      '`error bad_message`; one subscription more than `maxSubscriptions` gets `error rate_limited`.',
  },
  {
    id: 'SubscribeCollection',
    heading: '`subscribe` (collection)',
    direction: 'client',
    schema: M.SubscribeCollection,
    example: 'subscribeCollection',
    notes:
      'Told apart from the document form by the absence of `documentId` (a message with both `documentId` ' +
      'and `filter` matches neither and is refused). The server asks `authorize(principal, "subscribe", ' +
      'collection)`, checks the filter (`$where`, `$function`, `$accumulator` and `__proto__`/`constructor`/' +
      '`prototype` keys are refused with `error validation`), answers `subscribed`, sends a `snapshot` of ' +
      'each matching document the principal may read, then `synced`. When the server has an ' +
      '`authorizeQuery`, its scope is AND-ed into the filter before anything is read, snapshots and live ' +
      'membership alike; documents outside it never enter. The snapshots come in `_id` order, read ' +
      'a page at a time and paced to the client (one that stops reading holds the rest up, and is not ' +
      'disconnected for it); each carries its document as it was when its page was read, at the seq of that ' +
      'state. Documents this connection already follows get none; one that no longer matches (or is gone) ' +
      'when its page is read gets none. Live events flow meanwhile: each event of a covered document after ' +
      'its snapshot, once and in order. Live: events of the covered documents; a document that starts ' +
      'matching arrives as a `snapshot` (or as its `create` event); one that stops matching (or is deleted) ' +
      'gets `leave` after the event that made it leave. The filter is judged on the document as it is when ' +
      'the event is handled. A subscription covers at most `maxSubscriptionDocuments` documents: when its ' +
      'snapshot, or a document entering later, would take it past that, it ends with `error too_large` (ref: ' +
      '`sub`): as after `unsubscribed`, nothing more comes for it and the documents only it covered are no ' +
      'longer followed. Narrow the filter. Rights are asked again: `"subscribe"` and the scope at the first ' +
      'event of the collection after `authorizationTtlMs`, and at once on `engine.revoke`; refused, the ' +
      'subscription ends with `error forbidden` (a failing `authorizeQuery`: `error internal`); a new scope ' +
      'judges each document from its next event on. Documents that may no longer be read leave (see `leave`). ' +
      '**Resuming** (`known`, e.g. after a reconnect): the documents the client holds, each at the seq it ' +
      'applied (at most `maxSubscriptionDocuments` of them, else `error validation`). A covered document whose ' +
      'snapshot would be at that very seq gets no snapshot (its live events follow from that seq); one at ' +
      'another seq gets its snapshot as usual; each known document the subscription does not cover when the ' +
      'snapshot ends (gone, no longer matching, no longer readable) gets `leave` (reason `unmatched`) before ' +
      '`synced`. So a client that keeps what it held, replaces what got a snapshot and drops what left has ' +
      'the same documents as one that subscribed afresh.',
  },
  {
    id: 'Unsubscribe',
    heading: '`unsubscribe`',
    direction: 'client',
    schema: M.Unsubscribe,
    example: 'unsubscribe',
    notes:
      'Answered `unsubscribed`. Documents no other subscription of the connection covers stop sending ' +
      'events. An unknown `sub` gets `error not_found`.',
  },
  {
    id: 'Ack',
    heading: '`ack`',
    direction: 'client',
    schema: M.Ack,
    example: 'ack',
    notes:
      "No answer when accepted: the server records `seq` (and the vector clock at `seq`) in the client's " +
      'state vector for the document. A `seq` beyond what this connection was sent for the document (or a ' +
      'document it does not follow) gets `error validation`.',
  },
  {
    id: 'Mutate',
    heading: '`mutate`',
    direction: 'client',
    schema: M.Mutate,
    example: 'mutate',
    notes:
      'Protocol 2. The server runs the named mutator of the collection on the document (see docs/MUTATIONS.md): ' +
      '`args` parsed by its schema, `authorize(principal, "write", collection, documentId)` asked, then the ' +
      'mutator run on a draft; the change, its event (whose `metadata.mutation` is `{ name, mid }` and whose ' +
      "`clientId` is the client's) and the client's last `mid` commit together. Answered `mutated` or " +
      '`mutation_error`. Each `mid` runs at most once per client id, in order: a `mid` applied before is ' +
      'answered from the record (`duplicate`), one past the next expected gets `out_of_order`.',
  },
  {
    id: 'Welcome',
    heading: '`welcome`',
    direction: 'server',
    schema: M.Welcome,
    example: 'welcome',
    notes:
      'Sent once, in answer to an accepted `hello`. From now on the client may subscribe. An SSE stream ' +
      "opened with `?protocol=` starts with it; an SSE client stream's names its `streamId`, the one " +
      'field a protocol 2 client sees only on that route (so a client that does not open it never sees the field).',
  },
  {
    id: 'Subscribed',
    heading: '`subscribed`',
    direction: 'server',
    schema: M.Subscribed,
    example: 'subscribed',
    notes:
      'The first answer to an accepted `subscribe`; the catch-up (`snapshot`s and `event`s) and `synced` ' +
      'follow. If the catch-up fails (a filter the query engine refuses only when it runs, a document that ' +
      'kept changing), an `error` with `ref` = `sub` comes instead of `synced` and the subscription is gone: ' +
      'subscribe again.',
  },
  {
    id: 'Snapshot',
    heading: '`snapshot`',
    direction: 'server',
    schema: M.Snapshot,
    example: 'snapshot',
    notes:
      'Replaces whatever the client has of the document. The next event of the document on this connection ' +
      'has seq `seq + 1` (or `fromSeq` = `seq + 1`). Over SSE its event id is `collection/documentId/seq`.',
  },
  {
    id: 'EventMessage',
    heading: '`event`',
    direction: 'server',
    schema: M.EventMessage,
    example: 'event',
    notes:
      'Apply `event.diff.jsonPatch` (RFC 6902) to the document at `seq - 1` (at `fromSeq - 1` when set) to ' +
      'get the document at `seq`; `mergePatch` (RFC 7396) and `mongoUpdate` say the same change in other ' +
      'forms, when they can say it in about as few bytes (a change in a large array comes with `jsonPatch` ' +
      'only). A `create` adds the whole document at path `""`; a `delete` has no `diff`. Over SSE its event ' +
      'id is `collection/documentId/seq`.',
  },
  {
    id: 'Synced',
    heading: '`synced`',
    direction: 'server',
    schema: M.Synced,
    example: 'synced',
    notes:
      'The catch-up of the subscription is complete: the client has each covered document as of the time ' +
      'of the subscribe, and every later change arrives as a live `event`.',
  },
  {
    id: 'Leave',
    heading: '`leave`',
    direction: 'server',
    schema: M.Leave,
    example: 'leave',
    notes:
      'If no other subscription of the connection covers the document, no more events of it are sent; the ' +
      'client may drop its replica. `unmatched` comes only for collection subscriptions, after the event that ' +
      'made the document leave. `forbidden`: the server asks `authorize(…, "read", …)` again before it sends ' +
      'an event of a document whose answer is older than its `authorizationTtlMs` (default 60 s), and at ' +
      'once when the app calls `engine.revoke(principalId)`; refused, the document leaves every subscription ' +
      'of the connection that covers it, before that event, which is not sent. A document subscription ' +
      'ends then: `error forbidden` (ref: `sub`) follows its `leave` (over SSE the stream closes). So events of a document stop within `authorizationTtlMs` and one event of ' +
      'rights being taken back, or at once on `engine.revoke`.',
  },
  {
    id: 'Unsubscribed',
    heading: '`unsubscribed`',
    direction: 'server',
    schema: M.Unsubscribed,
    example: 'unsubscribed',
    notes: 'The answer to `unsubscribe`.',
  },
  {
    id: 'Mutated',
    heading: '`mutated`',
    direction: 'server',
    schema: M.Mutated,
    example: 'mutated',
    notes:
      'The answer to an applied `mutate`. A client that follows the document drops its prediction once its ' +
      'replica has applied `seq` (or the event that carries its `mid`).',
  },
  {
    id: 'MutationError',
    heading: '`mutation_error`',
    direction: 'server',
    schema: M.MutationError,
    example: 'mutationError',
    notes:
      'The answer to a refused or failed `mutate`: nothing of it was kept; the client rolls its prediction ' +
      'back. Malformed `mutate` frames get `error bad_message` instead, like any frame.',
  },
  {
    id: 'ErrorMessage',
    heading: '`error`',
    direction: 'server',
    schema: M.ErrorMessage,
    example: 'error',
    notes:
      '`code` is one of the [error codes](#error-codes). `ref` is the subscription id for errors about a ' +
      'subscription (also a `subscribe` the schema refused, a bad collection name or filter, when its `sub` ' +
      'is valid), otherwise the type of the refused message (when it had a string `type`); frames that ' +
      'are not JSON objects get no `ref`.',
  },
];

/** Types messages refer to by name rather than inline. */
const sharedTypes: { id: string; schema: z.ZodType; notes: string }[] = [
  {
    id: 'SyncEvent',
    schema: M.SyncEvent,
    notes: 'The `event` of an `event` message. Events of one document form a gapless chain: 1, 2, 3, …',
  },
  {
    id: 'Diff',
    schema: M.Diff,
    notes: 'One change in three equivalent forms: use whichever your client applies most easily.',
  },
  {
    id: 'ErrorCode',
    schema: M.ErrorCode,
    notes:
      'One of the [error codes](#error-codes), with its HTTP status and whether it is retryable. A client ' +
      'treats a code it does not know as retryable: a newer server may send one.',
  },
  {
    id: 'Json',
    schema: M.Json,
    notes: 'Any JSON value: string, number, boolean, null, array of Json, object of Json.',
  },
];

/**
 * Descriptions of the fields whose schema has none, keyed by `Schema.field`, then by `field`.
 * `.meta({ description })` in messages.ts is the better home: once a field has one, the generator
 * says that its entry here is unused, and it goes.
 */
const fieldNotes: Record<string, string> = {
  type: 'The message type',
  'Hello.protocol': `The protocol version the client speaks (this server: ${M.PROTOCOL_VERSION})`,
  'Hello.token': "Credentials for the server's `authenticate` hook, e.g. a bearer token",
  'Welcome.protocol': 'The protocol version the server speaks',
  serverTime: "The server's clock: milliseconds since the Unix epoch",
  'Ack.seq': 'The last seq of the document the client has applied',
  'Snapshot.seq': 'The last event the state includes (0: the document has no events yet)',
  'Snapshot.version': "The document's version field at `seq` (0 when there is no document)",
  code: 'An [error code](#error-codes)',
  message: 'What went wrong, for people (do not parse it)',
  'SyncEvent.id': 'Unique id of the event (24-hex ObjectId)',
  'SyncEvent.seq': 'Per document: 1, 2, 3, … with no gap and no duplicate, across delete and re-create',
  'SyncEvent.serverSeq': 'One order over all events of the database (for collection-wide feeds)',
  'SyncEvent.timestamp': 'When the event was recorded: milliseconds since the Unix epoch',
  'SyncEvent.operation': 'What happened to the document',
  'SyncEvent.diff':
    'The change: for create (the whole document added), update and update_section; absent for delete',
  'SyncEvent.version': 'The document version after the event (the deleted version for delete)',
  'SyncEvent.clientId': 'The actor that made the change (the writer, not a subscriber)',
  'SyncEvent.metadata':
    'For update_section `{ "section": "inventory" }`; for delete `{ "deletedDocument": … }`; plus what the writer attached',
  'Diff.hasChanges': 'Whether the write changed anything',
  'Diff.version': "The document's version after the write",
  'Diff.jsonPatch': 'The change as RFC 6902 operations, applied in order',
  'Diff.mergePatch':
    'The change as an RFC 7396 merge patch (`null` removes a field); absent when much larger than `jsonPatch` (a change in a large array)',
  'Diff.mongoUpdate':
    'The change as MongoDB update operators (`$set`, `$unset`); absent when much larger than `jsonPatch` (an insert or removal in a large array)',
};

// ---- protocol facts that are not in the schemas ----------------------------------------------------

/** When each error code is sent. A new code in wire.ts fails to compile until it is described here. */
const errorWhen: Record<ErrorCode, string> = {
  validation:
    'The message has the right shape but cannot be done: an `ack` of a seq this connection was not sent, ' +
    'a filter with a forbidden operator or key or one the query engine refuses. REST: an invalid document, ' +
    'update or query parameter.',
  bad_message:
    'The frame is not JSON, nests deeper than `maxMessageDepth`, has a `__proto__` key, or matches no client message (a missing, ' +
    'extra or mistyped field, a bad id or name, an unknown `type`); a second `hello`; a subscription id ' +
    'already in use on the connection.',
  unsupported_protocol: '`hello` with a protocol version the server does not speak; close 4000 follows.',
  unauthorized:
    'Any message before `hello` (the connection stays open); credentials refused by `authenticate` (close ' +
    '4001 follows). HTTP: no valid credentials.',
  forbidden:
    '`authorize` refused: a document subscription the principal may not read, a collection it may not ' +
    "subscribe to; another principal's client id (`hello`: close 4003 follows). Also later, when the " +
    'answer is asked again (`authorizationTtlMs`, `engine.revoke`): a document subscription whose document ' +
    'may no longer be read (after its `leave`), a collection subscription whose collection may no longer be ' +
    "subscribed to; the subscription ends. HTTP: a read or write it may not do, or another principal's `clientId`.",
  not_found: '`unsubscribe` of a subscription the connection does not have. HTTP: no such document.',
  method_not_allowed: 'HTTP only: a method the path does not take (the `Allow` header lists those it does).',
  already_exists: 'HTTP: creating a document whose `_id` is taken. Not sent over WebSocket.',
  version_conflict:
    'A document kept changing while the server read a consistent snapshot of it (subscribe again). HTTP: an ' +
    'edit kept losing the race for the document until its retries or timeout ran out.',
  unknown_mutator:
    '`mutate` (or `POST …/mutate/:name`) naming a mutator the server does not define for the collection, ' +
    'or a protocol-1 connection sending `mutate`. Sent as `mutation_error`.',
  mutation_refused:
    'The mutator refused the mutation (`MutationRefused`); `reason` is its own code. Nothing of it was kept; ' +
    'the same `mid` resent gets the same answer. Sent as `mutation_error`.',
  mutation_failed:
    'The mutator threw something else (the server logs it; the message says no more). Sent as `mutation_error`.',
  out_of_order:
    'A `mid` past the next one the server expects for the client id (the message names it): resend the ' +
    'mutations from there, in order. Sent as `mutation_error`.',
  unsupported_media_type:
    'HTTP only: a write (POST, PATCH) whose body is not declared `Content-Type: application/json`.',
  too_large:
    'A collection subscription that would cover more than `maxSubscriptionDocuments` documents (ref: `sub`; ' +
    'the subscription ends). HTTP: a request body over `maxMessageBytes`. A frame over it: close code ' +
    `${CloseCodes.messageTooBig.code} follows (a frame far over it gets the close only).`,
  rate_limited:
    'More than `maxMessagesPerSecond` frames in a second (that frame is dropped, the connection stays ' +
    'open), or a `subscribe` beyond `maxSubscriptions`.',
  timeout: 'Not sent by this version (an edit that runs out of time is `version_conflict`).',
  closed: 'The server, its database or a storage is closed (shutting down).',
  internal:
    'The server failed while handling the message (a bug or a database error); it is logged, the ' +
    'connection stays open. Also when `authorizeQuery` fails while a collection subscription is checked ' +
    'again (ref: `sub`; the subscription ends).',
};

const limitNotes: Record<keyof SyncLimits, string> = {
  maxMessageBytes:
    'Largest frame (or HTTP request body), in bytes. Larger: close 1009 (HTTP: 413 `too_large`).',
  maxMessageDepth: 'Deepest JSON nesting of a frame. Deeper: `error bad_message`.',
  maxMessagesPerSecond:
    'Frames per second per connection, as a token bucket (a burst of this many is fine). Over: `error rate_limited`, frame dropped.',
  maxSubscriptions: 'Subscriptions per connection. Over: `error rate_limited` for the `subscribe`.',
  maxBufferedBytes: 'Bytes waiting to be sent to one client. Over: close 1013.',
  heartbeatMs:
    'The server pings every this many ms; a connection that has not answered the previous ping is terminated.',
  helloTimeoutMs:
    'A WebSocket connection not welcomed (no `hello`, or one still being authenticated) within this many ms of opening is closed (4408). SSE streams are authenticated on their request and not subject to it.',
  maxConnections:
    'Open WebSocket connections and SSE streams in total. Over: the upgrade is answered 503 (SSE: 429 `rate_limited`).',
  maxConnectionsPerAddress:
    'Open WebSocket connections and SSE streams from one remote address. Over: 429 on the upgrade (SSE: 429 `rate_limited`).',
  maxPageBytes:
    'Bytes of one REST list or event page: the page ends after the item that crosses it and says where to continue.',
  maxSubscriptionDocuments:
    'Documents one collection subscription covers (snapshots and follows). Past it, in its snapshot or when a document enters later: `error too_large` (ref: `sub`), and the subscription ends.',
  maxUnscopedListDocuments:
    'REST lists only: without `authorizeQuery`, a list under an `authorize` hook reads the whole collection and filters what `authorize` admits in memory; a larger collection is HTTP 413 `too_large`.',
  ackFlushMs: 'Acknowledged positions are written to the database in one batch at most this often.',
  maxFilterBytes:
    'Largest filter (collection subscription, SSE `?filter=`, REST `?filter=`), as JSON bytes. Over: `error validation` (HTTP 400).',
  maxFilterDepth: 'Deepest nesting of a filter. Deeper: `error validation` (HTTP 400).',
  maxFilterListLength:
    'Longest `$in`, `$nin` or `$all` list in a filter. Longer: `error validation` (HTTP 400).',
};

// ---- rendering --------------------------------------------------------------------------------------

interface JsonSchema {
  $ref?: string;
  const?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  type?: string;
  pattern?: string;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  propertyNames?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  description?: string;
}

/** GitHub's heading anchors. */
const anchor = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replace(/ /g, '-');

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function typeOf(s: JsonSchema): string {
  if (s.$ref) {
    const id = s.$ref.replace(/^#/, '');
    return `[${id}](#${anchor(id)})`;
  }
  if ('const' in s) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' or ');
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives) return alternatives.map(typeOf).join(' or ');
  switch (s.type) {
    case 'string': {
      let t = 'string';
      if (s.pattern) t += ` matching \`${s.pattern}\``;
      if (s.maxLength !== undefined) t += `, at most ${s.maxLength} characters`;
      return t;
    }
    case 'integer':
    case 'number': {
      const bounds: string[] = [];
      if (s.minimum !== undefined && s.minimum !== Number.MIN_SAFE_INTEGER) bounds.push(`≥ ${s.minimum}`);
      if (s.maximum !== undefined && s.maximum !== Number.MAX_SAFE_INTEGER) bounds.push(`≤ ${s.maximum}`);
      return [s.type, ...bounds].join(' ');
    }
    case 'array':
      return `array of ${s.items ? typeOf(s.items) : 'anything'}`;
    case 'object': {
      if (s.properties) {
        const required = new Set(s.required ?? []);
        const fields = Object.entries(s.properties).map(
          ([name, p]) => `${name}${required.has(name) ? '' : '?'}: ${typeOf(p)}`,
        );
        return `{ ${fields.join(', ')} }`;
      }
      const key = s.propertyNames ? typeOf(s.propertyNames) : 'string';
      const value = typeof s.additionalProperties === 'object' ? typeOf(s.additionalProperties) : 'anything';
      return `object of ${key} → ${value}`;
    }
    case undefined:
      return 'anything';
    default:
      return s.type;
  }
}

function describeField(
  owner: string,
  field: string,
  s: JsonSchema,
  schemas: Record<string, JsonSchema>,
  used: Set<string>,
): string {
  if (s.description) return s.description;
  for (const k of [`${owner}.${field}`, field]) {
    const note = fieldNotes[k];
    if (note) {
      used.add(k);
      return note;
    }
  }
  const target = s.$ref ? schemas[s.$ref.replace(/^#/, '')] : undefined;
  if (target?.description) return target.description;
  throw new Error(`${owner}.${field} has no description: add .meta({ description }) in messages.ts`);
}

function fieldTable(
  owner: string,
  s: JsonSchema,
  schemas: Record<string, JsonSchema>,
  used: Set<string>,
): string[] {
  const required = new Set(s.required ?? []);
  const rows = Object.entries(s.properties ?? {}).map(([name, p]) => {
    const description = describeField(owner, name, p, schemas, used);
    return `| \`${name}\` | ${cell(typeOf(p))} | ${required.has(name) ? 'yes' : 'no'} | ${cell(description)} |`;
  });
  return ['| Field | Type | Required | Description |', '|---|---|---|---|', ...rows];
}

function jsonBlock(value: unknown): string[] {
  return ['```json', JSON.stringify(value, null, 2), '```'];
}

function schemaDetails(schema: JsonSchema): string[] {
  const { $schema: _, ...rest } = schema as JsonSchema & { $schema?: string };
  return ['<details><summary>JSON Schema</summary>', '', ...jsonBlock(rest), '', '</details>'];
}

/** Every message and shared type as JSON Schema (draft 2020-12), cross-referenced by id. */
export function protocolJsonSchemas(): Record<string, JsonSchema> {
  const ids = z.registry<{ id: string }>();
  for (const m of messages) ids.add(m.schema, { id: m.id });
  for (const t of sharedTypes) ids.add(t.schema, { id: t.id });
  const { schemas } = z.toJSONSchema(ids, { uri: (id) => `#${id}` }) as unknown as {
    schemas: Record<string, JsonSchema>;
  };
  return schemas;
}

export function renderProtocolDoc(): string {
  const schemas = protocolJsonSchemas();
  const schemaOf = (id: string) => {
    const s = schemas[id];
    if (!s) throw new Error(`no JSON Schema for ${id}`);
    return s;
  };
  const used = new Set<string>();
  const out: string[] = [];
  const add = (...lines: string[]) => out.push(...lines);

  add(
    '<!-- Generated by scripts/protocol-doc.ts from src/protocol/messages.ts and src/protocol/wire.ts.',
    '     Do not edit: change the schemas or the generator, then run `npm run protocol:doc`. -->',
    '',
    `# eventsync sync protocol, version ${M.PROTOCOL_VERSION}`,
    '',
    'How a client follows documents of an eventsync server: the messages, their order, the limits and the',
    'errors. The messages are defined once, as zod schemas in `src/protocol/messages.ts`; the server',
    'validates every frame against them, and the tables below are generated from them (`z.toJSONSchema`).',
    '',
    '## Transport',
    '',
    `- **WebSocket** at \`${DEFAULT_PATHS.sync}\` (the paths are configurable). Each message is one **text** frame`,
    `  holding one JSON object; binary frames close the connection (${CloseCodes.unsupportedData.code}).`,
    `- **SSE** (\`${DEFAULT_PATHS.sse}/:collection[/:id]\`) **and REST** (\`${DEFAULT_PATHS.api}/…\`) **carry the same shapes**: an`,
    "  SSE stream sends the server messages below as its `data` (frames that carry one document's",
    '  position, `snapshot` and `event`, have the event id `collection/documentId/seq`, e.g.',
    `  \`${sseEventId('games', 'g1', 2)}\`, so a browser's \`Last-Event-ID\` resumes exactly); SSE and REST take their`,
    '  credentials from the HTTP request (`Authorization: Bearer …` or `?token=`) instead of `hello`, and',
    '  answer errors as JSON `{ "error": { "code", "message" } }` with the HTTP status of the code. An SSE',
    `  stream is one subscription (\`sub\` is \`${JSON.stringify(SSE_SUBSCRIPTION)}\`): when the server ends it (an \`error\` with that \`ref\`),`,
    `  the stream closes too, with \`event: close\` \`{ "code": ${CloseCodes.normalClosure.code}, "reason": "the subscription ended" }\`.`,
    `- **SSE client stream** (\`GET ${DEFAULT_PATHS.sse}?clientId=…&protocol=2\`): browsers open at most 6 HTTP/1.1`,
    '  connections per origin, so a client follows any number of documents on one stream. It opens with no',
    '  subscription; its `welcome` carries `streamId`, and the client sends `subscribe`, `unsubscribe` and `ack`',
    '  as HTTP requests (credentials as for the stream, the same principal only):',
    `  \`POST ${DEFAULT_PATHS.sse}${sseStreamPath(':streamId', 'subscriptions')}\` with the \`subscribe\` message as its body,`,
    `  \`DELETE ${DEFAULT_PATHS.sse}${sseStreamPath(':streamId', 'subscriptions')}/:sub\`, and`,
    `  \`POST ${DEFAULT_PATHS.sse}${sseStreamPath(':streamId', 'acks')}\` with the \`ack\` (\`type\` may be left out). Each`,
    '  is validated by the schemas below and the limits of a frame (400 `bad_message`, 413 `too_large`, 429',
    '  `rate_limited`), refused 403 `forbidden` when it is not the principal of the stream, 404 `not_found` when',
    '  no open stream has the id (a stream that closed forgets it), and otherwise answered 202: the session',
    '  handles it as it would the WebSocket frame, and its answers (`subscribed`, catch-up, `synced`, `error`',
    '  with `ref`) come on the stream with their `sub`. A client that waits for each answer before the next',
    '  request has its messages handled in the order it sent them. The stream does not close when one of its',
    '  subscriptions ends; after a reconnect the client opens a new stream and subscribes again with `afterSeq`.',
    '- Every object in the protocol is **strict**: a field the schema does not name is refused',
    '  (`bad_message`).',
    '',
    '## Versions',
    '',
    `The protocol has one integer version, now **${M.PROTOCOL_VERSION}** (\`PROTOCOL_VERSION\`). The client`,
    'names the version it speaks in `hello.protocol`; the server answers with its own in `welcome.protocol`,',
    "or, when it does not speak the client's version, with `error unsupported_protocol` (its message names",
    'the version the server speaks) and close code 4000. Because every object is strict, any change of a',
    "message's shape, even one more optional field, is a new version: a server that serves older clients",
    'keeps their schemas and picks by `hello.protocol`.',
    '',
    '## Connection lifecycle',
    '',
    '```',
    'client                                              server',
    '  | open WebSocket /sync                               |',
    '  | hello {protocol, clientId, token?}  ------------>  | authenticate(request, token),',
    '  |                                                    | claim clientId for the principal',
    '  |  <------------------------  welcome {protocol}     | (or error + close 4000 / 4001 / 4003)',
    '  | subscribe {sub, collection, documentId, afterSeq?} | authorize(read)',
    '  |  <------------------------------  subscribed {sub} |',
    '  |  <-------------------  snapshot {…}  (if needed)   |',
    '  |  <-------------------  event {…} × missing         | catch-up',
    '  |  <----------------------------------  synced {sub} |',
    '  |  <-------------------  event {…} …                 | live',
    '  | ack {collection, documentId, seq}  ------------->  | (no answer unless refused)',
    '  | unsubscribe {sub}  ----------------------------->  |',
    '  |  <----------------------------  unsubscribed {sub} |',
    '  | close 1000  ------------------------------------>  |',
    '```',
    '',
    '1. **hello → welcome.** `hello` comes first; any other message before an accepted `hello` is answered',
    '   `error unauthorized` and the connection stays open.',
    "2. **subscribe → subscribed → snapshot? / events → synced → live events.** `sub` is the client's name",
    '   for the subscription; `subscribed`, `synced`, `leave`, `unsubscribed` and errors about it carry it.',
    '   A document subscription catches up from `afterSeq` (or `vectorClock`); a collection subscription',
    '   sends a snapshot of each matching document. Live events of other documents may arrive between',
    '   `subscribed` and `synced`.',
    '3. **unsubscribe → unsubscribed.**',
    '4. **ack** records what the client applied (its state vector on the server); no answer.',
    '5. **Errors.** A refused message gets one `error` frame; the connection stays open unless a close',
    '   follows. Frames refused by the cheap checks (size, rate, JSON, depth, schema) are answered at once,',
    '   so such an error can overtake the answer to an earlier message that is still being handled; match',
    '   by `ref`. Accepted messages are handled one after another, in the order they arrived.',
    '6. **Close.** Either side may close; the [close codes](#close-codes) say why the server did. After an',
    '   unexpected close, reconnect with backoff and subscribe again with `afterSeq` = the last seq applied.',
    '',
    '## Ordering guarantees',
    '',
    '- **Per document, in seq order, with no gap and no duplicate per connection**: after a `snapshot` at',
    '  seq S the next event of that document is S + 1; after event N comes N + 1. This holds across the',
    '  hand-over from catch-up to live events, and however many subscriptions of the connection cover the',
    '  document (it is sent once). An event merged by compaction carries `fromSeq`: it covers `fromSeq`..`seq`.',
    "- If the server's feed skips an event, the server reads the missing ones from the log before sending",
    '  later ones; if it cannot, it closes the connection (1011) rather than send a gap.',
    '- **Across documents** no order is promised; `serverSeq` gives the order in which the database',
    '  committed the events.',
    '- **`event` frames name no subscription**: a live event is serialized once and the same bytes go to',
    '  every connection that follows the document.',
    '',
    '## Limits',
    '',
    'Configurable per server (`SyncEngine.create({ limits })`); the defaults:',
    '',
    '| Limit | Default | Meaning |',
    '|---|---|---|',
    ...(Object.keys(limitNotes) as (keyof SyncLimits)[]).map(
      (k) => `| \`${k}\` | ${defaultLimits[k]} | ${cell(limitNotes[k])} |`,
    ),
    '',
    '## Close codes',
    '',
    'Whether a client should connect again (with backoff) after the close: no when the server would',
    'refuse the same connection again.',
    '',
    '| Code | Name | Reconnect | When the server uses it |',
    '|---|---|---|---|',
    ...(Object.keys(CloseCodes) as (keyof typeof CloseCodes)[]).map((key) => {
      const c = CloseCodes[key];
      return `| ${c.code} | ${c.name} | ${c.retry ? 'yes' : 'no'} | ${cell(closeCodeNotes()[key])} |`;
    }),
    '',
  );

  for (const [direction, title] of [
    ['client', 'Client → server messages'],
    ['server', 'Server → client messages'],
  ] as const) {
    add(`## ${title}`, '');
    for (const m of messages.filter((x) => x.direction === direction)) {
      const schema = schemaOf(m.id);
      const example = examples[m.example];
      m.schema.parse(example); // an example that does not match its schema stops the generator
      add(
        `### ${m.heading}`,
        '',
        `${describe(m.id, schema)}.`,
        '',
        m.notes,
        '',
        ...fieldTable(m.id, schema, schemas, used),
        '',
        'Example:',
        '',
        ...jsonBlock(example),
        '',
        ...schemaDetails(schema),
        '',
      );
    }
  }

  add('## Shared types', '');
  for (const t of sharedTypes) {
    const schema = schemaOf(t.id);
    add(`### ${t.id}`, '');
    if (schema.description) add(`${schema.description}.`, '');
    add(t.notes, '');
    if (schema.properties) add(...fieldTable(t.id, schema, schemas, used), '');
    add(...schemaDetails(schema), '');
  }

  add(
    '## Error codes',
    '',
    'Stable snake_case strings (`src/protocol/wire.ts`), never renamed. Over WebSocket they arrive in',
    '`error` frames; over HTTP as `{ "error": { "code", "message" } }` with the status below. A request',
    'refused with a code that is not retryable would be refused again: change it first (the SDK ends',
    'such a subscription instead of subscribing again).',
    '',
    '| Code | HTTP status | Retryable | When it is sent |',
    '|---|---|---|---|',
    ...(Object.keys(ErrorCodes) as ErrorCode[]).map(
      (code) =>
        `| \`${code}\` | ${ErrorStatus[code]} | ${ErrorCodes[code].retryable ? 'yes' : 'no'} | ${cell(errorWhen[code])} |`,
    ),
    '',
  );
  const unused = Object.keys(fieldNotes).filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`fieldNotes entries no field needs any more: ${unused.join(', ')}`);
  return out.join('\n');
}

function describe(id: string, schema: JsonSchema): string {
  if (!schema.description)
    throw new Error(`${id} has no description: add .meta({ description }) in messages.ts`);
  return schema.description;
}

/** The document as committed: rendered, then formatted by the project's Biome. */
export function protocolDoc(): string {
  const biome = fileURLToPath(new URL('../node_modules/.bin/biome', import.meta.url));
  return execFileSync(biome, ['format', `--stdin-file-path=${PROTOCOL_DOC_PATH}`], {
    input: renderProtocolDoc(),
    encoding: 'utf8',
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(PROTOCOL_DOC_PATH, protocolDoc());
  console.log(`wrote ${PROTOCOL_DOC_PATH}`);
}
