/** A database error that passes (the store's rule, re-exported for the runner's callers). */
export { isTransient } from '../store/index.js';
export { type CycleOptions, cycleSendsLive } from './cycle.js';
export { createEngine, type Engine, type EngineDeps } from './engine.js';
export {
  ClockSkew,
  createLeadership,
  type Leadership,
  type LeadershipOptions,
  MAX_CLOCK_SKEW_MS,
  NotLeader,
  processGone,
  type Term,
} from './leadership.js';
export {
  createOperatorActions,
  type OperatorActions,
  OperatorError,
  type QuarantinedLead,
  type QuarantineResult,
} from './operator.js';
export { DUPLICATE_AT_PARTNER } from './outcome.js';
export type { PartnerLead, PartnerPort, SendOutcome } from './partner-port.js';
export { leadKey, MAX_LEADS_PER_REQUEST, payloadSha256, toPartnerLead, toProfileLead } from './payload.js';
export { eligibleFor } from './plan.js';
export { type CycleReport, claimBound, emptyCycleReport } from './report.js';
export { describeCycle, type RunOptions, runCycles } from './runner.js';
