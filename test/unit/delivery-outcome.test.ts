import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decideInterrupted,
  decideOutcome,
  type KeyHistory,
  MAX_PARTNER_WAIT_MS,
  MAX_UNANSWERED_PER_KEY,
  type RequestOutcomeFacts,
  THROTTLE_DEFAULT_WAIT_MS,
  THROTTLE_STORM_MS,
  throttleDecision,
} from '../../src/policy/index.js';
import { HOUR } from '../support/world.js';

const rules = { maxRetries: 3, backoffSeconds: [1, 2, 4] };
const fresh: KeyHistory = { failedAnswers: 0, unanswered: 0, lastOutcome: null };
const timeout: RequestOutcomeFacts = {
  kind: 'retryable',
  code: 'UND_ERR_ABORTED',
  message: 'timed out',
} as never;
const reset: RequestOutcomeFacts = { kind: 'retryable', message: 'ECONNRESET' };
const fiveHundred: RequestOutcomeFacts = {
  kind: 'retryable',
  status: 500,
  retryAfterMs: null,
  message: 'HTTP 500',
};
const throttled = (retryAfterMs: number | null): RequestOutcomeFacts => ({
  kind: 'retryable',
  status: 429,
  retryAfterMs,
  message: 'HTTP 429',
});

describe('delivery outcomes: a failed answer spends a retry, no answer is asked again', () => {
  it('an accepted answer exports, whatever came before', () => {
    const history = { failedAnswers: 3, unanswered: 9, lastOutcome: 'retryable' };
    expect(decideOutcome({ kind: 'accepted', status: 200 }, history, rules)).toEqual({ kind: 'exported' });
  });

  it('failed answers: 1 + 3 attempts, then quarantine (the partner does not hold the batch)', () => {
    let history = fresh;
    const delays: number[] = [];
    for (let answer = 1; answer <= 3; answer++) {
      const v = decideOutcome(fiveHundred, history, rules);
      expect(v.kind, `failed answer ${answer}`).toBe('retry');
      if (v.kind !== 'retry') return;
      expect(v.counts).toBe('failed_answer');
      delays.push(v.delayMs);
      history = { ...history, failedAnswers: history.failedAnswers + 1, lastOutcome: 'retryable' };
    }
    expect(delays).toEqual([1000, 2000, 4000]);
    const last = decideOutcome(fiveHundred, history, rules);
    expect(last).toMatchObject({ kind: 'quarantine', cause: 'retries_spent', partnerMayHaveIt: false });
  });

  it('no answer (timeout, reset, killed) spends no retry: a batch with 3 failed answers is still asked again', () => {
    const spent = { failedAnswers: 3, unanswered: 0, lastOutcome: 'retryable' };
    for (const outcome of [timeout, reset]) {
      const v = decideOutcome(outcome, spent, rules);
      expect(v).toMatchObject({ kind: 'retry', counts: 'unanswered', partnerWaitMs: null });
    }
    expect(decideInterrupted(spent)).toEqual({ kind: 'resend' });
  });

  it('a key nobody answers is bounded apart: quarantined as one the partner may have', () => {
    const almost = { failedAnswers: 0, unanswered: MAX_UNANSWERED_PER_KEY - 2, lastOutcome: 'interrupted' };
    expect(decideOutcome(timeout, almost, rules).kind).toBe('retry');
    expect(decideInterrupted(almost).kind).toBe('resend');
    const spent = { ...almost, unanswered: MAX_UNANSWERED_PER_KEY - 1 };
    expect(decideOutcome(timeout, spent, rules)).toMatchObject({
      kind: 'quarantine',
      cause: 'unanswered_spent',
      partnerMayHaveIt: true,
    });
    const interrupted = decideInterrupted(spent);
    expect(interrupted.kind).toBe('quarantine');
    if (interrupted.kind === 'quarantine') expect(interrupted.reason).toContain('the partner may have it');
  });

  it('a 429 spends nothing and holds every request for its Retry-After (or a default)', () => {
    const spent = { failedAnswers: 3, unanswered: MAX_UNANSWERED_PER_KEY - 1, lastOutcome: 'retryable' };
    expect(decideOutcome(throttled(2000), spent, rules)).toEqual({
      kind: 'retry',
      counts: 'throttled',
      delayMs: 2000,
      partnerWaitMs: 2000,
    });
    expect(decideOutcome(throttled(null), fresh, rules)).toMatchObject({
      delayMs: THROTTLE_DEFAULT_WAIT_MS,
      partnerWaitMs: THROTTLE_DEFAULT_WAIT_MS,
    });
  });

  it("a 503's Retry-After holds every request too, and the 503 spends a retry", () => {
    const v = decideOutcome({ ...fiveHundred, status: 503, retryAfterMs: 7000 }, fresh, rules);
    expect(v).toEqual({ kind: 'retry', counts: 'failed_answer', delayMs: 7000, partnerWaitMs: 7000 });
  });

  it('a 401 is resent at once; a second 401 in a row is a refusal', () => {
    const auth: RequestOutcomeFacts = { kind: 'auth', status: 401, message: 'token refused' };
    expect(decideOutcome(auth, fresh, rules)).toMatchObject({
      kind: 'retry',
      counts: 'failed_answer',
      delayMs: 0,
    });
    expect(decideOutcome(auth, { ...fresh, failedAnswers: 1, lastOutcome: 'auth' }, rules)).toMatchObject({
      kind: 'quarantine',
      cause: 'refused',
    });
  });

  it('a 4xx refusal quarantines at once; a refusal with no answer may have reached the partner', () => {
    expect(decideOutcome({ kind: 'permanent', status: 422, message: 'invalid' }, fresh, rules)).toMatchObject(
      {
        kind: 'quarantine',
        cause: 'refused',
        partnerMayHaveIt: false,
      },
    );
    expect(decideOutcome({ kind: 'permanent', message: 'EPROTO' }, fresh, rules)).toMatchObject({
      kind: 'quarantine',
      partnerMayHaveIt: true,
    });
  });

  it('a request nobody answered marks the batch as one the partner may have, whatever failed answers follow', () => {
    // A timeout (the partner may have accepted it), then four 503s: retries spent, but a 503 does not
    // prove the partner does not hold the key (it may check faults before keys).
    const v = decideOutcome(
      fiveHundred,
      { failedAnswers: 3, unanswered: 1, lastOutcome: 'retryable' },
      rules,
    );
    expect(v).toMatchObject({ kind: 'quarantine', cause: 'retries_spent', partnerMayHaveIt: true });
    const refused = decideOutcome(
      { kind: 'permanent', status: 422, message: 'invalid' },
      { failedAnswers: 0, unanswered: 2, lastOutcome: 'retryable' },
      rules,
    );
    expect(refused).toMatchObject({ kind: 'quarantine', cause: 'refused', partnerMayHaveIt: true });
  });

  it("a gateway's 502 or 504 is no answer from the partner: asked again, no retry spent", () => {
    for (const status of [502, 504]) {
      const v = decideOutcome(
        { kind: 'retryable', status, retryAfterMs: null, message: `HTTP ${status}` },
        { failedAnswers: 3, unanswered: 0, lastOutcome: 'retryable' },
        rules,
      );
      expect(v).toMatchObject({ kind: 'retry', counts: 'unanswered' });
    }
  });

  it('a partner without TLS 1.2 is not an outcome of the batch', () => {
    const v = decideOutcome(
      { kind: 'permanent', tlsVersionRefused: true, message: 'no TLS 1.2' },
      { failedAnswers: 3, unanswered: 0, lastOutcome: null },
      rules,
    );
    expect(v).toEqual({ kind: 'tls_refused', reason: 'no TLS 1.2' });
  });

  it('property: only failed answers lead to "retries spent", only unanswered requests to "may have it"', () => {
    const outcome = fc.oneof(
      fc.constant(fiveHundred),
      fc.constant(timeout),
      fc.constant(throttled(1000)),
      fc.constant<RequestOutcomeFacts>({ kind: 'accepted', status: 200 }),
    );
    fc.assert(
      fc.property(fc.array(outcome, { maxLength: 40 }), (outcomes) => {
        let history = fresh;
        for (const o of outcomes) {
          const v = decideOutcome(o, history, rules);
          if (v.kind === 'exported' || v.kind === 'quarantine') {
            if (v.kind === 'quarantine') {
              if (v.cause === 'retries_spent') expect(history.failedAnswers).toBe(rules.maxRetries);
              if (v.cause === 'unanswered_spent') expect(history.unanswered).toBe(MAX_UNANSWERED_PER_KEY - 1);
              // Once a request of the key went unanswered, a quarantine always says the partner may have it.
              expect(v.partnerMayHaveIt).toBe(history.unanswered > 0 || v.cause === 'unanswered_spent');
            }
            return;
          }
          if (v.kind !== 'retry') throw new Error(`unexpected ${v.kind}`);
          history = {
            failedAnswers: history.failedAnswers + (v.counts === 'failed_answer' ? 1 : 0),
            unanswered: history.unanswered + (v.counts === 'unanswered' ? 1 : 0),
            lastOutcome: o.kind,
          };
          expect(history.failedAnswers).toBeLessThanOrEqual(rules.maxRetries);
        }
      }),
      { numRuns: 300, seed: 15 },
    );
  });
});

describe('a throttling storm', () => {
  it('lasts from the first 429 of a run to the latest; pauses once 429s have kept coming for the threshold', () => {
    let state = { throttledSince: null as number | null, holdUntil: 0 };
    let now = 1_000_000;
    const storms: boolean[] = [];
    for (let i = 0; i < 40; i++) {
      const d = throttleDecision(state, now, 2000);
      storms.push(d.storm);
      state = d.state;
      now = state.holdUntil + 10;
    }
    expect(state.throttledSince).toBe(1_000_000);
    const first = storms.indexOf(true);
    // Each 429 waited out (2 s + 10 ms): the 31st comes 60.3 s after the first.
    expect(first).toBe(30);
    expect(storms.slice(0, first).every((s) => !s)).toBe(true);
  });

  it('one long Retry-After is waited out, not a storm; a 429 right after it is; the hold never moves back', () => {
    const long = throttleDecision({ throttledSince: null, holdUntil: 0 }, 5000, 5 * THROTTLE_STORM_MS);
    expect(long.storm).toBe(false);
    expect(long.state.holdUntil).toBe(5000 + 5 * THROTTLE_STORM_MS);
    const after = throttleDecision(long.state, long.state.holdUntil + 1, 1000);
    expect(after.storm).toBe(true);
    const shorter = throttleDecision({ throttledSince: 5000, holdUntil: 90_000 }, 6000, 1000);
    expect(shorter.state.holdUntil).toBe(90_000);
  });

  it('a Retry-After beyond the longest hold pauses at once; the hold itself is capped', () => {
    const d = throttleDecision({ throttledSince: null, holdUntil: 0 }, 0, MAX_PARTNER_WAIT_MS + 1);
    expect(d.storm).toBe(true);
    expect(d.state.holdUntil).toBe(MAX_PARTNER_WAIT_MS);
  });

  it('two 429s far apart are two runs, not one storm', () => {
    const first = throttleDecision({ throttledSince: null, holdUntil: 0 }, 0, 2000);
    // Hours later (the run long over: no 429 for a whole storm's length after its wait), another 429.
    const later = throttleDecision(first.state, HOUR, 2000);
    expect(later.storm).toBe(false);
    expect(later.state.throttledSince).toBe(HOUR);
  });
});
