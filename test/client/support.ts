/**
 * What the client tests share: a real sync server on loopback (on a backend of `syncBackends`), an
 * EventSource for Node built on fetch, and a WebSocket wrapper that injects faults (duplicated
 * and reordered event frames, sockets destroyed on demand).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import WebSocket from 'ws';
import type {
  EventSourceConstructor,
  EventSourceLike,
  WebSocketConstructor,
  WebSocketLike,
} from '../../src/client.js';
import type { Database } from '../../src/core/collection-backend.js';
import { attach } from '../../src/server/attach.js';
import { SyncEngine, type SyncEngineOptions } from '../../src/sync/engine.js';

export interface TestServer {
  engine: SyncEngine;
  server: Server;
  base: string;
  /** Server-side sockets of the sync transports (WebSocket upgrades, SSE streams), by the client tag in their URL. */
  syncSockets(tag?: string): Duplex[];
  stop(): Promise<void>;
}

/**
 * A server on a new database of `open`'s backend; `stop()` closes the database too. `port`: listen
 * there (a restart on the port a client reconnects to); by default where the OS says.
 */
export async function startServer(
  open: () => Promise<Database>,
  options: Partial<SyncEngineOptions> = {},
  port = 0,
): Promise<TestServer> {
  const db = await open();
  const engine = await SyncEngine.create({ db, ...options });
  const server = createServer();
  const attached = attach(server, engine, { sse: { heartbeatMs: 5_000, lingerMs: 200 } });
  const sockets = new Map<Duplex, string>();
  const tagOf = (req: IncomingMessage) => {
    const url = new URL(req.url ?? '/', 'http://x');
    return url.searchParams.get('tag') ?? url.searchParams.get('clientId') ?? '';
  };
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    sockets.set(socket, tagOf(req));
    socket.once('close', () => sockets.delete(socket));
  });
  // Wrap emit after attach so SSE requests are seen before attach takes them.
  const emit = server.emit;
  server.emit = function (this: Server, event: string | symbol, ...args: unknown[]) {
    if (event === 'request') {
      const req = args[0] as IncomingMessage;
      // SSE streams: the client stream (`/sse?…`) and the per-subscription ones, not the requests that change a stream.
      if (/^\/sse(\/|\?|$)/.test(req.url ?? '') && !req.url?.startsWith('/sse/streams/')) {
        const socket = req.socket as Socket;
        sockets.set(socket, tagOf(req));
        socket.once('close', () => sockets.delete(socket));
      }
    }
    return emit.apply(this, [event, ...args] as Parameters<Server['emit']>);
  } as Server['emit'];
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    engine,
    server,
    base,
    syncSockets: (tag) => [...sockets].filter(([, t]) => tag === undefined || t === tag).map(([s]) => s),
    async stop() {
      await attached.close();
      await engine.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await db.close();
    },
  };
}

/** JSON over fetch: the REST API as a browser would use it. */
export async function rest<T = unknown>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(new URL(path, base), {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Waits until `predicate` holds, checking every few ms; throws with `describe()` on timeout. */
export async function until(
  predicate: () => boolean,
  timeoutMs = 5_000,
  describe: () => string = () => '',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

type AnyListener = (event: never) => void;

/**
 * An EventSource for Node on fetch: enough of the browser's (open, message with lastEventId,
 * named events, error when the stream fails or ends, close()) for the client. Like a browser it
 * cannot see the status of a refused request: it only fires `error`.
 */
export class FetchEventSource implements EventSourceLike {
  static readonly open = new Set<FetchEventSource>();
  readonly #listeners = new Map<string, Set<AnyListener>>();
  readonly #abort = new AbortController();
  #closed = false;

  constructor(readonly url: string) {
    FetchEventSource.open.add(this);
    void this.#run();
  }

  addEventListener(type: string, listener: AnyListener): void {
    const set = this.#listeners.get(type) ?? new Set<AnyListener>();
    this.#listeners.set(type, set);
    set.add(listener);
  }

  close(): void {
    this.#closed = true;
    FetchEventSource.open.delete(this);
    this.#abort.abort();
  }

  /** The connection breaks (the client sees an error, as when the network fails). */
  kill(): void {
    this.#abort.abort();
  }

  protected dispatch(type: string, event: object): void {
    if (this.#closed) return;
    for (const listener of [...(this.#listeners.get(type) ?? [])]) (listener as (e: object) => void)(event);
  }

  async #run(): Promise<void> {
    try {
      const res = await fetch(this.url, {
        headers: { accept: 'text/event-stream' },
        signal: this.#abort.signal,
      });
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        this.dispatch('error', {});
        return;
      }
      this.dispatch('open', {});
      const decoder = new TextDecoder();
      let buffer = '';
      let data: string[] = [];
      let type = '';
      let lastEventId = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop() ?? '';
        for (const line of lines) {
          if (line === '') {
            if (data.length > 0) {
              this.dispatch(type || 'message', { data: data.join('\n'), lastEventId });
            }
            data = [];
            type = '';
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon === -1 ? line : line.slice(0, colon);
          let value = colon === -1 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') data.push(value);
          else if (field === 'event') type = value;
          else if (field === 'id') lastEventId = value;
        }
      }
      this.dispatch('error', {}); // the stream ended: a browser reports an error and would retry
    } catch {
      this.dispatch('error', {});
    }
    FetchEventSource.open.delete(this);
  }
}

/** A FetchEventSource that duplicates and delays `event` frames as `faults` says. */
export function faultyEventSource(faults: Faults): {
  EventSource: EventSourceConstructor;
  sources: Set<FetchEventSource>;
} {
  const sources = new Set<FetchEventSource>();
  class Faulty extends FetchEventSource {
    #held: { event: object; after: number }[] = [];
    #timer: ReturnType<typeof setTimeout> | undefined;
    constructor(url: string) {
      super(url);
      sources.add(this);
    }
    override close(): void {
      sources.delete(this);
      super.close();
    }
    protected override dispatch(type: string, event: object): void {
      if (type !== 'message') {
        this.#releaseAll();
        if (type === 'error') sources.delete(this);
        super.dispatch(type, event);
        return;
      }
      const isEvent = (event as { data: string }).data.startsWith('{"type":"event"');
      if (!isEvent) this.#releaseAll(); // events are reordered among events only (see FaultySocket)
      const due = this.#held.filter((h) => --h.after <= 0);
      this.#held = this.#held.filter((h) => h.after > 0);
      if (isEvent && faults.random() < faults.delay) {
        this.#held.push({ event, after: 1 + Math.floor(faults.random() * 3) });
        this.#timer ??= setTimeout(() => this.#releaseAll(), 5);
      } else {
        super.dispatch(type, event);
        if (isEvent && faults.random() < faults.duplicate) super.dispatch(type, event);
      }
      for (const h of due) super.dispatch('message', h.event);
    }
    #releaseAll(): void {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      const held = this.#held;
      this.#held = [];
      for (const h of held) super.dispatch('message', h.event);
    }
  }
  return { EventSource: Faulty, sources };
}

/** A small seeded PRNG (mulberry32), so fault injection repeats with the property's seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Faults {
  /** Chance that an event frame is delivered twice. */
  duplicate: number;
  /** Chance that an event frame is held back and delivered after later frames. */
  delay: number;
  random: () => number;
}

type Listeners = Map<string, Set<AnyListener>>;

/** Frames, held back (delayed) frames and the socket of one faulty WebSocket. */
export class FaultySocket implements WebSocketLike {
  readonly inner: WebSocket;
  /** Every frame the client sent on this socket. */
  readonly sent: string[] = [];
  readonly #listeners: Listeners = new Map();
  #held: { data: string; after: number }[] = [];
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    url: string,
    readonly faults: Faults,
    readonly sockets: Set<FaultySocket>,
  ) {
    this.inner = new WebSocket(url);
    sockets.add(this);
    this.inner.on('open', () => this.#emit('open', {}));
    this.inner.on('message', (data, isBinary) => this.#receive(isBinary ? data : data.toString()));
    this.inner.on('close', (code, reason) => {
      this.#releaseAll();
      sockets.delete(this);
      this.#emit('close', { code, reason: reason.toString() });
    });
    this.inner.on('error', () => this.#emit('error', {}));
  }

  get readyState(): number {
    return this.inner.readyState;
  }

  send(data: string): void {
    this.sent.push(data);
    this.inner.send(data);
  }

  close(code?: number, reason?: string): void {
    this.inner.close(code, reason);
  }

  /** Destroys the socket without a close frame (the client sees 1006). */
  destroy(): void {
    this.inner.terminate();
  }

  addEventListener(type: string, listener: AnyListener): void {
    const set = this.#listeners.get(type) ?? new Set<AnyListener>();
    this.#listeners.set(type, set);
    set.add(listener);
  }

  #emit(type: string, event: object): void {
    for (const listener of [...(this.#listeners.get(type) ?? [])]) (listener as (e: object) => void)(event);
  }

  #receive(data: unknown): void {
    const isEvent = typeof data === 'string' && data.startsWith('{"type":"event"');
    // Events are reordered among events only: other frames (snapshot, leave, synced) carry no seq
    // the client could order them by, so held events go first (as on a real connection).
    if (!isEvent) this.#releaseAll();
    // Every frame counts down the frames held back before it.
    const due = this.#held.filter((h) => --h.after <= 0);
    this.#held = this.#held.filter((h) => h.after > 0);
    if (isEvent && this.faults.random() < this.faults.delay) {
      this.#held.push({ data, after: 1 + Math.floor(this.faults.random() * 3) });
      this.#flushTimer ??= setTimeout(() => this.#releaseAll(), 5);
    } else {
      this.#emit('message', { data });
      if (isEvent && this.faults.random() < this.faults.duplicate) this.#emit('message', { data });
    }
    for (const h of due) this.#emit('message', { data: h.data });
  }

  #releaseAll(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const held = this.#held;
    this.#held = [];
    for (const h of held) this.#emit('message', { data: h.data });
  }
}

/** A WebSocket constructor that tags its URL (`?tag=`) and injects `faults`. */
export function faultyWebSocket(
  tag: string,
  faults: Faults,
): { WebSocket: WebSocketConstructor; sockets: Set<FaultySocket> } {
  const sockets = new Set<FaultySocket>();
  class Tagged extends FaultySocket {
    constructor(url: string) {
      super(`${url}?tag=${encodeURIComponent(tag)}`, faults, sockets);
    }
  }
  return { WebSocket: Tagged, sockets };
}

/** `ws`'s WebSocket, as the client's option takes it. */
export const NodeWebSocket: WebSocketConstructor = WebSocket;
