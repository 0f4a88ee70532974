/**
 * The error-rate rollback rule: the policy's "> 10% failures → auto-rollback", as written. Two
 * triggers, either of which rolls back:
 *
 * 1. **Consecutive failures**: the last `consecutiveFailures` (3) counted requests all failed. A partner
 *    that is down rolls back on the 3rd request, whatever the sample.
 * 2. **The rate**: at least `minRequests` (10) counted requests in the window, and more than the
 *    tolerance (10%) of them failed. 1 failure in 10 is 10%: no rollback; 2 in 10 rolls back; 14 in 100
 *    rolls back. The minimum sample keeps a single failure at ramp stage 1 (one request, 100%) from
 *    rolling back on its own; the consecutive rule covers a dead partner before the sample is reached.
 *
 * The one-sided 95% Wilson lower bound of the rate is still computed for the status display (how
 * sure the rate is), never for the trigger.
 *
 * A failure is a timeout, a network error, a 5xx or a 4xx other than 429 (401 included). A 429 is
 * the partner throttling us: it is neither a failure nor a success (it is backed off and retried).
 */
export interface ErrorRateRule {
  /** The tolerated failure rate, 0–1 (policy: 0.10). */
  tolerance: number;
  /** Counted requests needed before the rate itself can trigger. */
  minRequests: number;
  /** This many failed requests in a row trigger at once. */
  consecutiveFailures: number;
  /** The window, in ms, over which the rate is taken. */
  windowMs: number;
}

/** z for a one-sided 95% bound. */
export const ERROR_RATE_Z = 1.6449;

export interface ErrorRateDecision {
  /** Counted requests (429 excluded) in the window. */
  requests: number;
  failures: number;
  /** failures / requests, 0 when there were none. */
  rate: number;
  /** The one-sided 95% Wilson lower bound of the rate (shown, not used by the trigger). */
  lowerBound: number;
  /** Failed requests in a row at the end of the window. */
  consecutiveFailures: number;
  rollback: boolean;
  /** Why it rolls back, or why not, with the numbers. */
  reason: string;
}

/** The Wilson score interval's lower bound for `failures` out of `n` at `z`. */
export function wilsonLowerBound(failures: number, n: number, z = ERROR_RATE_Z): number {
  if (n === 0) return 0;
  const p = failures / n;
  const z2 = z * z;
  const centre = p + z2 / (2 * n);
  const spread = z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.max(0, (centre - spread) / (1 + z2 / n));
}

/** Decide from the counted requests of the window, oldest first. */
export function errorRateDecision(
  outcomes: readonly { failed: boolean }[],
  rule: ErrorRateRule,
): ErrorRateDecision {
  const requests = outcomes.length;
  const failures = outcomes.filter((o) => o.failed).length;
  let consecutive = 0;
  for (let i = outcomes.length - 1; i >= 0 && outcomes[i]!.failed; i--) consecutive++;
  const rate = requests === 0 ? 0 : failures / requests;
  const lowerBound = wilsonLowerBound(failures, requests);
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const base = { requests, failures, rate, lowerBound, consecutiveFailures: consecutive };
  if (consecutive >= rule.consecutiveFailures) {
    return {
      ...base,
      rollback: true,
      reason: `${consecutive} requests in a row failed (trigger: ${rule.consecutiveFailures})`,
    };
  }
  if (requests >= rule.minRequests && rate > rule.tolerance) {
    return {
      ...base,
      rollback: true,
      reason: `failure rate ${pct(rate)} (${failures}/${requests}) is above ${pct(rule.tolerance)}`,
    };
  }
  return {
    ...base,
    rollback: false,
    reason:
      requests < rule.minRequests
        ? `${failures}/${requests} failed: fewer than ${rule.minRequests} requests, only ${rule.consecutiveFailures} failures in a row trigger`
        : `failure rate ${pct(rate)} (${failures}/${requests}) ≤ ${pct(rule.tolerance)}`,
  };
}
