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
import { accessProblem, applyCors, isJsonContentType } from './access.js';
import {
  authenticateRequest,
  intParam,
  methodNotAllowed,
  mustAuthorize,
  normalizePrefix,
  parseJson,
  type RequestHandler,
  readBody,
  requestUrl,
  segmentsUnder,
  sendError,
  sendJson,
} from './http.js';
import { applyMergePatch, assertMergePatch } from './merge-patch.js';
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

export function createRestHandler(engine: SyncEngine, options: RestOptions = {}): RequestHandler {
  const prefix = normalizePrefix(options.prefix ?? DEFAULT_PATHS.api);
  const defaultLimit = options.defaultLimit ?? 100;
  const maxLimit = options.maxLimit ?? 1000;
  const { limits, logger } = engine;

  const collection = async (name: string): Promise<Storage> => {
    assertCollectionName(name);
    return engine.collection(name);
  };

  const body = async (req: IncomingMessage): Promise<unknown> => {
    assertJsonBody(req);
    const text = await readBody(req, limits.maxMessageBytes);
    return parseJson(text, BODY_DEPTH);
  };

  /** `"<incarnation>-<version>"`: never the same for a document deleted and created again (see `StoredEntry`). */
  const etag = (storage: Storage, doc: BaseDocument, incarnation: string | undefined) =>
    `"${incarnation ?? 0}-${String((doc as unknown as JsonObject)[storage.versionField] ?? 0)}"`;

  /**
   * What a write answers: the document when the principal may read it, else only its id and
   * version (the ETag says the same): may write is not may read.
   */
  const writeAnswer = (storage: Storage, doc: BaseDocument, mayRead: boolean) =>
    mayRead
      ? doc
      : { _id: doc._id, [storage.versionField]: (doc as unknown as JsonObject)[storage.versionField] };
  const mayRead = (p: Principal, c: string, id: string) => engine.authorize(p, 'read', c, id);

  // ---- routes ----

  async function create(req: IncomingMessage, res: ServerResponse, p: Principal, c: string): Promise<void> {
    const storage = await collection(c);
    const doc = await body(req);
    if (!isPlainObject(doc)) throw new ValidationError('the body of a create is the document: a JSON object');
    // The id is chosen before the write, so `authorize` always sees one.
    const id = doc._id === undefined ? newObjectId() : doc._id;
    assertId(id);
    await mustAuthorize(engine, p, 'write', c, id);
    const upserted = await storage.findOneAndUpsert({ ...doc, _id: id } as never, { clientId: p.id });
    if (!upserted.created) throw new AlreadyExistsError(c, id);
    sendJson(res, 201, writeAnswer(storage, upserted.doc, await mayRead(p, c, id)), {
      location: `${prefix}/${c}/${encodeURIComponent(id)}`,
      etag: etag(storage, upserted.doc, upserted.incarnation),
    });
  }

  async function getOne(res: ServerResponse, p: Principal, c: string, id: string): Promise<void> {
    const storage = await collection(c);
    assertId(id);
    await mustAuthorize(engine, p, 'read', c, id);
    const entry = await storage.findEntry(id);
    if (!entry) throw new NotFoundError(c, id);
    sendJson(res, 200, entry.doc, { etag: etag(storage, entry.doc, entry.incarnation) });
  }

  async function getMany(res: ServerResponse, url: URL, p: Principal, c: string): Promise<void> {
    const storage = await collection(c);
    const filter = jsonParam(url, 'filter') ?? {};
    assertRemoteFilter(filter, limits);
    const sort = jsonParam(url, 'sort');
    if (sort !== undefined) assertRemoteSort(sort);
    const limit = intParam(url, 'limit', defaultLimit, maxLimit);
    const skip = intParam(url, 'skip', 0);
    await mustAuthorize(engine, p, 'read', c);
    const readable = (doc: BaseDocument) => mayRead(p, c, doc._id);
    // Scoped first, then filtered, sorted and paged (see src/sync/read-scope.ts).
    const scope = await engine.readScope(p, c);
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
    sendPage(res, page, url, 'skip');
  }

  async function patch(
    req: IncomingMessage,
    res: ServerResponse,
    p: Principal,
    c: string,
    id: string,
  ): Promise<void> {
    const storage = await collection(c);
    assertId(id);
    const expected = ifMatch(req);
    const change = await body(req);
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
    await mustAuthorize(engine, p, 'write', c, id);
    const readable = await mayRead(p, c, id);
    const options = {
      clientId: p.id,
      expectedVersion: expected?.version,
      expectedIncarnation: expected?.incarnation,
    };
    const result = await hidingVersion(readable, () =>
      operators > 0
        ? storage.updateOne(id, change as UpdateOperators, options)
        : storage.findOneAndUpdate(
            id,
            (draft) => applyMergePatch(draft as unknown as JsonObject, change),
            options,
          ),
    );
    sendJson(res, 200, writeAnswer(storage, result.doc, readable), {
      etag: etag(storage, result.doc, result.incarnation),
    });
  }

  async function remove(
    req: IncomingMessage,
    res: ServerResponse,
    p: Principal,
    c: string,
    id: string,
  ): Promise<void> {
    const storage = await collection(c);
    assertId(id);
    const expected = ifMatch(req);
    await mustAuthorize(engine, p, 'write', c, id);
    const readable = await mayRead(p, c, id);
    const deleted = await hidingVersion(readable, () =>
      storage.deleteOne(id, {
        clientId: p.id,
        expectedVersion: expected?.version,
        expectedIncarnation: expected?.incarnation,
      }),
    );
    if (!deleted) throw new NotFoundError(c, id);
    sendJson(res, 200, writeAnswer(storage, deleted, readable));
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

  async function events(res: ServerResponse, url: URL, p: Principal, c: string, id: string): Promise<void> {
    assertCollectionName(c);
    assertId(id);
    const after = intParam(url, 'after', 0);
    const limit = intParam(url, 'limit', 1000, MAX_EVENTS);
    await mustAuthorize(engine, p, 'read', c, id);
    const read = (from: number, count: number) => engine.events.getEvents(c, id, from, count);
    sendPage(res, await eventPage(read, after, limit, limits.maxPageBytes), url, 'after');
  }

  async function sync(
    req: IncomingMessage,
    res: ServerResponse,
    p: Principal,
    c: string,
    id: string,
  ): Promise<void> {
    assertCollectionName(c);
    assertId(id);
    if (Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'])
      assertJsonBody(req);
    const text = await readBody(req, limits.maxMessageBytes);
    const parsed = SyncRequest.safeParse(text.trim() === '' ? {} : parseJson(text, limits.maxMessageDepth));
    if (!parsed.success) {
      throw new EventSyncError(
        'bad_message',
        'the body is { "afterSeq": n } or { "vectorClock": { … } }, with an optional "clientId"',
      );
    }
    await mustAuthorize(engine, p, 'read', c, id);
    const request = parsed.data;
    const position =
      'afterSeq' in request
        ? { afterSeq: request.afterSeq }
        : 'vectorClock' in request
          ? { vectorClock: request.vectorClock }
          : undefined;
    // Whose acknowledged positions a position-less sync resumes from: only the principal's own.
    const clientId = request.clientId ?? p.id;
    await engine.service.claimClient(clientId, p.id);
    sendJson(res, 200, await engine.service.getMissingEvents(clientId, c, id, position));
  }

  // ---- the router ----

  async function route(req: IncomingMessage, res: ServerResponse, url: URL, segments: string[]) {
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const refused = accessProblem(req, engine.access);
    if (refused) throw new EventSyncError('forbidden', refused);
    if (applyCors(req, res, engine.access, ['GET', 'POST', 'PATCH', 'DELETE'])) return;
    const [a = '', b = '', c = ''] = segments;
    const auth = () => authenticateRequest(engine, req, url);
    switch (segments.length) {
      case 1:
        if (method === 'GET') return getMany(res, url, await auth(), a);
        if (method === 'POST') return create(req, res, await auth(), a);
        return methodNotAllowed(res, method, ['GET', 'POST']);
      case 2:
        if (method === 'GET') return getOne(res, await auth(), a, b);
        if (method === 'PATCH') return patch(req, res, await auth(), a, b);
        if (method === 'DELETE') return remove(req, res, await auth(), a, b);
        return methodNotAllowed(res, method, ['GET', 'PATCH', 'DELETE']);
      case 3:
        if (a === 'sync' && method === 'POST') return sync(req, res, await auth(), b, c);
        if (c === 'events') {
          if (method === 'GET') return events(res, url, await auth(), a, b);
          return methodNotAllowed(res, method, ['GET']);
        }
        if (a === 'sync') return methodNotAllowed(res, method, ['POST']);
    }
    throw new EventSyncError('not_found', `no route ${method} ${url.pathname}`);
  }

  return {
    handle(req, res) {
      let url: URL;
      let segments: string[] | undefined;
      try {
        url = requestUrl(req);
        segments = segmentsUnder(url.pathname, prefix);
      } catch (error) {
        if (!(error instanceof EventSyncError)) return false; // not a URL we could read: not ours
        sendError(res, error, logger);
        return true;
      }
      if (!segments) return false;
      route(req, res, url, segments).catch((error: unknown) =>
        sendError(res, error, logger, { method: req.method, path: url.pathname }),
      );
      return true;
    },
  };
}

/**
 * Writes take JSON only: a form or `text/plain` body is what a page on another origin can send
 * without a CORS preflight, so refusing it keeps such pages out even where `Origin` is missing.
 */
function assertJsonBody(req: IncomingMessage): void {
  if (!isJsonContentType(req)) {
    throw new EventSyncError(
      'unsupported_media_type',
      'send the body as JSON with Content-Type: application/json',
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
