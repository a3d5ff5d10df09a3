/**
 * README.md's examples, for the tests that run them: against the sources (`test/readme.test.ts`)
 * and against the packed package installed in an empty directory (`test/packed.e2e.test.ts`).
 * Every ```ts and ```js block is an example, unless the line right before it is an HTML comment
 * `<!-- not run: why -->` (browser code, say).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../../', import.meta.url));

export interface Example {
  /** `Quick start, line 42`: the heading above it and the line of its opening fence. */
  name: string;
  language: 'ts' | 'js';
  code: string;
}

const LANGUAGES: Record<string, Example['language']> = {
  ts: 'ts',
  typescript: 'ts',
  js: 'js',
  javascript: 'js',
};

/** The ts/js blocks of `markdown` that are not marked `<!-- not run: … -->`. */
export function examplesIn(markdown: string): Example[] {
  const lines = markdown.split('\n');
  const examples: Example[] = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('#')) heading = line.replace(/^#+\s*/, '');
    const fence = /^```(\S*)/.exec(line);
    if (!fence) continue;
    const end = lines.indexOf('```', i + 1);
    if (end === -1) throw new Error(`line ${i + 1}: a code block that never closes`);
    const language = LANGUAGES[fence[1]!];
    const marked = /^<!-- not run: .+ -->$/.test(lines[i - 1] ?? '');
    if (language && !marked) {
      examples.push({
        name: `${heading}, line ${i + 1}`,
        language,
        code: lines.slice(i + 1, end).join('\n'),
      });
    }
    i = end;
  }
  return examples;
}

export function readmeExamples(): Example[] {
  return examplesIn(readFileSync(join(root, 'README.md'), 'utf8'));
}

/**
 * README's install lines (`npm install eventsync …` in a `sh` block), each as the packages it
 * names, comments dropped: `[['eventsync', '@electric-sql/pglite'], ['eventsync', 'pg']]`.
 */
export function readmeInstallLines(): string[][] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  return [...readme.matchAll(/^npm install (eventsync\b[^#\n]*)/gm)].map((match) =>
    match[1]!.trim().split(/\s+/),
  );
}

/** The example's file name: `.ts`, or `.mjs` for JavaScript (ES modules wherever it is written). */
export function exampleFile(example: Example, index: number): string {
  return `example-${index + 1}.${example.language === 'ts' ? 'ts' : 'mjs'}`;
}

/** The packages an example imports by name (not `node:*`, not relative): `express`, `eventsync/pg`, … */
export function importedPackages(code: string): string[] {
  const names = [...code.matchAll(/\bfrom\s+'([^'.][^']*)'/g)].map((match) => match[1]!);
  return names.filter((name) => !name.startsWith('node:'));
}

const RUN_MS = 60_000;

/**
 * Runs `file` with tsx in an empty working directory of its own (so `./data` lands there), with
 * `DATABASE_URL` and `PORT=0` (examples listen where the OS says). Resolves to `'exit 0'` or to
 * what went wrong, with its output; a run past RUN_MS is killed.
 */
export async function runExample(file: string, databaseUrl: string): Promise<string> {
  const cwd = mkdtempSync(join(tmpdir(), 'eventsync-example-'));
  const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
  try {
    return await promisify(execFile)(process.execPath, [tsx, file], {
      cwd,
      timeout: RUN_MS,
      killSignal: 'SIGKILL',
      env: { ...process.env, DATABASE_URL: databaseUrl, PORT: '0' },
    }).then(
      () => 'exit 0',
      (error: { code?: number; signal?: string; stdout?: string; stderr?: string }) =>
        `exit ${error.code ?? error.signal}\n${error.stdout}\n${error.stderr}`,
    );
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

/** Runs `tsc -p dir`: '' when it type-checks, else tsc's report. */
export async function typeCheck(dir: string): Promise<string> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  return promisify(execFile)(process.execPath, [tsc, '-p', dir], { timeout: 120_000 }).then(
    () => '',
    (error: { stdout?: string; message: string }) => error.stdout || error.message,
  );
}
