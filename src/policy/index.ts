export {
  AUDIT_ACTIONS,
  type AuditAction,
  type GuardVerdict,
  guardAction,
  isAuditAction,
  modeAction,
} from './audit-actions.js';
export { canonicalJson } from './canonical-json.js';
export { HARD_CAPS, type HardCaps, MAX_LEADS_PER_REQUEST } from './caps.js';
export {
  type CeilingInputs,
  type CeilingLimit,
  cycleCeiling,
  exposure,
  packBatches,
  takeWithinLimits,
  utcDayStart,
} from './ceiling.js';
export { deepFreeze } from './deep-freeze.js';
export {
  type AnsweredOutcome,
  assertNever,
  CYCLE_KINDS,
  type CycleKind,
  DELIVERY_EVENT_KINDS,
  DELIVERY_STATES,
  type DeliveryEvent,
  type DeliveryEventKind,
  type DeliveryFacts,
  type DeliveryMove,
  type DeliveryState,
  type DeliveryTransition,
  type DueState,
  planDeliveryTransition,
} from './delivery-lifecycle.js';
export {
  answered,
  decideInterrupted,
  decideOutcome,
  GATEWAY_STATUSES,
  type KeyHistory,
  MAX_PARTNER_WAIT_MS,
  MAX_UNANSWERED_PER_KEY,
  type OutcomeRules,
  type OutcomeVerdict,
  type RequestOutcomeFacts,
  THROTTLE_DEFAULT_WAIT_MS,
  THROTTLE_STORM_MS,
  type ThrottleState,
  throttleDecision,
} from './delivery-outcome.js';
export { type EligibilityRules, freshnessCutoff, initialLeadState, isStale } from './eligibility.js';
export {
  ERROR_RATE_Z,
  type ErrorRateDecision,
  type ErrorRateRule,
  errorRateDecision,
  wilsonLowerBound,
} from './error-rate.js';
export { checkHostHeader, type HostDecision } from './host-header.js';
export { LEAD_STATES, type LeadState } from './lead-state.js';
export { isLoopbackHost } from './loopback.js';
export {
  heapLimitWithinPolicy,
  WORKER_RSS_SHARE,
  workerHeapFlags,
  workerRestartRssBytes,
} from './memory.js';
export {
  MODES,
  type Mode,
  type ModeChange,
  type ModeCommand,
  nextDailyRestart,
  planModeChange,
} from './mode.js';
export { type RampPosition, type RampStageRule, rampPosition } from './ramp.js';
export {
  backoffDelayMs,
  type Classification,
  classifyNetworkError,
  classifyStatus,
  type FailureClass,
  isTlsVersionRefusal,
  parseRetryAfter,
  RETRYABLE_NETWORK_CODES,
  retriesLeft,
  STATUS_RULES,
  type StatusClassification,
  TLS_VERSION_REFUSAL_CODES,
  TLS_VERSION_REFUSAL_REASON,
} from './retry.js';
export {
  analyseGaps,
  type BeatSample,
  binScores,
  COMPARE_HOURS,
  DEFAULT_GAP_RULES,
  type Gap,
  type GapAnalysis,
  type GapRules,
  type GapViolation,
  MAX_HEARTBEAT_GAP_MS,
  MAX_RESTART_GAP_MS,
  MIN_LEADS_PER_SIDE,
  overlappingProcesses,
  type Point,
  type ProcessOverlap,
  PSI_EPSILON,
  PSI_LIMIT,
  pooledSlope,
  psi,
  RESTART_STOP_TOLERANCE_MS,
  RSS_SLOPE_LIMIT_MB_PER_HOUR,
  rssSlopeMbPerHour,
  SCORE_BINS,
  type ScoreBin,
  slope,
} from './stability.js';
export { isSyntheticExternalId, SYNTHETIC_ID_PREFIX } from './synthetic.js';
