export { canonicalJson } from './canonical-json.js';
export { HARD_CAPS, type HardCaps } from './caps.js';
export { type EligibilityRules, freshnessCutoff, initialLeadState, isStale } from './eligibility.js';
export { assertNever, LEAD_STATES, type LeadState, ROW_OUTCOMES, type RowOutcome } from './lead-state.js';
