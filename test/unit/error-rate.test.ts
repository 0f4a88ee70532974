import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import { errorRateRule, requestClass } from '../../src/monitor/index.js';
import type { SendOutcome } from '../../src/outbound/index.js';
import { errorRateDecision, wilsonLowerBound } from '../../src/policy/index.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

const config = loadConfig({
  cwd: tempDir(),
  env: { VALHALLA_POLICY_FILE: DEFAULT_POLICY_FILE, VALHALLA_PSEUDONYM_SECRET: 'x'.repeat(40) },
});
/** The shipped policy's rule: 10%, at least 10 requests, 3 in a row, 60 minutes. */
const rule = errorRateRule(config);
const seq = (pattern: string) => [...pattern].map((c) => ({ failed: c === 'x' }));

describe('the error-rate rule (shipped policy)', () => {
  it('takes its numbers from the policy file', () => {
    expect(rule).toEqual({ tolerance: 0.1, minRequests: 10, consecutiveFailures: 3, windowMs: HOUR });
  });

  it('partner down: rolls back on the 3rd failed request, not before', () => {
    expect(errorRateDecision(seq('x'), rule).rollback).toBe(false);
    expect(errorRateDecision(seq('xx'), rule).rollback).toBe(false);
    const third = errorRateDecision(seq('xxx'), rule);
    expect(third.rollback).toBe(true);
    expect(third.reason).toContain('3 requests in a row failed');
    // Even after a long healthy run, a dead partner is caught within 3 requests.
    expect(errorRateDecision(seq(`${'.'.repeat(200)}xxx`), rule).rollback).toBe(true);
    expect(errorRateDecision(seq(`${'.'.repeat(200)}xx`), rule).rollback).toBe(false);
  });

  it('ramp stage 1: one failure is a 100% rate but not a rollback', () => {
    const d = errorRateDecision(seq('x'), rule);
    expect(d.rate).toBe(1);
    expect(d.rollback).toBe(false);
    expect(d.reason).toContain('fewer than 10 requests');
  });

  it('one failure among 10 or more successes never rolls back, wherever it falls', () => {
    for (let successes = 10; successes <= 40; successes++) {
      for (let at = 0; at <= successes; at++) {
        const pattern = `${'.'.repeat(at)}x${'.'.repeat(successes - at)}`;
        expect(errorRateDecision(seq(pattern), rule).rollback, pattern).toBe(false);
      }
    }
    const oneIn20 = errorRateDecision(seq(`${'.'.repeat(19)}x`), rule);
    expect(oneIn20.rate).toBeCloseTo(0.05);
    expect(oneIn20.rollback).toBe(false);
  });

  it('rolls back when more than 10% of at least 10 requests failed, as the policy says', () => {
    // 3 of 10, spread out (never 3 in a row): 30%.
    const d = errorRateDecision(seq('x..x..x...'), rule);
    expect(d.consecutiveFailures).toBe(0);
    expect(d.rollback).toBe(true);
    expect(d.reason).toContain('30.0% (3/10) is above 10.0%');
    // 14 of 100, never two in a row: 14% > 10% rolls back (its Wilson lower bound, 9.2%, would not have).
    const fourteen = Array.from({ length: 100 }, (_, i) => ({ failed: i % 7 === 0 && i < 98 }));
    expect(fourteen.filter((o) => o.failed)).toHaveLength(14);
    const d14 = errorRateDecision(fourteen, rule);
    expect(d14.rollback).toBe(true);
    expect(d14.lowerBound).toBeLessThan(0.1);
    // 2 of 10: 20%.
    expect(errorRateDecision(seq('x....x....'), rule).rollback).toBe(true);
    // Exactly 10% is not above 10%: 1 of 10, 10 of 100.
    expect(errorRateDecision(seq('x.........'), rule).rollback).toBe(false);
    const ten = Array.from({ length: 100 }, (_, i) => ({ failed: i % 10 === 5 }));
    expect(errorRateDecision(ten, rule).rollback).toBe(false);
    // 11 of 100 is.
    const eleven = [...ten.slice(0, 99), { failed: true }];
    expect(eleven.filter((o) => o.failed)).toHaveLength(11);
    expect(errorRateDecision(eleven, rule).rollback).toBe(true);
    // Below the minimum sample, only the run of three triggers: 2 of 9 (22%) does not.
    expect(errorRateDecision(seq('x...x....'), rule).rollback).toBe(false);
  });

  it('the Wilson bound matches known values', () => {
    expect(wilsonLowerBound(0, 0)).toBe(0);
    expect(wilsonLowerBound(1, 11)).toBeCloseTo(0.0205, 3);
    expect(wilsonLowerBound(15, 100)).toBeCloseTo(0.1005, 3);
    expect(wilsonLowerBound(10, 10)).toBeGreaterThan(0.75);
  });

  it('property: at or under the tolerance with no 3 failures in a row, never a rollback', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 0, maxLength: 300 }), (flags) => {
        const outcomes = flags.map((failed) => ({ failed }));
        const failures = flags.filter(Boolean).length;
        const decision = errorRateDecision(outcomes, rule);
        if (failures <= flags.length * 0.1 && decision.consecutiveFailures < 3) {
          expect(decision.rollback).toBe(false);
        }
        // Above it with the minimum sample, always a rollback.
        if (flags.length >= 10 && failures > flags.length * 0.1) expect(decision.rollback).toBe(true);
        // And the rule never misses a dead partner.
        if (decision.consecutiveFailures >= 3) expect(decision.rollback).toBe(true);
      }),
      { numRuns: 500, seed: 42 },
    );
  });
});

describe('what counts as a failed request', () => {
  const base = { ms: 5 };
  const cases: [SendOutcome, string][] = [
    [{ kind: 'accepted', status: 200, body: null, bodyIssue: null, ...base }, 'success'],
    [
      { kind: 'retryable', status: 429, retryAfterMs: 1000, message: '', stage: 'batch', ...base },
      'excluded',
    ],
    [{ kind: 'retryable', status: 503, retryAfterMs: null, message: '', stage: 'batch', ...base }, 'failure'],
    [
      { kind: 'retryable', code: 'ETIMEDOUT', retryAfterMs: null, message: '', stage: 'batch', ...base },
      'failure',
    ],
    [{ kind: 'permanent', status: 422, message: '', stage: 'batch', ...base }, 'failure'],
    [{ kind: 'auth', status: 401, message: '', ...base }, 'failure'],
  ];
  for (const [outcome, expected] of cases) {
    it(`${outcome.kind} ${'status' in outcome ? (outcome.status ?? '') : ''}${'code' in outcome ? (outcome.code ?? '') : ''} → ${expected}`, () => {
      expect(requestClass(outcome)).toBe(expected);
    });
  }
});
