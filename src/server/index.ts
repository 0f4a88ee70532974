export { AUTH_FAILURE_LIMITS, createApiToken, createTokenBook, type Principal, roleAtLeast } from './auth.js';
export { EVENT_POLL_MS } from './events.js';
export { ApiError, SESSION_COOKIE } from './http.js';
export { INGEST_BODY_LIMIT_BYTES } from './routes/ingest.js';
export {
  buildServer,
  DEFAULT_WEB_ROOT,
  type RunningServer,
  type ServerDeps,
  SIGN_IN_ATTEMPTS_PER_MINUTE,
  startServer,
} from './server.js';
