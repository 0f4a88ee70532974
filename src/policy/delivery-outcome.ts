/**
 * What a batch's request outcome means for the batch (README "Delivery outcomes"). Pure: the engine
 * records what this decides.
 *
 * Three kinds of answer, counted apart on the batch:
 *
 * - **A failed answer**: the partner answered this key with a failure (a 5xx, a 408, a 401). By the
 *   contract it does not hold the batch. These spend the policy's retries: after 1 + `maxRetries`
 *   failed answers the batch is quarantined.
 * - **No answer**: the request may have reached the partner but nothing came back (the process killed
 *   mid-request, a timeout, a reset or refused connection, a DNS failure). The outcome is unknown, so
 *   the partner is asked again under the same Idempotency-Key: a replay cannot duplicate (the partner
 *   answers a key it holds with its first answer) and does not spend a retry. A separate bound,
 *   `MAX_UNANSWERED_PER_KEY`, stops a key nobody answers; that batch is quarantined with an alert as
 *   one "the partner may have", and a release replays its original key first.
 * - **Throttled**: a 429 is the partner asking us to slow down, not a failure of the batch: it spends
 *   neither count. Its Retry-After (or a 503's) holds every request to the partner (see
 *   `throttleDecision`).
 *
 * A refusal (another 4xx, a second 401 in a row) quarantines at once; a partner that does not offer
 * TLS 1.2 or newer is not an outcome of the batch at all (nothing was sent): outbound is paused.
 */
import { backoffDelayMs } from './retry.js';

/** Requests of one key that may go unanswered before the batch is quarantined (the partner may have it). */
export const MAX_UNANSWERED_PER_KEY = 10;

/** A throttled key waits this long when the partner names no Retry-After. */
export const THROTTLE_DEFAULT_WAIT_MS = 4_000;

/**
 * A throttling storm: the partner has answered only 429s for this long (from the first to the latest,
 * no other answer between). Outbound is then paused with a critical alert instead of waiting on.
 */
export const THROTTLE_STORM_MS = 60_000;

/** The outcome of one request, as far as this rule needs it. */
export interface RequestOutcomeFacts {
  kind: 'accepted' | 'retryable' | 'auth' | 'permanent';
  /** The HTTP status when the partner answered; absent when no answer came. */
  status?: number | undefined;
  retryAfterMs?: number | null | undefined;
  /** The partner does not offer TLS 1.2 or newer: nothing was sent. */
  tlsVersionRefused?: boolean | undefined;
  message?: string;
}

/** The batch's counts before this outcome. */
export interface KeyHistory {
  failedAnswers: number;
  unanswered: number;
  /** The previous request's outcome kind for this key (a second 401 in a row is a refusal). */
  lastOutcome: string | null;
}

export interface OutcomeRules {
  maxRetries: number;
  backoffSeconds: readonly number[];
  maxUnansweredPerKey?: number;
}

export type OutcomeVerdict =
  | { kind: 'exported' }
  /** Ask again under the same key after `delayMs`; `counts` says which count it adds to (or none). */
  | {
      kind: 'retry';
      counts: 'failed_answer' | 'unanswered' | 'throttled';
      delayMs: number;
      /** Every request to the partner waits this long (a 429's or 503's Retry-After); null: only this batch. */
      partnerWaitMs: number | null;
    }
  | {
      kind: 'quarantine';
      cause: 'refused' | 'retries_spent' | 'unanswered_spent';
      counts: 'failed_answer' | 'unanswered';
      /** The partner may hold the batch: a release replays its key first. */
      partnerMayHaveIt: boolean;
      reason: string;
    }
  | { kind: 'tls_refused'; reason: string };

/**
 * Statuses that are not the partner's own answer but a gateway's in front of it: the request may
 * have reached the partner, whose answer was lost. They count as no answer.
 */
export const GATEWAY_STATUSES: ReadonlySet<number> = new Set([502, 504]);

/** Whether the partner itself answered the request (an HTTP status, not a gateway's) or nothing did. */
export function answered(outcome: Pick<RequestOutcomeFacts, 'status'>): boolean {
  return typeof outcome.status === 'number' && !GATEWAY_STATUSES.has(outcome.status);
}

export function decideOutcome(
  outcome: RequestOutcomeFacts,
  history: KeyHistory,
  rules: OutcomeRules,
): OutcomeVerdict {
  const maxUnanswered = rules.maxUnansweredPerKey ?? MAX_UNANSWERED_PER_KEY;
  const message = outcome.message ?? '';
  if (outcome.kind === 'accepted') return { kind: 'exported' };
  if (outcome.tlsVersionRefused) {
    return { kind: 'tls_refused', reason: message || 'the partner does not offer TLS 1.2 or newer' };
  }
  const status = outcome.status;
  if (outcome.kind === 'retryable' && status === 429) {
    // No Retry-After, or one of 0 or in the past, waits the default: a 429 is never resent at once.
    const wait = positive(outcome.retryAfterMs) ?? THROTTLE_DEFAULT_WAIT_MS;
    return { kind: 'retry', counts: 'throttled', delayMs: wait, partnerWaitMs: wait };
  }
  if (!answered(outcome) && (outcome.kind === 'retryable' || GATEWAY_STATUSES.has(outcome.status ?? 0))) {
    const unanswered = history.unanswered + 1;
    if (unanswered >= maxUnanswered) {
      return {
        kind: 'quarantine',
        cause: 'unanswered_spent',
        counts: 'unanswered',
        partnerMayHaveIt: true,
        reason: `no answer from the partner after ${unanswered} requests under this key (${message}); the partner may have it`,
      };
    }
    return {
      kind: 'retry',
      counts: 'unanswered',
      delayMs: backoffDelayMs(retryNumber(history), rules.backoffSeconds, null),
      partnerWaitMs: null,
    };
  }
  const failedAnswers = history.failedAnswers + 1;
  if (outcome.kind === 'permanent' || (outcome.kind === 'auth' && history.lastOutcome === 'auth')) {
    return {
      kind: 'quarantine',
      cause: 'refused',
      counts: 'failed_answer',
      // Refused with no answer (a certificate, an unknown network failure), or after a request nobody
      // answered: the partner may hold the batch (a failure answer does not prove it does not: a
      // partner may check faults or tokens before it looks the key up).
      partnerMayHaveIt: !answered(outcome) || history.unanswered > 0,
      reason: `refused by the partner (${status === undefined ? 'no response' : `HTTP ${status}`}): ${message}`,
    };
  }
  // A failed answer (5xx, 408, a first 401): it spends a retry.
  if (failedAnswers > rules.maxRetries) {
    return {
      kind: 'quarantine',
      cause: 'retries_spent',
      counts: 'failed_answer',
      partnerMayHaveIt: history.unanswered > 0,
      reason: `retries spent: ${failedAnswers} failed answers from the partner (last: ${message})`,
    };
  }
  const retryAfter = outcome.kind === 'retryable' ? positive(outcome.retryAfterMs) : null;
  return {
    kind: 'retry',
    counts: 'failed_answer',
    // A 401 is resent at once with a fresh token; other failures back off (or wait the Retry-After).
    delayMs:
      outcome.kind === 'auth' ? 0 : backoffDelayMs(retryNumber(history), rules.backoffSeconds, retryAfter),
    partnerWaitMs: retryAfter,
  };
}

/** After a crash: a batch found `sending` had a request nobody answered; ask again unless the bound is spent. */
export function decideInterrupted(
  history: KeyHistory,
  maxUnansweredPerKey = MAX_UNANSWERED_PER_KEY,
): { kind: 'resend' } | { kind: 'quarantine'; reason: string } {
  const unanswered = history.unanswered + 1;
  if (unanswered >= maxUnansweredPerKey) {
    return {
      kind: 'quarantine',
      reason: `no answer from the partner after ${unanswered} requests under this key (the last one interrupted); the partner may have it`,
    };
  }
  return { kind: 'resend' };
}

export interface ThrottleState {
  /** When the partner started holding us off (the first 429 after any other answer); null if it is not. */
  throttledSince: number | null;
  /** Every request to the partner waits until then. */
  holdUntil: number;
}

/**
 * After a throttled answer at `now` asking to wait `waitMs`: the new state, and whether the storm has
 * lasted long enough to pause: 429s have kept coming for `stormMs`, from the first of the run to this
 * one. (One long Retry-After alone is waited out; a 429 after it ends the wait with a pause.)
 */
export function throttleDecision(
  state: ThrottleState,
  now: number,
  waitMs: number,
  stormMs = THROTTLE_STORM_MS,
): { state: ThrottleState; storm: boolean; heldForMs: number } {
  // A run of 429s is over when the partner let a whole storm's length pass after its last wait
  // without another 429 (the earlier 429 was long ago: a new run starts now).
  const over = state.throttledSince !== null && now > state.holdUntil + stormMs;
  const since = state.throttledSince === null || over ? now : state.throttledSince;
  const holdUntil = Math.max(state.holdUntil, now + Math.min(waitMs, MAX_PARTNER_WAIT_MS));
  const heldForMs = now - since;
  // A wait longer than the storm threshold is a storm of its own: outbound is not held silently for hours.
  const storm = heldForMs >= stormMs || waitMs > MAX_PARTNER_WAIT_MS;
  return { state: { throttledSince: since, holdUntil }, storm, heldForMs: Math.max(heldForMs, waitMs) };
}

/** The longest wait a Retry-After holds every request for; a 429 asking for more pauses outbound. */
export const MAX_PARTNER_WAIT_MS = 10 * 60_000;

/** The backoff schedule runs over every resend of the key that was not throttled: 1 s, 2 s, 4 s, … */
function retryNumber(history: KeyHistory): number {
  return history.failedAnswers + history.unanswered + 1;
}

function positive(ms: number | null | undefined): number | null {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? ms : null;
}
