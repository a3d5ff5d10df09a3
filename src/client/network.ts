/**
 * What the platform says about the network. A browser fires `offline` and `online` (on `window`, or
 * `self` in a worker) and keeps `navigator.onLine`. Offline, the client closes its connections at
 * once and does not retry: an open WebSocket or EventSource may take minutes to notice a dead
 * network, and a browser's offline mode (Chromium's, which Playwright's `setOffline` uses) leaves
 * them open. Mutations made meanwhile wait in the queue. Online again, the client reconnects at once
 * instead of at the end of its backoff delay, and the queue goes out.
 */

export interface NetworkStatus {
  /** `false` while the platform says there is no network. */
  readonly online: boolean;
  /** Calls `changed` at each change; returns a function that stops it. */
  subscribe(changed: (online: boolean) => void): () => void;
}

/** The browser's network status, or `undefined` where there is none (Node: no `navigator.onLine`). */
export function browserNetwork(): NetworkStatus | undefined {
  const g = globalThis as unknown as EventTarget & { navigator?: { onLine?: unknown } };
  if (typeof g.addEventListener !== 'function' || typeof g.navigator?.onLine !== 'boolean') return undefined;
  return {
    get online() {
      return g.navigator?.onLine !== false;
    },
    subscribe(changed) {
      const offline = () => changed(false);
      const online = () => changed(true);
      g.addEventListener('offline', offline);
      g.addEventListener('online', online);
      return () => {
        g.removeEventListener('offline', offline);
        g.removeEventListener('online', online);
      };
    },
  };
}
