import type { PermanentOutcome, RetryableOutcome } from '../outbound/index.js';
import {
  type AuditAction,
  type DeliveryMove,
  freshnessCutoff,
  THROTTLE_DEFAULT_WAIT_MS,
} from '../policy/index.js';
import type { StoreTransaction } from '../store/index.js';
import { type Delivery, type Lead, releaseFromDeliveries, setLeadsState } from '../store/index.js';
import type { EngineContext } from './context.js';
import { planMove, recordMove } from './lifecycle.js';
import { type LeadVerdict, leadVerdicts } from './partner-answer.js';
import { holdPartner, refuseOldTls } from './partner-check.js';
import { endThrottling } from './partner-hold.js';
import type { SendOutcome } from './partner-port.js';
import { type Authorized, type CycleContext, type CycleReport, tlsVersionRefused } from './report.js';

export async function recordOutcome(
  ctx: EngineContext,
  trx: StoreTransaction,
  context: CycleContext,
  sent: Authorized,
  outcome: SendOutcome,
  report: CycleReport,
) {
  const { audit, clock, monitor, policy, pseudonyms } = ctx;
  const { delivery, leads, attempt } = sent;
  const now = clock.now();
  const ids = leads.map((l) => l.id);
  const subject = `batch:${delivery.batch_key}`;
  const status = outcome.status ?? null;
  const move = planMove(
    delivery,
    {
      kind: 'answered',
      outcome: { ...outcome, tlsVersionRefused: tlsVersionRefused(outcome) },
      rules: { maxRetries: policy.maxRetries, backoffSeconds: policy.backoffSeconds },
    },
    'sending',
  );
  const verdict = move.verdict;
  if (move.notSent === 'tls_refused') {
    // Nothing was sent: not a failure of the partner's service but one it cannot be spoken to with.
    await refuseOldTls(ctx, trx, report, move.reason, 'leads');
    await recordMove(trx, delivery.id, move, now);
    return;
  }
  if (move.notSent === 'token_failed' && (outcome.kind === 'retryable' || outcome.kind === 'permanent')) {
    // No token, so the leads request never went out: nothing is known or spent about this key.
    await tokenFailedBeforeSend(ctx, trx, report, delivery, outcome, move, now);
    return;
  }
  if (verdict === undefined) throw new Error(`delivery ${delivery.id}: an answer without a verdict`);
  // Recorded first: a rollback it triggers commits with this outcome, before any next request.
  const decision = await monitor.afterRequest(trx, {
    endpoint: 'leads',
    deliveryId: delivery.id,
    attempt,
    outcome,
  });
  if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
  // Any answer but a 429 ends a throttling run; a 429 (or a Retry-After) holds every request.
  if (status !== null && status !== 429) await endThrottling(trx, now);
  if (verdict.kind === 'retry' && verdict.partnerWaitMs !== null) {
    await holdPartner(ctx, trx, report, verdict.partnerWaitMs, verdict.counts === 'throttled', now);
  }
  if (verdict.kind === 'exported') {
    await recordAnswer(ctx, trx, sent, outcome, move, report);
    return;
  }
  const message = 'message' in outcome ? outcome.message : '';
  if (verdict.kind === 'retry') {
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.retry_scheduled',
      subject,
      details: {
        delivery: delivery.id,
        attempt,
        status,
        outcome: outcome.kind,
        counts: verdict.counts,
        failedAnswers: delivery.failed_answers + (verdict.counts === 'failed_answer' ? 1 : 0),
        unanswered: delivery.unanswered + (verdict.counts === 'unanswered' ? 1 : 0),
        message,
        retryInMs: verdict.delayMs,
      },
    });
    await recordMove(trx, delivery.id, move, now);
    if (!context.retried.has(delivery.id)) {
      context.retried.add(delivery.id);
      report.retrying += leads.length;
      report.retryingBatches += 1;
    }
    return;
  }
  await quarantineBatch(ctx, trx, delivery, move, ids, pseudonyms(leads), {
    action: 'batch.quarantined',
    attempt,
    status,
  });
  report.quarantined += leads.length;
  report.quarantinedBatches += 1;
}

/**
 * An answered batch: each lead as the partner's answer says. Accepted leads are exported; a lead the
 * partner already held is exported too, its reason saying so; a refused lead, and one the answer does
 * not clearly answer (the partner may hold it), is quarantined with the partner's reason, masked, and
 * alerted: never sent again as part of this batch. The chain names each lead's outcome by pseudonym,
 * never the partner's text (the chain cannot be edited; a lead's reason can be erased).
 */
async function recordAnswer(
  ctx: EngineContext,
  trx: StoreTransaction,
  sent: Authorized,
  outcome: SendOutcome,
  move: DeliveryMove,
  report: CycleReport,
) {
  const { audit, alerts, clock, pseudonyms } = ctx;
  const { delivery, leads, attempt } = sent;
  const now = clock.now();
  const verdicts =
    outcome.kind === 'accepted'
      ? leadVerdicts(leads, outcome)
      : leads.map((lead) => ({ lead, outcome: 'accepted' as const, reason: null }));
  const named = (kind: LeadVerdict['outcome']) =>
    pseudonyms(verdicts.filter((v) => v.outcome === kind).map((v) => v.lead));
  const duplicates = named('duplicate');
  const refused = named('refused');
  const unknown = named('unknown');
  // What the answer got wrong (results for leads never sent, a status the profile does not know, a
  // lead answered twice): where, never what (the partner's text may echo lead data).
  const problems = outcome.kind === 'accepted' ? (outcome.answerProblems ?? []) : [];
  if (problems.length > 0) {
    ctx.logger.warn(
      {
        delivery: delivery.id,
        answerProblems: problems.length,
        where: problems.slice(0, 10).map((p) => p.where),
      },
      'the partner answer held results the profile could not tie to a lead or read',
    );
  }
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.accepted',
    subject: `batch:${delivery.batch_key}`,
    details: {
      delivery: delivery.id,
      attempt,
      status: outcome.status ?? null,
      leads: pseudonyms(leads),
      ...(duplicates.length > 0 ? { duplicates } : {}),
      ...(refused.length > 0 ? { refused } : {}),
      ...(unknown.length > 0 ? { unknown } : {}),
      ...(problems.length > 0 ? { answerProblems: problems.length } : {}),
    },
  });
  await recordMove(trx, delivery.id, move, now);
  const accepted = verdicts.filter((v) => v.outcome === 'accepted').map((v) => v.lead.id);
  const notTaken = verdicts.filter((v) => v.outcome === 'refused' || v.outcome === 'unknown');
  // One statement per state and reason (a partner often gives many leads the same one).
  const changes = new Map<string, { exported: boolean; reason: string | null; ids: number[] }>();
  const change = (exported: boolean, reason: string | null, id: number) => {
    const key = JSON.stringify([exported, reason]);
    const group = changes.get(key) ?? { exported, reason, ids: [] };
    group.ids.push(id);
    changes.set(key, group);
  };
  for (const id of accepted) change(true, null, id);
  for (const v of verdicts.filter((d) => d.outcome === 'duplicate')) {
    change(true, `${DUPLICATE_AT_PARTNER}${v.reason === null ? '' : `: ${v.reason}`}`, v.lead.id);
  }
  for (const v of notTaken) change(false, quarantineReason(v), v.lead.id);
  for (const { exported, reason, ids } of changes.values()) {
    await setLeadsState(
      trx,
      ids,
      exported ? { state: 'exported', reason, now, exported: true } : { state: 'quarantined', reason, now },
    );
  }
  if (notTaken.length > 0) {
    const reasons = [...new Set(notTaken.map(quarantineReason))];
    await alerts.raise(trx, {
      event: 'quarantine',
      message: `${notTaken.length} of ${leads.length} lead(s) in an accepted batch quarantined: ${refused.length} refused by the partner, ${unknown.length} not answered clearly (${reasons.slice(0, 3).join('; ')}${reasons.length > 3 ? '; …' : ''})`,
      details: {
        delivery: delivery.id,
        batchKey: delivery.batch_key,
        leads: notTaken.length,
        refused: refused.length,
        unknown: unknown.length,
        status: outcome.status ?? null,
      },
    });
  }
  report.accepted += accepted.length + duplicates.length;
  report.duplicates += duplicates.length;
  report.refusedByPartner += refused.length;
  report.quarantined += notTaken.length;
  report.acceptedBatches += 1;
}

/** A lead's quarantine reason after an answer: the partner's (masked), or why the answer did not say. */
function quarantineReason(verdict: LeadVerdict): string {
  if (verdict.outcome === 'refused') {
    return `refused by the partner: ${verdict.reason ?? 'it gave no reason'}`;
  }
  return `the partner's answer did not say what became of this lead (${verdict.reason ?? 'no result for it'}); it may hold it: check with the partner before releasing it`;
}

/**
 * The client could not get a token for a batch (its token endpoint failed or answered too late): the
 * leads request never went out. The batch goes back to its queue as it was (this attempt uncounted,
 * no retry spent, nothing learnt about its key); the token failure counts for the error rate as a
 * failed token request, and sending stops for this cycle.
 */
export async function tokenFailedBeforeSend(
  ctx: EngineContext,
  trx: StoreTransaction,
  report: CycleReport,
  delivery: Delivery,
  outcome: RetryableOutcome | PermanentOutcome,
  move: DeliveryMove,
  now: number,
) {
  const { audit, monitor } = ctx;
  const status = outcome.status ?? null;
  const decision = await monitor.afterRequest(trx, {
    endpoint: 'token',
    outcome: outcome.kind,
    status,
    ms: outcome.ms,
  });
  if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
  const asked = outcome.kind === 'retryable' && outcome.retryAfterMs ? outcome.retryAfterMs : null;
  if (status === 429) await holdPartner(ctx, trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, now);
  else if (asked !== null) await holdPartner(ctx, trx, report, asked, false, now);
  await audit.append(trx, {
    actor: 'engine',
    action: 'partner.token_failed',
    subject: `batch:${delivery.batch_key}`,
    details: {
      delivery: delivery.id,
      status,
      message: outcome.message,
      reason: move.reason,
    },
  });
  await recordMove(trx, delivery.id, move, now);
  report.healthFailed = true;
}

/**
 * Quarantine a batch and its leads as the lifecycle's `move` says, with its audit entry and an ops
 * alert (no PII), in one commit.
 */
export async function quarantineBatch(
  ctx: EngineContext,
  trx: StoreTransaction,
  delivery: Delivery,
  move: DeliveryMove,
  leadIds: number[],
  audited: { lead: number; pseudonym: string }[],
  entry: { action: AuditAction; attempt: number; status: number | null },
) {
  const { audit, clock, alerts } = ctx;
  const now = clock.now();
  await audit.append(trx, {
    actor: 'engine',
    action: entry.action,
    subject: `batch:${delivery.batch_key}`,
    details: {
      delivery: delivery.id,
      attempt: entry.attempt,
      status: entry.status,
      reason: move.reason,
      partnerMayHave: move.partnerMayHave === true,
      leads: audited,
    },
  });
  await recordMove(trx, delivery.id, move, now);
  await setLeadsState(trx, leadIds, { state: 'quarantined', reason: move.reason, now });
  await alerts.raise(trx, {
    event: 'quarantine',
    message: `batch of ${leadIds.length} lead(s) quarantined: ${move.reason}`,
    details: {
      delivery: delivery.id,
      batchKey: delivery.batch_key,
      leads: leadIds.length,
      status: entry.status,
    },
  });
}

/**
 * The guard refused a queued batch. Never attempted: stale leads expire, the rest go back to the
 * queue (no key of theirs ever reached the partner). Attempted before: the partner may hold the
 * batch, so its leads must never go out under another batch key: they are quarantined, with an
 * alert, for an operator to check with the partner.
 */
export async function refuseDelivery(
  ctx: EngineContext,
  trx: StoreTransaction,
  delivery: Delivery,
  leads: Lead[],
  ineligible: number[],
  reason: string,
) {
  const { audit, clock, policy, pseudonyms } = ctx;
  const now = clock.now();
  const inFlight = leads.filter((l) => l.state === 'in_flight');
  const move = planMove(delivery, { kind: 'refused', reason });
  if (move.to === 'quarantined') {
    await quarantineBatch(
      ctx,
      trx,
      delivery,
      move,
      inFlight.map((l) => l.id),
      pseudonyms(leads),
      { action: 'batch.quarantined', attempt: delivery.attempts, status: null },
    );
    return;
  }
  const cutoff = freshnessCutoff(policy.maxLeadAgeDays, now);
  const stale = inFlight.filter((l) => ineligible.includes(l.id) && l.source_ts < cutoff).map((l) => l.id);
  const back = inFlight.filter((l) => !stale.includes(l.id)).map((l) => l.id);
  await audit.append(trx, {
    actor: 'engine',
    action: 'batch.refused',
    subject: `batch:${delivery.batch_key}`,
    details: { delivery: delivery.id, reason, expired: stale, returnedToPending: back },
  });
  await recordMove(trx, delivery.id, move, now);
  await setLeadsState(trx, stale, {
    state: 'expired',
    reason: `older than ${policy.maxLeadAgeDays} days before it could be sent`,
    now,
  });
  await setLeadsState(trx, back, { state: 'pending', reason: null, now });
  for (const id of [...stale, ...back]) await releaseFromDeliveries(trx, id);
} /** How the reason of a lead the partner already held begins (exported: it has it). */
export const DUPLICATE_AT_PARTNER = 'duplicate at partner';
