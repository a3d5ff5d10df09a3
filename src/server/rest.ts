/**
 * The REST transport: documents under `/api/:collection`, their events, and catch-up, on plain
 * `node:http` (a small hand-written router). Every request is authenticated; reads ask
 * `authorize(principal, 'read', …)`, changes `'write'`; lists are scoped to what the principal
 * may read before they are filtered, sorted and paged (src/sync/read-scope.ts). Changes go
 * through the engine's `EventSyncStorage`, recorded with the principal as the acting client, so
 * they reach every subscriber. Errors are `{ error: { code, message } }` with the status of
 * their code. A write answers with the document only when the principal may also read it, else
 * with `{ _id, version }` (and an `If-Match` conflict does not say the current version).
 *
 * | route                              | does                                                      |
 * |------------------------------------|-----------------------------------------------------------|
 * | `POST   /api/:c`                   | create (body: the document) → 201 + document               |
 * | `GET    /api/:c?filter=&sort=&limit=&skip=` | the matching documents the principal may read    |
 * |                                    | (pages bounded in bytes too, `Link: rel="next"`: pages.ts)  |
 * | `GET    /api/:c/:id`               | the document                                               |
 * | `PATCH  /api/:c/:id`               | update operators (`$set`, `$inc`, …) or an RFC 7396 merge patch; `If-Match: <ETag>` |
 * | `DELETE /api/:c/:id`               | delete → the deleted document; `If-Match: <ETag>`        |
 * | `GET    /api/:c/:id/events?after=&limit=` | `{ events }` after a seq                            |
 * | `POST   /api/sync/:c/:id`          | `{ afterSeq } \| { vectorClock }` (+ `clientId`) → `{ snapshot?, events }` |
 * | `POST   /api/:c/:id/mutate/:name`  | run a mutator (body: its args) → `{ mid, seq?, version?, result?, duplicate? }` (mutate.ts) |
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import {
  AlreadyExistsError,
  EventSyncError,
  NotFoundError,
  StaleVersionError,
  ValidationError,
} from '../core/errors.js';
import { assertCollectionName, assertId, newObjectId } from '../core/ids.js';
import type { JsonObject } from '../core/json.js';
import { isPlainObject } from '../core/values.js';
import { Id, Seq, VectorClock } from '../protocol/messages.js';
import { DEFAULT_PATHS } from '../protocol/wire.js';
import type { BaseDocument, UpdateOperators } from '../storage/types.js';
import { MAX_DEPTH } from '../storage/validate.js';
import type { SyncEngine } from '../sync/engine.js';
import { assertRemoteFilter, assertRemoteSort } from '../sync/filter-policy.js';
import { andFilters } from '../sync/read-scope.js';
import type { Principal } from '../sync/types.js';
import { accessProblem, applyCors, assertJsonBody } from './access.js';
import {
  authenticateRequest,
  handleUnder,
  intParam,
  methodNotAllowed,
  mustAuthorize,
  normalizePrefix,
  parseJson,
  principalClientId,
  type RequestHandler,
  readBody,
  sendJson,
} from './http.js';
import { applyMergePatch, assertMergePatch } from './merge-patch.js';
import { mutate } from './mutate.js';
import { documentPage, eventPage, readableFinder, sendPage } from './pages.js';

export interface RestOptions {
  /** Where the routes live. Default `/api`. */
  prefix?: string;
  /** `GET /api/:c` returns at most this many documents when `limit` is not given. Default 100. */
  defaultLimit?: number;
  /** The largest `limit` accepted by `GET /api/:c`. Default 1,000. */
  maxLimit?: number;
}

/** Bodies may nest a little deeper than a stored document (operators add `{ $set: { … } }`). */
const BODY_DEPTH = MAX_DEPTH + 2;
const MAX_EVENTS = 10_000;

const SyncRequest = z.union([
  z.strictObject({ afterSeq: Seq, clientId: Id.optional() }),
  z.strictObject({ vectorClock: VectorClock, clientId: Id.optional() }),
  z.strictObject({ clientId: Id.optional() }),
]);

type Storage = Awaited<ReturnType<SyncEngine['collection']>>;

/** What every route shares: the engine, where the routes live, and the list limits. */
interface RestSettings {
  engine: SyncEngine;
  prefix: string;
  defaultLimit: number;
  maxLimit: number;
}

/** One authenticated request to a route, as its handler is given it. */
interface Call {
  settings: RestSettings;
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  principal: Principal;
  /** The route's `:c`, `:id` and `:name` (`''` when it has none). */
  collection: string;
  id: string;
  name: string;
}

interface Route {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** The segments after the prefix: `:c` and `:id` take any one, others only themselves. */
  path: readonly string[];
  handle(call: Call): Promise<void>;
}

/** One row of the route table (`routes`, below the handlers): `on('GET', ':c/:id', getOne)`. */
const on = (method: Route['method'], path: string, handle: Route['handle']): Route => ({
  method,
  path: path.split('/'),
  handle,
});

export function createRestHandler(engine: SyncEngine, options: RestOptions = {}): RequestHandler {
  const settings: RestSettings = {
    engine,
    prefix: normalizePrefix(options.prefix ?? DEFAULT_PATHS.api),
    defaultLimit: options.defaultLimit ?? 100,
    maxLimit: options.maxLimit ?? 1000,
  };
  return {
    handle: handleUnder(settings.prefix, engine.logger, (req, res, url, segments) =>
      dispatch(settings, req, res, url, segments),
    ),
  };
}

/**
 * Access and CORS first, then the route whose path and method match: a path with no route is
 * 404, one without this method 405, both before credentials are asked for.
 */
async function dispatch(
  settings: RestSettings,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  segments: string[],
): Promise<void> {
  const { engine } = settings;
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  const refused = accessProblem(req, engine.access);
  if (refused) throw new EventSyncError('forbidden', refused);
  if (applyCors(req, res, engine.access, ['GET', 'POST', 'PATCH', 'DELETE'])) return;
  const here = routes.flatMap((r) => {
    const params = matchPath(r.path, segments);
    return params ? [{ route: r, params }] : [];
  });
  if (here.length === 0) throw new EventSyncError('not_found', `no route ${method} ${url.pathname}`);
  const found = here.find(({ route }) => route.method === method);
  const allowed = here.map(({ route }) => route.method);
  if (!found) return methodNotAllowed(res, method, allowed);
  const principal = await authenticateRequest(engine, req, url);
  await found.route.handle({ settings, req, res, url, principal, ...found.params });
}

/** The `:c`, `:id` and `:name` of `segments` when they follow `path`. */
function matchPath(
  path: readonly string[],
  segments: readonly string[],
): { collection: string; id: string; name: string } | undefined {
  if (path.length !== segments.length) return undefined;
  const params = { collection: '', id: '', name: '' };
  for (const [i, part] of path.entries()) {
    const segment = segments[i]!;
    if (part === ':c') params.collection = segment;
    else if (part === ':id') params.id = segment;
    else if (part === ':name') params.name = segment;
    else if (part !== segment) return undefined;
  }
  return params;
}

// ---- the routes ----

async function create(call: Call): Promise<void> {
  const { settings, principal, collection: c } = call;
  const storage = await storageOf(call);
  const doc = await jsonBody(call);
  if (!isPlainObject(doc)) throw new ValidationError('the body of a create is the document: a JSON object');
  // The id is chosen before the write, so `authorize` always sees one.
  const id = doc._id === undefined ? newObjectId() : doc._id;
  assertId(id);
  await mustAuthorize(settings.engine, principal, 'write', c, id);
  const upserted = await storage.findOneAndUpsert({ ...doc, _id: id } as never, {
    clientId: principalClientId(principal),
  });
  if (!upserted.created) throw new AlreadyExistsError(c, id);
  const readable = await settings.engine.authorize(principal, 'read', c, id);
  sendJson(call.res, 201, writeAnswer(storage, upserted.doc, readable), {
    location: `${settings.prefix}/${c}/${encodeURIComponent(id)}`,
    etag: etag(storage, upserted.doc, upserted.incarnation),
  });
}

async function getOne(call: Call): Promise<void> {
  const storage = await storageOf(call);
  assertId(call.id);
  await mustAuthorize(call.settings.engine, call.principal, 'read', call.collection, call.id);
  const entry = await storage.findEntry(call.id);
  if (!entry) throw new NotFoundError(call.collection, call.id);
  sendJson(call.res, 200, entry.doc, { etag: etag(storage, entry.doc, entry.incarnation) });
}

async function list(call: Call): Promise<void> {
  const { settings, url, principal, collection: c } = call;
  const { engine } = settings;
  const { limits } = engine;
  const storage = await storageOf(call);
  const filter = jsonParam(url, 'filter') ?? {};
  assertRemoteFilter(filter, limits);
  const sort = jsonParam(url, 'sort');
  if (sort !== undefined) assertRemoteSort(sort);
  const limit = intParam(url, 'limit', settings.defaultLimit, settings.maxLimit);
  const skip = intParam(url, 'skip', 0);
  await mustAuthorize(engine, principal, 'read', c);
  const readable = (doc: BaseDocument) => engine.authorize(principal, 'read', c, doc._id);
  // Scoped first, then filtered, sorted and paged (see src/sync/read-scope.ts).
  const scope = await engine.readScope(principal, c);
  const options = { sort, skip, limit };
  const page =
    scope === 'per-document'
      ? await documentPage(
          await readableFinder(storage, readable, limits.maxUnscopedListDocuments),
          filter,
          options,
          limits.maxPageBytes,
          () => true,
        )
      : await documentPage(storage, andFilters(scope, filter), options, limits.maxPageBytes, readable);
  sendPage(call.res, page, url, 'skip');
}

async function patch(call: Call): Promise<void> {
  const { storage, expected } = await versionedTarget(call);
  const change = await jsonBody(call);
  if (!isPlainObject(change)) {
    throw new ValidationError('a PATCH body is a JSON object: update operators or a merge patch');
  }
  const keys = Object.keys(change);
  const operators = keys.filter((k) => k.startsWith('$')).length;
  if (operators > 0 && operators < keys.length) {
    throw new ValidationError(
      'a PATCH body is either update operators ({ "$set": … }) or a merge patch, not a mix of both',
    );
  }
  if (operators === 0) assertMergePatch(change);
  const readable = await mayWriteAndRead(call);
  const options = writeOptions(call, expected);
  const result = await hidingVersion(readable, () =>
    operators > 0
      ? storage.updateOne(call.id, change as UpdateOperators, options)
      : storage.findOneAndUpdate(
          call.id,
          (draft) => applyMergePatch(draft as unknown as JsonObject, change),
          options,
        ),
  );
  sendJson(call.res, 200, writeAnswer(storage, result.doc, readable), {
    etag: etag(storage, result.doc, result.incarnation),
  });
}

async function remove(call: Call): Promise<void> {
  const { storage, expected } = await versionedTarget(call);
  const readable = await mayWriteAndRead(call);
  const deleted = await hidingVersion(readable, () =>
    storage.deleteOne(call.id, writeOptions(call, expected)),
  );
  if (!deleted) throw new NotFoundError(call.collection, call.id);
  sendJson(call.res, 200, writeAnswer(storage, deleted, readable));
}

async function events(call: Call): Promise<void> {
  const { settings, url, collection: c, id } = call;
  const { engine } = settings;
  assertCollectionName(c);
  assertId(id);
  const after = intParam(url, 'after', 0);
  const limit = intParam(url, 'limit', 1000, MAX_EVENTS);
  await mustAuthorize(engine, call.principal, 'read', c, id);
  const read = (from: number, count: number) => engine.readEvents(c, id, from, count);
  sendPage(call.res, await eventPage(read, after, limit, engine.limits.maxPageBytes), url, 'after');
}

async function sync(call: Call): Promise<void> {
  const { settings, req, principal, collection: c, id } = call;
  const { engine } = settings;
  assertCollectionName(c);
  assertId(id);
  if (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding']) assertJsonBody(req);
  const text = await readBody(req, engine.limits.maxMessageBytes);
  const parsed = SyncRequest.safeParse(
    text.trim() === '' ? {} : parseJson(text, engine.limits.maxMessageDepth),
  );
  if (!parsed.success) {
    throw new EventSyncError(
      'bad_message',
      'the body is { "afterSeq": n } or { "vectorClock": { … } }, with an optional "clientId"',
    );
  }
  await mustAuthorize(engine, principal, 'read', c, id);
  const request = parsed.data;
  const position =
    'afterSeq' in request
      ? { afterSeq: request.afterSeq }
      : 'vectorClock' in request
        ? { vectorClock: request.vectorClock }
        : undefined;
  // Whose acknowledged positions a position-less sync resumes from: only the principal's own.
  const clientId = request.clientId ?? principalClientId(principal);
  await engine.claimClient(clientId, principal.id);
  sendJson(call.res, 200, await engine.missingEvents(clientId, c, id, position));
}

/** The routes (see the module comment); a path's methods in the order a 405 lists them. */
const routes: readonly Route[] = [
  on('GET', ':c', list),
  on('POST', ':c', create),
  on('GET', ':c/:id', getOne),
  on('PATCH', ':c/:id', patch),
  on('DELETE', ':c/:id', remove),
  on('GET', ':c/:id/events', events),
  on('POST', 'sync/:c/:id', sync),
  on('POST', ':c/:id/mutate/:name', (call) => mutate(call.settings.engine, call, assertJsonBody)),
];

// ---- what the routes share ----

/** The route's collection, by a name a client may use. */
function storageOf(call: Call): Promise<Storage> {
  assertCollectionName(call.collection);
  return call.settings.engine.collection(call.collection);
}

/** The request body as JSON, within the size and depth limits. */
async function jsonBody(call: Call): Promise<unknown> {
  assertJsonBody(call.req);
  return parseJson(await readBody(call.req, call.settings.engine.limits.maxMessageBytes), BODY_DEPTH);
}

/** The document a PATCH or DELETE changes, and the state its `If-Match` expects it in. */
async function versionedTarget(call: Call) {
  const storage = await storageOf(call);
  assertId(call.id);
  return { storage, expected: ifMatch(call.req) };
}

/** Throws `forbidden` unless the principal may write the document; resolves to whether it may read it too. */
async function mayWriteAndRead({ settings, principal, collection, id }: Call): Promise<boolean> {
  await mustAuthorize(settings.engine, principal, 'write', collection, id);
  return settings.engine.authorize(principal, 'read', collection, id);
}

/** A write by the principal (as the acting client), expecting the state `If-Match` named. */
function writeOptions(call: Call, expected: ReturnType<typeof ifMatch>) {
  return {
    clientId: principalClientId(call.principal),
    expectedVersion: expected?.version,
    expectedIncarnation: expected?.incarnation,
  };
}

/** `"<incarnation>-<version>"`: never the same for a document deleted and created again (see `StoredEntry`). */
function etag(storage: Storage, doc: BaseDocument, incarnation: string | undefined): string {
  return `"${incarnation ?? 0}-${String((doc as unknown as JsonObject)[storage.versionField] ?? 0)}"`;
}

/**
 * What a write answers: the document when the principal may read it, else only its id and
 * version (the ETag says the same): may write is not may read.
 */
function writeAnswer(storage: Storage, doc: BaseDocument, mayRead: boolean) {
  return mayRead
    ? doc
    : { _id: doc._id, [storage.versionField]: (doc as unknown as JsonObject)[storage.versionField] };
}

/** A stale `If-Match` names the current version only to one who may read the document (and so GET it). */
async function hidingVersion<R>(readable: boolean, write: () => Promise<R>): Promise<R> {
  try {
    return await write();
  } catch (error) {
    if (readable || !(error instanceof StaleVersionError)) throw error;
    throw new EventSyncError(
      'version_conflict',
      `document ${JSON.stringify(error.id)} is not in the state If-Match names; read it again`,
    );
  }
}

/** `If-Match: "17-3"` (or `W/"17-3"`): the ETag, incarnation and version, the change expects; `*` and absent: any. */
function ifMatch(req: IncomingMessage): { incarnation: string; version: number } | undefined {
  const raw = req.headers['if-match'];
  if (raw === undefined || raw.trim() === '*') return undefined;
  const match = /^\s*(?:W\/)?"(\d{1,19})-(\d{1,15})"\s*$/.exec(raw);
  if (!match) {
    // A bare version ("3") is refused: it would match a document deleted and created again.
    throw new ValidationError(
      'If-Match must be one ETag this server gave, e.g. If-Match: "17-3" (incarnation-version)',
    );
  }
  return { incarnation: match[1]!, version: Number(match[2]) };
}

/** A JSON query parameter (`undefined` when absent); `bad_message` when it is not JSON. */
function jsonParam(url: URL, name: string): unknown {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return undefined;
  return parseJson(raw, BODY_DEPTH, name);
}
