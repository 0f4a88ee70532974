import { readGoLiveAt, writeGoLiveAt } from '../guard/index.js';
import {
  type CeilingLimit,
  cycleCeiling,
  freshnessCutoff,
  packBatches,
  rampPosition,
  takeWithinLimits,
} from '../policy/index.js';
import type { Executor } from '../store/index.js';
import {
  backendRules,
  dailyUsage,
  dueDeliveries,
  type Lead,
  lastLiveCycle,
  selectEligible,
  waitingLeadCount,
} from '../store/index.js';
import type { EngineContext } from './context.js';
import { leadsPerRequest, type UnwritableLead, writableLeads } from './partner-answer.js';
import { type CycleReport, claimBound } from './report.js';

/** The ramp's clock: set (and audited) by the first live cycle, read by every later one. */
export async function goLiveAt(ctx: EngineContext, now: number): Promise<number> {
  const { store, audit, mustLead } = ctx;
  const stored = await readGoLiveAt(store.db);
  if (stored !== null) return stored;
  return store.db.transaction().execute(async (trx) => {
    // Under the lease's lock: of several runners, one sets the clock and the others read it.
    await mustLead(trx, 'the ramp clock');
    const meanwhile = await readGoLiveAt(trx);
    if (meanwhile !== null) return meanwhile;
    await audit.append(trx, {
      actor: 'engine',
      action: 'phase4.go_live',
      details: { at: new Date(now).toISOString() },
    });
    await writeGoLiveAt(trx, now);
    return now;
  });
}

/** What a cycle may claim: the leads eligible now, within the claim limit and the day's budget. */
export interface Selection {
  live: boolean;
  /** Leads older than this are stale (never sent). */
  cutoff: number;
  claimLimit: number;
  budgetLeft: number;
  /** Actions left for new batches once the retries already due are counted. */
  room: number;
  startedAt: number;
}

/** A cycle's plan before anything is claimed: its ceiling, what it may claim and the batches chosen. */
export interface CyclePlan {
  cutoff: number;
  ceiling: number;
  limitedBy: CeilingLimit;
  actionsPerCycle: number;
  /** Retries already due at the cycle's start (they go first). */
  dueNow: number;
  selection: Selection;
  batches: Lead[][];
  /** Picked leads the partner profile cannot write: the claim quarantines them, with the reason. */
  unwritable: UnwritableLead[];
}

/**
 * Plan a cycle: the ramp stage (the ramp's clock set by the first live cycle), the ceiling, the
 * actions left after due retries, and the batches to claim. Fills the report's ramp stage, ceiling
 * and what bound the claim; `idle` when ramp stage 1 waits for an operator's confirmation.
 */
export async function planCycle(
  ctx: EngineContext,
  cycle: { live: boolean; startedAt: number; stopped: boolean; report: CycleReport },
): Promise<{ kind: 'idle'; reason: string } | ({ kind: 'plan' } & CyclePlan)> {
  const { config, store, policy } = ctx;
  const { live, startedAt, stopped, report } = cycle;
  const cutoff = freshnessCutoff(policy.maxLeadAgeDays, startedAt);
  // The limits in force at this cycle's start: a lowering while the service runs applies from here.
  const limits = ctx.limits?.() ?? config.limits;
  let rampCeiling = limits.leadsPerCycle;
  let leadsLeftToday = Number.POSITIVE_INFINITY;
  let budgetLeft = Number.POSITIVE_INFINITY;
  if (live) {
    const ramp = rampPosition(
      policy.rampStages,
      await goLiveAt(ctx, startedAt),
      startedAt,
      limits.leadsPerCycle,
    );
    report.rampStage = ramp.stage;
    rampCeiling = ramp.ceiling;
    if (ramp.confirmEachCycle) {
      const last = await lastLiveCycle(store.db);
      if (last && last.confirmed_at === null) {
        return {
          kind: 'idle',
          reason: `ramp stage ${ramp.stage}: waiting for an operator to confirm cycle ${last.id} (valhalla cycle confirm)`,
        };
      }
    }
    const today = await dailyUsage(store.db, startedAt);
    leadsLeftToday = policy.dailyLeads - today.leads;
    budgetLeft = policy.budgetExposure - today.exposure;
  }
  const { ceiling, limitedBy } = cycleCeiling({
    leadsPerCycle: limits.leadsPerCycle,
    rampCeiling,
    leadsLeftToday,
  });
  report.ceiling = ceiling;
  report.limitedBy = limitedBy;
  // In Phase 3 VALHALLA_MAX_ACTIONS_PER_CYCLE is 0 real actions; the dry run shows the policy file's would-be actions.
  const actionsPerCycle = live ? limits.actionsPerCycle : policy.actionsPerCycle;
  // Retries already due go first; new batches get only the actions left, so nothing is claimed that cannot be sent.
  const dueNow = live ? (await dueDeliveries(store.db, startedAt, actionsPerCycle)).length : 0;
  const room = Math.max(0, actionsPerCycle - dueNow);
  // Leads claimed earlier and still waiting to go out (queued, or backing off) may be sent in this
  // cycle too: they count against its ceiling, so a cycle never sends more leads than its ceiling
  // (ramp stage 1: one lead per confirmed cycle, not one new lead plus a retried one).
  const outstanding = live ? await waitingLeadCount(store.db) : 0;
  const claimLimit = stopped
    ? 0
    : Math.max(
        0,
        Math.min(ceiling - outstanding, room * leadsPerRequest(ctx.config.partner.profile.profile)),
      );
  const selection: Selection = { live, cutoff, claimLimit, budgetLeft, room, startedAt };
  const chosen = await selectBatches(ctx, store.db, selection);
  report.boundBy = claimBound({
    ceiling,
    limitedBy,
    outstanding,
    room,
    claimLimit,
    taken: chosen.taken,
    packed: chosen.batches.reduce((n, b) => n + b.length, 0),
    skippedForBudget: chosen.skippedForBudget,
    stopped,
  });
  return {
    kind: 'plan',
    cutoff,
    ceiling,
    limitedBy,
    actionsPerCycle,
    dueNow,
    selection,
    batches: chosen.batches,
    unwritable: chosen.unwritable,
  };
}

/**
 * Which pending leads a cycle may pick: score at or above the policy's minimum, not older than
 * `cutoff`; a live cycle real leads only (a synthetic lead never leaves), a dry run those not dry-run
 * before. `selectEligible` orders them best score first, then oldest, then lowest id.
 */
export function eligibleFor(
  policy: { minLeadScore: number },
  live: boolean,
  cutoff: number,
): { minScore: number; freshSince: number; notDryRun: boolean; realOnly: boolean } {
  return { minScore: policy.minLeadScore, freshSince: cutoff, notDryRun: !live, realOnly: live };
}

/**
 * The batches to claim, best leads first, within the claim limit and the budget: the one choice,
 * made before the claim's transaction (to plan the cycle) and, where another runner or connection
 * may have claimed leads meanwhile, again inside it (`claiming`), under the lease's lock, against the
 * day's count and budget as they stand then, from rows locked where the backend can
 * (`FOR UPDATE SKIP LOCKED`: a row another transaction holds is passed over, never waited for or
 * claimed twice), and never more batches than planned.
 */
export async function selectBatches(
  ctx: EngineContext,
  db: Executor,
  selection: Selection,
  claiming?: { planned: number },
): Promise<{ batches: Lead[][]; taken: number; skippedForBudget: number; unwritable: UnwritableLead[] }> {
  const { store, policy } = ctx;
  let limit = selection.claimLimit;
  let budgetLeft = selection.budgetLeft;
  if (claiming && selection.live) {
    const today = await dailyUsage(db, selection.startedAt);
    limit = Math.max(0, Math.min(limit, policy.dailyLeads - today.leads));
    budgetLeft = Math.min(budgetLeft, policy.budgetExposure - today.exposure);
  }
  const candidates = await selectEligible(db, {
    ...eligibleFor(policy, selection.live, selection.cutoff),
    limit: limit === 0 ? 0 : limit + 50,
    ...(claiming ? { skipLocked: backendRules(store.dialect).skipLockedClaims } : {}),
  });
  const within = takeWithinLimits(candidates, limit, budgetLeft);
  // A lead the profile cannot write never joins a batch: the claim quarantines it with the reason.
  const profile = ctx.config.partner.profile.profile;
  const { writable, unwritable } = writableLeads(profile, within.taken);
  const batches = packBatches(writable, leadsPerRequest(profile), selection.room);
  return {
    batches: claiming ? batches.slice(0, claiming.planned) : batches,
    taken: within.taken.length,
    skippedForBudget: within.skippedForBudget,
    unwritable,
  };
}
