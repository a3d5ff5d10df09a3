/**
 * Edit and diff: what one small edit of a big document costs, from the edit function to a Diff.
 *
 * "ours" is exactly the storage's per-edit work (`runEdit` without its await): a mutative draft,
 * `finishEdit` (one structural compare, the check of the written values, version bumps) and
 * `buildDiff` (JSON Patch + merge patch + MongoDB update).
 * The baseline is the original design's approach: deep copy (`structuredClone`), edit the copy,
 * `fast-json-patch` `compare`. Peers: immer's `produceWithPatches` (autoFreeze off, as a store
 * would run it), and JSON copy + `jsondiffpatch` diff.
 */
import jsonpatch from 'fast-json-patch';
import { enablePatches, Immer } from 'immer';
import { create as createDiffPatcher } from 'jsondiffpatch';
import { create } from 'mutative';
import type { Diff, JsonObject } from '../src/core/json.js';
import { buildDiff } from '../src/storage/diff.js';
import { finishEdit, RECORD_PATHS } from '../src/storage/edit.js';
import {
  type BenchModule,
  type BenchOptions,
  formatBytes,
  formatNumber,
  measure,
  measureOptions,
  type Section,
  type Timing,
  table,
} from './harness.js';

/** The storage's own edit: a mutative draft, then `finishEdit` (checks, versions, ops) and `buildDiff`. */
function editAsTheStorage(doc: JsonObject, recipe: (draft: JsonObject) => void): [JsonObject, Diff] {
  const [result, patches] = create(
    doc as Record<string, unknown>,
    recipe as (d: Record<string, unknown>) => void,
    RECORD_PATHS,
  );
  const version = doc.version as number;
  const target = { versionField: 'version', version, lockedFields: ['_id'] };
  const written = patches.map((patch) => patch.path as (string | number)[]);
  const outcome = finishEdit(doc, result as JsonObject, written, target)!;
  return [outcome.after, buildDiff(doc, outcome.after, outcome.ops, version + 1)];
}

/** Deterministic PRNG (mulberry32), so every run benchmarks the same documents. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ITEMS = ['sword', 'shield', 'potion', 'arrow', 'bow', 'gem', 'scroll', 'key'];

interface Shape {
  label: string;
  players: number;
  log: number;
  /** Players split into this many bucket objects instead of one wide `players` object. */
  buckets?: number;
}

interface Doc {
  doc: JsonObject;
  /** Where each player is: [bucket or 'players', player id]; edited in turn. */
  playerPaths: [string, string][];
}

/** A game state: settings, a `players` object keyed by player id, teams, a board, an event log. */
function gameState(shape: Shape): Doc {
  const rnd = prng(42);
  const int = (n: number) => Math.floor(rnd() * n);
  const player = (i: number): JsonObject => ({
    name: `player-${i}`,
    hp: 50 + int(50),
    gold: int(1000),
    level: 1 + int(30),
    online: rnd() < 0.5,
    pos: { x: int(500), y: int(500) },
    inventory: Array.from({ length: 3 }, () => ({ item: ITEMS[int(ITEMS.length)]!, qty: 1 + int(9) })),
    stats: { kills: int(100), deaths: int(100), assists: int(100) },
  });
  const ids = Array.from({ length: shape.players }, (_, i) => `p${String(i).padStart(5, '0')}`);
  const playerPaths: [string, string][] = [];
  let players: JsonObject;
  if (shape.buckets) {
    players = {};
    ids.forEach((id, i) => {
      const bucket = `b${i % shape.buckets!}`;
      let b = players[bucket] as JsonObject | undefined;
      if (!b) {
        b = {};
        players[bucket] = b;
      }
      b[id] = player(i);
      playerPaths.push([bucket, id]);
    });
  } else {
    players = Object.fromEntries(ids.map((id, i) => [id, player(i)]));
    for (const id of ids) playerPaths.push(['players', id]);
  }
  const doc: JsonObject = {
    _id: '507f1f77bcf86cd799439011',
    version: 1,
    name: 'Friday night match',
    status: 'running',
    createdAt: '2026-01-01T20:00:00.000Z',
    settings: { maxPlayers: shape.players, map: 'forest', rules: { friendlyFire: false, respawnSeconds: 5 } },
    teams: [
      { name: 'red', members: ids.filter((_, i) => i % 2 === 0).slice(0, 50) },
      { name: 'blue', members: ids.filter((_, i) => i % 2 === 1).slice(0, 50) },
    ],
    board: {
      width: 16,
      height: 16,
      tiles: Array.from({ length: 16 }, () => Array.from({ length: 16 }, () => int(4))),
    },
    log: Array.from({ length: shape.log }, (_, i) => ({
      t: 1_700_000_000_000 + i * 1000,
      type: ['join', 'hit', 'loot', 'chat'][int(4)]!,
      actor: ids[int(ids.length)]!,
      msg: `event ${i}`,
    })),
  };
  if (shape.buckets) doc.buckets = players;
  else doc.players = players;
  return { doc, playerPaths };
}

function playerIn(doc: JsonObject, path: [string, string], bucketed: boolean): JsonObject {
  const container = (bucketed ? (doc.buckets as JsonObject)[path[0]] : doc.players) as JsonObject;
  return container[path[1]] as JsonObject;
}

interface Approach {
  name: string;
  /** Returns a function doing one edit of the current document (and moving on to the result). */
  setup(start: Doc, bucketed: boolean): () => void;
}

const immer = new Immer({ autoFreeze: false });
enablePatches();
const differ = createDiffPatcher();

/** The one-field edit every approach performs (plus the version bump every storage does). */
function editOf(bucketed: boolean, path: [string, string]) {
  return (doc: JsonObject): void => {
    const p = playerIn(doc, path, bucketed);
    p.gold = (p.gold as number) + 1;
    doc.version = (doc.version as number) + 1;
  };
}

const BASELINE = 'structuredClone + edit + fast-json-patch compare';
const OURS = 'ours: mutative + finishEdit (compare, checks, versions) + buildDiff';

const approaches: Approach[] = [
  {
    name: OURS,
    setup(start, bucketed) {
      let doc = start.doc;
      let i = 0;
      return () => {
        const path = start.playerPaths[i++ % start.playerPaths.length]!;
        doc = editAsTheStorage(doc, editOf(bucketed, path))[0];
      };
    },
  },
  {
    name: BASELINE,
    setup(start, bucketed) {
      let doc = start.doc;
      let i = 0;
      return () => {
        const path = start.playerPaths[i++ % start.playerPaths.length]!;
        const next = structuredClone(doc);
        editOf(bucketed, path)(next);
        jsonpatch.compare(doc, next);
        doc = next;
      };
    },
  },
  {
    name: 'immer produceWithPatches (autoFreeze off)',
    setup(start, bucketed) {
      let doc = start.doc;
      let i = 0;
      return () => {
        const path = start.playerPaths[i++ % start.playerPaths.length]!;
        const [next] = immer.produceWithPatches(doc, editOf(bucketed, path));
        doc = next;
      };
    },
  },
  {
    name: 'JSON copy + edit + jsondiffpatch diff',
    setup(start, bucketed) {
      let doc = start.doc;
      let i = 0;
      return () => {
        const path = start.playerPaths[i++ % start.playerPaths.length]!;
        const next = JSON.parse(JSON.stringify(doc)) as JsonObject;
        editOf(bucketed, path)(next);
        differ.diff(doc, next);
        doc = next;
      };
    },
  },
];

const shapes: Shape[] = [
  { label: '1 KB', players: 3, log: 2 },
  { label: '100 KB', players: 340, log: 300 },
  { label: '1 MB (one 5,000-key object)', players: 5000, log: 1000 },
  { label: '1 MB, players in 64 buckets', players: 5000, log: 1000, buckets: 64 },
];
const WIDE = shapes[2]!;
const BUCKETED = shapes[3]!;

/** Checks, once per document, that our edit yields the expected Diff (the bench measures real work). */
function verify(start: Doc, bucketed: boolean): void {
  const path = start.playerPaths[0]!;
  const [next, diff] = editAsTheStorage(start.doc, editOf(bucketed, path));
  const dotted = [...(bucketed ? ['buckets', ...path] : path), 'gold'].join('.');
  const gold = (playerIn(start.doc, path, bucketed).gold as number) + 1;
  const set = diff.mongoUpdate?.$set ?? {};
  if (
    Object.keys(set).length !== 2 ||
    set[dotted] !== gold ||
    set.version !== 2 ||
    diff.mongoUpdate?.$unset
  ) {
    throw new Error(
      `unexpected diff ${JSON.stringify(diff.mongoUpdate)}; expected $set of ${dotted} and version`,
    );
  }
  const applied = jsonpatch.applyPatch(
    structuredClone(start.doc),
    structuredClone(diff.jsonPatch) as never,
  ).newDocument;
  if (JSON.stringify(applied) !== JSON.stringify(next))
    throw new Error('jsonPatch does not reproduce the edit');
}

async function run(opts: BenchOptions): Promise<Section> {
  const mopts = measureOptions(opts.quick);
  const rows: string[][] = [];
  let oneMbRatio: number | undefined;
  const oursUs = new Map<string, number>();
  let playerBytes = 0;
  for (const shape of shapes) {
    const start = gameState(shape);
    const bucketed = shape.buckets !== undefined;
    verify(start, bucketed);
    const bytes = JSON.stringify(start.doc).length;
    playerBytes = JSON.stringify(playerIn(start.doc, start.playerPaths[0]!, bucketed)).length;
    const timings = new Map<string, Timing>();
    for (const approach of approaches) {
      opts.progress(`edit-diff: ${shape.label}: ${approach.name}`);
      // A fresh copy per approach, so no approach inherits another's structure sharing.
      const own: Doc = { doc: structuredClone(start.doc), playerPaths: start.playerPaths };
      timings.set(approach.name, measure(approach.setup(own, bucketed), mopts));
      // Let the garbage of one approach not be collected in the next one's samples.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const base = timings.get(BASELINE)!.medianUs;
    for (const approach of approaches) {
      const t = timings.get(approach.name)!;
      const ratio = base / t.medianUs;
      if (approach === approaches[0]) {
        oursUs.set(shape.label, t.medianUs);
        if (shape === WIDE) oneMbRatio = ratio;
      }
      rows.push([
        `${shape.label} (${formatBytes(bytes)})`,
        approach.name,
        formatNumber(t.medianUs),
        `${formatNumber(t.minUs)}–${formatNumber(t.maxUs)}`,
        approach.name === BASELINE ? '1.0×' : `${formatNumber(ratio)}×`,
      ]);
    }
  }
  const met = oneMbRatio !== undefined && oneMbRatio >= 30;
  const markdown = [
    '## Edit and diff (`bench/edit-diff.ts`)',
    '',
    'One edit of one field (`players[id].gold += 1`, plus the version bump every storage does) of a',
    `game-state document: a \`players\` object keyed by id (each player ~${playerBytes} bytes: position,`,
    'inventory, stats), teams, a board and an event log. Each edit starts from the previous',
    "edit's result, cycling through the players. **ours** is the storage's per-edit work:",
    'a mutative draft, `finishEdit` (one structural compare, the check of the written values, the',
    'version bumps) and `buildDiff` (JSON Patch, merge patch and MongoDB update). The baseline is the original design (deep copy, edit,',
    '`fast-json-patch` `compare`); it and jsondiffpatch yield only a patch/delta, immer only',
    'its own patch format.',
    '',
    `µs per edit: median of ${mopts.samples} samples, each a batch sized to take ~${mopts.sampleMs} ms; the range is`,
    'the fastest and slowest sample. "× vs baseline": how many times faster than the baseline.',
    '',
    table(['document', 'approach', 'µs per edit (median)', 'range', '× vs baseline'], rows, [
      'l',
      'l',
      'r',
      'r',
      'r',
    ]),
    '',
    `**Target**: ours ≥ 30× the baseline for the 1 MB document. Measured: ${
      oneMbRatio === undefined ? 'n/a' : `${formatNumber(oneMbRatio)}×`
    }, ${met ? 'met' : '**not met**'}.`,
    '',
    'The cost of a copy-on-write edit is the shallow copy of every object on the edited path, so',
    'it grows with the width of the widest object on it: the 5,000-key `players` object is the',
    `worst case. The same data in 64 bucket objects (second 1 MB row) edits ${formatNumber(
      (oursUs.get(WIDE.label) ?? 0) / (oursUs.get(BUCKETED.label) ?? 1),
    )}× faster still.`,
    'Modelling large collections inside a document as buckets (or arrays) keeps edits cheap.',
  ].join('\n');
  return { markdown };
}

export const editDiff: BenchModule = { name: 'edit-diff', run };
