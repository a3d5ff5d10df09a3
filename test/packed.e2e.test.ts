/**
 * The package as a user gets it, in an empty app directory outside the checkout:
 *
 * - in CI (`CI` set, or `EVENTSYNC_PACKED_INSTALL=npm`): README's install lines run as written, with
 *   `npm pack`'s tarball in place of `eventsync`, from the registry (a real `npm install`: the
 *   published dependency ranges resolve as a user's would), then what the examples import
 *   (`express`, `ws`) and their types;
 * - elsewhere (offline): the tarball unpacked into `node_modules/eventsync`, next to the packages
 *   those installs would bring, linked from the checkout's node_modules. Only what the packed
 *   package.json declares (dependencies, peers) and what the examples import is linked, so a
 *   dependency it forgot fails here too.
 *
 * Then, in that app: every entry point imports, README's examples type-check against the published
 * declarations and run unchanged (`import … from 'eventsync'`), and `eventsync serve` (the
 * installed `node_modules/.bin/eventsync`, what `npx eventsync` runs) starts on its embedded default.
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
import {
  exampleFile,
  importedPackages,
  readmeExamples,
  readmeInstallLines,
  runExample,
  typeCheck,
} from './support/readme.js';
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

/** A real `npm install` from the registry (CI), or links to the checkout's packages (offline). */
const realInstall = process.env.CI !== undefined || process.env.EVENTSYNC_PACKED_INSTALL === 'npm';

beforeAll(async () => {
  await ensureBuilt();
  app = await mkdtemp(join(tmpdir(), 'eventsync-packed-'));
  const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', app], {
    cwd: root,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const [packed] = JSON.parse(stdout) as { filename: string }[];
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  const extras = new Set(examples.flatMap((example) => importedPackages(example.code).map(packageName)));
  extras.delete('eventsync');
  if (realInstall) await installFromRegistry(join(app, packed!.filename), extras);
  else await installByLinks(join(app, packed!.filename), extras);
  installed = JSON.parse(readFileSync(join(app, 'node_modules', 'eventsync', 'package.json'), 'utf8'));
  examples.forEach((example, index) => {
    writeFileSync(join(app, exampleFile(example, index)), `${example.code}\nexport {};\n`);
  });
}, 300_000);

/** README's `npm install eventsync …` lines as written (the tarball for `eventsync`), then the examples' imports and types. */
async function installFromRegistry(tarball: string, extras: Set<string>): Promise<void> {
  const npm = (args: string[]) =>
    run('npm', ['install', '--no-audit', '--no-fund', ...args], {
      cwd: app,
      timeout: 180_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  const lines = readmeInstallLines();
  expect(lines.length).toBeGreaterThan(0);
  for (const packages of lines) await npm(packages.map((name) => (name === 'eventsync' ? tarball : name)));
  // Types only where this checkout uses them too: a package that ships its own has no @types/….
  const types = [...extras].map(typesPackage).filter((name) => existsSync(join(root, 'node_modules', name)));
  await npm([...extras, ...types, '@types/node@20']);
}

/** The tarball unpacked into node_modules, its dependencies and peers and the examples' imports linked. */
async function installByLinks(tarball: string, extras: Set<string>): Promise<void> {
  await run('tar', ['-xzf', tarball, '-C', app], { timeout: 60_000 });
  mkdirSync(join(app, 'node_modules'));
  renameSync(join(app, 'package'), join(app, 'node_modules', 'eventsync'));
  const packed = JSON.parse(readFileSync(join(app, 'node_modules', 'eventsync', 'package.json'), 'utf8'));
  const names = new Set([
    ...Object.keys((packed as PackageJson).dependencies ?? {}),
    ...Object.keys((packed as PackageJson).peerDependencies ?? {}),
    ...extras,
  ]);
  for (const name of names) {
    link(name);
    link(typesPackage(name));
  }
  link('@types/node');
}

/** `express` → `@types/express`, `@scope/x` → `@types/scope__x`. */
const typesPackage = (name: string) => `@types/${name.replace(/^@(.+)\//, '$1__')}`;

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
    const bin = realInstall
      ? join(app, 'node_modules', '.bin', 'eventsync') // what `npx eventsync` runs
      : join(app, 'node_modules', 'eventsync', installed.bin.eventsync!);
    const server = await startServe(['--port', '0'], 60_000, {}, { bin, cwd: app });
    const health = await fetch(new URL('/healthz', server.url));
    expect(await health.text()).toBe('ok\n');
    expect(existsSync(join(app, 'data'))).toBe(true);
    server.child.kill('SIGTERM');
    expect(await server.exit).toEqual({ code: 0, signal: null });
  });
});
