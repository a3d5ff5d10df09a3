/**
 * README.md's examples run as written, so a stale one fails here. Every ```ts and ```js block is
 * an example, unless the line right before it is an HTML comment `<!-- not run: why -->` (browser
 * code, say). Each is written to a file in a fresh directory under `.tmp/` inside the checkout, with
 * its `eventsync` imports pointed at the sources (package.json's exports: `./dist/x.js` becomes
 * `src/x.js`, which tsx and tsc resolve to `src/x.ts`; an import the exports lack fails), and:
 * - the TypeScript ones are type-checked together (tsc with the repository's settings);
 * - each is run with tsx in an empty working directory of its own (so `./data` lands there),
 *   with `DATABASE_URL` the run's PostgreSQL and `PORT=0`, and must exit 0 within RUN_MS.
 * A block that needs a server starts one itself, on 127.0.0.1, and closes it.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { databaseUrl } from './support/databases.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const RUN_MS = 60_000;
const TYPECHECK_MS = 120_000;

interface Block {
  /** `Quick start, line 42`: the heading above it and the line of its opening fence. */
  name: string;
  language: 'ts' | 'js';
  code: string;
}

const LANGUAGES: Record<string, Block['language']> = {
  ts: 'ts',
  typescript: 'ts',
  js: 'js',
  javascript: 'js',
};

/** The ts/js blocks of `markdown` that are not marked `<!-- not run: … -->`. */
function runnableBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const blocks: Block[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '');
    const fence = /^```(\S*)/.exec(line);
    if (!fence) continue;
    const end = lines.indexOf('```', i + 1);
    if (end === -1) throw new Error(`README.md line ${i + 1}: a code block that never closes`);
    const language = LANGUAGES[fence[1]!];
    const marked = /^<!-- not run: .+ -->$/.test(lines[i - 1] ?? '');
    if (language && !marked) {
      blocks.push({ name: `${heading}, line ${i + 1}`, language, code: lines.slice(i + 1, end).join('\n') });
    }
    i = end;
  }
  return blocks;
}

/** `eventsync` and `eventsync/x` → the relative path of their source from `dir`. */
function importMap(dir: string): Map<string, string> {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    exports: Record<string, string | { default: string }>;
  };
  const map = new Map<string, string>();
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const file = typeof target === 'string' ? target : target.default;
    const source = /^\.\/dist\/(.+)\.js$/.exec(file)?.[1];
    if (source === undefined) continue;
    map.set(`eventsync${subpath.slice(1)}`, relative(dir, join(root, 'src', `${source}.js`)));
  }
  return map;
}

function pointImportsAtSources(code: string, map: Map<string, string>): string {
  return code.replace(
    /(from\s+|import\(\s*)'(eventsync(?:\/[^']*)?)'/g,
    (_all, before: string, name: string) => {
      const target = map.get(name);
      if (target === undefined)
        throw new Error(`README imports '${name}', which package.json does not export`);
      return `${before}'${target}'`;
    },
  );
}

const run = promisify(execFile);
const blocks = runnableBlocks(readFileSync(join(root, 'README.md'), 'utf8'));
mkdirSync(join(root, '.tmp'), { recursive: true });
const dir = mkdtempSync(join(root, '.tmp', 'readme-'));
const map = importMap(dir);
const files = blocks.map((block, index) => {
  const file = join(dir, `block-${index + 1}.${block.language === 'ts' ? 'ts' : 'mjs'}`);
  // `export {}`: each file a module of its own, so that two blocks may both declare `Game`.
  writeFileSync(file, `${pointImportsAtSources(block.code, map)}\nexport {};\n`);
  return file;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('README.md examples', () => {
  it('has examples, and marks the blocks it does not run with a reason', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    expect(runnableBlocks('```ts\nrun();\n```\n<!-- not run: a browser -->\n```js\nskip();\n```\n')).toEqual([
      { name: ', line 1', language: 'ts', code: 'run();' },
    ]);
  });

  it('type-checks', { timeout: TYPECHECK_MS + 10_000 }, async () => {
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: '../../tsconfig.json',
        compilerOptions: { noEmit: true },
        include: ['*.ts'],
      }),
    );
    const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = await run(process.execPath, [tsc, '-p', dir], { timeout: TYPECHECK_MS }).catch(
      (error: { stdout?: string; message: string }) => error.stdout || error.message,
    );
    const names = blocks.map((block, index) => `block-${index + 1}: ${block.name}`).join('\n');
    expect(typeof result === 'string' ? `${result}\n${names}` : '').toBe('');
  });

  it.each(blocks.map((block, index) => [block.name, files[index]!] as const))(
    'runs: %s',
    { timeout: RUN_MS + 10_000 },
    async (_name, file) => {
      const cwd = mkdtempSync(join(tmpdir(), 'eventsync-readme-'));
      const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
      try {
        const outcome = await run(process.execPath, [tsx, file], {
          cwd,
          timeout: RUN_MS,
          killSignal: 'SIGKILL',
          env: { ...process.env, DATABASE_URL: databaseUrl(), PORT: '0' },
        }).then(
          () => 'exit 0',
          (error: { code?: number; signal?: string; stdout?: string; stderr?: string }) =>
            `exit ${error.code ?? error.signal}\n${error.stdout}\n${error.stderr}`,
        );
        expect(outcome).toBe('exit 0');
      } finally {
        rmSync(cwd, { recursive: true, force: true });
      }
    },
  );
});
