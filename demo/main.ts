/**
 * The demo page `eventsync serve` serves at `/`: games (name, gold, experience, level) kept live
 * by the client SDK, with an event log, each game's seq and vector clock, the connection state
 * and a WebSocket/SSE switch. The game buttons call the server's mutators (`addGold`, `addXp`,
 * `levelUp`, shared with the server in src/core/demo-games.ts), shown at once as predicted and
 * queued in localStorage while offline; creating and deleting a game go through the REST API.
 * Plain DOM; bundled by scripts/build-demo.ts.
 */
import {
  type CollectionHandle,
  EventSyncClient,
  type JsonValue,
  localStorageStore,
  type SyncEvent,
} from '../src/client.js';
import { DEMO_COLLECTION as COLLECTION, type Game, gameMutators } from '../src/core/demo-games.js';

type Transport = 'websocket' | 'sse';
const MAX_LOG = 200;

// ---- DOM helpers ---------------------------------------------------------------------------------

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element as T;
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value !== undefined) element.setAttribute(name, value);
  }
  element.append(...children);
  return element;
}

const ui = {
  status: byId<HTMLSpanElement>('status'),
  clientId: byId<HTMLElement>('client-id'),
  create: byId<HTMLFormElement>('create'),
  name: byId<HTMLInputElement>('name'),
  notice: byId<HTMLParagraphElement>('notice'),
  games: byId<HTMLDivElement>('games'),
  empty: byId<HTMLParagraphElement>('empty'),
  events: byId<HTMLOListElement>('events'),
  eventCount: byId<HTMLSpanElement>('event-count'),
  pending: byId<HTMLSpanElement>('pending'),
  transports: [...document.querySelectorAll<HTMLButtonElement>('[data-transport]')],
};

// ---- who we are ------------------------------------------------------------------------------------

/** One client id per tab (sessionStorage), kept across reloads and transport switches. */
function tabClientId(): string {
  const key = 'eventsync-demo:clientId';
  let id = sessionStorage.getItem(key);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    id = `web-${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')}`;
    sessionStorage.setItem(key, id);
  }
  return id;
}

function initialTransport(): Transport {
  return new URLSearchParams(location.search).get('transport') === 'sse' ? 'sse' : 'websocket';
}

const clientId = tabClientId();
ui.clientId.textContent = clientId;

// ---- notices ---------------------------------------------------------------------------------------

let noticeTimer: ReturnType<typeof setTimeout> | undefined;
function notice(message: string): void {
  ui.notice.textContent = message;
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    ui.notice.hidden = true;
  }, 6000);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---- writes: REST for create and delete, mutators for the rest ------------------------------------

async function api(method: 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`/api/${COLLECTION}${path}`, {
    method,
    // The demo server takes the token as the actor's name, so events say which tab made them.
    headers: {
      authorization: `Bearer ${clientId}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const answer = (await response.json().catch(() => undefined)) as
    | { error?: { code: string; message: string } }
    | undefined;
  if (!response.ok) {
    throw new Error(
      answer?.error ? `${answer.error.code}: ${answer.error.message}` : `HTTP ${response.status}`,
    );
  }
  return answer;
}

function write(method: 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): void {
  api(method, path, body).catch((error: unknown) => notice(`${method} failed: ${errorMessage(error)}`));
}

ui.create.addEventListener('submit', (submitted) => {
  submitted.preventDefault();
  const name = ui.name.value.trim();
  if (!name) return;
  ui.name.value = '';
  write('POST', '', { name, gold: 0, experience: 0, level: 1 });
});

/** The game buttons: each asks the server to run a mutator (see src/core/demo-games.ts). */
const ACTIONS: Record<string, { label: string; mutator: keyof typeof gameMutators; args?: JsonValue }> = {
  gold: { label: '+50 gold', mutator: 'addGold', args: { amount: 50 } },
  experience: { label: '+100 XP', mutator: 'addXp', args: { amount: 100 } },
  level: { label: 'Level up', mutator: 'levelUp' },
};

/** The client's collection handle (replaced when the transport switches). */
let games: CollectionHandle<Game> | undefined;

/**
 * Runs `action` on game `id`: shown at once (predicted), sent now or when back online. A refusal
 * rolls the prediction back (the SDK does it); the page says why and marks the card.
 */
function mutate(id: string, action: string): void {
  const { mutator, args } = ACTIONS[action]!;
  games?.mutate(id, mutator, args).catch((error: unknown) => {
    notice(`${mutator} refused: ${errorMessage(error)}`);
    const card = cards.get(id);
    if (!card) return;
    card.root.dataset.refused = mutator;
    setTimeout(() => delete card.root.dataset.refused, 3000);
  });
}

// ---- the games -------------------------------------------------------------------------------------

/** A stat as shown (predicted) and as the server last confirmed it (shown only while they differ). */
interface Stat {
  shown: HTMLElement;
  confirmed: HTMLElement;
}

interface Card {
  root: HTMLElement;
  name: HTMLElement;
  gold: Stat;
  experience: Stat;
  level: Stat;
  pending: HTMLElement;
  seq: HTMLElement;
  clock: HTMLElement;
}

const cards = new Map<string, Card>();
/** Names of games seen, so the log can name a game after it is deleted. */
const names = new Map<string, string>();

function stat(label: string, className: string): [HTMLElement, Stat] {
  const shown = h('dd', { class: className });
  const confirmed = h('span', { class: 'confirmed', title: 'confirmed by the server' });
  return [h('div', { class: 'stat' }, h('dt', {}, label), shown, confirmed), { shown, confirmed }];
}

function newCard(id: string): Card {
  const name = h('h3', { class: 'name' });
  const [goldBox, gold] = stat('Gold', 'gold');
  const [experienceBox, experience] = stat('Experience', 'experience');
  const [levelBox, level] = stat('Level', 'level');
  const actions = Object.entries(ACTIONS).map(([key, action]) => {
    const title = `mutate ${action.mutator}${action.args === undefined ? '' : ` ${JSON.stringify(action.args)}`}`;
    const button = h('button', { type: 'button', 'data-action': key, title }, action.label);
    button.addEventListener('click', () => mutate(id, key));
    return button;
  });
  const remove = h('button', { type: 'button', class: 'delete', 'data-action': 'delete' }, 'Delete');
  remove.addEventListener('click', () => write('DELETE', `/${encodeURIComponent(id)}`));
  const seq = h('span', { class: 'seq' });
  const clock = h('span', { class: 'clock' });
  const pending = h('span', { class: 'pending', title: 'mutations the server has not confirmed yet' });
  const root = h(
    'article',
    { class: 'game', 'data-game-id': id },
    h('header', {}, name, h('code', { class: 'doc-id', title: id }, shortId(id)), pending, remove),
    h('dl', { class: 'stats' }, goldBox, experienceBox, levelBox),
    h('div', { class: 'actions' }, ...actions),
    h('footer', { class: 'meta' }, seq, h('span', { class: 'clock-label' }, 'vector clock'), clock),
  );
  return { root, name, gold, experience, level, pending, seq, clock };
}

function shortId(id: string): string {
  return id.length > 10 ? `…${id.slice(-6)}` : id;
}

function setText(element: HTMLElement, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

// ---- the event log ---------------------------------------------------------------------------------

const logged = new Set<string>();
let eventTotal = 0;

function describeValue(value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined';
  return text.length > 72 ? `${text.slice(0, 71)}…` : text;
}

/** The whole document a create adds, without the `_id` the log line already shows. */
function withoutId(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const { _id, ...rest } = value as Record<string, unknown>;
  return rest;
}

const backfilled = new Set<string>();

/**
 * A game seen for the first time (this page opened after it changed): its last few events from
 * `GET /api/games/:id/events`, so the log shows some history. Live events are not logged twice.
 */
function backfill(id: string, seq: number): void {
  if (backfilled.has(id) || seq === 0) return;
  backfilled.add(id);
  const after = Math.max(0, seq - 8);
  fetch(`/api/${COLLECTION}/${encodeURIComponent(id)}/events?after=${after}`)
    .then((response) =>
      response.ok ? (response.json() as Promise<{ events: SyncEvent[] }>) : { events: [] },
    )
    .then(({ events }) => {
      for (const event of events) logEvent(event);
    })
    .catch(() => {});
}

/** The game's name as a create event (whole document at "") or a delete (its metadata) carries it. */
function nameIn(event: SyncEvent): string | undefined {
  const root = event.diff?.jsonPatch.find((op) => op.path === '');
  const whole = root && 'value' in root ? root.value : undefined;
  const deleted = event.metadata?.deletedDocument;
  for (const doc of [whole, deleted]) {
    const name = (doc as { name?: unknown } | undefined)?.name;
    if (typeof name === 'string') return name;
  }
  return undefined;
}

/** `addGold #3`: the mutator and mid an event records (`metadata.mutation`), or nothing. */
function mutationOf(event: SyncEvent): string {
  const mutation = event.metadata?.mutation as { name?: unknown; mid?: unknown } | undefined;
  return typeof mutation?.name === 'string' ? `${mutation.name} #${String(mutation.mid)}` : '';
}

function logEvent(event: SyncEvent): void {
  if (logged.has(event.id)) return;
  logged.add(event.id);
  eventTotal++;
  const ops = event.diff?.jsonPatch ?? [];
  const name = names.get(event.documentId) ?? nameIn(event);
  if (name) names.set(event.documentId, name);
  const diff = h('ul', { class: 'diff' });
  if (ops.length === 0)
    diff.append(
      h('li', { class: 'op-none' }, event.operation === 'delete' ? 'document removed' : 'no change'),
    );
  for (const op of ops) {
    const value =
      'value' in op
        ? ` ${describeValue(op.path === '' ? withoutId(op.value) : op.value)}`
        : 'from' in op
          ? ` from ${op.from}`
          : '';
    diff.append(
      h(
        'li',
        { class: op.path === '/version' ? 'op-version' : '' },
        h('span', { class: `op op-${op.op}` }, op.op),
        ` ${op.path || '/'}${value}`,
      ),
    );
  }
  const item = h(
    'li',
    {
      class: `event ev-${event.operation}`,
      'data-seq': String(event.seq),
      'data-document-id': event.documentId,
    },
    h(
      'div',
      { class: 'event-head' },
      h('span', { class: `badge badge-${event.operation}` }, event.operation),
      h('span', { class: 'event-doc', title: event.documentId }, name ?? shortId(event.documentId)),
      h('span', { class: 'event-seq' }, `seq ${event.seq}`),
      h('span', { class: 'event-mutation', title: 'the mutator that made it' }, mutationOf(event)),
      h('span', { class: 'event-actor', title: 'actor (clientId)' }, event.clientId),
      h('time', { class: 'event-time' }, new Date(event.timestamp).toLocaleTimeString('en-GB')),
    ),
    diff,
  );
  // Newest first, ordered by serverSeq (the database's commit order) whatever order they arrived in.
  const before = [...ui.events.children].find(
    (li) => Number((li as HTMLElement).dataset.serverSeq) < event.serverSeq,
  );
  item.dataset.serverSeq = String(event.serverSeq);
  ui.events.insertBefore(item, before ?? null);
  while (ui.events.children.length > MAX_LOG) ui.events.lastElementChild?.remove();
  ui.eventCount.textContent = `${eventTotal} event${eventTotal === 1 ? '' : 's'}`;
}

// ---- connection state ------------------------------------------------------------------------------

function showState(state: string): void {
  ui.status.dataset.state = state;
  ui.status.textContent = state;
}

function showTransport(transport: Transport): void {
  for (const button of ui.transports) {
    button.setAttribute('aria-pressed', String(button.dataset.transport === transport));
  }
}

// ---- the client ------------------------------------------------------------------------------------

let client: EventSyncClient | undefined;
let generation = 0;

/**
 * (Re)starts the client on `transport`; a previous client is disconnected (its queue saved
 * first, so the next one loads it) and its callbacks ignored. Replicas and the mutation queue
 * live in localStorage under this tab's client id, so a reload, even offline, keeps them.
 */
async function start(transport: Transport): Promise<void> {
  const mine = ++generation;
  const current = () => mine === generation;
  showTransport(transport);
  await client?.disconnect();
  if (!current()) return;
  const next = new EventSyncClient({
    serverUrl: location.origin,
    clientId,
    token: clientId,
    transport,
    persistence: localStorageStore({ prefix: `eventsync-demo:${clientId}` }),
    onState: (state) => current() && showState(state),
    onEvent: (event) => current() && logEvent(event),
    onError: (error) => current() && notice(`${error.code}: ${error.message}`),
  });
  next.mutators(COLLECTION, gameMutators);
  client = next;
  showState(next.state);
  const handle = next.collection<Game>(COLLECTION);
  games = handle;
  handle.on('change', () => current() && render(handle));
  render(handle);
  try {
    await next.connect();
  } catch (error) {
    if (current()) notice(`connect failed: ${errorMessage(error)}`);
  }
}

function render(games: CollectionHandle<Game>): void {
  const ids = [...games.docs.keys()].sort();
  const pending = pendingByGame(games);
  for (const [id, card] of cards) {
    if (!games.docs.has(id)) {
      card.root.remove();
      cards.delete(id);
    }
  }
  let previous: Element | null = null;
  for (const id of ids) {
    const game = games.docs.get(id)!;
    const position = games.positionOf(id);
    names.set(id, game.name);
    let card = cards.get(id);
    if (!card) {
      card = newCard(id);
      cards.set(id, card);
    }
    setText(card.name, game.name);
    renderStats(card, game, games.confirmed.get(id));
    const waiting = pending.get(id) ?? 0;
    setText(card.pending, waiting === 0 ? '' : `pending: ${waiting}`);
    card.pending.hidden = waiting === 0;
    setText(card.seq, `seq ${position?.seq ?? 0}`);
    renderClock(card.clock, position?.vectorClock ?? {});
    backfill(id, position?.seq ?? 0);
    // Keep the cards in id order (ObjectIds: creation order) without moving ones already in place.
    const expected: Element | null = previous ? previous.nextElementSibling : ui.games.firstElementChild;
    if (expected !== card.root) ui.games.insertBefore(card.root, expected);
    previous = card.root;
  }
  ui.empty.hidden = ids.length > 0;
  setText(ui.pending, `pending: ${games.pending.length}`);
  ui.pending.dataset.count = String(games.pending.length);
}

/** How many mutations of each game wait for the server. */
function pendingByGame(games: CollectionHandle<Game>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { documentId } of games.pending) counts.set(documentId, (counts.get(documentId) ?? 0) + 1);
  return counts;
}

const DEFAULTS = { gold: 0, experience: 0, level: 1 };

/** Each stat as predicted, and beside it the confirmed value while they differ. */
function renderStats(card: Card, game: Game, confirmed: Game | undefined): void {
  for (const key of ['gold', 'experience', 'level'] as const) {
    const shown = String(game[key] ?? DEFAULTS[key]);
    const server = confirmed ? String(confirmed[key] ?? DEFAULTS[key]) : '–';
    setText(card[key].shown, shown);
    setText(card[key].confirmed, server === shown ? '' : `confirmed ${server}`);
  }
}

function renderClock(element: HTMLElement, clock: Record<string, number>): void {
  const text = JSON.stringify(clock);
  if (element.dataset.clock === text) return;
  element.dataset.clock = text;
  const entries = Object.entries(clock).sort(([a], [b]) => a.localeCompare(b));
  element.replaceChildren(
    ...(entries.length === 0
      ? [h('span', { class: 'chip empty-chip' }, '{}')]
      : entries.map(([actor, count]) =>
          h('span', { class: `chip${actor === clientId ? ' me' : ''}` }, h('b', {}, actor), ` ${count}`),
        )),
  );
}

for (const button of ui.transports) {
  button.addEventListener('click', () => {
    const transport = button.dataset.transport as Transport;
    if (button.getAttribute('aria-pressed') === 'true') return;
    const url = new URL(location.href);
    url.searchParams.set('transport', transport);
    history.replaceState(null, '', url);
    void start(transport);
  });
}

void start(initialTransport());
