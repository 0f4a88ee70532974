import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_POLICY_FILE, loadPolicyFile } from '../../src/config/index.js';
import {
  cycleCeiling,
  exposure,
  packBatches,
  rampPosition,
  takeWithinLimits,
  utcDayStart,
} from '../../src/policy/index.js';
import { HOUR } from '../support/world.js';

const policy = loadPolicyFile(DEFAULT_POLICY_FILE);
const lead = fc.record({
  score: fc.integer({ min: 0, max: 100 }),
  value: fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: null }),
});

describe('cycle ceiling', () => {
  it('is never above any of leads/cycle, the ramp stage and the leads left today, and never negative', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: -50, max: 20_000 }),
        (leadsPerCycle, rampCeiling, leadsLeftToday) => {
          const { ceiling, limitedBy } = cycleCeiling({ leadsPerCycle, rampCeiling, leadsLeftToday });
          expect(ceiling).toBeLessThanOrEqual(leadsPerCycle);
          expect(ceiling).toBeLessThanOrEqual(rampCeiling);
          expect(ceiling).toBeLessThanOrEqual(Math.max(0, leadsLeftToday));
          expect(ceiling).toBeGreaterThanOrEqual(0);
          expect(ceiling).toBe(Math.max(0, Math.min(leadsPerCycle, rampCeiling, leadsLeftToday)));
          const named = {
            leads_per_cycle: leadsPerCycle,
            ramp_stage: rampCeiling,
            daily_cap: leadsLeftToday,
          }[limitedBy];
          expect(Math.max(0, named)).toBe(ceiling);
        },
      ),
    );
  });
});

describe('taking leads within the ceiling and the budget', () => {
  it('never takes more than the ceiling, never spends more than the budget, keeps the order', () => {
    fc.assert(
      fc.property(
        fc.array(lead, { maxLength: 200 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 5_000_000 }),
        (candidates, ceiling, budget) => {
          const { taken, skippedForBudget } = takeWithinLimits(candidates, ceiling, budget);
          expect(taken.length).toBeLessThanOrEqual(ceiling);
          expect(taken.reduce((sum, l) => sum + exposure(l), 0)).toBeLessThanOrEqual(budget);
          let from = 0;
          for (const t of taken) {
            const at = candidates.indexOf(t, from);
            expect(at).toBeGreaterThanOrEqual(from);
            from = at + 1;
          }
          // Whatever was left out before the ceiling filled was left out for the budget.
          if (taken.length < ceiling) expect(taken.length + skippedForBudget).toBe(candidates.length);
        },
      ),
    );
  });

  it('exposure is score × value as the policy writes it, 0 without a value', () => {
    expect(exposure({ score: 50, value: 1000 })).toBe(50_000);
    expect(exposure({ score: 90, value: null })).toBe(0);
  });
});

describe('packing batches', () => {
  it('no batch above the request size, no more batches than actions, nothing reordered or duplicated', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer(), { maxLength: 500 }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 0, max: 10 }),
        (items, maxBatch, maxActions) => {
          const batches = packBatches(items, maxBatch, maxActions);
          expect(batches.length).toBeLessThanOrEqual(maxActions);
          for (const b of batches) {
            expect(b.length).toBeGreaterThan(0);
            expect(b.length).toBeLessThanOrEqual(maxBatch);
          }
          const flat = batches.flat();
          expect(flat).toEqual(items.slice(0, flat.length));
          expect(flat.length).toBe(Math.min(items.length, maxBatch * maxActions));
        },
      ),
    );
  });
});

describe('ramp stages', () => {
  const goLive = Date.parse('2026-11-01T14:00:00Z');

  it('follows the policy: 1 (h 0-2, confirmed), 5 (h 2-6), 10 (h 6-24), then the cap', () => {
    const at = (h: number) => rampPosition(policy.rampStages, goLive, goLive + h * HOUR, 25);
    expect(at(0)).toMatchObject({ stage: 1, ceiling: 1, confirmEachCycle: true });
    expect(at(1.99)).toMatchObject({ stage: 1, ceiling: 1 });
    expect(at(2)).toMatchObject({ stage: 2, ceiling: 5, confirmEachCycle: false });
    expect(at(5.99)).toMatchObject({ stage: 2, ceiling: 5 });
    expect(at(6)).toMatchObject({ stage: 3, ceiling: 10 });
    expect(at(23.99)).toMatchObject({ stage: 3, ceiling: 10 });
    expect(at(24)).toMatchObject({ stage: 4, ceiling: 25, nextStageAt: null });
    expect(at(0).nextStageAt).toBe(goLive + 2 * HOUR);
  });

  it('never goes up early: for any go-live and any instant, the ceiling is at most the stage the elapsed time allows', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -100 * HOUR, max: 100 * HOUR }),
        fc.integer({ min: 1, max: 100 }),
        (offset, cap) => {
          const now = goLive + offset;
          const { ceiling, stage } = rampPosition(policy.rampStages, goLive, now, cap);
          const hours = offset / HOUR;
          const allowed = hours < 2 ? 1 : hours < 6 ? 5 : hours < 24 ? 10 : cap;
          expect(ceiling).toBeLessThanOrEqual(Math.min(allowed, cap));
          expect(stage).toBeGreaterThanOrEqual(1);
          // Monotonic: a later instant never has a lower stage.
          expect(rampPosition(policy.rampStages, goLive, now + HOUR, cap).stage).toBeGreaterThanOrEqual(
            stage,
          );
        },
      ),
    );
  });

  it('before go-live (or with a clock behind it) is stage 1', () => {
    expect(rampPosition(policy.rampStages, null, goLive, 25)).toMatchObject({
      stage: 1,
      ceiling: 1,
      nextStageAt: null,
    });
    expect(rampPosition(policy.rampStages, goLive, goLive - 48 * HOUR, 25)).toMatchObject({
      stage: 1,
      ceiling: 1,
    });
  });
});

describe('the UTC day of the daily cap', () => {
  it('starts at 00:00 UTC', () => {
    expect(new Date(utcDayStart(Date.parse('2026-11-26T23:59:59.999Z'))).toISOString()).toBe(
      '2026-11-26T00:00:00.000Z',
    );
    expect(new Date(utcDayStart(Date.parse('2026-11-27T00:00:00.000Z'))).toISOString()).toBe(
      '2026-11-27T00:00:00.000Z',
    );
  });
});
