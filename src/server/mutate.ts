/**
 * `POST /api/:collection/:id/mutate/:name`: a client mutation over REST (docs/MUTATIONS.md), for
 * SSE clients and callers without the SDK. The body is the mutator's arguments as JSON (empty:
 * none), always sent as `Content-Type: application/json`. Exactly once by one of:
 *
 * - `Idempotency-Key: <1–128 visible ASCII>`: the key names one request of the principal; sent
 *   again, the stored outcome is answered (same status and body, `Idempotent-Replayed: true`)
 *   without running. Its record is `rest:<principal, URI-encoded>:<key>`, mid 1.
 * - `X-Eventsync-Client-Id` + `X-Eventsync-Mutation-Id` (the SDK's): the client id's own record,
 *   the one its WebSocket mutations use; the id must be the principal's (as `/api/sync` checks).
 *   A resend is answered with `duplicate: true`, as over WebSocket.
 *
 * With neither, it runs once per request. 200: `{ mid, seq?, version?, result?, duplicate? }`
 * (the `mutated` frame without `type`); an error: `{ error: { code, message, reason? } }` with
 * the status of its code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorStatus, ValidationError } from '../core/errors.js';
import { assertCollectionName, assertId, isId } from '../core/ids.js';
import type { SyncEngine } from '../sync/engine.js';
import type { MutationAnswer, MutationCaller } from '../sync/mutations.js';
import type { Principal } from '../sync/types.js';
import { parseJson, principalClientId, readBody, sendJson } from './http.js';

/** What the route gets of its request (a REST `Call`). */
interface MutateCall {
  req: IncomingMessage;
  res: ServerResponse;
  principal: Principal;
  collection: string;
  id: string;
  name: string;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
const MUTATION_ID = /^[1-9][0-9]{0,15}$/;

export async function mutate(
  engine: SyncEngine,
  call: MutateCall,
  assertJsonBody: (req: IncomingMessage) => void,
): Promise<void> {
  const { req, res, principal, collection, id: documentId, name } = call;
  assertCollectionName(collection);
  assertId(documentId);
  // Always JSON, even with no body: a bodiless cross-site POST must not run a mutation either.
  assertJsonBody(req);
  const { caller, mid } = callerOf(req, principal);
  if (caller.record.kind === 'client') await engine.claimClient(caller.clientId, principal.id);
  const text = await readBody(req, engine.limits.maxMessageBytes);
  const args = text.trim() === '' ? undefined : parseJson(text, engine.limits.maxMessageDepth);
  const answer = await engine.mutate(caller, { mid, collection, documentId, name, args });
  sendAnswer(res, answer, caller.record.kind === 'idempotency-key');
}

/** Whose record the request's headers name, and its mutation id. */
function callerOf(req: IncomingMessage, principal: Principal): { caller: MutationCaller; mid: number } {
  const key = header(req, 'idempotency-key');
  const clientId = header(req, 'x-eventsync-client-id');
  const mutationId = header(req, 'x-eventsync-mutation-id');
  if (key !== undefined && (clientId !== undefined || mutationId !== undefined)) {
    throw new ValidationError(
      'send Idempotency-Key or X-Eventsync-Client-Id with X-Eventsync-Mutation-Id, not both',
    );
  }
  if (key !== undefined) {
    if (!IDEMPOTENCY_KEY.test(key))
      throw new ValidationError('Idempotency-Key: 1 to 128 visible ASCII characters');
    const caller: MutationCaller = {
      principal,
      clientId: principalClientId(principal),
      record: { kind: 'idempotency-key', key },
    };
    return { caller, mid: 1 };
  }
  if (clientId === undefined && mutationId === undefined) {
    return {
      caller: { principal, clientId: principalClientId(principal), record: { kind: 'none' } },
      mid: 1,
    };
  }
  if (clientId === undefined || !isId(clientId)) {
    throw new ValidationError(
      'X-Eventsync-Client-Id: a client id (1-128 of A-Z a-z 0-9 _ . : @ -), with X-Eventsync-Mutation-Id',
    );
  }
  const mid = Number(mutationId);
  if (mutationId === undefined || !MUTATION_ID.test(mutationId) || !Number.isSafeInteger(mid)) {
    throw new ValidationError('X-Eventsync-Mutation-Id: the mutation id, a positive safe integer');
  }
  return { caller: { principal, clientId, record: { kind: 'client' } }, mid };
}

/** A header sent once (a repeated one is refused: which would count?). */
function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  if (Array.isArray(value)) throw new ValidationError(`${name} was sent more than once`);
  return value;
}

function sendAnswer(res: ServerResponse, answer: MutationAnswer, byKey: boolean): void {
  if (answer.type === 'mutation_error') {
    const { type: _, mid: __, ...error } = answer;
    sendJson(res, ErrorStatus[answer.code], { error });
    return;
  }
  const { type: _, duplicate, ...applied } = answer;
  // An idempotency key's replay is the first answer again; the SDK's resend says it is one.
  if (byKey) sendJson(res, 200, applied, duplicate ? { 'idempotent-replayed': 'true' } : {});
  else sendJson(res, 200, duplicate ? { ...applied, duplicate } : applied);
}
