import { randomUUID } from 'node:crypto';
import { maskEmail } from '../pii/index.js';
import { exposure } from '../policy/index.js';
import type { StoreTransaction } from '../store/index.js';
import {
  backendRules,
  createCycle,
  createDelivery,
  expireStalePending,
  type Lead,
  setLeadsState,
} from '../store/index.js';
import type { EngineContext } from './context.js';
import type { UnwritableLead } from './partner-answer.js';
import { leadKey, payloadSha256 } from './payload.js';
import { type CyclePlan, selectBatches } from './plan.js';
import type { Authorized, CycleContext, CycleReport } from './report.js';
import { afterAction } from './send.js';

/**
 * The cycle's first commit, under the lease's lock: expire stale leads, record the cycle, claim (or
 * dry-run) its batches and authorise its first request. Throws ClaimConflict (nothing claimed) when
 * another runner took one of the leads first.
 */
export async function openCycle(
  ctx: EngineContext,
  cycle: {
    plan: CyclePlan;
    batches: Lead[][];
    context: CycleContext;
    report: CycleReport;
    stop: AbortSignal | undefined;
  },
): Promise<Authorized | null> {
  const { config, store, audit, policy, mustLead, leadership } = ctx;
  const { plan, context, report, stop } = cycle;
  const { live, cutoff, startedAt } = plan.selection;
  let batches = cycle.batches;
  let unwritable = plan.unwritable;
  return store.db.transaction().execute(async (trx) => {
    // The lease's row lock: no other runner claims or authorises until this commits.
    await mustLead(trx, 'claim');
    // Several runners (or concurrent connections): choose again under the lock.
    if (batches.length > 0 && (leadership !== null || backendRules(store.dialect).claimsMayRace)) {
      ({ batches, unwritable } = await selectBatches(ctx, trx, plan.selection, { planned: batches.length }));
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
      ceiling: plan.ceiling,
      limitedBy: plan.limitedBy,
    });
    report.cycleId = context.cycleId;
    await setAside(ctx, trx, context.cycleId, unwritable, report);
    for (const batch of batches) {
      if (live) await claimBatch(ctx, trx, context.cycleId, batch, report);
      else await dryRun(ctx, trx, context, batch, report);
    }
    return afterAction(ctx, trx, context, report, stop, true);
  });
}

/**
 * Quarantine the picked leads the partner profile cannot write (a required value missing, an attribute
 * of the wrong type), each with its reason (the mapping and the problem, never a value), audited by
 * pseudonym and alerted. Only leads still pending change. In a dry run too: that is where a mapping
 * is checked before go-live.
 */
async function setAside(
  ctx: EngineContext,
  trx: StoreTransaction,
  cycleId: number,
  unwritable: UnwritableLead[],
  report: CycleReport,
): Promise<void> {
  const { audit, alerts, clock, pseudonyms } = ctx;
  if (unwritable.length === 0) return;
  const now = clock.now();
  const changed = new Set<number>();
  for (const { lead, reason } of unwritable) {
    for (const id of await setLeadsState(trx, [lead.id], {
      state: 'quarantined',
      reason,
      now,
      from: 'pending',
    })) {
      changed.add(id);
    }
  }
  const setAsideLeads = unwritable.filter((u) => changed.has(u.lead.id));
  if (setAsideLeads.length === 0) return;
  const profile = ctx.config.partner.profile.profile.name;
  await audit.append(trx, {
    actor: 'engine',
    action: 'leads.set_aside',
    details: { cycle: cycleId, profile, leads: pseudonyms(setAsideLeads.map((u) => u.lead)) },
  });
  const reasons = [...new Set(setAsideLeads.map((u) => u.reason))];
  await alerts.raise(trx, {
    event: 'quarantine',
    message: `${setAsideLeads.length} lead(s) quarantined before sending: ${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? '; …' : ''}`,
    details: { cycle: cycleId, leads: setAsideLeads.length, profile },
  });
  report.setAside += setAsideLeads.length;
  report.quarantined += setAsideLeads.length;
}

export async function claimBatch(
  ctx: EngineContext,
  trx: StoreTransaction,
  cycleId: number,
  batch: Lead[],
  report: CycleReport,
): Promise<void> {
  const { audit, clock, pseudonyms } = ctx;
  const batchKey = randomUUID();
  const now = clock.now();
  // A lead claimed meanwhile by another runner throws ClaimConflict: the whole cycle's transaction
  // rolls back and nothing is half-claimed.
  const deliveryId = await createDelivery(
    trx,
    { batchKey, cycleId, kind: 'live', payloadSha256: payloadSha256(batchKey, batch), now },
    batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
  );
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.queued',
    subject: `batch:${batchKey}`,
    details: { cycle: cycleId, delivery: deliveryId, leads: pseudonyms(batch) },
  });
  report.claimed += batch.length;
  report.claimedBatches += 1;
}

export async function dryRun(
  ctx: EngineContext,
  trx: StoreTransaction,
  context: CycleContext,
  batch: Lead[],
  report: CycleReport,
) {
  const { audit, clock, pseudonymizer, guard } = ctx;
  const batchKey = randomUUID();
  const decision = await guard.authorize(
    {
      cycleId: context.cycleId,
      deliveryId: null,
      batchKey,
      attempt: 1,
      leads: batch,
      actionsUsedThisCycle: 0,
      actionsPerCycle: context.actionsPerCycle,
      ceiling: context.ceiling,
      healthCheckPassedAt: null,
    },
    trx,
  );
  // Anything but the guard's dry-run verdict (e.g. the mode changed): record nothing, claim nothing.
  if (decision.allowed || decision.code !== 'DRY_RUN') return;
  const now = clock.now();
  const sha = payloadSha256(batchKey, batch);
  const summary = batch.map((l) => ({
    lead: l.id,
    pseudonym: pseudonymizer.pseudonym(l.dedup_key),
    email: maskEmail(l.email),
    score: l.score,
  }));
  const deliveryId = await createDelivery(
    trx,
    { batchKey, cycleId: context.cycleId, kind: 'dry_run', payloadSha256: sha, now, summary },
    batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
  );
  // The chain gets pseudonyms and scores only: it cannot be edited, so even a masked e-mail (whose
  // domain may name a small company) would outlive an erasure there. The batch's summary, which
  // `leads erase` and `archive` can clear, keeps the masked e-mail for the operator.
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.dry_run',
    subject: `batch:${batchKey}`,
    details: {
      cycle: context.cycleId,
      delivery: deliveryId,
      payloadSha256: sha,
      leads: summary.map(({ lead, pseudonym, score }) => ({ lead, pseudonym, score })),
    },
  });
  report.dryRunRecorded += batch.length;
}
