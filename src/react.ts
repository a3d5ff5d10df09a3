/**
 * `eventsync/react`: React bindings for `eventsync/client`. A provider hands the client down;
 * hooks follow documents and collections through `useSyncExternalStore`, so a component renders
 * each change once, and concurrent rendering never tears. React is an optional peer dependency:
 * `eventsync/client` does not import it.
 *
 * Handles are shared: every component that uses the same document (or the same collection and
 * filter) of one client uses one handle, opened by the first and closed once the last unmounts.
 * Code that also holds such a handle itself should not rely on it after that.
 */
import {
  createContext,
  createElement,
  type ReactNode,
  useCallback,
  useContext,
  useMemo,
  useSyncExternalStore,
} from 'react';
import type { EventSyncClient } from './client/client.js';
import type { EventSyncClientError } from './client/errors.js';
import type { CollectionHandle, DocumentHandle } from './client/handles.js';
import type { MutationAnswer } from './client/mutations.js';
import type { ConnectionState } from './client/state.js';
import type { JsonObject, JsonValue } from './core/json.js';
import type { Filter } from './core/query.js';

const ClientContext = createContext<EventSyncClient | null>(null);

/** Makes `client` the one the hooks below use, for every component under it. */
export function EventSyncProvider(props: { client: EventSyncClient; children?: ReactNode }): ReactNode {
  return createElement(ClientContext.Provider, { value: props.client }, props.children);
}

/** The client of the nearest `EventSyncProvider`. */
export function useEventSyncClient(): EventSyncClient {
  const client = useContext(ClientContext);
  if (!client) {
    throw new Error('eventsync/react: this hook needs an <EventSyncProvider client={…}> above the component');
  }
  return client;
}

/** What `useDocument` renders from. */
export interface DocumentView<T> {
  /** The document, or `null` (not created yet, deleted, or not loaded yet). */
  state: T | null;
  seq: number;
  synced: boolean;
  error: EventSyncClientError | undefined;
  /** The shared handle (for `whenSynced`, positions, and so on). */
  handle: DocumentHandle<T>;
}

/** What `useCollection` renders from. */
export interface CollectionView<T> {
  /** The matching documents, in `_id` order. */
  docs: T[];
  synced: boolean;
  error: EventSyncClientError | undefined;
  handle: CollectionHandle<T>;
}

/** Follows one document; re-renders on every change of it. */
export function useDocument<T extends object = JsonObject>(
  collection: string,
  documentId: string,
): DocumentView<T> {
  const client = useEventSyncClient();
  const store = useMemo(
    () =>
      sharedStore(
        client,
        `d:${collection}/${documentId}`,
        () => client.document<T>(collection, documentId),
        (handle) => ({
          state: handle.state,
          seq: handle.seq,
          synced: handle.synced,
          error: handle.error,
          handle,
        }),
      ),
    [client, collection, documentId],
  );
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** Follows the documents of a collection that match `filter` (compared by its JSON, so an inline literal is fine). */
export function useCollection<T extends object = JsonObject>(
  collection: string,
  filter?: Filter<T>,
): CollectionView<T> {
  const client = useEventSyncClient();
  const filterKey = JSON.stringify(filter ?? {});
  const store = useMemo(
    () =>
      sharedStore(
        client,
        `c:${collection}?${filterKey}`,
        () => client.collection<T>(collection, JSON.parse(filterKey) as Filter<T>),
        (handle) => ({
          docs: [...handle.docs.entries()]
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([, doc]) => doc),
          synced: handle.synced,
          error: handle.error,
          handle,
        }),
      ),
    [client, collection, filterKey],
  );
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** The client's connection state (`idle`, `connecting`, `connected`, `reconnecting`, …). */
export function useClientState(): ConnectionState {
  const client = useEventSyncClient();
  const subscribe = useMemo(() => (onChange: () => void) => client.onStateChange(onChange), [client]);
  return useSyncExternalStore(
    subscribe,
    () => client.state,
    () => client.state,
  );
}

/**
 * The server's mutator `name` of `collection` as a function of the document and its arguments
 * (the same function across renders): `mutate(documentId, args)` resolves with the server's
 * answer or rejects with its refusal, and every hook that follows the document shows the
 * prediction at once (register the mutators with `client.mutators` to predict).
 */
export function useMutation<Args extends JsonValue | undefined = JsonValue | undefined>(
  collection: string,
  name: string,
): (documentId: string, args?: Args) => Promise<MutationAnswer> {
  const client = useEventSyncClient();
  return useCallback(
    (documentId: string, args?: Args) => client.mutate(collection, documentId, name, args),
    [client, collection, name],
  );
}

// ---- shared handles ----------------------------------------------------------------------------

/** What the hooks need of a handle. */
interface Followed {
  on(type: 'change' | 'synced', listener: () => void): () => void;
  close(): void;
}

interface Shared<H> {
  handle: H;
  users: number;
}

const sharedByClient = new WeakMap<EventSyncClient, Map<string, Shared<Followed>>>();

/** A handle that nobody subscribed to within this time (a render React threw away) is closed. */
const UNUSED_CLOSE_MS = 1000;

/**
 * A `useSyncExternalStore` store over the handle `key` of `client`: opened by `open` on first
 * use, its view (`view`) recomputed on each change, so `getSnapshot` returns the same object
 * until something changed, and closed when its last subscriber leaves.
 */
function sharedStore<H extends Followed, V>(
  client: EventSyncClient,
  key: string,
  open: () => H,
  view: (handle: H) => V,
): { subscribe(onChange: () => void): () => void; getSnapshot(): V } {
  const table = sharedByClient.get(client) ?? new Map<string, Shared<Followed>>();
  sharedByClient.set(client, table);
  const acquire = (): Shared<H> => {
    let shared = table.get(key) as Shared<H> | undefined;
    if (!shared) {
      shared = { handle: open(), users: 0 };
      table.set(key, shared);
      setTimeout(() => releaseIfUnused(table, key, shared!), UNUSED_CLOSE_MS);
    }
    return shared;
  };
  let snapshot: V | undefined;
  return {
    getSnapshot() {
      if (snapshot === undefined) snapshot = view(acquire().handle);
      return snapshot;
    },
    subscribe(onChange) {
      const shared = acquire();
      shared.users++;
      const changed = () => {
        snapshot = view(shared.handle);
        onChange();
      };
      const stops = [shared.handle.on('change', changed), shared.handle.on('synced', changed)];
      changed(); // what happened between the render and this subscription
      return () => {
        for (const stop of stops) stop();
        shared.users--;
        // Not at once: React's StrictMode unmounts and mounts again at once.
        setTimeout(() => releaseIfUnused(table, key, shared), 0);
      };
    },
  };
}

function releaseIfUnused(table: Map<string, Shared<Followed>>, key: string, shared: Shared<Followed>): void {
  if (shared.users > 0 || table.get(key) !== shared) return;
  table.delete(key);
  shared.handle.close();
}
