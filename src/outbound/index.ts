export { createPartnerClient, type PartnerClient } from './client.js';
export { ConcurrencyGate } from './concurrency.js';
export { checkPartnerUrl, urlBelow } from './endpoints.js';
export { isOutboundError, OutboundError, type OutboundErrorCode } from './errors.js';
export {
  DEFAULT_RATE_MARGIN_MS,
  type LimiterSleep,
  limiterShape,
  maxStartsInAnySecond,
  type RatePermit,
  SlidingWindowLimiter,
  type SlidingWindowLimiterOptions,
  type StartLimiter,
} from './limiter.js';
export {
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_TOKEN_REFRESH_MARGIN_MS,
  type PartnerClientOptions,
} from './options.js';
export { settleOrAbort, tlsAgent } from './tls-agent.js';
export type {
  AcceptedOutcome,
  AuthOutcome,
  HealthResult,
  PartnerAcceptance,
  PartnerBatch,
  PartnerLead,
  PermanentOutcome,
  RequestStage,
  RetryableOutcome,
  SendOutcome,
  TokenOutcome,
} from './types.js';
