/**
 * REST answers bounded in bytes as well as in count: `GET /api/:c` (documents) and
 * `GET /api/:c/:id/events` (events) stop after the item that brings the body to
 * `limits.maxPageBytes` or more, with at least one item so that a page always moves forwards.
 *
 * Where to continue is a `Link: <…>; rel="next"` header (RFC 8288): the same request with `skip`
 * (documents) or `after` (events) moved on, sent when more follows (each read asks for one item
 * more than it uses, to know). The bodies keep their shapes (an array; `{ events }`).
 * The link leaves out `?token=`: a client that authenticates that way adds it again.
 *
 * The database is read in chunks sized from what the page has left, so that a page of large
 * items never reads many more of them than it sends: first at most `FIRST_CHUNK` items, then as
 * many as the remaining bytes hold at the average size so far (plus one).
 */
import type { ServerResponse } from 'node:http';
import { EventSyncError } from '../core/errors.js';
import type { SyncEvent } from '../core/events.js';
import type { JsonObject } from '../core/json.js';
import { findInMemory } from '../storage/mongo.js';
import type { BaseDocument, Filter, FindManyOptions } from '../storage/types.js';

/** Items read first: a page of 100 documents of 10 KB reaches 1 MiB in one read. */
const FIRST_CHUNK = 100;

/** A JSON array built item by item, that knows its size in bytes. */
class ArrayText {
  readonly #parts: string[] = [];
  /** Bytes of `[`, `]` and the commas so far, plus the items. */
  bytes = 2;
  /** Items read (sent or not), and the bytes of the items sent. */
  read = 0;
  #sentBytes = 0;

  add(item: unknown): void {
    const text = JSON.stringify(item);
    const size = Buffer.byteLength(text);
    this.bytes += size + (this.#parts.length > 0 ? 1 : 0);
    this.#sentBytes += size;
    this.#parts.push(text);
  }

  get count(): number {
    return this.#parts.length;
  }

  full(maxBytes: number): boolean {
    return this.#parts.length > 0 && this.bytes >= maxBytes;
  }

  /** How many items to read next, at most `left`. */
  nextChunk(maxBytes: number, left: number): number {
    if (this.#parts.length === 0) return Math.min(left, FIRST_CHUNK);
    const average = this.#sentBytes / this.#parts.length;
    return Math.max(1, Math.min(left, Math.ceil((maxBytes - this.bytes) / Math.max(1, average)) + 1));
  }

  text(): string {
    return `[${this.#parts.join(',')}]`;
  }
}

export interface Page {
  /** The body's JSON text. */
  body: string;
  /** Where the next page starts (`skip` for documents, `after` for events), when more follows. */
  next?: number;
}

/** What `getMany` reads through: `EventSyncStorage.findMany`, or `readableFinder`. */
export interface Finder {
  findMany(filter: Filter, options: FindManyOptions): Promise<BaseDocument[]>;
}

/**
 * The documents of the collection that `readable` admits, filtered, sorted and paged in memory:
 * how a list is scoped when only `authorize` knows what the principal may read (no
 * `authorizeQuery`), so that the client's filter, sort and skip never see another document. It
 * reads the whole collection and asks `readable` of each document, on every list: more than
 * `max` documents is `too_large`, which says only how large the collection is.
 */
export async function readableFinder(
  storage: Finder,
  readable: (doc: BaseDocument) => boolean | Promise<boolean>,
  max: number,
): Promise<Finder> {
  const all = await storage.findMany({}, { limit: max + 1 });
  if (all.length > max) {
    throw new EventSyncError(
      'too_large',
      `this collection holds more than ${max} documents, too many to list without authorizeQuery: ` +
        'give SyncEngine.create an authorizeQuery (or raise limits.maxUnscopedListDocuments)',
    );
  }
  const admitted: JsonObject[] = [];
  for (const doc of all) if (await readable(doc)) admitted.push(doc as unknown as JsonObject);
  return {
    findMany: async (filter, options) => findInMemory(admitted, filter, options) as unknown as BaseDocument[],
  };
}

/**
 * The documents of `findMany(filter, { sort, skip, limit })` that `readable` lets through, up to
 * `maxBytes`. `skip` and `limit` count in the database (documents left out count too), so
 * `next` is `skip` plus every document read.
 */
export async function documentPage(
  storage: Finder,
  filter: Filter,
  options: { sort?: Record<string, 1 | -1>; skip: number; limit: number },
  maxBytes: number,
  readable: (doc: BaseDocument) => boolean | Promise<boolean>,
): Promise<Page> {
  const page = new ArrayText();
  const { sort, skip, limit } = options;
  if (limit === 0) return { body: page.text() };
  for (;;) {
    const size = page.nextChunk(maxBytes, limit - page.read);
    // One more than used: whether anything follows, so that the last page has no next link.
    const docs = await storage.findMany(filter, {
      ...(sort ? { sort } : {}),
      skip: skip + page.read,
      limit: size + 1,
    });
    for (let i = 0; i < Math.min(size, docs.length); i++) {
      page.read++;
      if (await readable(docs[i]!)) page.add(docs[i]);
      if (page.full(maxBytes)) return finish(page.text(), i + 1 < docs.length, skip + page.read);
    }
    if (docs.length <= size || page.read >= limit) {
      return finish(page.text(), docs.length > size, skip + page.read);
    }
  }
}

/** Events after `after`, up to `limit` and `maxBytes`, as `{ "events": [...] }`; `next` is the last seq sent. */
export async function eventPage(
  read: (after: number, limit: number) => Promise<SyncEvent[]>,
  after: number,
  limit: number,
  maxBytes: number,
): Promise<Page> {
  const page = new ArrayText();
  let last = after;
  const body = () => `{"events":${page.text()}}`;
  if (limit === 0) return { body: body() };
  for (;;) {
    const size = page.nextChunk(maxBytes, limit - page.read);
    const events = await read(last, size + 1); // one more: see documentPage
    for (let i = 0; i < Math.min(size, events.length); i++) {
      page.read++;
      page.add(events[i]);
      last = events[i]!.seq;
      if (page.full(maxBytes)) return finish(body(), i + 1 < events.length, last);
    }
    if (events.length <= size || page.read >= limit) return finish(body(), events.length > size, last);
  }
}

function finish(body: string, more: boolean, next: number): Page {
  return more ? { body, next } : { body };
}

/** The request's path and query with `name` set to `value` and the credentials left out. */
export function nextLink(url: URL, name: string, value: number): string {
  const params = new URLSearchParams(url.searchParams);
  params.delete('token');
  params.set(name, String(value));
  return `<${url.pathname}?${params.toString()}>; rel="next"`;
}

/** Answers 200 with a JSON text made already (`sendJson` would stringify it again). */
export function sendPage(res: ServerResponse, page: Page, url: URL, param: string): void {
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(page.body),
    'cache-control': 'no-store',
    ...(page.next === undefined ? {} : { link: nextLink(url, param, page.next) }),
  });
  res.end(page.body);
}
