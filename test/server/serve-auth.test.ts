/**
 * `serve` with `--auth jwt` (issue 15, item 9), in process: tokens verified with jose (signature,
 * exp, aud, iss), `sub` as the actor, a rules module as `authorize`; over REST and WebSocket.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, type JWTPayload, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/events/logger.js';
import { type RunningServer, serve } from '../../src/server/serve.js';
import type { JwtSpec } from '../../src/server/serve-auth.js';
import { TestClient } from '../support/ws-client.js';
import { http } from './http-client.js';

const SECRET = 'a-test-secret-of-at-least-32-bytes!';
const quiet = () => {};
const logger: Logger = { error: quiet, warn: quiet, info: quiet, debug: quiet };
const listening: object[] = [];
const recording: Logger = {
  ...logger,
  info: (details, message) => {
    if (message === 'eventsync: listening') listening.push(details);
  },
};

/** A token for `claims` signed with `key` (HS256 with SECRET by default), expiring in an hour unless `exp` says. */
async function token(
  claims: JWTPayload,
  {
    key = new TextEncoder().encode(SECRET) as CryptoKey | Uint8Array,
    alg = 'HS256',
    kid = undefined as string | undefined,
  } = {},
): Promise<string> {
  return new SignJWT({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims })
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .sign(key);
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

let dir: string;
const started: RunningServer[] = [];

async function start(auth: JwtSpec, log = logger): Promise<RunningServer> {
  const running = await serve({
    db: 'memory',
    port: 0,
    host: '127.0.0.1',
    logger: log,
    demoDir: false,
    auth,
  });
  started.push(running);
  return running;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eventsync-rules-'));
  // The default export is the hook; claims other than sub reach it.
  await writeFile(
    join(dir, 'rules.mjs'),
    "export default (principal, action, collection) => collection !== 'locked' || principal.role === 'admin';\n",
  );
  await writeFile(
    join(dir, 'named.mjs'),
    "export function authorize(principal) { return principal.id !== 'mallory'; }\n",
  );
  await writeFile(join(dir, 'none.mjs'), 'export const rules = {};\n');
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

describe('serve --auth jwt --jwt-secret', () => {
  let base: string;

  beforeAll(async () => {
    const running = await start(
      { mode: 'jwt', secret: SECRET, audience: 'app', rules: join(dir, 'rules.mjs') },
      recording,
    );
    base = running.url;
  });

  it('takes a valid token, records its sub as the actor, and says so on the listening line', async () => {
    const alice = await token({ sub: 'alice', aud: 'app' });
    const created = await http(base, 'POST', '/api/games', {
      body: { _id: 'g1', gold: 1 },
      headers: bearer(alice),
    });
    expect(created.status).toBe(201);
    const events = await http(base, 'GET', '/api/games/g1/events', { headers: bearer(alice) });
    expect(events.body.events.map((e: { clientId: string }) => e.clientId)).toEqual(['alice']);
    expect(listening.at(-1)).toMatchObject({ auth: `jwt (HS256 secret), rules ${join(dir, 'rules.mjs')}` });
  });

  it('answers 401 unauthorized to expired, wrongly signed, wrong-audience and malformed tokens', async () => {
    const now = Math.floor(Date.now() / 1000);
    const refused = {
      expired: await token({ sub: 'alice', aud: 'app', exp: now - 60 }),
      'wrong signature': await token(
        { sub: 'alice', aud: 'app' },
        { key: new TextEncoder().encode('x'.repeat(32)) },
      ),
      'wrong audience': await token({ sub: 'alice', aud: 'other-app' }),
      'no audience': await token({ sub: 'alice' }),
      'no sub': await token({ aud: 'app' }),
      'sub not an id': await token({ sub: 'auth0|alice', aud: 'app' }),
      'no exp': await new SignJWT({ sub: 'alice', aud: 'app' })
        .setProtectedHeader({ alg: 'HS256' })
        .sign(new TextEncoder().encode(SECRET)),
      'HS512 with the secret': await token({ sub: 'alice', aud: 'app' }, { alg: 'HS512' }),
      'not a JWT': 'alice',
    };
    for (const [what, t] of Object.entries(refused)) {
      const res = await http(base, 'GET', '/api/games/g1', { headers: bearer(t) });
      expect([res.status, res.body.error?.code, res.headers['www-authenticate']], what).toEqual([
        401,
        'unauthorized',
        'Bearer',
      ]);
    }
    expect((await http(base, 'GET', '/api/games/g1')).status).toBe(401);
  });

  it('asks the rules module: other claims reach authorize (403 forbidden otherwise)', async () => {
    const alice = await token({ sub: 'alice', aud: 'app' });
    const admin = await token({ sub: 'root', aud: 'app', role: 'admin' });
    const denied = await http(base, 'POST', '/api/locked', { body: { _id: 'l1' }, headers: bearer(alice) });
    expect([denied.status, denied.body.error.code]).toEqual([403, 'forbidden']);
    expect(
      (await http(base, 'POST', '/api/locked', { body: { _id: 'l1' }, headers: bearer(admin) })).status,
    ).toBe(201);
  });

  it('welcomes a WebSocket hello with a valid token; an expired one gets unauthorized and close 4001', async () => {
    const ws = await TestClient.connect(`${base.replace('http', 'ws')}/sync`);
    ws.send({
      type: 'hello',
      protocol: 1,
      clientId: 'tab1',
      token: await token({ sub: 'alice', aud: 'app' }),
    });
    expect(await ws.next('welcome')).toMatchObject({ clientId: 'tab1' });
    ws.close();

    const expired = await TestClient.connect(`${base.replace('http', 'ws')}/sync`);
    const exp = Math.floor(Date.now() / 1000) - 1;
    expired.send({
      type: 'hello',
      protocol: 1,
      clientId: 'tab2',
      token: await token({ sub: 'alice', aud: 'app', exp }),
    });
    expect(await expired.next('error')).toMatchObject({ code: 'unauthorized' });
    await expired.until(() => expired.closed !== undefined).catch(() => {});
    expect(expired.closed?.code).toBe(4001);
  });
});

describe('serve --auth jwt --jwks-url', () => {
  let jwks: Server;
  let jwksUrl: string;
  let privateKey: CryptoKey;

  beforeAll(async () => {
    const { publicKey } = await generateKeyPair('ES256');
    const served = await generateKeyPair('ES256');
    privateKey = served.privateKey;
    // Two keys, so the token's kid picks one; `publicKey` is a key nobody signs with.
    const keys = [
      { ...(await exportJWK(served.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' },
      { ...(await exportJWK(publicKey)), kid: 'k2', alg: 'ES256', use: 'sig' },
    ];
    jwks = createServer((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys })),
    );
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  });

  afterAll(async () => {
    jwks.closeAllConnections();
    await new Promise((resolve) => jwks.close(resolve));
  });

  it('verifies tokens against the key set and the issuer; a named authorize export is the hook', async () => {
    const running = await start({
      mode: 'jwt',
      jwksUrl,
      issuer: 'https://id.test',
      rules: join(dir, 'named.mjs'),
    });
    const sign = (claims: JWTPayload, kid = 'k1') => token(claims, { key: privateKey, alg: 'ES256', kid });
    const get = async (t: string) =>
      (await http(running.url, 'GET', '/api/games/none', { headers: bearer(t) })).status;

    expect(await get(await sign({ sub: 'alice', iss: 'https://id.test' }))).toBe(404); // authenticated: no such document
    expect(await get(await sign({ sub: 'mallory', iss: 'https://id.test' }))).toBe(403); // the rules say no
    expect(await get(await sign({ sub: 'alice', iss: 'https://evil.test' }))).toBe(401);
    expect(await get(await sign({ sub: 'alice', iss: 'https://id.test' }, 'k2'))).toBe(401); // the wrong key
    expect(await get(await sign({ sub: 'alice', iss: 'https://id.test' }, 'k9'))).toBe(401); // no such key
    expect(await get(await token({ sub: 'alice', iss: 'https://id.test' }))).toBe(401); // HS256: not in a JWKS
  });

  it('answers 500 internal, not 401, when the key set cannot be fetched', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const running = await start({
      mode: 'jwt',
      jwksUrl: `http://127.0.0.1:${port}/jwks`,
      rules: 'allow-all',
    });
    const t = await token({ sub: 'alice' }, { key: privateKey, alg: 'ES256', kid: 'k1' });
    const res = await http(running.url, 'GET', '/api/games/g1', { headers: bearer(t) });
    expect([res.status, res.body.error.code]).toEqual([500, 'internal']);
  });
});

describe('serve --rules', () => {
  it('refuses to start with a module that exports no authorize function', async () => {
    await expect(start({ mode: 'jwt', secret: SECRET, rules: join(dir, 'none.mjs') })).rejects.toThrow(
      /exports no authorize function/,
    );
  });

  it('refuses jwt without rules or an engine authorize (deny by default)', async () => {
    await expect(start({ mode: 'jwt', secret: SECRET })).rejects.toThrow(/authorize: 'allow-all'/);
  });
});
