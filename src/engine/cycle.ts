import { readMode } from '../guard/index.js';
import { isOutboundError } from '../outbound/index.js';
import {
  cycleCeiling,
  freshnessCutoff,
  packBatches,
  rampPosition,
  takeWithinLimits,
} from '../policy/index.js';
import {
  ClaimConflict,
  createCycle,
  dailyUsage,
  dueDeliveries,
  expireStalePending,
  finishCycle,
  lastLiveCycle,
  selectEligible,
  waitingLeadCount,
} from '../store/index.js';
import { claimBatch, dryRun } from './claim.js';
import type { EngineContext } from './context.js';
import type { CycleOptions } from './engine.js';
import { recordOutcome } from './outcome.js';
import { checkPartner } from './partner-check.js';
import { readPartnerHold } from './partner-hold.js';
import type { SendOutcome } from './partner-port.js';
import { MAX_LEADS_PER_REQUEST, toPartnerLead } from './payload.js';
import { claimable, goLiveAt } from './plan.js';
import {
  type Authorized,
  type CycleContext,
  type CycleReport,
  claimBound,
  emptyCycleReport,
} from './report.js';
import { afterAction, finish, holdBack, waitForRetry } from './send.js';

/**
 * A cycle costs one commit to open (expire, record the cycle, claim new batches, authorise the first
 * request) and one per request (its outcome, the next request's authorisation, or the cycle's end):
 * with synchronous=FULL each commit is an fsync, the cycle's main cost.
 */
export async function runCycle(ctx: EngineContext, options: CycleOptions = {}): Promise<CycleReport> {
  const { config, store, audit, clock, logger, guard, partner, policy, mustLead, leadership } = ctx;
  const { abortRequests } = options;
  const startedAt = clock.now();
  const mode = await readMode(store.db);
  const live = config.phase === 4 && !config.dryRun && !config.outboundDisabled && mode === 'live';
  // `holdNew` is about sending: a dry run (after a rollback too) goes on recording.
  const holdNew = live ? options.holdNew : undefined;
  // In a live cycle, stopping (SIGTERM) or the mode leaving `live` both mean: claim nothing more,
  // start no request.
  const stop = options.stop && holdNew ? AbortSignal.any([options.stop, holdNew]) : (options.stop ?? holdNew);
  // A health check or token request is cut by the shutdown's deadline, and not started (or cut) once
  // the mode has left `live`: after a rollback nothing at all goes to the partner.
  const cutChecks =
    abortRequests && holdNew ? AbortSignal.any([abortRequests, holdNew]) : (abortRequests ?? holdNew);
  const report = emptyCycleReport(live ? 'live' : 'dry_run');
  if (config.phase === 4 && mode === 'paused')
    return idle(ctx, report, startedAt, 'paused: the queue is kept');
  if (live) {
    // The partner asked every request to wait (a 429's or 503's Retry-After): nothing goes out before.
    const hold = await readPartnerHold(store.db);
    if (hold.holdUntil > startedAt) {
      return idle(
        ctx,
        report,
        startedAt,
        `the partner asked us to wait until ${new Date(hold.holdUntil).toISOString()} (Retry-After): nothing sent`,
      );
    }
  }

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
        return idle(
          ctx,
          report,
          startedAt,
          `ramp stage ${ramp.stage}: waiting for an operator to confirm cycle ${last.id} (valhalla cycle confirm)`,
        );
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
  const context: CycleContext = {
    cycleId: 0,
    ceiling,
    actionsPerCycle,
    actions: 0,
    healthPassedAt: null,
    retried: new Set(),
  };
  // Retries already due go first; new batches get only the actions left, so nothing is claimed that cannot be sent.
  const dueNow = live ? (await dueDeliveries(store.db, startedAt, actionsPerCycle)).length : 0;
  const room = Math.max(0, actionsPerCycle - dueNow);
  // Leads claimed earlier and still waiting to go out (queued, or backing off) may be sent in this
  // cycle too: they count against its ceiling, so a cycle never sends more leads than its ceiling
  // (ramp stage 1: one lead per confirmed cycle, not one new lead plus a retried one).
  const outstanding = live ? await waitingLeadCount(store.db) : 0;
  const claimLimit = stop?.aborted
    ? 0
    : Math.max(0, Math.min(ceiling - outstanding, room * MAX_LEADS_PER_REQUEST));
  const candidates = await selectEligible(store.db, {
    minScore: policy.minLeadScore,
    freshSince: cutoff,
    limit: claimLimit === 0 ? 0 : claimLimit + 50,
    notDryRun: !live,
    realOnly: live,
  });
  const within = takeWithinLimits(candidates, claimLimit, budgetLeft);
  let batches = packBatches(within.taken, MAX_LEADS_PER_REQUEST, room);
  report.boundBy = claimBound({
    ceiling,
    limitedBy,
    outstanding,
    room,
    claimLimit,
    taken: within.taken.length,
    packed: batches.reduce((n, b) => n + b.length, 0),
    skippedForBudget: within.skippedForBudget,
    stopped: stop?.aborted === true,
  });
  // A health check must pass before any batch goes out (and before new leads are claimed for one).
  if (live && (dueNow > 0 || batches.length > 0) && !stop?.aborted) {
    if (!(await checkPartner(ctx, context, report, cutChecks))) batches = [];
    // SIGTERM during the health check: claim nothing new.
    if (stop?.aborted) batches = [];
  }

  let next: Authorized | null = null;
  // The gates' answer for the guard, asked outside the transaction (it reads the database).
  if (live) await guard.prepare();
  try {
    next = await store.db.transaction().execute(async (trx) => {
      // The lease's row lock: no other runner claims or authorises until this commits.
      await mustLead(trx, 'claim');
      // Several runners (or PostgreSQL's concurrent connections): choose again under the lock.
      if (batches.length > 0 && (leadership !== null || store.dialect === 'postgres')) {
        batches = await claimable(ctx, trx, {
          live,
          cutoff,
          claimLimit,
          budgetLeft,
          room,
          startedAt,
          planned: batches.length,
        });
      }
      const expiredIds = await expireStalePending(
        trx,
        cutoff,
        startedAt,
        `older than ${policy.maxLeadAgeDays} days while pending`,
      );
      if (expiredIds.length > 0) {
        await audit.append(trx, {
          actor: 'engine',
          action: 'leads.expired',
          details: { count: expiredIds.length, leads: expiredIds },
        });
      }
      report.expired = expiredIds.length;
      context.cycleId = await createCycle(trx, {
        startedAt,
        phase: config.phase,
        kind: report.kind,
        rampStage: report.rampStage,
        ceiling,
        limitedBy,
      });
      report.cycleId = context.cycleId;
      for (const batch of batches) {
        if (live) await claimBatch(ctx, trx, context.cycleId, batch, report);
        else await dryRun(ctx, trx, context, batch, report);
      }
      return afterAction(ctx, trx, context, report, stop, true);
    });
  } catch (error) {
    if (!(error instanceof ClaimConflict)) throw error;
    logger.warn({ lost: error.lost }, 'leads claimed by another runner meanwhile; cycle rolled back');
    Object.assign(report, { expired: 0, claimed: 0, dryRunRecorded: 0 });
    return idle(
      ctx,
      report,
      startedAt,
      'leads were claimed by another runner meanwhile: nothing claimed this cycle',
    );
  }

  while (next !== null && partner) {
    const current: Authorized = next;
    let outcome: SendOutcome | null;
    try {
      outcome = await partner.sendBatch(
        { batchKey: current.delivery.batch_key, leads: current.leads.map(toPartnerLead) },
        abortRequests,
        holdNew,
      );
    } catch (error) {
      // The client throws only when it sent nothing (cancelled while waiting for a token or the
      // rate limiter, or closed). Held back by a mode change: the batch returns to its queue as it
      // was, this attempt uncounted. At shutdown it is parked. Anything else is a bug.
      if (holdNew?.aborted && !abortRequests?.aborted && isOutboundError(error, 'CANCELLED')) {
        await holdBack(ctx, current, report);
        break;
      }
      // The shared start log did not grant the start (the database gone, the lease lost): nothing
      // was sent. Back to its queue uncounted while this runner still leads (the database may not
      // answer: then recovery finds it `sending` and resends it under its key); the term ends.
      if (isOutboundError(error, 'START_NOT_GRANTED')) {
        await holdBack(ctx, current, report).catch(() => undefined);
        throw error;
      }
      if (!abortRequests?.aborted) throw error;
      outcome = null;
    }
    if (outcome === null || (abortRequests?.aborted && outcome.kind !== 'accepted')) {
      // Cut by shutdown, not failed by the partner: the batch stays `sending`, uses no retry, and
      // the next start resends it under the same key (the partner may have it already).
      await audit.record({
        actor: 'engine',
        action: 'batch.parked',
        subject: `batch:${current.delivery.batch_key}`,
        details: {
          delivery: current.delivery.id,
          attempt: current.attempt,
          reason: 'request cut at shutdown',
        },
      });
      break;
    }
    await guard.prepare();
    next = await store.db.transaction().execute(async (trx) => {
      // The lease's row first (then the audit lock, in that order everywhere): a runner that no
      // longer leads records nothing; the batch stays `sending` for the leader's recovery, which
      // resends it under its own key (the partner replays it).
      await mustLead(trx, 'the outcome');
      await recordOutcome(ctx, trx, context, current, outcome, report);
      return afterAction(ctx, trx, context, report, stop, true);
    });
    if (next === null && !context.finished) next = await waitForRetry(ctx, context, report, stop, cutChecks);
  }
  if (!context.finished) {
    await store.db.transaction().execute(async (trx) => finish(ctx, trx, context, report));
  }
  return report;
}

export async function idle(
  ctx: EngineContext,
  report: CycleReport,
  startedAt: number,
  reason: string,
): Promise<CycleReport> {
  const { config, store, clock } = ctx;
  report.kind = 'idle';
  report.idleReason = reason;
  report.cycleId = await store.db.transaction().execute(async (trx) => {
    const id = await createCycle(trx, {
      startedAt,
      phase: config.phase,
      kind: 'idle',
      rampStage: report.rampStage,
      ceiling: 0,
      limitedBy: 'idle',
    });
    await finishCycle(trx, id, { finishedAt: clock.now(), claimed: 0, actions: 0, summary: report });
    return id;
  });
  return report;
}
