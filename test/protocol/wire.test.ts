import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CloseCodes,
  DISCONNECTED,
  documentKey,
  ErrorCodes,
  HELLO_TIMEOUT,
  isRetryable,
  mayReconnect,
  parseDocumentKey,
  parseSseEventId,
  sseEventId,
  TOO_SLOW,
} from '../../src/protocol/wire.js';

/** Ids as a reader of the wire may meet them: the characters that could confuse a parser included. */
const awkwardIds = [
  'g1',
  'a/b',
  'a/b/3',
  '/',
  'x/',
  '/x',
  '?',
  'a?b=1',
  '~',
  '~0~1',
  'a%2Fb',
  '7',
  'é/ü',
  'a b',
];
/** Collection names cannot hold `/` (`assertCollectionName`); everything else is fair game here. */
const collections = ['games', 'g', '_x', 'a?b', 'c~1'];

describe('documentKey', () => {
  it('is collection/documentId, the format clients have persisted replicas under', () => {
    expect(documentKey('games', 'g1')).toBe('games/g1');
  });

  it('parses back whatever the id holds', () => {
    for (const collection of collections) {
      for (const documentId of awkwardIds) {
        expect(parseDocumentKey(documentKey(collection, documentId))).toEqual({ collection, documentId });
      }
    }
  });

  it('round-trips any id with a collection name without /', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z_][a-z0-9_]{0,62}$/), fc.string({ minLength: 1 }), (c, d) => {
        expect(parseDocumentKey(documentKey(c, d))).toEqual({ collection: c, documentId: d });
      }),
    );
  });

  it('refuses what is not a key', () => {
    for (const key of ['', 'games', '/g1', 'games/']) expect(parseDocumentKey(key)).toBeUndefined();
  });
});

describe('sseEventId', () => {
  it('is collection/documentId/seq', () => {
    expect(sseEventId('games', 'g1', 2)).toBe('games/g1/2');
  });

  it('parses back whatever the id holds', () => {
    for (const collection of collections) {
      for (const documentId of awkwardIds) {
        for (const seq of [0, 1, 42, Number.MAX_SAFE_INTEGER]) {
          expect(parseSseEventId(sseEventId(collection, documentId, seq))).toEqual({
            collection,
            documentId,
            seq,
          });
        }
      }
    }
  });

  it('round-trips any id and seq with a collection name without /', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z_][a-z0-9_]{0,62}$/),
        fc.string({ minLength: 1 }),
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        (c, d, seq) => {
          expect(parseSseEventId(sseEventId(c, d, seq))).toEqual({ collection: c, documentId: d, seq });
        },
      ),
    );
  });

  it('refuses what is not an event id', () => {
    for (const id of [
      '',
      'games',
      'games/g1',
      'games/g1/',
      '/g1/2',
      'games//2',
      'games/g1/-1',
      'games/g1/1.5',
      'games/g1/1e3',
      'games/g1/ 2',
      'games/g1/0x10',
      `games/g1/${Number.MAX_SAFE_INTEGER + 1}`, // past what a seq can be
      'games/g1/12345678901234567',
    ]) {
      expect(parseSseEventId(id), id).toBeUndefined();
    }
  });
});

describe('close codes', () => {
  const all = Object.values(CloseCodes);

  it('has one entry per code and per name', () => {
    expect(new Set(all.map((c) => c.code)).size).toBe(all.length);
    expect(new Set(all.map((c) => c.name)).size).toBe(all.length);
  });

  it('a client reconnects after every close but refused credentials, protocol or client id', () => {
    expect(all.filter((c) => !mayReconnect(c.code)).map((c) => c.code)).toEqual([4000, 4001, 4003]);
    // Codes the server does not send are network trouble.
    for (const code of [1002, 1005, 1012, 1015, 4999]) expect(mayReconnect(code)).toBe(true);
  });

  it('the fixed closes use codes of the table', () => {
    expect(TOO_SLOW.code).toBe(1013);
    expect(HELLO_TIMEOUT.code).toBe(4408);
    expect(DISCONNECTED.code).toBe(4010);
  });
});

describe('error codes', () => {
  it('a subscription refused with one of these is not tried again; any other code is', () => {
    const permanent = Object.keys(ErrorCodes).filter((code) => !isRetryable(code));
    expect(permanent.sort()).toEqual(
      [
        'already_exists',
        'bad_message',
        'forbidden',
        'method_not_allowed',
        'mutation_failed',
        'mutation_refused',
        'not_found',
        'too_large',
        'unauthorized',
        'unsupported_media_type',
        'unknown_mutator',
        'unsupported_protocol',
        'validation',
      ].sort(),
    );
  });

  it('a code this version does not know is retryable (a newer server may send one)', () => {
    for (const code of ['no_such_code', 'constructor', '__proto__', 'toString']) {
      expect(isRetryable(code)).toBe(true);
    }
  });
});
