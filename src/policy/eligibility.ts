import type { LeadState } from './lead-state.js';

const DAY_MS = 86_400_000;

export interface EligibilityRules {
  minLeadScore: number;
  maxLeadAgeDays: number;
}

/** The state a freshly ingested, valid lead starts in: pending, or a side exit with its reason. */
export function initialLeadState(
  lead: { score: number; sourceTs: number },
  rules: EligibilityRules,
  now: number,
): { state: Extract<LeadState, 'pending' | 'below_threshold' | 'expired'>; reason: string | null } {
  if (lead.score < rules.minLeadScore) {
    return { state: 'below_threshold', reason: `score ${lead.score} is below ${rules.minLeadScore}` };
  }
  if (isStale(lead.sourceTs, rules.maxLeadAgeDays, now)) {
    return { state: 'expired', reason: `older than ${rules.maxLeadAgeDays} days` };
  }
  return { state: 'pending', reason: null };
}

/** True when a lead's source timestamp is more than maxLeadAgeDays before now. */
export function isStale(sourceTs: number, maxLeadAgeDays: number, now: number): boolean {
  return now - sourceTs > maxLeadAgeDays * DAY_MS;
}

/** The oldest source timestamp that is still fresh at `now`. */
export function freshnessCutoff(maxLeadAgeDays: number, now: number): number {
  return now - maxLeadAgeDays * DAY_MS;
}
