/**
 * The hard maxima of the Phase 4 policy (§2, §4), compiled in. A policy file or an environment
 * variable may set a value at or below these (stricter), never above: configuration above a hard
 * maximum is refused at start, never clamped.
 */
export const HARD_CAPS = Object.freeze({
  leadsPerCycle: 100,
  actionsPerCycle: 10,
  rateLimitPerSecond: 5,
  maxConcurrentRequests: 5,
  dailyLeads: 10_000,
  apiTimeoutSeconds: 30,
  maxRetries: 3,
  /** A floor, not a ceiling: the minimum score may be raised, never lowered below 40. */
  minLeadScoreFloor: 40,
  maxLeadAgeDays: 14,
  memoryPerProcessMb: 512,
  errorRateTolerance: 0.1,
  budgetExposure: 50_000_000,
});

export type HardCaps = typeof HARD_CAPS;

/** The most leads one request to the partner carries, whatever contract or profile it is written in. */
export const MAX_LEADS_PER_REQUEST = 100;
