import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { messages, PROTOCOL_DOC_PATH, protocolDoc, renderProtocolDoc } from '../../scripts/protocol-doc.js';
import { ClientMessage, ServerMessage } from '../../src/protocol/messages.js';
import { CloseCodes, ErrorCodes, ErrorStatus } from '../../src/protocol/wire.js';

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

  it('lists every error code of wire.ts with its HTTP status and whether it is retryable', () => {
    const doc = renderProtocolDoc();
    for (const [code, { retryable }] of Object.entries(ErrorCodes)) {
      const status = ErrorStatus[code as keyof typeof ErrorCodes];
      expect(doc).toContain(`| \`${code}\` | ${status} | ${retryable ? 'yes' : 'no'} |`);
    }
  });

  it('lists every close code of wire.ts with its name and whether to reconnect', () => {
    const doc = renderProtocolDoc();
    for (const { code, name, retry } of Object.values(CloseCodes)) {
      expect(doc).toContain(`| ${code} | ${name} | ${retry ? 'yes' : 'no'} |`);
    }
  });
});
