/**
 * No function in `src/` spans more than 80 lines (the house style: a function a newcomer reads in
 * one pass). Counted from the function's first line to its closing brace, with the TypeScript
 * parser, so closures count in their parent's span too; tests are not counted.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const SRC = resolve(import.meta.dirname, '../../src');
const MAX_LINES = 80;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

/** `name:line function (lines)` of every function longer than `MAX_LINES` in `text`. */
function longFunctions(name: string, text: string): string[] {
  const source = ts.createSourceFile(name, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart()).line;
      const last = source.getLineAndCharacterOfPosition(node.end).line;
      if (last - first + 1 > MAX_LINES) {
        const fn = node.name?.getText() ?? '<anonymous>';
        found.push(`${name}:${first + 1} ${fn} (${last - first + 1} lines)`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('function length', () => {
  it(`no function in src/ is longer than ${MAX_LINES} lines`, () => {
    const long = sourceFiles(SRC).flatMap((file) =>
      longFunctions(relative(SRC, file), readFileSync(file, 'utf8')),
    );
    expect(long).toEqual([]);
  });

  it('finds a long method or closure (the check itself works)', () => {
    const body = (n: number) => Array.from({ length: n }, (_, i) => `    const v${i} = ${i};`).join('\n');
    const text = `class A {\n  m() {\n${body(MAX_LINES)}\n  }\n  short() {\n${body(3)}\n  }\n}\n`;
    expect(longFunctions('probe.ts', text)).toEqual([`probe.ts:2 m (${MAX_LINES + 2} lines)`]);
    const closure = (n: number) => `const f = () => {\n${body(n - 2)}\n};\n`;
    expect(longFunctions('probe.ts', closure(MAX_LINES))).toEqual([]);
    expect(longFunctions('probe.ts', closure(MAX_LINES + 1))).toEqual([
      `probe.ts:1 <anonymous> (${MAX_LINES + 1} lines)`,
    ]);
  });
});
