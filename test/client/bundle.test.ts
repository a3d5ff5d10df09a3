/**
 * The client entry bundles for browsers: esbuild (`platform: 'browser'`) must resolve every
 * import without Node built-ins, `ws`, `pg`, zod or server code. Prints the min+gzip size
 * (BENCHMARKS.md, "Client bundle").
 */
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Plugin } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

/** Records every import of a Node built-in (and lets the build fail on it). */
function noNodeBuiltins(found: string[]): Plugin {
  return {
    name: 'no-node-builtins',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (builtins.has(args.path) || args.path.startsWith('node:')) {
          found.push(`${args.path} (imported by ${args.importer})`);
          return { errors: [{ text: `Node built-in ${JSON.stringify(args.path)} in the browser bundle` }] };
        }
        return undefined;
      });
    },
  };
}

async function bundle(options: { entry?: string; stdin?: string; external?: string[] }) {
  const found: string[] = [];
  const result = await build({
    ...(options.stdin !== undefined
      ? { stdin: { contents: options.stdin, resolveDir: root, loader: 'ts' } }
      : { entryPoints: [options.entry!] }),
    absWorkingDir: root,
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    write: false,
    metafile: true,
    logLevel: 'silent',
    external: options.external ?? [],
    plugins: [noNodeBuiltins(found)],
  }).catch((error: { errors?: { text: string }[] }) => ({ error }));
  return { result, found };
}

describe('browser bundle of eventsync/client', () => {
  it('has no Node built-in, ws, pg, zod or server import; reports its min+gzip size', async () => {
    const { result, found } = await bundle({ entry: 'src/client.ts' });
    expect(found).toEqual([]);
    if ('error' in result) throw new Error(JSON.stringify(result.error.errors ?? result.error));
    const inputs = Object.keys(result.metafile.inputs);
    const forbidden = inputs.filter((p) =>
      /(^|\/)(src\/(server|sync|backends|cli)\/|node_modules\/(ws|pg|pg-[^/]+|zod|mingo|pino|mutative|@electric-sql)\/)/.test(
        p,
      ),
    );
    expect(forbidden).toEqual([]);
    const [output] = Object.values(result.metafile.outputs);
    expect(output!.imports).toEqual([]); // nothing left for the browser to resolve
    const bytes = result.outputFiles[0]!.contents;
    const gzip = gzipSync(bytes, { level: 9 }).length;
    console.log(
      `eventsync/client browser bundle: ${(bytes.length / 1024).toFixed(1)} KiB minified, ` +
        `${(gzip / 1024).toFixed(1)} KiB min+gzip (${inputs.length} inputs)`,
    );
    // Issue 19's budget: what a page pays for live documents, mutations and persistence.
    expect(gzip).toBeLessThanOrEqual(15 * 1024);
  });

  it('keeps readable error names when minified (issue 19: `p: the credentials were refused`)', async () => {
    const stdin = `
      import { EventSyncClientError, EventSyncError, MutationRefused } from './src/client.ts';
      export const names = [
        new EventSyncError('forbidden', 'a').name,
        new EventSyncClientError('unauthorized', 'b').name,
        new MutationRefused('not_enough_xp', 'c').name,
        String(new EventSyncClientError('unauthorized', 'the credentials were refused')),
      ];`;
    const { result } = await bundle({ stdin });
    if ('error' in result) throw new Error(JSON.stringify(result.error.errors ?? result.error));
    const code = Buffer.from(result.outputFiles[0]!.contents).toString('base64');
    const { names } = (await import(`data:text/javascript;base64,${code}`)) as { names: string[] };
    expect(names).toEqual([
      'EventSyncError',
      'EventSyncClientError',
      'MutationRefused',
      'EventSyncClientError: the credentials were refused',
    ]);
  });

  it('eventsync/react: the client and the hooks, React left to the app; reports its min+gzip size', async () => {
    const { result, found } = await bundle({ entry: 'src/react.ts', external: ['react', 'react-dom'] });
    expect(found).toEqual([]);
    if ('error' in result) throw new Error(JSON.stringify(result.error.errors ?? result.error));
    const [output] = Object.values(result.metafile.outputs);
    expect(output!.imports.map((i) => i.path)).toEqual(['react']);
    const hooks = Object.entries(result.metafile.inputs).find(([path]) => path === 'src/react.ts')!;
    const gzip = gzipSync(result.outputFiles[0]!.contents, { level: 9 }).length;
    console.log(
      `eventsync/react browser bundle (the hooks; eventsync/client and React are the app's imports): ` +
        `${(gzip / 1024).toFixed(1)} KiB min+gzip (src/react.ts: ${(hooks[1].bytes / 1024).toFixed(1)} KiB of source)`,
    );
  });

  it('the check fails on a Node built-in import', async () => {
    const { result, found } = await bundle({
      stdin: "import { readFile } from 'node:fs'; console.log(readFile);",
    });
    expect('error' in result).toBe(true);
    expect(found).toEqual(['node:fs (imported by <stdin>)']);
  });
});
