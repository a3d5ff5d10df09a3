/**
 * The storage demo (`npm run example`): a game document on the embedded database (PGlite in
 * ./data, or EVENTSYNC_DATA), edited three ways, with each diff and the change stream printed.
 * Run it twice: the second run reopens the data directory and continues.
 */
import { createStorage } from '../src/index.js';
import { pgliteDatabase } from '../src/pglite.js';

interface Game {
  _id: string;
  version: number;
  name: string;
  gold: number;
  experience: number;
  level: number;
  inventory?: { version?: number; potions?: number };
}

const dataDir = process.env.EVENTSYNC_DATA ?? './data';
const started = performance.now();
const db = await pgliteDatabase({ dataDir });
const games = await createStorage<Game>({ db, collection: 'games' });
console.log(`opened ${dataDir} in ${Math.round(performance.now() - started)} ms`);

const abort = new AbortController();
const changes = games.watch({ signal: abort.signal });
await changes.ready;
const printed = (async () => {
  for await (const change of changes) {
    console.log(`  watch: ${change.operation} ${change.id} v${change.version}`);
  }
})();

const { doc, created } = await games.findOneAndUpsert({
  _id: 'demo-game',
  name: 'Demo',
  gold: 0,
  experience: 0,
  level: 1,
});
console.log(created ? 'created' : 'found', doc);

const gold = await games.findOneAndUpdate(doc._id, (g) => {
  g.gold += 50;
});
console.log('+50 gold  → jsonPatch', JSON.stringify(gold.diff.jsonPatch));

const xp = await games.updateOne(doc._id, { $inc: { experience: 100 } });
console.log('+100 xp   → mongoUpdate', JSON.stringify(xp.diff.mongoUpdate));

const level = await games.updateOneWithPipeline(doc._id, [
  { $set: { level: { $add: [1, { $floor: { $divide: ['$experience', 100] } }] } } },
]);
console.log(
  'level     → mergePatch',
  JSON.stringify(level.diff.mergePatch),
  level.diff.hasChanges ? '' : '(no change)',
);

const potion = await games.updateSection<{ potions?: number }>(doc._id, 'inventory', (inv) => {
  inv.potions = (inv.potions ?? 0) + 1;
});
console.log('+1 potion → document', potion.doc);

console.log(
  'games with gold ≥ 50:',
  (await games.findMany({ gold: { $gte: 50 } }, { projection: { name: 1, gold: 1 } })).length,
);

// Let the last notifications arrive, then stop watching and close.
await new Promise((resolve) => setTimeout(resolve, 100));
abort.abort();
await printed;
await games.close();
await db.close();
