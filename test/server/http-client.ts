/**
 * Raw HTTP clients for the server tests (node:http, no EventSource, no fetch polyfills): JSON
 * requests, and an SSE reader that parses the stream as the HTML spec says a browser does
 * (fields, comments, the last event id), so a test can reconnect with `Last-Event-ID`.
 */
import { type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, request } from 'node:http';
import type { ServerMessage } from '../../src/protocol/messages.js';

export interface JsonResponse<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  body: T;
  text: string;
}

/** A body given as a value is sent as JSON, and says so (the server takes writes as JSON only). */
const jsonType = (body: unknown): Record<string, string> =>
  body === undefined || typeof body === 'string' || Buffer.isBuffer(body)
    ? {}
    : { 'content-type': 'application/json' };

/** One HTTP request; the body is JSON-encoded (with its Content-Type) unless it is a string or Buffer. */
// biome-ignore lint/suspicious/noExplicitAny: tests read response bodies loosely
export function http<T = any>(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === 'string' || Buffer.isBuffer(options.body)
        ? options.body
        : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, base),
      { method, headers: { ...jsonType(options.body), ...options.headers }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          if (String(res.headers['content-type']).startsWith('application/json') && text !== '') {
            body = JSON.parse(text);
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body as T, text });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export interface SseEvent {
  /** The event type (`message` unless an `event:` field said otherwise). */
  type: string;
  data: string;
  /** The last event id when this event was dispatched (what a browser would resend). */
  lastEventId: string;
  /** Whether this event itself carried an `id:` field. */
  hasId: boolean;
}

/** One SSE connection read with node:http. */
export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** The body of a refused (non-200) response. */
  refusal: string | undefined;
  ended = false;
  /** As a browser keeps it: the last `id:` seen in a dispatched event. */
  lastEventId = '';
  readonly #req: ClientRequest;
  #res: IncomingMessage | undefined;
  #waiters: (() => void)[] = [];
  #buffer = '';
  #data: string[] = [];
  #type = '';
  #idInEvent: string | undefined;

  private constructor(req: ClientRequest) {
    this.#req = req;
  }

  /** Opens the stream; resolves once the response headers (and, when refused, the body) arrived. */
  static open(base: string, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, base), {
        headers: { accept: 'text/event-stream', ...headers },
        agent: false,
      });
      const client = new SseClient(req);
      req.on('response', (res) => {
        client.#res = res;
        client.status = res.statusCode ?? 0;
        client.headers = res.headers;
        res.setEncoding('utf8');
        if (client.status !== 200) {
          let body = '';
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => {
            client.refusal = body;
            client.ended = true;
            resolve(client);
          });
          return;
        }
        res.on('data', (chunk: string) => client.#feed(chunk));
        res.on('end', () => client.#end());
        res.on('close', () => client.#end());
        res.on('error', () => client.#end());
        resolve(client);
      });
      req.on('error', (error) => {
        if (client.#res) client.#end();
        else reject(error);
      });
      req.end();
    });
  }

  /** The frames of default (`message`) events, parsed. */
  get messages(): ServerMessage[] {
    return this.events.filter((e) => e.type === 'message').map((e) => JSON.parse(e.data) as ServerMessage);
  }

  of<T extends ServerMessage['type']>(type: T): Extract<ServerMessage, { type: T }>[] {
    return this.messages.filter((m) => m.type === type) as Extract<ServerMessage, { type: T }>[];
  }

  /** Seqs of the event frames of one document, in arrival order. */
  seqs(documentId: string): number[] {
    return this.of('event')
      .filter((m) => m.event.documentId === documentId)
      .map((m) => m.event.seq);
  }

  async until(predicate: (client: SseClient) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      if (this.ended) throw new Error(`stream ended while waiting; events: ${this.#summary()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; events: ${this.#summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits until the server ends the stream. */
  async closed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the stream did not end; events: ${this.#summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The client's local port (which names the server's side of the connection). */
  get localPort(): number {
    return this.#req.socket?.localPort ?? 0;
  }

  /** Stops reading (the server's send buffer fills up). */
  pause(): void {
    this.#res?.pause();
  }

  resume(): void {
    this.#res?.resume();
  }

  /** Drops the connection abruptly, as a network failure would. */
  destroy(): void {
    this.#req.destroy();
    this.#end();
  }

  #summary(): string {
    return JSON.stringify(this.events.slice(-5)).slice(0, 2000);
  }

  /** The event-stream interpretation (HTML Living Standard, 9.2.6), line by line. */
  #feed(chunk: string): void {
    this.#buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.#buffer);
      if (!match) break;
      const line = this.#buffer.slice(0, match.index);
      this.#buffer = this.#buffer.slice(match.index + match[0].length);
      this.#line(line);
    }
    this.#wake();
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#idInEvent !== undefined) this.lastEventId = this.#idInEvent;
      if (this.#data.length > 0) {
        this.events.push({
          type: this.#type || 'message',
          data: this.#data.join('\n'),
          lastEventId: this.lastEventId,
          hasId: this.#idInEvent !== undefined,
        });
      }
      this.#data = [];
      this.#type = '';
      this.#idInEvent = undefined;
      return;
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1).trimStart());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.#data.push(value);
    else if (field === 'event') this.#type = value;
    else if (field === 'id' && !value.includes('\0')) this.#idInEvent = value;
  }

  #end(): void {
    this.ended = true;
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
