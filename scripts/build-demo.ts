/**
 * Builds the demo app that `eventsync serve` serves at `/`: esbuild bundles `demo/main.ts` (and
 * the client SDK it imports from `src/`) for browsers into `dist/demo/main.js`, minified, with a
 * source map; `demo/index.html` and `demo/style.css` are copied next to it. Part of
 * `npm run build` (so `npm start` and `npm pack` build it); alone: `npm run build:demo`.
 *
 * `platform: 'browser'` makes a Node-only import in the client fail the build instead of shipping.
 */
import { copyFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
export const DEMO_SOURCE_DIR = join(root, 'demo');
export const DEMO_OUT_DIR = join(root, 'dist', 'demo');
const COPIED = ['index.html', 'style.css'];

export interface DemoBuild {
  outDir: string;
  /** Output file name → bytes. */
  sizes: Record<string, number>;
}

export async function buildDemo(outDir = DEMO_OUT_DIR): Promise<DemoBuild> {
  return buildPage(DEMO_SOURCE_DIR, 'main.ts', COPIED, outDir);
}

/**
 * The React example (`demo/react/`: a shared to-do list on `eventsync/react`), built the same way
 * into `outDir`. Not part of `npm run build`: the browser test builds it where it serves it.
 */
export function buildReactExample(outDir: string): Promise<DemoBuild> {
  return buildPage(join(DEMO_SOURCE_DIR, 'react'), 'app.tsx', ['index.html'], outDir);
}

/** Bundles `entry` of `sourceDir` for browsers into `outDir` (as .js), and copies `copied` next to it. */
async function buildPage(
  sourceDir: string,
  entry: string,
  copied: string[],
  outDir: string,
): Promise<DemoBuild> {
  mkdirSync(outDir, { recursive: true });
  const script = entry.replace(/\.tsx?$/, '.js');
  await build({
    entryPoints: [join(sourceDir, entry)],
    outfile: join(outDir, script),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: true,
    legalComments: 'none',
    logLevel: 'warning',
    jsx: 'automatic',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  for (const name of copied) copyFileSync(join(sourceDir, name), join(outDir, name));
  const sizes: Record<string, number> = {};
  for (const name of [script, ...copied]) sizes[name] = statSync(join(outDir, name)).size;
  return { outDir, sizes };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { outDir, sizes } = await buildDemo();
  const list = Object.entries(sizes)
    .map(([name, bytes]) => `${name} ${(bytes / 1024).toFixed(1)} KiB`)
    .join(', ');
  process.stdout.write(`demo built in ${outDir}: ${list}\n`);
}
