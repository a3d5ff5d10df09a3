/**
 * Why `serve` could not start, as one sentence that says what to do: the port, the host, the
 * database. The system's error rides along as `cause` (and its code as `code`), for a debug log.
 */

/** `serve` could not start: its message says what to do; `code` is the system's (`EADDRINUSE`, `ECONNREFUSED`, a SQLSTATE). */
export class StartupError extends Error {
  readonly code: string | undefined;

  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = 'StartupError';
    this.code = systemCode(options.cause);
  }
}

/**
 * The code of the system or database error at the root of `error`, looking through `cause`
 * and `AggregateError.errors` (a refused `localhost` is one error per address); eventsync's own
 * codes (`internal`, …) are lowercase and skipped.
 */
export function systemCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null || depth > 5) return undefined;
  const { code, cause, errors } = error as { code?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === 'string' && /^[A-Z0-9_]+$/.test(code)) return code;
  for (const inner of [cause, ...(Array.isArray(errors) ? errors : [])]) {
    const found = systemCode(inner, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Listening on `host`:`port` failed: what to do about it. */
export function listenProblem(error: unknown, host: string, port: number): string {
  const code = systemCode(error);
  const where = `port ${port} on ${host}`;
  if (code === 'EADDRINUSE') {
    return `${where} is already in use: stop the program that listens there, or choose another port (0 picks a free one)`;
  }
  if (code === 'EACCES') return `${where} needs privileges this user lacks: choose a port above 1023`;
  if (code === 'EADDRNOTAVAIL') {
    return `${host} is not an address of this machine: listen on one of its addresses, 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)`;
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return `the host name ${host} could not be resolved: listen on an address such as 127.0.0.1 or 0.0.0.0`;
  }
  return `could not listen on ${where}: ${error instanceof Error ? error.message : String(error)}`;
}
