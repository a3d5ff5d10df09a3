/**
 * How `serve` knows who a request comes from (`auth.mode`, the CLI's `--auth`) and what it may do
 * (`auth.rules`, `--rules`): the `authenticate` and `authorize` hooks it gives the engine. The
 * default policy, `none`, takes a token as the actor's name; `jwt` verifies JWTs.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRemoteJWKSet, errors, type JWTVerifyOptions, jwtVerify } from 'jose';
import { isId } from '../core/ids.js';
import type { Logger } from '../events/logger.js';
import type { Authenticate, Authorize } from '../sync/types.js';
import { isLoopback } from './access.js';
import { StartupError } from './startup-errors.js';

/**
 * Who a request comes from (`mode`) and what it may do (`rules`: the path of a module that
 * exports `authorize`, or `'allow-all'`).
 */
export type AuthSpec = { mode: 'none'; rules?: string } | JwtSpec;

/** `mode: 'jwt'`: exactly one of `secret` (HS256) and `jwksUrl`. */
export interface JwtSpec {
  mode: 'jwt';
  secret?: string;
  jwksUrl?: string;
  audience?: string;
  issuer?: string;
  /** Absent only through `serve()`'s API, when `engine.authorize` is given instead. */
  rules?: string;
}

export interface ServeAuth {
  authenticate: Authenticate;
  /** Absent for `--auth jwt` without rules: then the caller's `engine.authorize` must say. */
  authorize?: Authorize | 'allow-all';
  /** For the `listening` log line. */
  summary: string;
}

/**
 * Why serving without authentication on `host` is refused, or `undefined` when it is not: on a
 * loopback address only this machine's users and programs can act as anyone; on any other,
 * anyone who reaches it can, so that must be asked for (`explicit`).
 */
export function unauthenticatedHostProblem(host: string, explicit: boolean): string | undefined {
  if (explicit || isLoopback(host)) return undefined;
  return `the host ${host} is not a loopback address, and without authentication anyone who reaches it may act as anyone`;
}

/** The hooks `spec` asks for; loads the rules module, if any (a broken one fails the start). */
export async function serveAuth(spec: AuthSpec, host: string, logger: Logger): Promise<ServeAuth> {
  const rules = spec.rules === undefined ? {} : { authorize: await loadRules(spec.rules) };
  const ruling = spec.rules === undefined ? '' : `, rules ${spec.rules}`;
  if (spec.mode === 'none') {
    return {
      authenticate: nameFromToken,
      authorize: 'allow-all',
      ...rules,
      summary: `none: a token is taken as the actor's name, so anyone ${isLoopback(host) ? 'on this machine' : 'who can reach this address'} may act as anyone${ruling}`,
    };
  }
  const key = spec.secret !== undefined ? 'HS256 secret' : `JWKS ${spec.jwksUrl}`;
  return { authenticate: jwtAuthenticate(spec, logger), ...rules, summary: `jwt (${key})${ruling}` };
}

/**
 * `--auth none`: a token is taken at its word as the actor's name (the demo's tabs send their
 * client id), and no token means `anonymous`. It names who made each change in events and vector
 * clocks; it proves nothing, so it is for the demo and local use only.
 */
export const nameFromToken: Authenticate = ({ token }) => ({
  id: isId(token) ? token : 'anonymous',
});

/**
 * `--auth jwt`: the token must be a JWT signed with the secret (HS256 only, so a token cannot
 * pick another algorithm for the key) or by a key of the JWKS, unexpired, with `aud`/`iss` when
 * given. Its `sub` is the principal's id, the actor recorded in events, so it must be an id
 * (vector clocks are keyed by it); the other claims come along for `authorize`.
 */
export function jwtAuthenticate(spec: JwtSpec, logger: Logger): Authenticate {
  const key =
    spec.secret !== undefined
      ? new TextEncoder().encode(spec.secret)
      : createRemoteJWKSet(new URL(spec.jwksUrl!));
  const options: JWTVerifyOptions = {
    // Without exp a stolen token would work forever.
    requiredClaims: ['sub', 'exp'],
    ...(spec.secret !== undefined ? { algorithms: ['HS256'] } : {}),
    ...(spec.audience !== undefined ? { audience: spec.audience } : {}),
    ...(spec.issuer !== undefined ? { issuer: spec.issuer } : {}),
  };
  return async ({ token }) => {
    if (!token) return undefined;
    let claims: Record<string, unknown>;
    try {
      claims = (await jwtVerify(token, key, options)).payload;
    } catch (error) {
      if (!isRefusal(error)) throw error;
      logger.debug({ reason: error.code }, 'eventsync: token refused');
      return undefined;
    }
    if (!isId(claims.sub)) {
      logger.debug({ reason: 'sub is not an id' }, 'eventsync: token refused');
      return undefined;
    }
    return { ...claims, id: claims.sub as string };
  };
}

/** jose errors that are the server's, not the token's: the JWKS unreachable (not JOSE errors) or broken. */
const SERVER_SIDE = new Set(['ERR_JOSE_GENERIC', 'ERR_JWKS_TIMEOUT', 'ERR_JWKS_INVALID', 'ERR_JWK_INVALID']);

/** Whether the token is to blame (401); anything else is thrown on (500, logged). */
function isRefusal(error: unknown): error is errors.JOSEError {
  return error instanceof errors.JOSEError && !SERVER_SIDE.has(error.code);
}

/** `rules` (`--rules`): `allow-all`, or a module whose default export (or `authorize` export) is the hook. */
export async function loadRules(rules: string): Promise<Authorize | 'allow-all'> {
  if (rules === 'allow-all') return 'allow-all';
  const path = resolve(rules);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new StartupError(`could not load the rules module ${path}: ${why}`, { cause: error });
  }
  const hook = typeof module.default === 'function' ? module.default : module.authorize;
  if (typeof hook !== 'function') {
    throw new Error(
      `the rules module ${rules} exports no authorize function: export default function authorize(principal, action, collection, documentId) { … }`,
    );
  }
  return hook as Authorize;
}
