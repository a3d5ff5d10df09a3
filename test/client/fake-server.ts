/**
 * A scripted server for client tests: a fake WebSocket the test plays frame by frame, a fake
 * fetch, and `setUp()`, a client on both with fast timers.
 */
import {
  EventSyncClient,
  type EventSyncClientOptions,
  type FetchLike,
  type SyncEvent,
  type WebSocketLike,
} from '../../src/client.js';
import type { ClientMessage, ServerMessage } from '../../src/protocol/messages.js';

type Listener = (event: never) => void;

/** A WebSocket the test drives: it opens, answers hello with welcome, and records what the client sends. */
export function fakeServer() {
  /** What the next welcomes say of the mutations applied (protocol 2). */
  const state = { lastMid: 0 };
  const sockets: FakeSocket[] = [];
  class FakeSocket implements WebSocketLike {
    readyState = 0;
    readonly sent: ClientMessage[] = [];
    readonly #listeners = new Map<string, Set<Listener>>();
    constructor(readonly url: string) {
      sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.#emit('open', {});
      }, 0);
    }
    addEventListener(type: string, listener: Listener): void {
      const set = this.#listeners.get(type) ?? new Set();
      this.#listeners.set(type, set);
      set.add(listener);
    }
    send(data: string): void {
      const message = JSON.parse(data) as ClientMessage;
      this.sent.push(message);
      if (message.type === 'hello') {
        setTimeout(
          () =>
            this.push({
              type: 'welcome',
              protocol: 2,
              clientId: message.clientId,
              serverTime: 0,
              lastMid: state.lastMid,
            }),
          0,
        );
      }
    }
    close(code = 1000, reason = ''): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.#emit('close', { code, reason }), 0);
    }
    /** The server sends a frame. */
    push(message: ServerMessage): void {
      this.#emit('message', { data: JSON.stringify(message) });
    }
    /** The connection is lost. */
    drop(code = 1006): void {
      this.readyState = 3;
      this.#emit('close', { code, reason: '' });
    }
    subscribes() {
      return this.sent.filter(
        (m): m is Extract<ClientMessage, { type: 'subscribe' }> => m.type === 'subscribe',
      );
    }
    #emit(type: string, event: object): void {
      for (const l of [...(this.#listeners.get(type) ?? [])]) (l as (e: object) => void)(event);
    }
  }
  return { WebSocket: FakeSocket, sockets, state, last: () => sockets[sockets.length - 1]! };
}

export interface FetchCall {
  url: string;
  body: unknown;
  method?: string | undefined;
  headers?: Record<string, string> | undefined;
}

/** An answer with a status other than 200. */
export class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

/** A fetch that records each call and answers it with `answer(call)` (JSON, 200 unless an `HttpAnswer`). */
export function fakeFetch(answer: (call: FetchCall) => unknown) {
  const calls: FetchCall[] = [];
  const fetch: FetchLike = async (url, init) => {
    const call: FetchCall = { url, body: init?.body ? JSON.parse(init.body) : undefined };
    calls.push(call);
    const answered = answer({ ...call, method: init?.method, headers: init?.headers });
    const { status, body } = answered instanceof HttpAnswer ? answered : new HttpAnswer(200, answered);
    const text = JSON.stringify(body);
    return { ok: status < 300, status, text: async () => text };
  };
  return { fetch, calls };
}

/** The clients `setUp` made: a test file's `afterEach` disconnects them (`disconnectAll`). */
export const clients: EventSyncClient[] = [];
export const disconnectAll = async () => {
  await Promise.all(clients.splice(0).map((c) => c.disconnect()));
};

/** A client on a fake server and a fake fetch, with fast timers. */
export function setUp(
  options: Partial<EventSyncClientOptions> = {},
  answer: (call: FetchCall) => unknown = () => ({ events: [] }),
) {
  const server = fakeServer();
  const http = fakeFetch(answer);
  const applied: number[] = [];
  const errors: string[] = [];
  const client = new EventSyncClient({
    serverUrl: 'http://127.0.0.1:9',
    clientId: 'tester',
    WebSocket: server.WebSocket,
    fetch: http.fetch,
    gapTimeoutMs: 20,
    ackDelayMs: 5,
    reconnect: { initialDelayMs: 5, maxDelayMs: 20 },
    onEvent: (e) => applied.push(e.seq),
    onError: (e) => errors.push(e.code),
    ...options,
  });
  clients.push(client);
  return { server, http, client, applied, errors };
}

export const event = (e: SyncEvent): ServerMessage => ({ type: 'event', event: e }) as ServerMessage;
export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
