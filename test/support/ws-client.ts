/** A protocol-level WebSocket test client: send messages, wait for the ones you expect. */
import WebSocket from 'ws';
import type { ServerMessage } from '../../src/protocol/messages.js';

export class TestClient {
  readonly received: ServerMessage[] = [];
  readonly #ws: WebSocket;
  #waiters: (() => void)[] = [];
  closed: { code: number; reason: string } | undefined;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.on('message', (data) => {
      this.received.push(JSON.parse(data.toString()) as ServerMessage);
      this.#wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.#wake();
    });
  }

  static async connect(url: string, headers: Record<string, string> = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { headers });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new TestClient(ws);
  }

  send(message: unknown): void {
    this.#ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Waits until `predicate` holds for the received messages (or the socket closed), at most `timeoutMs`. */
  async until(predicate: (received: ServerMessage[]) => boolean, timeoutMs = 5000): Promise<ServerMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.received)) {
      if (this.closed) throw new Error(`closed (${this.closed.code} ${this.closed.reason}) while waiting`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; received: ${JSON.stringify(this.received).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received;
  }

  /** Waits for the first message of `type` after the first `from` messages, and returns it. */
  async next<T extends ServerMessage['type']>(
    type: T,
    from = 0,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    await this.until((r) => r.slice(from).some((m) => m.type === type));
    return this.received.slice(from).find((m) => m.type === type) as Extract<ServerMessage, { type: T }>;
  }

  of<T extends ServerMessage['type']>(type: T): Extract<ServerMessage, { type: T }>[] {
    return this.received.filter((m) => m.type === type) as Extract<ServerMessage, { type: T }>[];
  }

  close(): void {
    this.#ws.close();
  }

  terminate(): void {
    this.#ws.terminate();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }
}
