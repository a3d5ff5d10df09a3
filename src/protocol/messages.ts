/**
 * The sync protocol, defined once: every message a client or server may send, as zod schemas.
 * Types come from the schemas (`z.infer`), so client and server cannot drift apart, and the
 * server validates every frame against them before it acts. `docs/PROTOCOL.md` is generated
 * from these schemas (a test fails when it is stale). Browser-safe: imports only zod, `wire.ts` and `src/core/`.
 *
 * Version 2 (1 plus client mutations: `mutate`, `mutated`, `mutation_error`). A client says which
 * version it speaks in `hello`; the server speaks every version in `SUPPORTED_PROTOCOLS`, answers
 * with the client's in `welcome`, and refuses a version it does not speak.
 */
import { z } from 'zod';
import { COLLECTION_NAME_PATTERN, ID_PATTERN } from '../core/ids.js';
import { MUTATOR_NAME_PATTERN, REFUSAL_REASON_PATTERN } from '../core/mutators.js';
import { ErrorCodes } from './wire.js';

/** The newest version: the one this package's client speaks. */
export const PROTOCOL_VERSION = 2;
/** The versions a server speaks. 1 has no mutations (its clients never send `mutate`). */
export const SUPPORTED_PROTOCOLS: readonly number[] = [1, 2];

// ---- shared pieces ---------------------------------------------------------------------------

export const Id = z.string().regex(ID_PATTERN).meta({
  description: 'A document or client id: 1-128 of A-Z a-z 0-9 _ . : @ -, not starting with . : @ -',
});
export const CollectionName = z
  .string()
  .regex(COLLECTION_NAME_PATTERN)
  .meta({ description: 'A collection name: lower-case letters, digits and _, starting with a letter or _' });
export const SubscriptionId = z
  .string()
  .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
  .meta({ description: "The client's name for one subscription; messages about it carry it back" });
/** 128 random bits in hex: whoever knows it (and is its principal) may change the stream's subscriptions. */
export const StreamId = z
  .string()
  .regex(/^[0-9a-f]{32}$/)
  .meta({ description: "An SSE client stream's id: 32 hex digits (128 random bits)" });
export const Seq = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
export const VectorClock = z
  .record(Id, Seq)
  .meta({ description: 'Per actor (client id): how many of its events on the document have been seen' });
export const Json = z.json();
type Code = keyof typeof ErrorCodes;
export const ErrorCode = z
  .enum(Object.keys(ErrorCodes) as [Code, ...Code[]])
  .meta({ description: 'What went wrong, as a stable snake_case code' });

const JsonPatchOperation = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('add'), path: z.string(), value: Json }),
  z.strictObject({ op: z.literal('replace'), path: z.string(), value: Json }),
  z.strictObject({ op: z.literal('remove'), path: z.string() }),
]);

export const Diff = z.strictObject({
  hasChanges: z.boolean(),
  version: Seq,
  jsonPatch: z.array(JsonPatchOperation),
  mergePatch: z.record(z.string(), Json).optional(),
  mongoUpdate: z
    .strictObject({
      $set: z.record(z.string(), Json).optional(),
      $unset: z.record(z.string(), z.literal('')).optional(),
    })
    .optional(),
});

export const SyncEvent = z
  .strictObject({
    id: z.string(),
    collection: CollectionName,
    documentId: Id,
    seq: Seq,
    fromSeq: Seq.optional().meta({
      description: 'Set when compaction merged several events: the first seq covered',
    }),
    serverSeq: Seq,
    timestamp: Seq,
    operation: z.enum(['create', 'update', 'update_section', 'delete']),
    diff: Diff.optional(),
    version: Seq,
    clientId: z.string(),
    vectorClock: VectorClock,
    metadata: z.record(z.string(), Json).optional(),
  })
  .meta({ description: 'One recorded change of one document' });

// ---- client → server -------------------------------------------------------------------------

export const Hello = z
  .strictObject({
    type: z.literal('hello'),
    protocol: z.number().int().min(1),
    clientId: Id,
    token: z.string().max(4096).optional(),
  })
  .meta({
    description:
      'First message of a connection: who the client is, which protocol it speaks, its credentials',
  });

export const SubscribeDocument = z
  .strictObject({
    type: z.literal('subscribe'),
    sub: SubscriptionId,
    collection: CollectionName,
    documentId: Id,
    afterSeq: Seq.optional().meta({
      description: 'The last seq the client applied; omitted (and no vectorClock): from the start',
    }),
    vectorClock: VectorClock.optional().meta({
      description: 'Instead of afterSeq: what the client has seen',
    }),
  })
  .meta({
    description:
      'Follow one document: catch-up (snapshot if needed, then exactly the missing events), then live events',
  });

export const SubscribeCollection = z
  .strictObject({
    type: z.literal('subscribe'),
    sub: SubscriptionId,
    collection: CollectionName,
    filter: z
      .record(z.string(), Json)
      .optional()
      .meta({ description: 'A MongoDB query filter (default: every document)' }),
    known: z.record(Id, Seq).optional().meta({
      description:
        'Resuming: the documents the client holds, each at the seq it applied. One still at that seq and matching gets no snapshot; one not covered at synced gets leave',
    }),
  })
  .meta({
    description:
      'Follow every document of a collection that matches a filter: a snapshot of each, then live events',
  });

export const Subscribe = z.union([SubscribeDocument, SubscribeCollection]);

export const Unsubscribe = z
  .strictObject({ type: z.literal('unsubscribe'), sub: SubscriptionId })
  .meta({ description: 'Stop a subscription' });

export const Ack = z
  .strictObject({ type: z.literal('ack'), collection: CollectionName, documentId: Id, seq: Seq })
  .meta({
    description:
      "The client applied everything up to seq: the server records it in the client's state vector",
  });

export const MutationId = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).meta({
  description: "The client's number for one mutation: 1, 2, 3, … per client id, in the order it made them",
});

export const Mutate = z
  .strictObject({
    type: z.literal('mutate'),
    mid: MutationId,
    collection: CollectionName,
    documentId: Id,
    name: z.string().regex(MUTATOR_NAME_PATTERN).meta({ description: "The mutator's name (`addGold`)" }),
    args: Json.optional().meta({ description: "The mutator's arguments" }),
  })
  .meta({
    description:
      'Protocol 2. Ask the server to run a mutator on a document: each mid once, in mid order per client id',
  });

export const ClientMessage = z.union([
  Hello,
  SubscribeDocument,
  SubscribeCollection,
  Unsubscribe,
  Ack,
  Mutate,
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

// ---- server → client -------------------------------------------------------------------------

export const Welcome = z
  .strictObject({
    type: z.literal('welcome'),
    protocol: z.number().int(),
    clientId: Id,
    serverTime: Seq,
    lastMid: Seq.optional().meta({
      description:
        'Protocol 2: the last mutation id the server applied (or refused) for this client id, 0 for none; the next mutate has lastMid + 1',
    }),
    streamId: StreamId.optional().meta({
      description:
        'SSE client streams only: the id under which the client adds and removes subscriptions on this stream (POST/DELETE {sse}/streams/:streamId/…)',
    }),
  })
  .meta({ description: 'Answer to hello: the server accepted the client' });

export const Subscribed = z
  .strictObject({ type: z.literal('subscribed'), sub: SubscriptionId })
  .meta({ description: 'The subscription exists; its catch-up follows' });

export const Snapshot = z
  .strictObject({
    type: z.literal('snapshot'),
    collection: CollectionName,
    documentId: Id,
    seq: Seq,
    version: Seq,
    state: z
      .record(z.string(), Json)
      .nullable()
      .meta({ description: 'The document at seq; null if deleted' }),
    vectorClock: VectorClock,
  })
  .meta({ description: 'The whole document at seq: replace the local replica, then apply events after seq' });

export const EventMessage = z.strictObject({ type: z.literal('event'), event: SyncEvent }).meta({
  description:
    'One event, in seq order per document, never twice per connection (whatever subscriptions cover the document). ' +
    'It names no subscription, so the server serializes it once for every subscriber',
});

export const Synced = z
  .strictObject({ type: z.literal('synced'), sub: SubscriptionId })
  .meta({ description: 'Catch-up done: the client is current; live events follow' });

export const Leave = z
  .strictObject({
    type: z.literal('leave'),
    sub: SubscriptionId,
    collection: CollectionName,
    documentId: Id,
    reason: z.enum(['unmatched', 'forbidden']).meta({
      description:
        '`unmatched`: the document no longer matches the filter (or was deleted); `forbidden`: the principal may no longer read it',
    }),
  })
  .meta({
    description: 'The subscription no longer covers the document: no more of its events come for it',
  });

export const Unsubscribed = z
  .strictObject({ type: z.literal('unsubscribed'), sub: SubscriptionId })
  .meta({ description: 'The subscription ended' });

export const ErrorMessage = z
  .strictObject({
    type: z.literal('error'),
    code: ErrorCode,
    message: z.string(),
    ref: z.string().optional().meta({ description: 'The subscription (or message type) the error is about' }),
  })
  .meta({
    description: 'Something the client sent was refused; the connection stays open unless a close follows',
  });

export const Mutated = z
  .strictObject({
    type: z.literal('mutated'),
    mid: MutationId,
    seq: Seq.optional().meta({
      description:
        "The document's seq that holds the mutation's effect (absent when it changed nothing, and for an older duplicate)",
    }),
    version: Seq.optional().meta({ description: "The document's version after the mutation" }),
    result: Json.optional().meta({ description: 'What the mutator returned' }),
    duplicate: z.literal(true).optional().meta({
      description: 'The mid was applied before (a resend): it was not run again',
    }),
  })
  .meta({ description: 'Protocol 2. The mutation was applied (or had been: a resend)' });

export const MutationError = z
  .strictObject({
    type: z.literal('mutation_error'),
    mid: MutationId,
    code: ErrorCode,
    message: z.string(),
    reason: z.string().regex(REFUSAL_REASON_PATTERN).optional().meta({
      description: "With code mutation_refused: the mutator's own reason (`not_enough_xp`)",
    }),
  })
  .meta({ description: 'Protocol 2. The mutation was refused or failed: nothing of it was kept' });

export const ServerMessage = z.discriminatedUnion('type', [
  Welcome,
  Subscribed,
  Snapshot,
  EventMessage,
  Synced,
  Leave,
  Unsubscribed,
  ErrorMessage,
  Mutated,
  MutationError,
]);
export type ServerMessage = z.infer<typeof ServerMessage>;
