/**
 * What `serve` answers at `/`: the demo app's files (what `npm run build` puts in `dist/demo/`),
 * or a placeholder page listing the endpoints when they are not built.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StaticFile {
  type: string;
  body: Buffer;
}

export const PLACEHOLDER_PAGE = `<!doctype html>
<html lang="en"><meta charset="utf-8"><title>eventsync</title>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>eventsync</h1>
<p>The sync server is running. The demo app is not built (<code>npm run build</code> puts it in <code>dist/demo</code>); the endpoints:</p>
<ul>
<li>WebSocket: <code>/sync</code></li>
<li>SSE: <code>/sse/:collection/:id</code>, <code>/sse/:collection?filter=…</code></li>
<li>REST: <code>/api/:collection</code>, <code>/api/:collection/:id</code>, <code>/api/:collection/:id/events</code>, <code>POST /api/sync/:collection/:id</code></li>
<li><a href="/healthz">/healthz</a>, <a href="/metrics">/metrics</a></li>
</ul>
</body></html>
`;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

/** `dist/demo` next to the built server (`dist/server`), or from the sources (`src/server`, under tsx). */
export function defaultDemoDir(): string | false {
  for (const candidate of ['../demo/', '../../dist/demo/']) {
    const dir = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return false;
}

/**
 * The files directly in `dir` with a known type, read once at start: `/name` → file. Only these
 * exact paths are served, so no request can reach outside the directory.
 */
export function loadStaticFiles(dir: string | false): Map<string, StaticFile> | undefined {
  if (dir === false || !existsSync(join(dir, 'index.html'))) return undefined;
  const files = new Map<string, StaticFile>();
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const type = CONTENT_TYPES[extname(entry.name)];
    if (entry.isFile() && type)
      files.set(`/${entry.name}`, { type, body: readFileSync(join(dir, entry.name)) });
  }
  return files;
}
