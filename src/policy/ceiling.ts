/** What limits a cycle: the smallest of the policy's ceilings wins. */
export type CeilingLimit = 'leads_per_cycle' | 'ramp_stage' | 'daily_cap';

export interface CeilingInputs {
  leadsPerCycle: number;
  rampCeiling: number;
  leadsLeftToday: number;
}

/** Ceiling = min(leads/cycle, ramp stage, leads left today); never negative. Budget is applied per lead. */
export function cycleCeiling(inputs: CeilingInputs): { ceiling: number; limitedBy: CeilingLimit } {
  const candidates: [number, CeilingLimit][] = [
    [inputs.leadsPerCycle, 'leads_per_cycle'],
    [inputs.rampCeiling, 'ramp_stage'],
    [inputs.leadsLeftToday, 'daily_cap'],
  ];
  let best = candidates[0]!;
  for (const c of candidates) if (c[0] < best[0]) best = c;
  return { ceiling: Math.max(0, Math.floor(best[0])), limitedBy: best[1] };
}

/**
 * A lead's budget exposure, the policy's "score × lead value" as written (Gate 6: max $50M); a lead
 * without a value exposes nothing. The cap applies per UTC day, beside the daily lead cap: the store
 * adds each live batch's exposure to the day's row when the batch is claimed.
 */
export function exposure(lead: { score: number; value: number | null }): number {
  return lead.score * (lead.value ?? 0);
}

/**
 * From candidates already in the policy's order (best score first), take leads while the ceiling and
 * the budget left allow; a lead whose exposure does not fit is skipped, not split.
 */
export function takeWithinLimits<T extends { score: number; value: number | null }>(
  candidates: readonly T[],
  ceiling: number,
  budgetLeft: number,
): { taken: T[]; skippedForBudget: number } {
  const taken: T[] = [];
  let spent = 0;
  let skippedForBudget = 0;
  for (const lead of candidates) {
    if (taken.length >= ceiling) break;
    const cost = exposure(lead);
    if (spent + cost > budgetLeft) {
      skippedForBudget++;
      continue;
    }
    spent += cost;
    taken.push(lead);
  }
  return { taken, skippedForBudget };
}

/** Split leads into batches of at most `maxBatch`, and no more batches than `maxActions`. */
export function packBatches<T>(leads: readonly T[], maxBatch: number, maxActions: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < leads.length && batches.length < maxActions; i += maxBatch) {
    batches.push(leads.slice(i, i + maxBatch));
  }
  return batches;
}

/** The start of the UTC day containing `now` (the daily cap's window). */
export function utcDayStart(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}
