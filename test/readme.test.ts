/**
 * README.md's examples run as written, against the sources, so a stale one fails here (which
 * blocks are examples: `support/readme.ts`). Each is written to a fresh directory under `.tmp/`
 * inside the checkout with its `eventsync` imports pointed at the sources (package.json's exports:
 * `./dist/x.js` becomes `src/x.js`, which tsx and tsc resolve to `src/x.ts`; an import the exports
 * lack fails). The TypeScript ones are type-checked together with the repository's settings, then
 * each runs with tsx and must exit 0 (`runExample`: DATABASE_URL is the run's PostgreSQL, PORT=0).
 * A block that needs a server starts one itself, on 127.0.0.1, and closes it.
 * `test/packed.e2e.test.ts` runs them again against the packed package.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrl } from './support/databases.js';
import { exampleFile, examplesIn, readmeExamples, runExample, typeCheck } from './support/readme.js';

const root = fileURLToPath(new URL('../', import.meta.url));

/** `eventsync` and `eventsync/x` → the relative path of their source from `dir`. */
function importMap(dir: string): Map<string, string> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    exports: Record<string, string | { default: string }>;
  };
  const map = new Map<string, string>();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    const source = /^\.\/dist\/(.+)\.js$/.exec(file)?.[1];
    if (source !== undefined)
      map.set(`eventsync${subpath.slice(1)}`, relative(dir, join(root, 'src', `${source}.js`)));
  }
  return map;
}

function pointImportsAtSources(code: string, map: Map<string, string>): string {
  return code.replace(/(from\s+)'(eventsync(?:\/[^']*)?)'/g, (_all, from: string, name: string) => {
    const target = map.get(name);
    if (target === undefined) throw new Error(`README imports '${name}', which package.json does not export`);
    return `${from}'${target}'`;
  });
}

const examples = readmeExamples();
mkdirSync(join(root, '.tmp'), { recursive: true });
const dir = mkdtempSync(join(root, '.tmp', 'readme-'));
const map = importMap(dir);
const files = examples.map((example, index) => {
  const file = join(dir, exampleFile(example, index));
  // `export {}`: each file a module of its own, so that two examples may both declare `Game`.
  writeFileSync(file, `${pointImportsAtSources(example.code, map)}\nexport {};\n`);
  return file;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('README.md examples, on the sources', () => {
  it('are found, and the blocks marked not run are left out', () => {
    expect(examples.length).toBeGreaterThanOrEqual(5);
    expect(examplesIn('```ts\nrun();\n```\n<!-- not run: a browser -->\n```js\nskip();\n```\n')).toEqual([
      { name: ', line 1', language: 'ts', code: 'run();' },
    ]);
  });

  it('type-check', { timeout: 130_000 }, async () => {
    const config = { extends: '../../tsconfig.json', compilerOptions: { noEmit: true }, include: ['*.ts'] };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config));
    const report = await typeCheck(dir);
    const names = examples.map((example, index) => `${exampleFile(example, index)}: ${example.name}`);
    expect(report && `${report}\n${names.join('\n')}`).toBe('');
  });

  it.each(examples.map((example, index) => [example.name, files[index]!] as const))(
    'run: %s',
    { timeout: 70_000 },
    async (_name, file) => {
      expect(await runExample(file, databaseUrl())).toBe('exit 0');
    },
  );
});
