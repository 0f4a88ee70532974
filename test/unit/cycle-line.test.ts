import { describe, expect, it } from 'vitest';
import { type CycleReport, claimBound, describeCycle, emptyCycleReport } from '../../src/engine/index.js';

const base: CycleReport = { ...emptyCycleReport('live'), cycleId: 7, rampStage: 4, ceiling: 100 };

const facts = {
  ceiling: 100,
  limitedBy: 'leads_per_cycle' as const,
  outstanding: 0,
  room: 5,
  claimLimit: 100,
  taken: 100,
  packed: 100,
  skippedForBudget: 0,
  stopped: false,
};

describe('what bound a cycle', () => {
  it('names the limit that stopped the claim', () => {
    expect(claimBound(facts)).toBe('leads_per_cycle');
    expect(
      claimBound({ ...facts, ceiling: 0, limitedBy: 'daily_cap', claimLimit: 0, taken: 0, packed: 0 }),
    ).toBe('daily_cap');
    expect(
      claimBound({ ...facts, ceiling: 1, limitedBy: 'ramp_stage', claimLimit: 1, taken: 1, packed: 1 }),
    ).toBe('ramp_stage');
    // The day's budget: leads were eligible but did not fit.
    expect(claimBound({ ...facts, taken: 0, packed: 0, skippedForBudget: 40 })).toBe('daily_budget');
    // Fewer eligible leads than allowed, none skipped: the queue.
    expect(claimBound({ ...facts, taken: 12, packed: 12 })).toBe('queue');
    // Every action went to retries already due.
    expect(claimBound({ ...facts, room: 0, claimLimit: 0, taken: 0, packed: 0 })).toBe('actions_per_cycle');
    // Leads already waiting in batches fill the ceiling.
    expect(claimBound({ ...facts, outstanding: 100, claimLimit: 0, taken: 0, packed: 0 })).toBe(
      'waiting_batches',
    );
    // Batches were cut to the actions left.
    expect(claimBound({ ...facts, room: 1, claimLimit: 100, taken: 100, packed: 100 })).toBe(
      'leads_per_cycle',
    );
    expect(claimBound({ ...facts, room: 1, claimLimit: 100, taken: 150, packed: 100 })).toBe(
      'actions_per_cycle',
    );
    expect(claimBound({ ...facts, stopped: true })).toBe('stopping');
  });
});

describe('the cycle line', () => {
  it("says what bound the cycle when it is not the ceiling's own limit (the day's budget stopped claims)", () => {
    const line = describeCycle({ ...base, boundBy: 'daily_budget' });
    expect(line).toBe(
      "cycle 7 [live] ramp stage 4, ceiling 100 (leads per cycle; bound by the day's budget), claimed 0 lead(s) in 0 batches, actions 0, accepted 0 lead(s) in 0 batches, retry scheduled for 0 lead(s) in 0 batches, quarantined 0 lead(s) in 0 batches",
    );
  });

  it('counts leads and batches, each batch once: 3 batches of 100 retried 4 times each are 300 leads in 3 batches', () => {
    const line = describeCycle({
      ...base,
      claimed: 300,
      claimedBatches: 3,
      actions: 12,
      retrying: 300,
      retryingBatches: 3,
    });
    expect(line).toContain('claimed 300 lead(s) in 3 batches');
    expect(line).toContain('actions 12');
    expect(line).toContain('retry scheduled for 300 lead(s) in 3 batches');
  });

  it('names why sending stopped', () => {
    expect(describeCycle({ ...base, halted: 'paused: the partner has answered only 429' })).toContain(
      'stopped: paused: the partner has answered only 429',
    );
  });
});
