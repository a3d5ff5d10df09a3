/**
 * The connection state machine, as one typed table: every state lists every event, so adding a
 * state or an event fails to compile until each row says what happens (`undefined`: the event
 * is ignored in that state). Both a single transport connection (a WebSocket, an SSE stream) and
 * the client as a whole move through it.
 */

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

export type ConnectionEvent =
  /** `connect()` was called (or a stopped connection is started again). */
  | 'connect'
  /** The server accepted the connection (`welcome`, or the SSE stream opened). */
  | 'open'
  /** The connection ended or failed without being asked to: wait, then retry. */
  | 'drop'
  /** The backoff delay is over: try again. */
  | 'retry'
  /** `disconnect()` was called. */
  | 'disconnect'
  /** Retrying cannot help (credentials refused, protocol not spoken). */
  | 'fatal';

export type TransitionTable = {
  readonly [S in ConnectionState]: { readonly [E in ConnectionEvent]: ConnectionState | undefined };
};

export const transitions: TransitionTable = {
  idle: {
    connect: 'connecting',
    open: undefined,
    drop: undefined,
    retry: undefined,
    disconnect: 'closed',
    fatal: 'closed',
  },
  connecting: {
    connect: undefined,
    open: 'connected',
    drop: 'reconnecting',
    retry: undefined,
    disconnect: 'closed',
    fatal: 'closed',
  },
  connected: {
    connect: undefined,
    open: undefined,
    drop: 'reconnecting',
    retry: undefined,
    disconnect: 'closed',
    fatal: 'closed',
  },
  reconnecting: {
    connect: 'connecting',
    // The client as a whole: the last of its connections came back.
    open: 'connected',
    drop: undefined,
    retry: 'connecting',
    disconnect: 'closed',
    fatal: 'closed',
  },
  closed: {
    connect: 'connecting',
    open: undefined,
    drop: undefined,
    retry: undefined,
    disconnect: undefined,
    fatal: undefined,
  },
};

/** The state after `event`, or `undefined` when the event does not apply in `state`. */
export function nextState(state: ConnectionState, event: ConnectionEvent): ConnectionState | undefined {
  return transitions[state][event];
}
