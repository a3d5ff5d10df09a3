/**
 * The import graph of `src/`, read with the TypeScript compiler's own import scanner
 * (`ts.preProcessFile`: every `import`/`export … from`, type-only ones included), checked against
 * the walls of the architecture:
 *
 * - `core` (the shapes, errors, ids and contracts every layer shares) imports nothing of ours
 *   but itself, not even an entry file;
 * - no cycle between the folders of `src/`, and none between the files of one folder;
 * - the layers in order, core ← storage ← events ← sync ← server ← cli: each imports only
 *   layers before it (and `protocol` from `sync` on); `backends` import core and storage;
 *   `protocol` imports core; `client` imports core, protocol and events (`apply`);
 * - `core`, `client` and `protocol` stay browser-safe: no `ws`, `pg` or `node:*`.
 *
 * What breaks a wall today is listed in {@link KNOWN} and {@link KNOWN_FILE_CYCLES}, each with
 * what removes it (issue 16). The test fails on anything new, and on a listed break that is gone
 * (then shrink the list): a ratchet.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');

/** `from → to` folder pairs that break a wall today, and why they are still here (none, now). */
const KNOWN: Record<string, string> = {};

/** Cycles between the files of one folder today, and what removes them. */
const KNOWN_FILE_CYCLES: Record<string, string> = {};

interface Edge {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** Every import of every source file: to another file of `src/` (relative path) or a package. */
function importGraph(): { files: string[]; edges: Edge[]; packages: Edge[] } {
  const files = sourceFiles(SRC);
  const edges: Edge[] = [];
  const packages: Edge[] = [];
  for (const file of files) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const from = relative(SRC, file);
    for (const { fileName } of importedFiles) {
      if (fileName.startsWith('.')) {
        const to = relative(SRC, resolve(dirname(file), fileName)).replace(/\.js$/, '.ts');
        edges.push({ from, to });
      } else {
        packages.push({ from, to: fileName });
      }
    }
  }
  return { files: files.map((f) => relative(SRC, f)), edges, packages };
}

/** `storage/edit.ts` → `storage`; `backends/sql/x.ts` → `backends`; `index.ts` → `` (an entry). */
const folderOf = (file: string) => (file.includes('/') ? file.slice(0, file.indexOf('/')) : '');

/** The cycles of a directed graph, one per strongly connected component of two or more nodes. */
function cycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, Set<string>>();
  for (const { from, to } of edges) {
    if (from === to) continue;
    if (!next.has(from)) next.set(from, new Set());
    next.get(from)!.add(to);
  }
  // Tarjan's algorithm.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const to of next.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of next.keys()) if (!index.has(node)) visit(node);
  return found;
}

const walls: [from: string[], to: string[]][] = [
  // The shared shapes, errors, ids and contracts depend on nothing else.
  [['core'], ['storage', 'backends', 'events', 'sync', 'server', 'client', 'cli', 'protocol']],
  [['storage'], ['backends', 'events', 'sync', 'server', 'client', 'cli', 'protocol']],
  [['backends'], ['events', 'sync', 'server', 'client', 'cli', 'protocol']],
  [['events'], ['backends', 'sync', 'server', 'client', 'cli', 'protocol']],
  [['sync'], ['backends', 'server', 'client', 'cli']],
  [['server'], ['client', 'cli']],
  [['protocol'], ['storage', 'backends', 'events', 'sync', 'server', 'client', 'cli']],
  [['client'], ['storage', 'backends', 'sync', 'server', 'cli']],
];

describe('the import graph of src/', () => {
  const { edges, packages } = importGraph();
  const folderEdges = edges
    .map(({ from, to }) => ({ from: folderOf(from), to: folderOf(to) }))
    .filter(({ from, to }) => from !== '' && to !== '' && from !== to);

  it('has no cycle between folders, other than through a known break', () => {
    const known = new Set(Object.keys(KNOWN));
    const rest = folderEdges.filter(({ from, to }) => !known.has(`${from} → ${to}`));
    expect(cycles(rest)).toEqual([]);
  });

  it('has no cycle between the files of one folder but the known ones (and those are still there)', () => {
    const inside = edges.filter(({ from, to }) => folderOf(from) === folderOf(to) && folderOf(from) !== '');
    const found = cycles(inside).map((cycle) => cycle.join(' '));
    expect(found.sort()).toEqual(Object.keys(KNOWN_FILE_CYCLES).sort());
  });

  it('keeps the walls: nothing new breaks one, and every known break is still there', () => {
    const breaks = new Set<string>();
    for (const { from, to } of folderEdges) {
      for (const [sources, targets] of walls) {
        if (sources.includes(from) && targets.includes(to)) breaks.add(`${from} → ${to}`);
      }
    }
    expect([...breaks].sort()).toEqual(Object.keys(KNOWN).sort());
  });

  it('keeps core importing nothing of ours but core (no entry file either)', () => {
    const outside = edges.filter(({ from, to }) => folderOf(from) === 'core' && folderOf(to) !== 'core');
    expect(outside).toEqual([]);
  });

  it('keeps core, client and protocol browser-safe: no node:*, ws or pg', () => {
    const unsafe = packages.filter(
      ({ from, to }) =>
        ['core', 'client', 'protocol'].includes(folderOf(from)) &&
        (to.startsWith('node:') || to === 'ws' || to === 'pg' || to.startsWith('pg/')),
    );
    expect(unsafe).toEqual([]);
  });

  it('keeps React to eventsync/react: nothing else imports it, and react.ts imports only client and core', () => {
    const react = packages.filter(
      ({ to }) => to === 'react' || to.startsWith('react/') || to === 'react-dom',
    );
    expect(react.map(({ from }) => from)).toEqual(['react.ts']);
    const ours = edges.filter(({ from }) => from === 'react.ts').map(({ to }) => folderOf(to));
    expect(ours.filter((folder) => folder !== 'client' && folder !== 'core')).toEqual([]);
  });
});
