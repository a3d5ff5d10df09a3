/**
 * `eventsync/server`: the sync engine and its transports for Node.
 *
 * ```ts
 * const engine = await SyncEngine.create({ db });
 * const server = app.listen(8080); // an Express app, or any http.Server
 * attach(server, engine);          // WebSocket /sync, SSE /sse/…, REST /api/…
 * ```
 */

export { SSE_SUBSCRIPTION } from './protocol/wire.js';
export {
  type Attached,
  type AttachOptions,
  attach,
  createHandler,
  type TransportHandler,
} from './server/attach.js';
export type { RequestHandler } from './server/http.js';
export { applyMergePatch } from './server/merge-patch.js';
export { createRestHandler, type RestOptions } from './server/rest.js';
export { type RunningServer, type ServeOptions, serve } from './server/serve.js';
export type { AuthSpec, JwtSpec } from './server/serve-auth.js';
export { createSseHandler, type SseHandler, type SseOptions } from './server/sse.js';
export { StartupError } from './server/startup-errors.js';
export { type AttachedTransport, attachWebSocket, type WebSocketOptions } from './server/ws.js';
export { SyncEngine, type SyncEngineOptions } from './sync/engine.js';
export type { MutationAnswer, MutationCaller, MutationRequest } from './sync/mutations.js';
export type { Session } from './sync/session.js';
export type {
  Action,
  Authenticate,
  Authorize,
  AuthorizeQuery,
  AuthRequest,
  Principal,
  Sink,
  SyncLimits,
} from './sync/types.js';
export { defaultLimits } from './sync/types.js';
