import { isOutboundError } from '../outbound/index.js';
import type { Executor, StoreTransaction } from '../store/index.js';
import { deliveryLeads, dueDeliveries, finishCycle, nextRetryAt } from '../store/index.js';
import type { EngineContext } from './context.js';
import { dueState, planMove, recordMove } from './lifecycle.js';
import { recordOutcome, refuseDelivery } from './outcome.js';
import { batchUnwritable } from './partner-answer.js';
import { checkPartner } from './partner-check.js';
import { readPartnerHold } from './partner-hold.js';
import type { SendOutcome } from './partner-port.js';
import { payloadSha256, toProfileLead } from './payload.js';
import { type Authorized, type CycleContext, type CycleReport, HALTING } from './report.js';

/** A retry that falls due within this long is waited for inside the cycle; a later one waits for the next cycle. */
const MAX_WAIT_IN_CYCLE_MS = 30_000;
/** A health check older than this is repeated before the next request (the guard accepts up to 60 s). */
const HEALTH_RECHECK_MS = 30_000;

/** An authorised batch that never started (the mode left `live` meanwhile): back to its queue, uncounted. */
export async function holdBack(ctx: EngineContext, held: Authorized, report: CycleReport) {
  const { store, audit, clock } = ctx;
  report.halted ??= 'outbound stopped (mode changed) before the request started';
  await store.db.transaction().execute(async (trx) => {
    // Not the leader any more: the batch is the leader's recovery's now.
    if (!(await ctx.leads(trx))) return;
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.held',
      subject: `batch:${held.delivery.batch_key}`,
      details: {
        delivery: held.delivery.id,
        attempt: held.attempt,
        reason: 'outbound stopped before the request started: nothing sent, the attempt is not counted',
      },
    });
    const move = planMove(held.delivery, { kind: 'held_back', from: dueState(held.delivery) }, 'sending');
    await recordMove(trx, held.delivery.id, move, clock.now());
  });
}

/**
 * Inside a transaction: authorise the next due delivery (retries first) if the cycle may send
 * more; else, when nothing more can happen this cycle, close the cycle in the same commit.
 */
export async function afterAction(
  ctx: EngineContext,
  trx: StoreTransaction,
  context: CycleContext,
  report: CycleReport,
  stop: AbortSignal | undefined,
  /** The caller checked the lease in this transaction already (its row stays locked to the commit). */
  fenced: boolean,
): Promise<Authorized | null> {
  const { clock, partner } = ctx;
  let canSend =
    report.kind === 'live' && partner !== null && !report.healthFailed && !report.halted && !stop?.aborted;
  // Nothing is authorised by a runner that no longer leads.
  if (canSend && !fenced && !(await ctx.leads(trx))) {
    report.halted = 'this runner no longer leads';
    canSend = false;
  }
  if (canSend && context.actions < context.actionsPerCycle && healthFresh(ctx, context)) {
    const authorized = await authorizeNext(ctx, trx, context, report);
    if (authorized) return authorized;
  }
  const retryDueSoon =
    canSend && context.actions < context.actionsPerCycle && (await retryWithinCycle(ctx, trx)) !== null;
  if (
    !retryDueSoon &&
    !(canSend && !healthFresh(ctx, context) && (await dueDeliveries(trx, clock.now(), 1)).length > 0)
  ) {
    await finish(ctx, trx, context, report);
  }
  return null;
}

export async function finish(
  ctx: EngineContext,
  trx: StoreTransaction,
  context: CycleContext,
  report: CycleReport,
) {
  const { clock } = ctx;
  report.actions = context.actions;
  await finishCycle(trx, context.cycleId, {
    finishedAt: clock.now(),
    claimed: report.claimed,
    actions: context.actions,
    summary: report,
  });
  context.finished = true;
}

export function healthFresh(ctx: EngineContext, context: CycleContext): boolean {
  const { clock } = ctx;
  return context.healthPassedAt !== null && clock.now() - context.healthPassedAt <= HEALTH_RECHECK_MS;
}

export async function retryWithinCycle(ctx: EngineContext, db: Executor): Promise<number | null> {
  const { clock } = ctx;
  const retryAt = await nextRetryAt(db);
  if (retryAt === null) return null;
  // Nothing goes out before the partner's wait is over, whatever the batch's own time.
  const at = Math.max(retryAt, (await readPartnerHold(db)).holdUntil);
  return at - clock.now() <= MAX_WAIT_IN_CYCLE_MS ? at : null;
}

/** Between requests: wait for a retry that falls due soon, re-check the partner if needed, authorise it. */
export async function waitForRetry(
  ctx: EngineContext,
  context: CycleContext,
  report: CycleReport,
  stop?: AbortSignal,
  cutChecks?: AbortSignal,
): Promise<Authorized | null> {
  const { store, clock, sleep, guard } = ctx;
  const at = await retryWithinCycle(ctx, store.db);
  if (at !== null) await sleep(Math.max(0, at - clock.now()), stop);
  if (stop?.aborted) return null;
  // Still inside the partner's wait (it ends later than a cycle waits): no health check, no token.
  if ((await readPartnerHold(store.db)).holdUntil > clock.now()) return null;
  if (!healthFresh(ctx, context) && !(await checkPartner(ctx, context, report, cutChecks))) return null;
  await guard.prepare();
  return store.db.transaction().execute((trx) => afterAction(ctx, trx, context, report, stop, false));
}

/** The guard's decision and, when it allows, the batch's move to `sending`, in the caller's commit. */
export async function authorizeNext(
  ctx: EngineContext,
  trx: StoreTransaction,
  context: CycleContext,
  report: CycleReport,
): Promise<Authorized | null> {
  const { clock, guard } = ctx;
  // The partner asked every request to wait: nothing is authorised before that time.
  if ((await readPartnerHold(trx)).holdUntil > clock.now()) return null;
  for (;;) {
    const [delivery] = await dueDeliveries(trx, clock.now(), 1);
    if (!delivery) return null;
    const leads = await deliveryLeads(trx, delivery.id);
    const attempt = delivery.attempts + 1;
    // The same key must always carry the same content: a lead edited while its batch waited
    // (its contact data, say) would change what the key stands for.
    if (payloadSha256(delivery.batch_key, leads) !== delivery.payload_sha256) {
      await refuseDelivery(ctx, trx, delivery, leads, [], 'the batch content changed since it was queued');
      report.refused += leads.length;
      continue;
    }
    // Queued under another profile (the installation switched since): a batch this one cannot write
    // (too many leads for it, a value it requires) is never half-sent. Never attempted, it is dissolved
    // and its leads picked again under this profile; attempted, its leads are quarantined as usual.
    const unwritable = batchUnwritable(ctx.config.partner.profile.profile, delivery.batch_key, leads);
    if (unwritable !== null) {
      await refuseDelivery(ctx, trx, delivery, leads, [], unwritable);
      report.refused += leads.length;
      continue;
    }
    const decision = await guard.authorize(
      {
        cycleId: context.cycleId,
        deliveryId: delivery.id,
        batchKey: delivery.batch_key,
        attempt,
        leads,
        actionsUsedThisCycle: context.actions,
        actionsPerCycle: context.actionsPerCycle,
        ceiling: context.ceiling,
        healthCheckPassedAt: context.healthPassedAt,
      },
      trx,
    );
    if (decision.allowed) {
      await recordMove(trx, delivery.id, planMove(delivery, { kind: 'authorized' }), clock.now());
      context.actions++;
      return { delivery, leads, attempt };
    }
    // A batch never sent that a lowered limit no longer allows is dissolved (its leads go back to
    // the queue) rather than blocking every later one; other refusals stop this cycle's sending.
    const dissolve =
      decision.code === 'LEAD_INELIGIBLE' || (decision.code === 'BATCH_TOO_LARGE' && delivery.attempts === 0);
    if (!dissolve) {
      // Not this batch's fault: nothing more is sent this cycle (rolled back, paused, gates, caps).
      if (HALTING.has(decision.code)) report.halted = decision.reason;
      return null;
    }
    await refuseDelivery(ctx, trx, delivery, leads, decision.ineligibleLeadIds ?? [], decision.reason);
    report.refused += leads.length;
  }
}

/** The signals a cycle sends under (see CycleOptions) and its running state. */
export interface Sending {
  context: CycleContext;
  report: CycleReport;
  /** Claim nothing more, start no request (SIGTERM, or the mode left `live`). */
  stop: AbortSignal | undefined;
  /** Cut a request in flight (the shutdown's deadline). */
  abortRequests: AbortSignal | undefined;
  /** The mode left `live`: start no new request. */
  holdNew: AbortSignal | undefined;
  /** Cut a health check or token request (the shutdown's deadline, or the mode left `live`). */
  cutChecks: AbortSignal | undefined;
}

/**
 * Send the authorised batch, record its outcome and authorise the next in the same commit, waiting
 * for retries that fall due within the cycle, until nothing more may be sent this cycle.
 */
export async function sendAuthorized(
  ctx: EngineContext,
  first: Authorized | null,
  sending: Sending,
): Promise<void> {
  const { store, audit, guard, partner, mustLead } = ctx;
  const { context, report, stop, abortRequests, holdNew, cutChecks } = sending;
  let next = first;
  while (next !== null && partner) {
    const current: Authorized = next;
    let outcome: SendOutcome | null;
    try {
      outcome = await partner.sendBatch(
        { batchKey: current.delivery.batch_key, leads: current.leads.map(toProfileLead) },
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
}
