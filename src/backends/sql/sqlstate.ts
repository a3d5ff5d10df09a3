/**
 * One map from PostgreSQL errors (SQLSTATE codes, both drivers) to eventsync's error codes.
 * The original error always rides along as `cause`; messages say what was being done.
 */
import { EventSyncError, ValidationError } from '../../core/errors.js';

/** SQLSTATE → what it means for a caller. Anything not listed is `internal`. */
const byState: Record<
  string,
  { code: 'validation' | 'already_exists' | 'version_conflict' | 'timeout' | 'closed'; hint: string }
> = {
  // A document the database can't store: `\u0000` in a string (jsonb has no NUL) …
  '22P05': {
    code: 'validation',
    hint: 'the document contains a character PostgreSQL cannot store (\\u0000)',
  },
  // … or too big / too deep for jsonb.
  '54000': { code: 'validation', hint: 'the document exceeds a PostgreSQL size limit' },
  '54001': { code: 'validation', hint: 'the document is nested too deeply for PostgreSQL' },
  '23505': { code: 'already_exists', hint: 'the id exists already' },
  // Retryable concurrency failures (not raised at READ COMMITTED by our statements, but possible
  // in a caller's SERIALIZABLE transaction).
  '40001': { code: 'version_conflict', hint: 'serialization failure, retry' },
  '40P01': { code: 'version_conflict', hint: 'deadlock, retry' },
  '57014': { code: 'timeout', hint: 'the statement was cancelled (statement_timeout?)' },
  '57P01': { code: 'closed', hint: 'the server is shutting down' },
  '57P02': { code: 'closed', hint: 'the server is shutting down' },
  '57P03': { code: 'closed', hint: 'the server is not accepting connections' },
};

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** Wraps a driver error (or returns an EventSyncError unchanged). `doing` is e.g. `replace "x" in "games"`. */
export function mapSqlError(error: unknown, doing: string): EventSyncError {
  if (EventSyncError.is(error)) return error;
  const state = sqlState(error);
  const detail = error instanceof Error ? error.message : String(error);
  const known = state === undefined ? undefined : byState[state];
  if (known?.code === 'validation') {
    return new ValidationError(`${doing}: ${known.hint} (${detail})`, '', { cause: error });
  }
  if (known) return new EventSyncError(known.code, `${doing}: ${known.hint} (${detail})`, { cause: error });
  return new EventSyncError('internal', `${doing} failed: ${state ? `SQLSTATE ${state}: ` : ''}${detail}`, {
    cause: error,
  });
}
