/**
 * Typed filters, update operators and section paths (issue 19): what compiles and what does not.
 * Checked by `npx tsc --noEmit` (never run): every `// @ts-expect-error` line must be an error,
 * and every other line must compile. One case that compiles and one that does not per rule; the
 * untyped defaults keep accepting everything they accepted before.
 */
import { expectTypeOf } from 'vitest';
import type { Filter as ClientFilter, EventSyncClient } from '../../src/client.js';
import type { JsonObject, JsonValue } from '../../src/core/json.js';
import type { BaseDocument, EventSyncStorage, Filter, Storage, UpdateOperators } from '../../src/index.js';

interface Item {
  name: string;
  qty: number;
  tags: string[];
}

interface Inventory {
  version?: number;
  potions?: number;
  bag?: { coins: number };
}

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  log?: string[];
  items: Item[];
  inventory?: Inventory;
  scores: Record<string, number>;
}

declare const games: Storage<Game>;
declare const recorded: EventSyncStorage<Game>;
declare const id: string;

// --- Update operators -------------------------------------------------------------------------

// Dotted paths are checked against the document: through objects, array indexes and `$[]`.
games.updateOne(id, { $set: { 'inventory.potions': 3, 'items.0.name': 'sword', 'items.$[].qty': 0 } });
// @ts-expect-error no such field
games.updateOne(id, { $set: { 'inventory.nosuch': 1 } });
// @ts-expect-error no such field (issue 19's example)
games.updateOne(id, { $inc: { nosuch: 1 } });
// @ts-expect-error an index, not a key, inside an array
games.updateOne(id, { $set: { 'items.first.name': 'sword' } });

// $set: the value has the type at the path.
games.updateOne(id, { $set: { gold: 5, log: ['a'], 'scores.alice': 3, inventory: { potions: 1 } } });
// @ts-expect-error gold is a number (issue 19's example)
games.updateOne(id, { $set: { gold: 'lots' } });
// @ts-expect-error an element of items is an Item
games.updateOne(id, { $set: { 'items.0': { name: 'sword' } } });

// $unset: any path.
games.updateOne(id, { $unset: { log: '', 'items.0.name': '', 'inventory.bag': 1 } });
// @ts-expect-error no such field
games.updateOne(id, { $unset: { nosuch: '' } });

// $inc and $mul: numeric paths only, with a number.
games.updateOne(id, {
  $inc: { gold: 1, 'items.$[].qty': -1, 'scores.bob': 2 },
  $mul: { 'inventory.potions': 2 },
});
// @ts-expect-error name is a string
games.updateOne(id, { $inc: { name: 1 } });
// @ts-expect-error log is an array
games.updateOne(id, { $mul: { log: 2 } });
// @ts-expect-error $inc takes a number
games.updateOne(id, { $inc: { gold: '1' } });

// $min and $max: comparable paths (numbers, strings, dates), with the value type.
games.updateOne(id, { $min: { gold: 0 }, $max: { name: 'zed', 'items.0.qty': 9 } });
// @ts-expect-error an array is not comparable
games.updateOne(id, { $max: { log: ['a'] } });
// @ts-expect-error gold is a number
games.updateOne(id, { $min: { gold: 'x' } });

// $push, $addToSet, $pull, $pullAll, $pop: array paths only, element type checked.
games.updateOne(id, {
  $push: { log: 'bonus', items: { $each: [{ name: 'axe', qty: 1, tags: [] }], $slice: -10 } },
  $addToSet: { 'items.0.tags': 'sharp' },
});
games.updateOne(id, { $pull: { items: { qty: { $lte: 0 } } }, $pullAll: { log: ['a'] }, $pop: { log: -1 } });
// @ts-expect-error gold is not an array (MongoDB: "$push on a number")
games.updateOne(id, { $push: { gold: 1 } });
// @ts-expect-error log holds strings
games.updateOne(id, { $push: { log: 1 } });
// @ts-expect-error name is not an array
games.updateOne(id, { $addToSet: { name: 'x' } });
// @ts-expect-error the elements of items have no field nosuch
games.updateOne(id, { $pull: { items: { nosuch: 1 } } });
// @ts-expect-error $pop takes 1 or -1
games.updateOne(id, { $pop: { log: 2 } });

// $rename: a path (outside arrays) to a new name.
games.updateOne(id, { $rename: { name: 'title', 'inventory.potions': 'inventory.flasks' } });
// @ts-expect-error the new name is a string
games.updateOne(id, { $rename: { name: 1 } });
// @ts-expect-error MongoDB cannot rename inside array elements
games.updateOne(id, { $rename: { 'items.0.name': 'label' } });

// Only the operators the storage applies.
// @ts-expect-error not an operator eventsync applies
games.updateOne(id, { $currentDate: { gold: true } });

// The same types on EventSyncStorage (and so on engine.collection<T>()).
recorded.updateOne(id, { $inc: { gold: 10 } }, { clientId: 'player-7' });
// @ts-expect-error no such field
recorded.updateOne(id, { $inc: { nosuch: 1 } });

// --- Filters ----------------------------------------------------------------------------------

// Paths: through objects and indexes, and into array elements without an index (MongoDB matches any element).
games.findMany({ 'inventory.potions': 3, 'items.name': 'sword', 'items.0.qty': 1, 'scores.alice': 2 });
// @ts-expect-error no such field (issue 19's example)
games.findMany({ nosuch: 1 });
// @ts-expect-error the elements of items have no field nosuch
games.findMany({ 'items.nosuch': 1 });

// Values: the type at the path, or one element of an array there.
games.findMany({ gold: 5, log: 'bonus', name: /^Dragon/ });
games.findMany({ log: ['a', 'b'] });
// @ts-expect-error gold is a number
games.findMany({ gold: 'x' });

// Query operators, each typed by the path.
games.findMany({
  gold: { $gte: 100, $lt: 200 },
  name: { $in: ['a', 'b'], $regex: '^D', $options: 'i' },
  log: { $size: 2, $all: ['a'], $exists: true },
  items: { $elemMatch: { qty: { $gt: 1 } } },
  'items.qty': { $not: { $gt: 5 } },
});
// @ts-expect-error gold is compared with numbers
games.findMany({ gold: { $gte: 'x' } });
// @ts-expect-error $regex is for strings
games.findMany({ gold: { $regex: 'x' } });
// @ts-expect-error $in takes an array
games.findMany({ gold: { $in: 5 } });
// @ts-expect-error $size is for arrays
games.findMany({ gold: { $size: 1 } });
// @ts-expect-error not a query operator
games.findMany({ gold: { $foo: 1 } });
// @ts-expect-error $elemMatch filters the elements' fields
games.findMany({ items: { $elemMatch: { nosuch: 1 } } });

// $and, $or, $nor: filters of the same document, recursively.
games.findMany({ $or: [{ gold: 1 }, { $and: [{ name: 'x' }, { $nor: [{ log: 'y' }] }] }] });
// @ts-expect-error no such field, two levels down
games.findMany({ $or: [{ $and: [{ nosuch: 1 }] }] });

// Unknown top-level `$` keys are refused ($where runs code: the storage refuses it too).
// @ts-expect-error not a root operator
games.findMany({ $where: 'this.gold > 1' });
// @ts-expect-error not a root operator
games.findMany({ $foo: 1 });

recorded.findMany({ gold: { $gt: 1 } }, { sort: { gold: -1 } });
// @ts-expect-error no such field
recorded.findMany({ nosuch: 1 });

// --- Sections ---------------------------------------------------------------------------------

// Paths only where the document holds an object (not in an array); the draft has its type.
games.updateSection(id, 'inventory', (inventory) => {
  expectTypeOf(inventory).toEqualTypeOf<Inventory>();
  inventory.potions = 3;
});
recorded.updateSection(id, 'inventory.bag', (bag) => {
  expectTypeOf(bag).toEqualTypeOf<{ coins: number }>();
});
// @ts-expect-error no such field (issue 19's example)
games.updateSection(id, 'nosuch', () => {});
// @ts-expect-error gold holds a number, not a section
games.updateSection(id, 'gold', () => {});
// @ts-expect-error log holds an array, not a section
games.updateSection(id, 'log', () => {});
// @ts-expect-error a section is not inside an array
games.updateSection(id, 'items.0', () => {});
games.updateSection(id, 'inventory', (inventory) => {
  // @ts-expect-error the draft is an Inventory
  inventory.nosuch = 1;
  // @ts-expect-error potions is a number
  inventory.potions = 'many';
});
// The section's type may still be stated; the path is checked all the same.
games.updateSection<{ sword?: number }>(id, 'inventory', (s) => {
  s.sword = 1;
});
// @ts-expect-error no such field
games.updateSection<{ sword?: number }>(id, 'nosuch', () => {});

// --- Client collection filters ----------------------------------------------------------------

declare const client: EventSyncClient;
interface Todo {
  _id: string;
  title: string;
  done: boolean;
}
client.collection<Todo>('todos', { done: false, title: { $regex: 'milk' } });
// @ts-expect-error no such field
client.collection<Todo>('todos', { nosuch: 1 });
// @ts-expect-error done is a boolean
client.collection<Todo>('todos', { done: 'no' });
client.collection('todos', { anything: { $gt: 1 } });
expectTypeOf<ClientFilter<Todo>>().toEqualTypeOf<Filter<Todo>>();

// --- Untyped documents: everything that compiled before still compiles ------------------------

expectTypeOf<Filter>().toEqualTypeOf<Record<string, unknown>>();
expectTypeOf<Filter<JsonObject>>().toEqualTypeOf<Record<string, unknown>>();
expectTypeOf<Filter<BaseDocument>>().toEqualTypeOf<Record<string, unknown>>();
expectTypeOf<UpdateOperators>().toEqualTypeOf<Record<string, Record<string, unknown>>>();
expectTypeOf<UpdateOperators<Record<string, unknown>>>().toEqualTypeOf<
  Record<string, Record<string, unknown>>
>();

declare const untyped: Storage<BaseDocument>;
declare const path: string;
untyped.updateOne(id, { $inc: { anything: 1 }, $set: { 'a.b': 'c' }, $currentDate: { at: true } });
untyped.findMany({ anything: { $foo: 1 }, $where: 'x' });
untyped.updateSection(id, path, (section) => {
  expectTypeOf(section).toEqualTypeOf<Record<string, unknown>>();
});
untyped.updateSection<{ potions: number }>(id, 'inventory', (s) => {
  s.potions += 1;
});

// --- Recursive, open and deep types: accepted unchecked below, at a bounded cost ---------------

interface Node {
  _id: string;
  label: string;
  children: Node[];
  parent?: Node;
  meta: JsonValue;
  extra?: unknown;
}
declare const nodes: Storage<Node>;
// Below a member that holds its own type, any path with any value (as in the MongoDB driver).
nodes.updateOne(id, { $set: { 'children.0.children.1.label': 'x', 'parent.anything': 1, 'meta.a.b': [1] } });
nodes.updateOne(id, { $inc: { 'extra.count': 1 } });
nodes.findMany({ 'children.label': 'x', 'meta.deep.path': { $gt: 1 } });
// The rest of the document is still checked.
// @ts-expect-error label is a string
nodes.updateOne(id, { $set: { label: 1 } });
// @ts-expect-error children is not a number
nodes.updateOne(id, { $inc: { children: 1 } });

interface Deep {
  _id: string;
  a: { b: { c: { d: { e: { f: { g: { h: { i: { j: number } } } } } } } } };
}
declare const deep: Storage<Deep>;
// Eight segments are checked; deeper ones are accepted unchecked.
deep.updateOne(id, { $set: { 'a.b.c.d.e.f.g.h': { i: { j: 1 } }, 'a.b.c.d.e.f.g.h.i': 'unchecked' } });
// @ts-expect-error 'a.b.c.d.e.f.g.h' holds an object
deep.updateOne(id, { $set: { 'a.b.c.d.e.f.g.h': 1 } });
// @ts-expect-error 'a.b.c' holds an object
deep.updateOne(id, { $inc: { 'a.b.c': 1 } });
