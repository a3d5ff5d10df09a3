/** The error the client reports (channels, feeds and repairs make it; `onError` and promises carry it). */
import { type ErrorCode, EventSyncError } from '../core/errors.js';

/** An error the client reports: a server `error` frame, a refused request, a failed repair. */
export class EventSyncClientError extends EventSyncError {
  override name = 'EventSyncClientError';
  /** The subscription (or message type) the error is about, when the server named one. */
  readonly ref: string | undefined;
  /** With code `mutation_refused`: the mutator's own reason (`not_enough_xp`). */
  readonly reason: string | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    options: { ref?: string; cause?: unknown; reason?: string | undefined } = {},
  ) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.ref = options.ref;
    this.reason = options.reason;
  }
}
