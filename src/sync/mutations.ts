/**
 * One client mutation, run on the server (docs/MUTATIONS.md): the checks, the exactly-once
 * record, the mutator inside `EventSyncStorage.findOneAndUpdate`, and the answer. The engine
 * runs it for WebSocket sessions and REST alike (`SyncEngine.mutate`).
 *
 * Every answer to the mid a record expects next (`lastMid + 1`) is kept in the record, by the
 * mutation's write when it wrote, else on its own: applied, refused, or failed (unknown mutator, bad
 * arguments, forbidden, not found, a mutator that threw). So a resend always gets the answer the
 * first send got, and the client's next mid always follows. Only retryable failures (the
 * database failed, the document kept changing) keep nothing: the same mid sent again runs again.
 */
import {
  type ErrorCode,
  ErrorCodes,
  EventSyncError,
  MutationRefused,
  ValidationError,
} from '../core/errors.js';
import { type MutationRecord, MutationRecordMoved } from '../core/event-backend.js';
import type { SyncEvent } from '../core/events.js';
import { assertCollectionName } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import {
  assertMutatorName,
  type MutationContext,
  type Mutators,
  mutatorNamed,
  REFUSAL_REASON_PATTERN,
} from '../core/mutators.js';
import { isPlainObject } from '../core/values.js';
import type { EventCallOptions, EventSyncStorage } from '../events/event-sync-storage.js';
import type { Logger } from '../events/logger.js';
import type { ServerMessage } from '../protocol/messages.js';
import type { KeyedQueue } from '../storage/keyed-queue.js';
import type { BaseDocument } from '../storage/types.js';
import { assertJsonValue } from '../storage/validate.js';
import type { Principal } from './types.js';

/** What a `mutate` frame (or a REST mutation) asks for. */
export interface MutationRequest {
  mid: number;
  collection: string;
  documentId: string;
  name: string;
  args?: unknown;
}

/** The answer: a `mutated` or a `mutation_error` frame. */
export type MutationAnswer = Extract<ServerMessage, { type: 'mutated' | 'mutation_error' }>;

/** Who asks, and which record keeps the answer. */
export interface MutationCaller {
  principal: Principal;
  /** The actor of the event the mutation writes: the client id (REST: the principal's client id). */
  clientId: string;
  /**
   * The client id's record (WebSocket, and REST with the SDK's headers), a REST idempotency
   * key's, or none (REST without either: runs once per request).
   */
  record: { kind: 'client' } | { kind: 'idempotency-key'; key: string } | { kind: 'none' };
}

/** What running a mutation needs of the engine. */
export interface MutationRuntime {
  /** Per collection, its mutators. */
  readonly mutators: Readonly<Record<string, Mutators<BaseDocument>>>;
  collection(name: string): Promise<EventSyncStorage<BaseDocument>>;
  /** The record as committed, unlocked. */
  mutationRecord(key: string): Promise<MutationRecord | undefined>;
  /** `EventBackend.keepMutationRecord`: writes the record only while it is at the mid before. */
  keepMutationRecord(record: MutationRecord): Promise<boolean>;
  authorize(principal: Principal, action: 'write', collection: string, documentId: string): Promise<boolean>;
  readonly logger: Logger;
  /** The largest `result` a mutator may return, in bytes of JSON. */
  readonly maxResultBytes: number;
  /** Runs one record's mutations one at a time in this process (two connections of a client wait for each other). */
  readonly lanes: KeyedQueue;
  /** The client records this process last read or wrote (see `KnownRecords`). */
  readonly known: KnownRecords;
}

/**
 * The client records this process last read or wrote, at most `max` (the least recently used go
 * first). Only a mutation in the record's lane reads or writes one, so within the process a copy
 * is never behind; another instance may have moved the record on, which the write's condition
 * catches (then it is read again).
 */
export class KnownRecords {
  readonly #records = new Map<string, MutationRecord | undefined>();
  constructor(readonly max: number) {}

  get(key: string): { record: MutationRecord | undefined } | undefined {
    if (!this.#records.has(key)) return undefined;
    const record = this.#records.get(key);
    this.set(key, record);
    return { record };
  }

  set(key: string, record: MutationRecord | undefined): void {
    this.#records.delete(key);
    this.#records.set(key, record);
    if (this.#records.size > this.max) this.#records.delete(this.#records.keys().next().value!);
  }

  delete(key: string): void {
    this.#records.delete(key);
  }
}

/** Client ids a WebSocket or SDK client may not use for mutations: REST idempotency keys' records are named so. */
export const RESERVED_RECORD_PREFIX = 'rest:';

/** Error messages sent are at most this long (a mutator's own message included). */
const MAX_MESSAGE_CHARS = 500;

/** The name of the record that keeps the answer, or `undefined` for none. */
export function recordKeyOf(caller: MutationCaller): string | undefined {
  const { record } = caller;
  if (record.kind === 'none') return undefined;
  if (record.kind === 'client') return caller.clientId;
  // Principal ids may hold ':': encoded, so `rest:a:b:c` can be only one principal's key.
  return `${RESERVED_RECORD_PREFIX}${encodeURIComponent(caller.principal.id)}:${record.key}`;
}

/**
 * Runs `request` for `caller`: answered from the record, or checked and run. An applied mutation
 * keeps its record in the statement that writes its document and event, any other answer in a
 * statement of its own; both only while the record is still at `mid - 1` (no transaction, no
 * lock), so of two runs of one mid only one answer is kept, and the other answers from it.
 */
export async function runMutation(
  runtime: MutationRuntime,
  caller: MutationCaller,
  request: MutationRequest,
): Promise<MutationAnswer> {
  const key = recordKeyOf(caller);
  if (caller.record.kind === 'client' && caller.clientId.startsWith(RESERVED_RECORD_PREFIX)) {
    return errorAnswer(
      request.mid,
      'forbidden',
      `client ids starting with ${RESERVED_RECORD_PREFIX} are reserved`,
    );
  }
  // The checks that need no record come first: `authorize` (the application's code) runs before
  // anything of the record is read or held.
  const checked = await check(runtime, caller, request);
  const storage = await runtime.collection(request.collection);
  if (key === undefined) {
    if ('error' in checked) return checked.error;
    return apply(storage, runtime, caller, request, checked).catch((error) =>
      failureAnswer(runtime.logger, request, error),
    );
  }
  return runtime.lanes.run(key, () => runInLane(storage, runtime, caller, request, checked, key));
}

/** `runMutation` with a record, once no other run of the record in this process is under way. */
async function runInLane(
  storage: EventSyncStorage<BaseDocument>,
  runtime: MutationRuntime,
  caller: MutationCaller,
  request: MutationRequest,
  checked: Checked,
  key: string,
): Promise<MutationAnswer> {
  const record = await recordFor(runtime, caller, key, request.mid);
  const known = answerFromRecord(record, request.mid);
  if (known) return known;
  try {
    return await answerAndKeep(storage, runtime, caller, request, checked, { key, before: record });
  } catch (error) {
    if (!(error instanceof MutationRecordMoved)) throw error;
  }
  // Another instance answered this mid first: its answer is in the record.
  runtime.known.delete(key);
  const answered = answerFromRecord(await recordFor(runtime, caller, key, request.mid), request.mid);
  if (answered) return answered;
  // The record still expects this mid, so the write failed for another reason (SQL: a division
  // by zero that was not the record's check, e.g. in a trigger). Nothing was kept.
  throw new EventSyncError('internal', `writing mutation ${request.mid} failed; send it again`);
}

/**
 * Runs the checked mutation and keeps its answer in the record: an applied write keeps it
 * itself; any other answer (a refusal, an error, a mutator that changed nothing) is kept on its
 * own. Throws `MutationRecordMoved` when the record had moved past `keeping.before`.
 */
async function answerAndKeep(
  storage: EventSyncStorage<BaseDocument>,
  runtime: MutationRuntime,
  caller: MutationCaller,
  request: MutationRequest,
  checked: Checked,
  keeping: Keeping,
): Promise<MutationAnswer> {
  if ('error' in checked) return keepAnswer(runtime, caller, keeping, checked.error);
  let answer: MutationAnswer;
  try {
    answer = await apply(storage, runtime, caller, request, checked, keeping);
  } catch (error) {
    if (error instanceof MutationRecordMoved) throw error;
    answer = failureAnswer(runtime.logger, request, error);
    // The write failed as a whole, so nothing is kept: a retryable failure stays so.
    return isRetryable(answer) ? answer : keepAnswer(runtime, caller, keeping, answer);
  }
  if (keeping.kept) return remember(runtime, caller, keeping.kept, answer);
  // It wrote nothing (the mutator changed nothing), so nothing kept the answer yet.
  return keepAnswer(runtime, caller, keeping, answer);
}

/** Keeps `answer` (one no write kept) in the record, unless it moved past `keeping.before`: then throws `MutationRecordMoved`. */
async function keepAnswer(
  runtime: MutationRuntime,
  caller: MutationCaller,
  keeping: Keeping,
  answer: MutationAnswer,
): Promise<MutationAnswer> {
  const kept: MutationRecord = {
    clientId: keeping.key,
    lastMid: answer.mid,
    outcome: outcomeToKeep(keeping.before, answer),
    updatedAt: Date.now(),
  };
  if (!(await runtime.keepMutationRecord(kept))) throw new MutationRecordMoved(keeping.key);
  return remember(runtime, caller, kept, answer);
}

/**
 * The record as this process knows it (a client id's), unless `mid` is past its next one
 * (another instance may have moved it on); else as committed, and then known.
 */
async function recordFor(
  runtime: MutationRuntime,
  caller: MutationCaller,
  key: string,
  mid: number,
): Promise<MutationRecord | undefined> {
  const cached = caller.record.kind === 'client' ? runtime.known.get(key) : undefined;
  if (cached && mid <= lastMidOf(cached.record) + 1) return cached.record;
  const record = await runtime.mutationRecord(key);
  if (caller.record.kind === 'client') runtime.known.set(key, record);
  return record;
}

/** Notes the record as it is after `answer` (a client id's), for the client's next mutation; returns `answer`. */
function remember(
  runtime: MutationRuntime,
  caller: MutationCaller,
  record: MutationRecord,
  answer: MutationAnswer,
): MutationAnswer {
  if (caller.record.kind === 'client') runtime.known.set(record.clientId, record);
  return answer;
}

/** What a mutation's write keeps: the record `key`, after `before`; `kept` is the record once written. */
interface Keeping {
  key: string;
  before: MutationRecord | undefined;
  kept?: MutationRecord;
}

/** The client's last mutation id: what `welcome` says (0: none). */
export function lastMidOf(record: MutationRecord | undefined): number {
  return record?.lastMid ?? 0;
}

type Checked = { error: MutationAnswer } | { run: Runnable; args: unknown };
type Runnable = NonNullable<ReturnType<typeof mutatorNamed<BaseDocument>>>;

/** The mutator exists, its arguments parse, the principal may write the document. */
async function check(
  runtime: MutationRuntime,
  caller: MutationCaller,
  request: MutationRequest,
): Promise<Checked> {
  const { mid, collection, documentId, name } = request;
  const mutators = Object.hasOwn(runtime.mutators, collection) ? runtime.mutators[collection] : undefined;
  const mutator = mutatorNamed(mutators, name);
  if (!mutator) {
    const text = `no mutator ${JSON.stringify(name)} is defined for ${JSON.stringify(collection)}`;
    return { error: errorAnswer(mid, 'unknown_mutator', text) };
  }
  let args: unknown;
  try {
    args = mutator.args ? mutator.args.parse(request.args) : request.args;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return { error: errorAnswer(mid, 'validation', `the arguments of ${name} were refused: ${why}`) };
  }
  if (!(await runtime.authorize(caller.principal, 'write', collection, documentId))) {
    return { error: errorAnswer(mid, 'forbidden', `you may not write ${collection}/${documentId}`) };
  }
  return { run: mutator, args };
}

/**
 * How far behind its last mid a record still knows which mids were refused: a resend of an older
 * one is answered `duplicate` (handled) without saying how. The SDK resends at most what it had in
 * flight when its connection broke.
 */
export const REMEMBERED_REFUSALS_MIDS = 64;

/** What a record keeps: the answer to its last mid, and the error answers of the mids shortly before it. */
type KeptOutcome = MutationAnswer & { earlier?: MutationAnswer[] };

function outcomeToKeep(record: MutationRecord | undefined, answer: MutationAnswer): JsonObject {
  const { earlier = [], ...last } = (record?.outcome ?? {}) as Partial<KeptOutcome>;
  const errors = record ? [...earlier, last as MutationAnswer] : [];
  const kept = errors.filter(
    (a) => a.type === 'mutation_error' && a.mid > answer.mid - REMEMBERED_REFUSALS_MIDS,
  );
  return (kept.length > 0 ? { ...answer, earlier: kept } : answer) as JsonObject;
}

/** A resend (mid ≤ lastMid) answered from the record, a mid past the next one refused, or `undefined`: run it. */
function answerFromRecord(record: MutationRecord | undefined, mid: number): MutationAnswer | undefined {
  const lastMid = lastMidOf(record);
  if (mid <= lastMid) {
    const { earlier = [], ...last } = record!.outcome as KeptOutcome;
    const stored = mid === lastMid ? (last as MutationAnswer) : earlier.find((a) => a.mid === mid);
    if (stored?.type === 'mutation_error') return stored;
    return { ...(stored ?? { type: 'mutated', mid }), duplicate: true };
  }
  if (mid > lastMid + 1) {
    return errorAnswer(mid, 'out_of_order', `the next mutation id expected is ${lastMid + 1}; send from it`);
  }
  return undefined;
}

/**
 * The options of the mutation's write: its event's actor and metadata, and, with `keeping`, the
 * record the write keeps (its outcome asked for when the write happens, after the mutator ran:
 * `result()` is then its result); `keeping.kept` is set once the event is heard.
 */
function eventOptions(
  caller: MutationCaller,
  request: MutationRequest,
  keeping: Keeping | undefined,
  result: () => unknown,
  onEvent: (event: SyncEvent) => void,
): EventCallOptions {
  const { mid, name } = request;
  const updatedAt = Date.now();
  let outcome: JsonObject | undefined;
  const options: EventCallOptions = {
    clientId: caller.clientId,
    metadata: { mutation: { name, mid } },
    onEvent: (recorded) => {
      onEvent(recorded);
      if (keeping && outcome) {
        // The record as the write kept it: its outcome plus the event's seq and version.
        const kept = { ...outcome, seq: recorded.seq, version: recorded.version };
        keeping.kept = { clientId: keeping.key, lastMid: mid, outcome: kept, updatedAt };
      }
    },
  };
  if (!keeping) return options;
  const answer = (): MutationAnswer => {
    const value = result();
    return value === undefined
      ? { type: 'mutated', mid }
      : { type: 'mutated', mid, result: value as JsonObject };
  };
  options.mutation = {
    clientId: keeping.key,
    mid,
    outcome: () => {
      outcome = outcomeToKeep(keeping.before, answer());
      return outcome;
    },
    updatedAt,
  };
  return options;
}

/** Thrown out of the edit when the mutator called `ctx.delete()`: the delete follows. */
const DELETE = Symbol('delete');

async function apply(
  storage: EventSyncStorage<BaseDocument>,
  runtime: MutationRuntime,
  caller: MutationCaller,
  request: MutationRequest,
  { run, args }: { run: Runnable; args: unknown },
  keeping?: Keeping,
): Promise<MutationAnswer> {
  const { mid, documentId } = request;
  let event: SyncEvent | undefined;
  let deleting = false;
  let result: unknown;
  let ran = false;
  const options = eventOptions(
    caller,
    request,
    keeping,
    () => result,
    (recorded) => {
      event = recorded;
    },
  );
  const ctx: MutationContext = {
    principal: caller.principal,
    clientId: caller.clientId,
    collection: request.collection,
    documentId,
    mid,
    delete: () => {
      deleting = true;
    },
  };
  // The storage may run the edit again on fresher state (a conflict): each run starts afresh.
  const runOn = (draft: BaseDocument) => {
    ran = true;
    deleting = false;
    result = checkedResult(run.run(draft, args, ctx), runtime.maxResultBytes);
  };
  try {
    const written = await storage.findOneAndUpdate(
      documentId,
      (draft) => {
        runOn(draft);
        if (deleting) throw DELETE;
      },
      options,
    );
    return applied(mid, event, written.doc, storage.versionField, result);
  } catch (error) {
    if (error === DELETE) {
      const deleted = await storage.deleteOne(documentId, options);
      return applied(mid, event, deleted, storage.versionField, result);
    }
    if (ran || !run.create || !EventSyncError.is(error, 'not_found')) throw error;
  }
  // Not there, and the mutator may create it: it runs on `{ _id }`, and what it leaves is created.
  const draft: BaseDocument = { _id: documentId };
  runOn(draft);
  if (deleting) return applied(mid, undefined, undefined, storage.versionField, result);
  const created = await storage.findOneAndUpsert(draft, options);
  if (!created.created) {
    throw new EventSyncError('version_conflict', `${request.collection}/${documentId} was created meanwhile`);
  }
  return applied(mid, event, created.doc, storage.versionField, result);
}

function applied(
  mid: number,
  event: SyncEvent | undefined,
  doc: BaseDocument | undefined,
  versionField: string,
  result: unknown,
): MutationAnswer {
  const answer: MutationAnswer = { type: 'mutated', mid };
  if (event) answer.seq = event.seq;
  const version = doc && (doc as unknown as JsonObject)[versionField];
  if (typeof version === 'number') answer.version = version;
  if (result !== undefined) answer.result = result as JsonObject;
  return answer;
}

/** A mutator's result: JSON, at most `maxBytes`; anything else is the mutator's fault (`mutation_failed`). */
function checkedResult(result: unknown, maxBytes: number): unknown {
  if (result === undefined) return undefined;
  if (typeof (result as { then?: unknown })?.then === 'function') {
    throw new Error('a mutator returned a promise: mutators run synchronously (they run again on conflicts)');
  }
  try {
    assertJsonValue(result, '/result');
  } catch (error) {
    // Not the caller's bad input (validation): the mutator's bug.
    throw new Error('a mutator returned something that is not JSON', { cause: error });
  }
  const json = JSON.stringify(result);
  const bytes = new TextEncoder().encode(json).length;
  if (bytes > maxBytes) throw new Error(`a mutator returned ${bytes} bytes of result, over ${maxBytes}`);
  // A copy: the result may be a part of the draft, which ends with the edit.
  return JSON.parse(json);
}

/** What a throw of the mutation becomes: a refusal, the storage's own code, or `mutation_failed` (logged). */
export function failureAnswer(logger: Logger, request: MutationRequest, error: unknown): MutationAnswer {
  const { mid } = request;
  if (error instanceof MutationRefused || EventSyncError.is(error, 'mutation_refused')) {
    const answer = errorAnswer(mid, 'mutation_refused', error.message);
    const reason = (error as Partial<MutationRefused>).reason;
    if (typeof reason === 'string' && REFUSAL_REASON_PATTERN.test(reason)) answer.reason = reason;
    return answer;
  }
  // The storage's refusals (not_found, too_large, validation of the written document, a
  // conflict) say what happened; anything else is a bug of the mutator, and only the log says more.
  if (EventSyncError.is(error)) {
    return errorAnswer(mid, error.code, error.message);
  }
  logger.error(
    { err: error, collection: request.collection, documentId: request.documentId, mutator: request.name },
    'eventsync: a mutator failed',
  );
  return errorAnswer(mid, 'mutation_failed', `the mutator ${request.name} failed`);
}

export function errorAnswer(
  mid: number,
  code: ErrorCode,
  message: string,
): MutationAnswer & { reason?: string } {
  return { type: 'mutation_error', mid, code, message: message.slice(0, MAX_MESSAGE_CHARS) };
}

/** Whether the answer is a failure worth the same mid again: then no record keeps it. */
export function isRetryable(answer: MutationAnswer): boolean {
  return answer.type === 'mutation_error' && ErrorCodes[answer.code].retryable;
}

/** `SyncEngineOptions.mutators`, checked: collection names, mutator names, each a function or `{ run }`. */
export function checkedMutators(mutators: unknown): Record<string, Mutators<BaseDocument>> {
  if (mutators === undefined) return {};
  const fail = (why: string, path: string) => new ValidationError(`SyncEngine.create: ${why}`, path);
  if (!isPlainObject(mutators)) throw fail('mutators must be an object of collections', '/mutators');
  for (const [collection, defined] of Object.entries(mutators)) {
    assertCollectionName(collection);
    if (!isPlainObject(defined))
      throw fail('a collection’s mutators must be an object', `/mutators/${collection}`);
    for (const [name, mutator] of Object.entries(defined)) {
      assertMutatorName(name);
      const run = typeof mutator === 'function' ? mutator : (mutator as { run?: unknown })?.run;
      if (typeof run !== 'function') {
        throw fail(
          'a mutator must be a function or { run, args?, create? }',
          `/mutators/${collection}/${name}`,
        );
      }
    }
  }
  return mutators as Record<string, Mutators<BaseDocument>>;
}
