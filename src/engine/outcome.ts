import type { Transaction } from 'kysely';
import type { PermanentOutcome, RetryableOutcome } from '../outbound/index.js';
import { decideOutcome, freshnessCutoff, THROTTLE_DEFAULT_WAIT_MS } from '../policy/index.js';
import {
  type Database,
  type Delivery,
  type Lead,
  releaseFromDeliveries,
  setDeliveryState,
  setLeadsState,
} from '../store/index.js';
import type { EngineContext } from './context.js';
import { holdPartner, refuseOldTls } from './partner-check.js';
import { endThrottling } from './partner-hold.js';
import type { SendOutcome } from './partner-port.js';
import { type Authorized, type CycleContext, type CycleReport, tlsVersionRefused } from './report.js';

export async function recordOutcome(
  ctx: EngineContext,
  trx: Transaction<Database>,
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
  const verdict = decideOutcome(
    { ...outcome, tlsVersionRefused: tlsVersionRefused(outcome) },
    {
      failedAnswers: delivery.failed_answers,
      unanswered: delivery.unanswered,
      lastOutcome: delivery.last_outcome,
    },
    { maxRetries: policy.maxRetries, backoffSeconds: policy.backoffSeconds },
  );
  if (verdict.kind === 'tls_refused') {
    // Nothing was sent: not a failure of the partner's service but one it cannot be spoken to with.
    await refuseOldTls(ctx, trx, report, verdict.reason, 'leads');
    await setDeliveryState(trx, delivery.id, {
      state: 'retry_wait',
      now,
      nextAttemptAt: now,
      attemptsDelta: -1,
    });
    return;
  }
  if ((outcome.kind === 'retryable' || outcome.kind === 'permanent') && outcome.stage === 'token') {
    // No token, so the leads request never went out: nothing is known or spent about this key.
    await tokenFailedBeforeSend(ctx, trx, report, delivery, outcome, now);
    return;
  }
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
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.accepted',
      subject,
      details: { delivery: delivery.id, attempt, status: outcome.status, leads: pseudonyms(leads) },
    });
    await setDeliveryState(trx, delivery.id, {
      state: 'accepted',
      now,
      nextAttemptAt: null,
      lastStatus: outcome.status ?? null,
      lastOutcome: 'accepted',
      partnerMayHave: false,
    });
    await setLeadsState(trx, ids, { state: 'exported', reason: null, now, exported: true });
    report.accepted += leads.length;
    report.acceptedBatches += 1;
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
    await setDeliveryState(trx, delivery.id, {
      state: 'retry_wait',
      now,
      nextAttemptAt: now + verdict.delayMs,
      lastStatus: status,
      lastOutcome: verdict.counts === 'throttled' ? 'throttled' : outcome.kind,
      ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : {}),
      // Nobody answered: the partner may hold the batch from now on, whatever comes next.
      ...(verdict.counts === 'unanswered' ? { unansweredDelta: 1, partnerMayHave: true } : {}),
    });
    if (!context.retried.has(delivery.id)) {
      context.retried.add(delivery.id);
      report.retrying += leads.length;
      report.retryingBatches += 1;
    }
    return;
  }
  await quarantineBatch(ctx, trx, delivery, ids, pseudonyms(leads), {
    action: 'batch.quarantined',
    attempt,
    status,
    reason: verdict.reason,
    lastOutcome: verdict.cause === 'unanswered_spent' ? 'unanswered' : outcome.kind,
    partnerMayHave: verdict.partnerMayHaveIt,
    ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : { unansweredDelta: 1 }),
  });
  report.quarantined += leads.length;
  report.quarantinedBatches += 1;
}

/**
 * The client could not get a token for a batch (its token endpoint failed or answered too late): the
 * leads request never went out. The batch goes back to its queue as it was (this attempt uncounted,
 * no retry spent, nothing learnt about its key); the token failure counts for the error rate as a
 * failed token request, and sending stops for this cycle.
 */
export async function tokenFailedBeforeSend(
  ctx: EngineContext,
  trx: Transaction<Database>,
  report: CycleReport,
  delivery: Delivery,
  outcome: RetryableOutcome | PermanentOutcome,
  now: number,
) {
  const { audit, monitor, policy } = ctx;
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
      reason: 'no token for the batch: nothing was sent, the attempt is not counted',
    },
  });
  await setDeliveryState(trx, delivery.id, {
    state: 'retry_wait',
    now,
    nextAttemptAt: now + (policy.backoffSeconds[0] ?? 1) * 1000,
    attemptsDelta: -1,
  });
  report.healthFailed = true;
}

/** The guard refused a queued batch for its leads: stale ones expire, the rest go back to pending. */
/** Quarantine a batch and its leads, with its audit entry and an ops alert (no PII), in one commit. */
export async function quarantineBatch(
  ctx: EngineContext,
  trx: Transaction<Database>,
  delivery: Delivery,
  leadIds: number[],
  audited: { lead: number; pseudonym: string }[],
  why: {
    action: string;
    attempt: number;
    status: number | null;
    reason: string;
    lastOutcome: string;
    /** The last request of this key got no answer: a release replays the key first. */
    partnerMayHave?: boolean;
    failedAnswersDelta?: number;
    unansweredDelta?: number;
  },
) {
  const { audit, clock, alerts } = ctx;
  const now = clock.now();
  await audit.append(trx, {
    actor: 'engine',
    action: why.action,
    subject: `batch:${delivery.batch_key}`,
    details: {
      delivery: delivery.id,
      attempt: why.attempt,
      status: why.status,
      reason: why.reason,
      partnerMayHave: why.partnerMayHave === true || delivery.partner_may_have === 1,
      leads: audited,
    },
  });
  await setDeliveryState(trx, delivery.id, {
    state: 'quarantined',
    now,
    nextAttemptAt: null,
    lastStatus: why.status,
    lastOutcome: why.lastOutcome,
    // Never cleared here: only an accepted answer says the partner does not hold it unrecorded.
    partnerMayHave: why.partnerMayHave === true || delivery.partner_may_have === 1,
    ...(why.failedAnswersDelta ? { failedAnswersDelta: why.failedAnswersDelta } : {}),
    ...(why.unansweredDelta ? { unansweredDelta: why.unansweredDelta } : {}),
  });
  await setLeadsState(trx, leadIds, { state: 'quarantined', reason: why.reason, now });
  await alerts.raise(trx, {
    event: 'quarantine',
    message: `batch of ${leadIds.length} lead(s) quarantined: ${why.reason}`,
    details: {
      delivery: delivery.id,
      batchKey: delivery.batch_key,
      leads: leadIds.length,
      status: why.status,
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
  trx: Transaction<Database>,
  delivery: Delivery,
  leads: Lead[],
  ineligible: number[],
  reason: string,
) {
  const { audit, clock, policy, pseudonyms } = ctx;
  const now = clock.now();
  const inFlight = leads.filter((l) => l.state === 'in_flight');
  if (delivery.attempts > 0) {
    const why = `refused before a retry (${reason}); already attempted under batch ${delivery.batch_key}: check with the partner before releasing`;
    await quarantineBatch(
      ctx,
      trx,
      delivery,
      inFlight.map((l) => l.id),
      pseudonyms(leads),
      {
        action: 'batch.quarantined',
        attempt: delivery.attempts,
        status: null,
        reason: why,
        lastOutcome: 'refused',
        // Its last request went unanswered: the partner may hold it.
        partnerMayHave: delivery.partner_may_have === 1 || delivery.unanswered > 0,
      },
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
  await setDeliveryState(trx, delivery.id, {
    state: 'refused',
    now,
    nextAttemptAt: null,
    lastOutcome: 'refused',
  });
  await setLeadsState(trx, stale, {
    state: 'expired',
    reason: `older than ${policy.maxLeadAgeDays} days before it could be sent`,
    now,
  });
  await setLeadsState(trx, back, { state: 'pending', reason: null, now });
  for (const id of [...stale, ...back]) await releaseFromDeliveries(trx, id);
}
