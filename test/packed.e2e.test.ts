/**
 * The package as a user gets it: `npm pack`'s tarball unpacked into `node_modules/eventsync` of an
 * empty app directory (outside the checkout), next to the packages `npm install eventsync
 * @electric-sql/pglite pg` (and the README's `express` and `ws`) would bring. Those are linked from
 * the checkout's node_modules instead of downloaded, so the test runs offline; only what the packed
 * package.json declares (dependencies, peers) and what the examples import is linked, so a
 * dependency it forgot fails here. Then, in that app: every entry point imports, README's examples
 * type-check against the published declarations and run unchanged (`import … from 'eventsync'`),
 * and `eventsync serve` (the published binary) starts on its embedded default.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseUrl } from './support/databases.js';
import { exampleFile, importedPackages, readmeExamples, runExample, typeCheck } from './support/readme.js';
import { ensureBuilt, killAll, startServe } from './support/serve-process.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const run = promisify(execFile);
const examples = readmeExamples();

interface PackageJson {
  bin: Record<string, string>;
  exports: Record<string, unknown>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

let app: string;
let installed: PackageJson;

/** `node_modules/<name>` of the app → the checkout's copy (its own dependencies resolve from there). */
function link(name: string): void {
  const target = join(root, 'node_modules', name);
  const path = join(app, 'node_modules', name);
  if (existsSync(path) || !existsSync(target)) return;
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(target, path, 'dir');
}

/** `eventsync/pg` → `eventsync`, `@scope/x/y` → `@scope/x`. */
const packageName = (specifier: string) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/');

beforeAll(async () => {
  await ensureBuilt();
  app = await mkdtemp(join(tmpdir(), 'eventsync-packed-'));
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', app], {
    cwd: root,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const [packed] = JSON.parse(stdout) as { filename: string }[];
  await run('tar', ['-xzf', join(app, packed!.filename), '-C', app], { timeout: 60_000 });
  mkdirSync(join(app, 'node_modules'));
  renameSync(join(app, 'package'), join(app, 'node_modules', 'eventsync'));
  installed = JSON.parse(readFileSync(join(app, 'node_modules', 'eventsync', 'package.json'), 'utf8'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const names = new Set([
    ...Object.keys(installed.dependencies ?? {}),
    ...Object.keys(installed.peerDependencies ?? {}),
    ...examples.flatMap((example) => importedPackages(example.code).map(packageName)),
  ]);
  names.delete('eventsync');
  for (const name of names) {
    link(name);
    link(`@types/${name.replace(/^@(.+)\//, '$1__')}`);
  }
  link('@types/node');
  examples.forEach((example, index) => {
    writeFileSync(join(app, exampleFile(example, index)), `${example.code}\nexport {};\n`);
  });
}, 180_000);

afterAll(async () => {
  await killAll();
  if (app) rmSync(app, { recursive: true, force: true });
});

describe('the packed package, installed in an empty app', () => {
  it('imports every entry point', async () => {
    const names = Object.keys(installed.exports)
      .filter((subpath) => !subpath.endsWith('.json'))
      .map((subpath) => `eventsync${subpath.slice(1)}`);
    const script = `for (const name of ${JSON.stringify(names)}) await import(name);`;
    const outcome = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: app,
      timeout: 60_000,
    }).then(
      () => 'imported',
      (error: { stderr?: string; message: string }) => error.stderr || error.message,
    );
    expect(outcome).toBe('imported');
  });

  it("type-checks README's examples against the published declarations", { timeout: 130_000 }, async () => {
    const compilerOptions = {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib: ['ES2023'],
      types: ['node'],
      strict: true,
      noEmit: true,
      // As most apps have it: PGlite's declarations need the DOM's and Emscripten's types.
      skipLibCheck: true,
    };
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['*.ts'] }));
    expect(await typeCheck(app)).toBe('');
  });

  it.each(examples.map((example, index) => [example.name, exampleFile(example, index)] as const))(
    'runs the README example %s',
    { timeout: 70_000 },
    async (_name, file) => {
      expect(await runExample(join(app, file), databaseUrl())).toBe('exit 0');
    },
  );

  it('starts eventsync serve from its bin on the embedded default (PGlite in ./data)', async () => {
    // startServe leaves out the DATABASE_URL, PORT, HOST and EVENTSYNC_* of this process.
    const bin = join(app, 'node_modules', 'eventsync', installed.bin.eventsync!);
    const server = await startServe(['--port', '0'], 60_000, {}, { bin, cwd: app });
    const health = await fetch(new URL('/healthz', server.url));
    expect(await health.text()).toBe('ok\n');
    expect(existsSync(join(app, 'data'))).toBe(true);
    server.child.kill('SIGTERM');
    expect(await server.exit).toEqual({ code: 0, signal: null });
  });
});
