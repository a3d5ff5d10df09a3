import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  closeCodes,
  messages,
  PROTOCOL_DOC_PATH,
  protocolDoc,
  renderProtocolDoc,
} from '../../scripts/protocol-doc.js';
import { ErrorCodes } from '../../src/protocol/errors.js';
import { ClientMessage, ServerMessage } from '../../src/protocol/messages.js';

describe('docs/PROTOCOL.md', () => {
  it('is what the generator writes (run npm run protocol:doc)', () => {
    const committed = readFileSync(PROTOCOL_DOC_PATH, 'utf8');
    expect(committed, 'docs/PROTOCOL.md is stale: run npm run protocol:doc').toBe(protocolDoc());
  });

  it('documents every client and server message of the schemas', () => {
    const documented = new Set(messages.map((m) => m.schema));
    for (const schema of [...ClientMessage.options, ...ServerMessage.options]) {
      expect(documented.has(schema), JSON.stringify(schema.shape.type.def)).toBe(true);
    }
    expect(documented.size).toBe(ClientMessage.options.length + ServerMessage.options.length);
  });

  it('lists every error code with its HTTP status', () => {
    const doc = renderProtocolDoc();
    for (const [code, { status }] of Object.entries(ErrorCodes)) {
      expect(doc).toContain(`| \`${code}\` | ${status} |`);
    }
  });

  it('lists every close code the server uses', () => {
    const documented = new Set(closeCodes.map((c) => c.code));
    const sources = ['src/sync/session.ts', 'src/sync/engine.ts', 'src/server/ws.ts'];
    const used = new Set<string>();
    for (const path of sources) {
      const text = readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
      for (const match of text.matchAll(/(?:close\(|code = )(\d{4})\b/g)) used.add(match[1]!);
    }
    expect(used.size).toBeGreaterThan(3);
    for (const code of used)
      expect(documented, `close code ${code} is used but not documented`).toContain(code);
  });
});
