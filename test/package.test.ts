/**
 * What `npm publish` would ship: `npm pack --dry-run` lists the tarball's files, which must be the
 * built package and its documents only (package.json's `files`), with every entry point and the
 * `eventsync` binary in it. Scripts are not run (`--ignore-scripts`: no prepack build here); the
 * compiled `dist/` comes from `ensureBuilt()`, as for the binary's tests.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt } from './support/serve-process.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  bin: Record<string, string>;
  exports: Record<string, string | { types?: string; default: string }>;
  scripts: Record<string, string>;
};

/** `./dist/x.js` → `dist/x.js`, as npm lists paths. */
const packagePath = (path: string) => path.replace(/^\.\//, '');

async function packedFiles(): Promise<string[]> {
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    timeout: 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const [packed] = JSON.parse(stdout) as { files: { path: string }[] }[];
  return packed!.files.map((file) => file.path);
}

describe('the published package', () => {
  let files: string[];

  beforeAll(async () => {
    await ensureBuilt();
    files = await packedFiles();
  }, 180_000);

  it('holds no tests, benchmarks, sources, CI scripts or source maps', () => {
    const unwanted = files.filter(
      (path) =>
        /^(test|bench|src|scripts|examples|demo|docs|\.ci)\//.test(path) ||
        /\.test\.|\.map$|\.build\.lock$/.test(path),
    );
    expect(unwanted).toEqual([]);
    expect(files.filter((path) => !path.startsWith('dist/')).sort()).toEqual([
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'package.json',
    ]);
  });

  it('holds the binary and every entry point with its types', () => {
    const wanted = [
      ...Object.values(pkg.bin),
      ...Object.values(pkg.exports).flatMap((target) =>
        typeof target === 'string' ? [target] : [target.default, ...(target.types ? [target.types] : [])],
      ),
    ].map(packagePath);
    expect(wanted).toContain('dist/index.js');
    expect(wanted.filter((path) => !files.includes(path))).toEqual([]);
  });

  it('runs no script when installed (npm warns about install scripts)', () => {
    const installScripts = ['preinstall', 'install', 'postinstall', 'prepare'];
    expect(installScripts.filter((name) => name in pkg.scripts)).toEqual([]);
    expect(pkg.scripts.prepack).toContain('npm run build');
  });
});
