/**
 * A fixed set of documents and MongoDB filters, for checking `find`/`findMany` on every backend
 * against mingo (`new Query(filter).test(doc)`). The documents mix what filters trip over: arrays
 * of scalars and of objects, nested arrays, null vs missing, numbers vs numeric strings, booleans,
 * empty containers, non-ASCII strings, numeric-looking keys. All are valid documents for the storage
 * (no `.` or `$` in keys).
 * Documents carry `_id` and no version field (the storage adds it).
 */

import type { JsonObject } from '../../src/core/json.js';
import type { Filter } from '../../src/storage/types.js';

export const filterDocuments: JsonObject[] = [
  {
    _id: 'd01',
    name: 'alice',
    level: 10,
    gold: 100,
    status: 'active',
    tags: ['red', 'blue'],
    owner: { name: 'ann', age: 31 },
  },
  {
    _id: 'd02',
    name: 'bob',
    level: 3,
    gold: 0,
    status: 'idle',
    tags: ['blue'],
    owner: { name: 'ben', age: 25 },
  },
  {
    _id: 'd03',
    name: 'carol',
    level: 25,
    gold: 2500.5,
    status: 'active',
    tags: [],
    owner: { name: 'cid', age: null },
  },
  { _id: 'd04', name: 'dave', level: '10', gold: -5, status: 'banned', tags: 'red', owner: null },
  { _id: 'd05', name: 'eve', level: null, status: 'active', tags: ['green', 'red', 'red'] },
  { _id: 'd06', name: 'frank', gold: 7, tags: [['red'], 'yellow'], owner: { name: 'fay' } },
  {
    _id: 'd07',
    name: 'gina',
    level: 10.5,
    gold: 1e21,
    status: 'idle',
    owner: { name: 'ann', age: 31, address: { city: 'Oslo' } },
  },
  {
    _id: 'd08',
    name: 'hal',
    level: 0,
    gold: 0.1,
    status: '',
    items: [
      { name: 'sword', qty: 1 },
      { name: 'shield', qty: 2 },
    ],
  },
  { _id: 'd09', name: 'ivy', level: -1, items: [{ name: 'sword', qty: 5 }, { name: 'potion' }] },
  { _id: 'd10', name: 'jon', level: 7, items: [], flags: { admin: true, beta: false } },
  { _id: 'd11', name: 'kim', level: 7, items: [{ name: 'bow', qty: [3, 4] }], flags: { admin: false } },
  { _id: 'd12', name: 'lea', level: 99, items: [[{ name: 'sword', qty: 9 }]], scores: [1, 5, 9] },
  { _id: 'd13', name: 'max', level: 12, scores: [[5, 6], 7], status: 'active' },
  { _id: 'd14', name: 'ned', level: 12, scores: [], status: 'ACTIVE' },
  { _id: 'd15', name: 'Ørjan', level: 8, status: 'active', tags: ['ü', 'é'] },
  { _id: 'd16', name: '😀', level: 8, status: 'idle', tags: ['\uffff'] },
  { _id: 'd17', name: 'quinn', level: true, gold: '100', status: 'active' },
  { _id: 'd18', name: 'rose', level: false, gold: null, status: null },
  { _id: 'd19', name: 'sam', level: 15, owner: { name: ['sam', 'sue'], age: [20, 40] } },
  {
    _id: 'd20',
    name: 'tom',
    level: 15,
    owner: [
      { name: 'tia', age: 18 },
      { name: 'ted', age: 70 },
    ],
  },
  { _id: 'd21', name: 'uma', level: 15, owner: { address: { city: ['Bergen', 'Oslo'] } } },
  { _id: 'd22', name: 'vic', level: 2, ab: 1, a: { b: 2 } },
  { _id: 'd23', name: 'walt', level: 2, a: [{ b: 1 }, { b: [2, 3] }, { c: 4 }] },
  {
    _id: 'd24',
    name: 'xena',
    level: 2,
    a: [[{ b: 5 }]],
    matrix: [
      [1, 2],
      [3, 4],
    ],
  },
  { _id: 'd25', name: 'yuri', level: 1e-7, gold: 3, status: 'idle', tags: ['blue', 'green'] },
  { _id: 'd26', name: 'zoe', level: 40, gold: 40, status: 'active', empty: {} },
  { _id: 'd27', name: 'amy', level: 40, gold: 40, status: 'active', items: { name: 'sword', qty: 1 } },
  { _id: 'd28', name: 'bo"b\\', level: 5, status: "it's", tags: ['a"b', 'c\\d', 'line\nbreak'] },
  { _id: 'd29', name: 'cy', level: 5, '0': 'zero', items: { '0': { qty: 3 } } },
  { _id: 'd30', name: 'di', level: 5, deep: { x: { y: { z: [{ w: 1 }, { w: [2, [3]] }] } } } },
];

export interface FilterCase {
  name: string;
  filter: Filter;
}

export const filterCorpus: FilterCase[] = [
  { name: 'empty filter', filter: {} },
  { name: 'implicit eq string', filter: { status: 'active' } },
  { name: 'implicit eq number', filter: { level: 10 } },
  { name: 'implicit eq numeric string', filter: { level: '10' } },
  { name: 'implicit eq boolean', filter: { level: true } },
  { name: '$eq number matches 10 but not 10.5', filter: { level: { $eq: 10 } } },
  { name: '$eq null (matches missing)', filter: { level: null } },
  { name: '$eq null nested', filter: { 'owner.age': null } },
  { name: '$ne string', filter: { status: { $ne: 'active' } } },
  { name: '$ne null', filter: { gold: { $ne: null } } },
  { name: '$gt number', filter: { level: { $gt: 10 } } },
  { name: '$gte number', filter: { level: { $gte: 10 } } },
  { name: '$lt number', filter: { gold: { $lt: 1 } } },
  { name: '$lte number', filter: { gold: { $lte: 40 } } },
  { name: 'range both ends', filter: { level: { $gt: 2, $lte: 15 } } },
  { name: '$gt string', filter: { name: { $gt: 'm' } } },
  { name: '$lt string vs non-ASCII', filter: { name: { $lt: 'z' } } },
  { name: '$gt string above BMP order', filter: { name: { $gt: '\ue000' } } },
  { name: '$gt on array of scalars', filter: { scores: { $gt: 6 } } },
  { name: '$in scalars', filter: { status: { $in: ['idle', 'banned'] } } },
  { name: '$in mixed types', filter: { level: { $in: [10, '10', true] } } },
  { name: '$in with null', filter: { status: { $in: [null, 'idle'] } } },
  { name: '$in empty', filter: { status: { $in: [] } } },
  { name: '$nin', filter: { status: { $nin: ['active', 'idle'] } } },
  { name: '$exists true', filter: { owner: { $exists: true } } },
  { name: '$exists false', filter: { owner: { $exists: false } } },
  { name: '$exists nested', filter: { 'owner.age': { $exists: true } } },
  { name: 'array contains scalar', filter: { tags: 'red' } },
  { name: 'array equals array', filter: { tags: ['blue'] } },
  { name: 'array of objects by field', filter: { 'items.name': 'sword' } },
  { name: 'array of objects range', filter: { 'items.qty': { $gte: 3 } } },
  { name: 'array of objects nested array values', filter: { 'items.qty': 4 } },
  { name: 'array element by index', filter: { 'items.0.qty': 1 } },
  { name: 'object key that looks like an index', filter: { 'items.0.qty': 3 } },
  { name: 'nested path', filter: { 'owner.name': 'ann' } },
  { name: 'deep nested path', filter: { 'owner.address.city': 'Oslo' } },
  { name: 'nested path through array of objects', filter: { 'owner.age': { $gt: 60 } } },
  { name: 'nested path into object or array of objects', filter: { 'a.b': 1 } },
  { name: 'dotted path through nested arrays', filter: { 'a.b': 5 } },
  { name: 'deep path with arrays', filter: { 'deep.x.y.z.w': 3 } },
  { name: 'object equality', filter: { owner: { name: 'fay' } } },
  { name: 'empty object equality', filter: { empty: {} } },
  { name: '$and', filter: { $and: [{ status: 'active' }, { level: { $gte: 10 } }] } },
  { name: '$or', filter: { $or: [{ status: 'banned' }, { gold: { $gt: 1000 } }] } },
  { name: '$or with missing-field branch', filter: { $or: [{ name: 'bob' }, { gold: null }] } },
  {
    name: 'nested $and/$or',
    filter: { $and: [{ $or: [{ level: 15 }, { level: 40 }] }, { $or: [{ gold: 40 }, { 'owner.age': 70 }] }] },
  },
  { name: 'several fields', filter: { status: 'active', 'owner.name': 'ann' } },
  { name: '_id', filter: { _id: 'd07' } },
  { name: '_id $in with other fields', filter: { _id: { $in: ['d01', 'd02', 'd03'] }, status: 'active' } },
  { name: '$regex', filter: { name: { $regex: '^[a-c]' } } },
  { name: '$size', filter: { tags: { $size: 2 } } },
  { name: '$elemMatch', filter: { items: { $elemMatch: { name: 'sword', qty: { $gt: 1 } } } } },
  { name: '$all', filter: { tags: { $all: ['red', 'blue'] } } },
  { name: '$not', filter: { level: { $not: { $gt: 10 } } } },
  { name: '$nor', filter: { $nor: [{ status: 'active' }, { status: 'idle' }] } },
  { name: 'escaped strings', filter: { tags: 'a"b', name: 'bo"b\\' } },
  { name: 'string with newline', filter: { tags: { $in: ['line\nbreak'] } } },
  { name: 'tiny and huge numbers', filter: { $or: [{ level: 1e-7 }, { gold: { $gte: 1e20 } }] } },
  { name: 'top-level numeric key', filter: { '0': 'zero' } },
];

/** Sorts for `findMany` against mingo: scalars of every type, missing fields, nested paths, arrays, ties. */
export const sortCorpus: Record<string, 1 | -1>[] = [
  { level: 1 },
  { level: -1 },
  { name: 1 },
  { gold: -1, name: 1 },
  { status: 1, level: -1 },
  { 'owner.age': 1 },
  { 'owner.name': -1, _id: 1 },
  { 'owner.address.city': 1 },
  { 'items.0.qty': -1 },
  { tags: 1 },
  { 'items.qty': 1 },
  { missing: -1 },
  { _id: -1 },
];

/** Skip and limit around the sorts: none, a page, a page past ties, past the end. */
export const pageCorpus: { skip?: number; limit?: number }[] = [
  {},
  { limit: 3 },
  { skip: 2, limit: 4 },
  { skip: 25 },
  { skip: 100, limit: 1 },
];

/** Filters the sort cases run with: exact in SQL and not, selective and not. */
export const sortFilterNames = [
  'empty filter',
  'implicit eq string',
  '$gt number',
  '$in mixed types',
  '$ne string',
  'array contains scalar',
  'nested path',
  '$or',
  '$regex',
  '$exists true',
  '_id $in with other fields',
];

/**
 * Documents whose `score` (and `p.q`) holds every scalar type, with ties, missing values and
 * strings whose order differs between UTF-16 code units and code points (U+E000–U+FFFF against
 * characters above U+FFFF, U+10FFFF).
 */
export const mixedDocuments: JsonObject[] = [
  { _id: 'm01', score: 3, p: { q: 'b' } },
  { _id: 'm02', score: -1.5, p: { q: 2 } },
  { _id: 'm03', score: 'apple', p: { q: null } },
  { _id: 'm04', score: null, p: {} },
  { _id: 'm05', p: { q: true } },
  { _id: 'm06', score: true, p: 'flat' },
  { _id: 'm07', score: false, p: { q: 'b' } },
  { _id: 'm08', score: 3, p: { q: 2 } },
  { _id: 'm09', score: '\uffff', p: { q: '\ue000x' } },
  { _id: 'm10', score: '😀', p: { q: '😀' } },
  { _id: 'm11', score: '\u{10ffff}', p: { q: '\u{10ffff}a' } },
  { _id: 'm12', score: '\ue000', p: { q: '\u{10ffff}' } },
  { _id: 'm13', score: '', p: { q: '' } },
  { _id: 'm14', score: 'Apple', p: { q: 'a\u{10000}' } },
  { _id: 'm15', score: 1e21, p: { q: 'a\uffff' } },
  { _id: 'm16', score: 0.1, p: { q: -0.5 } },
  { _id: 'm17', score: 'é', p: { q: false } },
  { _id: 'm18', score: 3, p: { q: 'b' } },
  { _id: 'M19', score: 'apple', p: { q: 2 } },
  { _id: 'm_20', score: -1e-7, p: null },
];

export const mixedSorts: Record<string, 1 | -1>[] = [
  { score: 1 },
  { score: -1 },
  { 'p.q': 1 },
  { 'p.q': -1, score: 1 },
  { score: 1, 'p.q': -1 },
];
