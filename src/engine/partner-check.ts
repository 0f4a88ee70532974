import { changeMode } from '../guard/index.js';
import {
  MAX_PARTNER_WAIT_MS,
  THROTTLE_DEFAULT_WAIT_MS,
  THROTTLE_STORM_MS,
  throttleDecision,
} from '../policy/index.js';
import type { StoreTransaction } from '../store/index.js';
import type { EngineContext } from './context.js';
import { endThrottling, readPartnerHold, writePartnerHold } from './partner-hold.js';
import { type CycleContext, type CycleReport, tlsVersionRefused } from './report.js';

/** The partner's health check and a token that outlives the batch; false (audited) when either fails. */
export async function checkPartner(
  ctx: EngineContext,
  context: CycleContext,
  report: CycleReport,
  signal?: AbortSignal,
): Promise<boolean> {
  const { store, audit, clock, logger, partner, monitor, tokenValidForMs } = ctx;
  if (!partner) return false;
  // Cut (or never started) by our own shutdown or a rollback: nothing to say about the partner.
  const cut = (error: unknown) => {
    if (signal?.aborted) return null;
    throw error;
  };
  const health = await partner.health(signal).catch(cut);
  if (health === null || signal?.aborted) return false;
  if (!health.ok) {
    report.healthFailed = true;
    if (tlsVersionRefused(health)) {
      await store.db
        .transaction()
        .execute((trx) =>
          refuseOldTls(
            ctx,
            trx,
            report,
            health.error ?? 'the partner does not offer TLS 1.2 or newer',
            'health',
          ),
        );
      logger.error({ error: health.error }, 'partner refused: no TLS 1.2 or newer; outbound paused');
      return false;
    }
    await store.db.transaction().execute(async (trx) => {
      if (health.status !== undefined && health.status !== 429) await endThrottling(trx, clock.now());
      // A 429 (or a 503 with Retry-After) holds every request to the partner, as for a batch.
      const asked = health.retryAfterMs && health.retryAfterMs > 0 ? health.retryAfterMs : null;
      if (health.status === 429) {
        await holdPartner(ctx, trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, clock.now());
      } else if (asked !== null) await holdPartner(ctx, trx, report, asked, false, clock.now());
      await audit.append(trx, {
        actor: 'engine',
        action: 'partner.health_failed',
        details: {
          cycle: context.cycleId || null,
          status: health.status ?? null,
          error: health.error ?? null,
        },
      });
      const decision = await monitor.afterRequest(trx, {
        endpoint: 'health',
        outcome: 'retryable',
        status: health.status ?? null,
        ms: health.ms,
      });
      if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
    });
    logger.warn({ status: health.status, error: health.error }, 'partner health check failed: nothing sent');
    return false;
  }
  const token = await partner.ensureToken(tokenValidForMs, signal).catch(cut);
  if (token === null || signal?.aborted) return false;
  if (token.kind !== 'ok') {
    report.healthFailed = true;
    if (tlsVersionRefused(token)) {
      await store.db.transaction().execute((trx) => refuseOldTls(ctx, trx, report, token.message, 'token'));
      logger.error({ error: token.message }, 'token endpoint refused: no TLS 1.2 or newer; outbound paused');
      return false;
    }
    await store.db.transaction().execute(async (trx) => {
      const asked = token.kind === 'retryable' && token.retryAfterMs ? token.retryAfterMs : null;
      if (token.status === 429) {
        await holdPartner(ctx, trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, clock.now());
      } else if (asked !== null) await holdPartner(ctx, trx, report, asked, false, clock.now());
      await audit.append(trx, {
        actor: 'engine',
        action: 'partner.token_failed',
        details: { cycle: context.cycleId || null, status: token.status ?? null, message: token.message },
      });
      const decision = await monitor.afterRequest(trx, {
        endpoint: 'token',
        outcome: token.kind,
        status: token.status ?? null,
        ms: token.ms,
      });
      if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
    });
    logger.warn({ status: token.status, reason: token.message }, 'no partner token: nothing sent');
    return false;
  }
  context.healthPassedAt = clock.now();
  return true;
}

/**
 * The partner asked to wait (`waitMs`): every request to it waits until then, for every runner. A
 * 429 run that has lasted THROTTLE_STORM_MS pauses outbound, with
 * a critical alert, instead of waiting on and on.
 */
export async function holdPartner(
  ctx: EngineContext,
  trx: StoreTransaction,
  report: CycleReport,
  waitMs: number,
  throttled: boolean,
  now: number,
) {
  const { audit, clock, alerts } = ctx;
  const current = await readPartnerHold(trx);
  if (!throttled) {
    const until = now + Math.min(waitMs, MAX_PARTNER_WAIT_MS);
    await writePartnerHold(trx, { ...current, holdUntil: Math.max(current.holdUntil, until) }, now);
    return;
  }
  const next = throttleDecision(current, now, waitMs);
  // Paused, the run is over: after a resume the next 429 starts a new one.
  await writePartnerHold(trx, next.storm ? { ...next.state, throttledSince: null } : next.state, now);
  if (!next.storm) return;
  const seconds = Math.round(next.heldForMs / 1000);
  const reason =
    waitMs > MAX_PARTNER_WAIT_MS
      ? `the partner answered 429 (rate limited) asking to wait ${Math.round(waitMs / 1000)} s, longer than the ${MAX_PARTNER_WAIT_MS / 1000} s outbound is held for: outbound paused, the queue is kept; resume when the partner allows`
      : `the partner has answered only 429 (rate limited) for ${seconds} s (storm threshold ${THROTTLE_STORM_MS / 1000} s): outbound paused, the queue is kept; resume when the partner allows`;
  const change = await changeMode(
    trx,
    { audit, alerts, clock },
    { command: 'pause', actor: 'monitor', reason },
  );
  if (change.kind !== 'change') return;
  report.halted = `paused: ${reason}`;
  await alerts.raise(trx, {
    event: 'throttle_storm',
    message: `THROTTLED: ${reason}`,
    details: { heldForSeconds: seconds, thresholdSeconds: THROTTLE_STORM_MS / 1000 },
  });
}

/**
 * The partner does not offer TLS 1.2 or newer: nothing can be sent to it, and it is not an outage
 * (nothing counts for the error rate). Outbound is paused with a critical alert, audited once.
 */
export async function refuseOldTls(
  ctx: EngineContext,
  trx: StoreTransaction,
  report: CycleReport,
  reason: string,
  endpoint: 'health' | 'token' | 'leads',
) {
  const { audit, clock, alerts } = ctx;
  const why = `${reason}; the policy needs TLS 1.2 or newer: outbound paused, the queue is kept`;
  const change = await changeMode(
    trx,
    { audit, alerts, clock },
    { command: 'pause', actor: 'engine', reason: why },
  );
  report.halted = `paused: ${why}`;
  if (change.kind !== 'change') return;
  await audit.append(trx, {
    actor: 'engine',
    action: 'partner.tls_refused',
    details: { endpoint, reason },
  });
  await alerts.raise(trx, {
    event: 'partner_tls_refused',
    message: `REFUSED: ${why}`,
    details: { endpoint },
  });
}
