import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { changeMode, ERROR_WINDOW_SINCE_KEY } from '../guard/index.js';
import type { SendOutcome } from '../outbound/index.js';
import { type ErrorRateDecision, type ErrorRateRule, errorRateDecision } from '../policy/index.js';
import type { Executor, StoreTransaction } from '../store/index.js';
import {
  countedRequestsSince,
  countFailuresSince,
  getRuntimeValue,
  type RequestClass,
  recordRequest,
} from '../store/index.js';

const HOUR_MS = 3_600_000;

/**
 * How a request counts for the error rate: 429 is the partner throttling us, not failing. An answered
 * batch counts as failed when the partner did not take every lead in it (one refused, or one its
 * answer does not clearly answer): a lead it refuses is an export that failed, and sending on
 * under a mapping or data it refuses would only send more personal data to be refused. A lead it
 * already held (a duplicate) is taken.
 */
export function requestClass(outcome: SendOutcome): RequestClass {
  if (outcome.kind === 'accepted') {
    const partly = outcome.leads?.some((l) => l.outcome === 'refused' || l.outcome === 'unknown') ?? false;
    return partly ? 'failure' : 'success';
  }
  if (outcome.kind === 'retryable' && outcome.status === 429) return 'excluded';
  return 'failure';
}

export function errorRateRule(config: Config): ErrorRateRule {
  const p = config.policy;
  return {
    tolerance: p.errorRateTolerance,
    minRequests: p.errorRateMinRequests,
    consecutiveFailures: p.errorRateConsecutiveFailures,
    windowMs: p.errorRateWindowMinutes * 60_000,
  };
}

/** A request to the partner as the monitor sees it: a batch, or a failed check before one. */
export type MonitoredRequest =
  | { endpoint: 'leads'; deliveryId: number; attempt: number; outcome: SendOutcome }
  | {
      endpoint: 'health' | 'token';
      outcome: 'retryable' | 'permanent';
      status: number | null;
      ms: number;
    };

/** The error-rate decision over the window ending `now` (the monitor's, the metrics' and status's). */
export async function currentErrorRate(
  db: Executor,
  rule: ErrorRateRule,
  now: number,
): Promise<ErrorRateDecision> {
  // A re-arm starts a fresh window: the failures that caused the rollback must not trigger another.
  const rearmedAt = (await getRuntimeValue(db, ERROR_WINDOW_SINCE_KEY)) ?? '0';
  const since = Math.max(now - rule.windowMs, Number(rearmedAt));
  return errorRateDecision(await countedRequestsSince(db, since), rule);
}

export interface RequestMonitor {
  /**
   * Record one request's outcome in the caller's transaction and apply the rules: the error-rate
   * rollback (mode → rolled_back, audited and alerted in the same commit, so the next authorisation
   * is already refused) and the hourly failure alert (the policy's e-mail threshold). A failed health
   * check or token request counts as a failed request (a partner that is down fails its health check
   * before any batch); a passing one is not counted: the batch request after it is.
   */
  afterRequest(trx: StoreTransaction, request: MonitoredRequest): Promise<ErrorRateDecision>;
  /** The decision over the current window, without recording anything (metrics, status). */
  current(db: Executor): Promise<ErrorRateDecision>;
  /** Re-check the hourly failure count (called on each heartbeat, so the recovery is sent without traffic). */
  checkHourlyFailures(trx: StoreTransaction): Promise<void>;
}

export function createRequestMonitor(deps: {
  config: Config;
  audit: AuditLog;
  alerts: AlertRecorder;
  clock: Clock;
}): RequestMonitor {
  const { config, audit, alerts, clock } = deps;
  const rule = errorRateRule(config);
  const threshold = config.policy.alertFailuresPerHour;

  const current = (db: Executor) => currentErrorRate(db, rule, clock.now());

  async function checkHourlyFailures(trx: StoreTransaction) {
    const failures = await countFailuresSince(trx, clock.now() - HOUR_MS);
    await alerts.condition(trx, 'failures_hourly', failures >= threshold, {
      event: 'failures_hourly',
      message:
        failures >= threshold
          ? `${failures} failed partner requests in the last hour (threshold ${threshold})`
          : `failed partner requests back under ${threshold} in the last hour (${failures})`,
      details: { failures, threshold },
    });
  }

  return {
    current,
    checkHourlyFailures,
    async afterRequest(trx, request) {
      const row =
        request.endpoint === 'leads'
          ? {
              endpoint: request.endpoint,
              deliveryId: request.deliveryId,
              attempt: request.attempt,
              outcome: request.outcome.kind,
              status: request.outcome.status ?? null,
              class: requestClass(request.outcome),
              ms: request.outcome.ms,
            }
          : {
              endpoint: request.endpoint,
              deliveryId: null,
              attempt: null,
              outcome: request.outcome,
              status: request.status,
              class: request.status === 429 ? ('excluded' as const) : ('failure' as const),
              ms: request.ms,
            };
      const counted = row.class;
      await recordRequest(trx, { at: clock.now(), ...row });
      const decision = await current(trx);
      if (counted === 'failure') await checkHourlyFailures(trx);
      if (decision.rollback) {
        await changeMode(
          trx,
          { audit, alerts, clock },
          {
            command: 'rollback',
            actor: 'monitor',
            reason: `error rate: ${decision.reason}`,
            evidence: {
              requests: decision.requests,
              failures: decision.failures,
              rate: decision.rate,
              lowerBound: decision.lowerBound,
              consecutiveFailures: decision.consecutiveFailures,
              windowMinutes: config.policy.errorRateWindowMinutes,
            },
          },
        );
      }
      return decision;
    },
  };
}
