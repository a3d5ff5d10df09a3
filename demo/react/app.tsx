/**
 * A shared to-do list on `eventsync/react`: every open page shows the same list, live. The list's
 * title is one document (`useDocument`), the items a collection (`useCollection`); a checkbox
 * runs the server's `toggle` mutator (`useMutation`, predicted at once), new items go through the
 * REST API. `?transport=sse` follows over SSE instead of WebSocket. Built with
 * esbuild (`buildReactExample` in scripts/build-demo.ts); served by `eventsync serve` like the demo.
 */
import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { EventSyncClient } from '../../src/client.js';
import {
  EventSyncProvider,
  useClientState,
  useCollection,
  useDocument,
  useMutation,
} from '../../src/react.js';
import { type Todo, todoMutators } from './todo-mutators.js';

interface List {
  _id: string;
  version: number;
  title: string;
}

const transport = new URLSearchParams(location.search).get('transport') === 'sse' ? 'sse' : 'websocket';
const name = `${transport}-${Math.random().toString(36).slice(2, 8)}`;

/** A REST write as this page's principal (the example server takes any token as a name). */
async function write(method: string, path: string, body: unknown): Promise<void> {
  const res = await fetch(`/api/${path}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${name}` },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} /api/${path}: HTTP ${res.status}`);
}

function Title() {
  const { state } = useDocument<List>('lists', 'main');
  return <h1 id="title">{state?.title ?? 'To do'}</h1>;
}

function Items() {
  const { docs, synced } = useCollection<Todo>('todos');
  const toggle = useMutation('todos', 'toggle');
  return (
    <ul id="items" data-synced={String(synced)}>
      {docs.map((todo) => (
        <li key={todo._id} id={`todo-${todo._id}`} className={todo.done ? 'done' : ''}>
          <input type="checkbox" checked={todo.done} onChange={() => void toggle(todo._id)} />
          <span>{todo.text}</span>
        </li>
      ))}
    </ul>
  );
}

function AddItem() {
  const [text, setText] = useState('');
  const add = () => {
    if (text.trim() === '') return;
    void write('POST', 'todos', { text: text.trim(), done: false });
    setText('');
  };
  return (
    <form
      onSubmit={(event) => {
        event.preventDefault();
        add();
      }}
    >
      <input id="new-text" value={text} onChange={(event) => setText(event.target.value)} />
      <button id="add" type="submit">
        Add
      </button>
    </form>
  );
}

function App() {
  const state = useClientState();
  return (
    <>
      <Title />
      <p id="status" data-state={state}>
        {transport}: {state}
      </p>
      <AddItem />
      <Items />
    </>
  );
}

const client = new EventSyncClient({ serverUrl: location.origin, token: name, transport });
client.mutators('todos', todoMutators);
void client.connect();
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <EventSyncProvider client={client}>
      <App />
    </EventSyncProvider>
  </StrictMode>,
);
