import type { Transaction } from 'kysely';
import { readGoLiveAt, writeGoLiveAt } from '../guard/index.js';
import { packBatches, takeWithinLimits } from '../policy/index.js';
import { type Database, dailyUsage, type Lead, selectEligible } from '../store/index.js';
import type { EngineContext } from './context.js';
import { MAX_LEADS_PER_REQUEST } from './payload.js';

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

/**
 * Inside the claim's transaction, under the lease's lock: the batches to claim, chosen again from
 * rows locked `FOR UPDATE SKIP LOCKED` (PostgreSQL: a row another transaction holds is passed over,
 * never waited for or claimed twice), against the day's count and budget as they stand now.
 */
export async function claimable(
  ctx: EngineContext,
  trx: Transaction<Database>,
  plan: {
    live: boolean;
    cutoff: number;
    claimLimit: number;
    budgetLeft: number;
    room: number;
    startedAt: number;
    planned: number;
  },
): Promise<Lead[][]> {
  const { store, policy } = ctx;
  let limit = plan.claimLimit;
  let budgetLeft = plan.budgetLeft;
  if (plan.live) {
    const today = await dailyUsage(trx, plan.startedAt);
    limit = Math.max(0, Math.min(limit, policy.dailyLeads - today.leads));
    budgetLeft = Math.min(budgetLeft, policy.budgetExposure - today.exposure);
  }
  const candidates = await selectEligible(trx, {
    minScore: policy.minLeadScore,
    freshSince: plan.cutoff,
    limit: limit === 0 ? 0 : limit + 50,
    notDryRun: !plan.live,
    realOnly: plan.live,
    skipLocked: store.dialect === 'postgres',
  });
  return packBatches(
    takeWithinLimits(candidates, limit, budgetLeft).taken,
    MAX_LEADS_PER_REQUEST,
    plan.room,
  ).slice(0, plan.planned);
}
