/**
 * The to-do list's mutators: one definition, run by the server (which owns the data) and by each
 * page to predict (`client.mutators`), so a checkbox shows its new state before the server answers.
 */
import { defineMutators } from '../../src/client.js';

export interface Todo {
  _id: string;
  version: number;
  text: string;
  done: boolean;
}

export const todoMutators = defineMutators<Todo>({
  toggle(draft) {
    draft.done = !draft.done;
  },
});
