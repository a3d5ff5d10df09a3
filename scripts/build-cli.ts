/**
 * Builds the `eventsync` command (`dist/cli/main.js`, package.json's `bin`) as one ES module:
 * esbuild bundles `src/cli/main.ts` with what it imports, our code and the dependencies (zod,
 * mingo, ws, pino, jose, mutative), over the file `tsc` wrote there. Part of `npm run build`.
 *
 * Why a bundle: a start of `eventsync serve` on an existing data directory is PGlite's own open
 * plus the loading of the server's modules, and Node resolves, reads and compiles those hundreds of
 * files one at a time. As one file the same code loads in about half the time (`bench/serve.ts`,
 * BENCHMARKS.md). The library entry points (`eventsync`, `eventsync/server`, …) stay unbundled.
 *
 * The database drivers (`@electric-sql/pglite`, `pg`) stay outside: they are optional peers that
 * the user installs, loaded only when the database asks for them. The bundle sits where `tsc`
 * put main.js, so its `import.meta.url`-relative paths (`../../package.json`, `../demo/`) hold.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('../', import.meta.url));
export const CLI_OUT_FILE = join(root, 'dist', 'cli', 'main.js');

export async function buildCli(outfile = CLI_OUT_FILE): Promise<void> {
  await build({
    entryPoints: [join(root, 'src', 'cli', 'main.ts')],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: ['node20'],
    // Optional peers, and ws's optional native add-ons (it falls back to JavaScript without them).
    external: ['@electric-sql/pglite', 'pg', 'bufferutil', 'utf-8-validate'],
    // The CommonJS dependencies call require() for Node's own modules: give the bundle one.
    banner: {
      js: "import { createRequire as __eventsyncCreateRequire } from 'node:module';\nconst require = __eventsyncCreateRequire(import.meta.url);",
    },
    legalComments: 'inline',
    logLevel: 'warning',
  });
  // tsc's map of the file the bundle replaced would point a debugger at the wrong lines.
  rmSync(`${outfile}.map`, { force: true });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await buildCli();
  process.stdout.write(`eventsync command bundled into ${CLI_OUT_FILE}\n`);
}
