/**
 * Clock jumps (the wall clock stepped forward by hours or days, backward by minutes: NTP, a VM
 * resumed, an operator's mistake) under the real engine, guard, store and partner client against the
 * sandbox partner (test/support/live-world.ts, a ManualClock). What must hold:
 *
 * - the daily cap is per UTC day of the wall clock: it resets after midnight and is never exceeded
 *   within a day, also when the clock steps back into a day already used up;
 * - the ramp stage follows the time since go-live (`go_live_at`, set once by the first live cycle and
 *   never moved): a jump never gives a higher ceiling than the stage of the clock's reading, a backward
 *   jump inside a stage changes nothing, and stage 1 sends nothing without an operator's confirmation;
 * - a lead is eligible up to exactly 14 days old and never after, whatever the jumps;
 * - a token that a forward jump has expired is refreshed before the next request;
 * - the rate limiter runs on a monotonic clock: wall-clock jumps neither stall it nor let a burst by.
 *
 * Every scenario ends with the ledger check against the sandbox's own record and the audit chain.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readGoLiveAt } from '../../src/guard/index.js';
import { utcDay } from '../../src/store/index.js';
import { closeWorlds, many, type World, world } from '../support/live-world.js';
import { DAY, HOUR, MINUTE, NOW, SECOND } from '../support/world.js';

afterEach(closeWorlds);

async function cycleRows(w: World) {
  return w.app.store.db.selectFrom('cycles').selectAll().orderBy('id').execute();
}

describe('clock jumps', () => {
  it('daily cap across UTC midnight: resets after it, never exceeded within a day, also after a step back into a full day', async () => {
    const start = Date.parse('2026-11-20T23:59:00Z');
    const w = await world({
      start,
      sandboxClock: 'app',
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '3' },
      policy: { dailyLeads: 5 },
    });
    await w.ingestAll(many('m', 20));
    const steps: [string | number, object][] = [
      [start, { ceiling: 3, claimed: 3, accepted: 3 }],
      [start + 10 * SECOND, { ceiling: 2, limitedBy: 'daily_cap', claimed: 2, accepted: 2 }],
      [start + 20 * SECOND, { ceiling: 0, limitedBy: 'daily_cap', claimed: 0, actions: 0 }],
      // Forward over midnight: a new day, a new allowance.
      ['2026-11-21T00:01:00Z', { ceiling: 3, claimed: 3, accepted: 3 }],
      // Back 5 minutes into the day already used up: nothing.
      ['2026-11-20T23:56:00Z', { ceiling: 0, limitedBy: 'daily_cap', claimed: 0, actions: 0 }],
      // Forward again: what is left of the new day, then nothing.
      ['2026-11-21T00:02:00Z', { ceiling: 2, limitedBy: 'daily_cap', claimed: 2, accepted: 2 }],
      ['2026-11-21T00:02:10Z', { ceiling: 0, limitedBy: 'daily_cap', claimed: 0, actions: 0 }],
      // Days later: a fresh allowance (the leads are still under 14 days old).
      ['2026-11-24T12:00:00Z', { ceiling: 3, claimed: 3, accepted: 3 }],
    ];
    for (const [at, expected] of steps) {
      w.clock.set(at);
      const requests = w.sandbox.stats().requests.total;
      const report = await w.cycle();
      expect(report, `cycle at ${new Date(w.clock.now()).toISOString()}`).toMatchObject(expected);
      if (report.claimed === 0) expect(w.sandbox.stats().requests.total).toBe(requests);
    }
    const usage = await w.app.store.db.selectFrom('daily_usage').selectAll().orderBy('day').execute();
    expect(usage.map((u) => [u.day, Number(u.leads)])).toEqual([
      ['2026-11-20', 5],
      ['2026-11-21', 5],
      ['2026-11-24', 3],
    ]);
    // The partner's own record, by the UTC day each batch arrived: never more than 5 leads a day.
    const perDay = new Map<string, number>();
    for (const batch of w.sandbox.records().batches) {
      const day = utcDay(batch.receivedAt);
      perDay.set(day, (perDay.get(day) ?? 0) + batch.leads.length);
    }
    expect(Object.fromEntries(perDay)).toEqual({ '2026-11-20': 5, '2026-11-21': 5, '2026-11-24': 3 });
    await w.check({ finalStates: ['exported', 'pending'], leadCount: 20 });
  });

  it('ramp stage follows go-live time: backward jumps never raise the ceiling or skip stage 1’s confirmation; forward jumps reach each stage on time', async () => {
    const w = await world({ goLiveAgoMs: null, env: { VALHALLA_MAX_LEADS_PER_CYCLE: '12' } });
    await w.ingestAll(many('g', 60));
    const confirm = () => w.app.operatorActions().confirmCycle();
    const at = async (time: number, expected: object) => {
      w.clock.set(time);
      const requests = w.sandbox.stats().requests.total;
      const report = await w.cycle();
      expect(report, `cycle at go-live ${(time - NOW) / MINUTE} min`).toMatchObject(expected);
      if (report.kind === 'idle') expect(w.sandbox.stats().requests.total).toBe(requests);
      return report;
    };
    const waiting = { kind: 'idle', idleReason: expect.stringMatching(/waiting for an operator to confirm/) };

    await at(NOW, { rampStage: 1, ceiling: 1, claimed: 1, accepted: 1 });
    expect(await readGoLiveAt(w.app.store.db)).toBe(NOW);
    await at(NOW + MINUTE, waiting);
    await confirm();
    await at(NOW + 2 * MINUTE, { rampStage: 1, ceiling: 1, claimed: 1 });
    // Back to before go-live: still stage 1 (never a later one), still confirmed cycle by cycle.
    await at(NOW - 29 * MINUTE, waiting);
    await confirm();
    await at(NOW - 28 * MINUTE, { rampStage: 1, ceiling: 1, claimed: 1 });
    // Forward into stage 2 (5 leads/cycle, no confirmation).
    await at(NOW + 3 * HOUR, { rampStage: 2, ceiling: 5, claimed: 5 });
    // Back 20 minutes, still inside stage 2: nothing changes, no confirmation is asked for.
    await at(NOW + 2 * HOUR + 40 * MINUTE, { rampStage: 2, ceiling: 5, claimed: 5 });
    // Back across the 2 h boundary: the clock says stage 1, so stage 1's rules apply again (fail-safe).
    await at(NOW + HOUR + 50 * MINUTE, waiting);
    await confirm();
    await at(NOW + HOUR + 51 * MINUTE, { rampStage: 1, ceiling: 1, claimed: 1 });
    await at(NOW + 6 * HOUR + MINUTE, { rampStage: 3, ceiling: 10, claimed: 10 });
    await at(NOW + 24 * HOUR + MINUTE, { rampStage: 4, ceiling: 12, claimed: 12 });

    // Go-live was set once, by the first live cycle, and never moved by the jumps.
    expect(await readGoLiveAt(w.app.store.db)).toBe(NOW);
    expect(await w.audit('phase4.go_live')).toHaveLength(1);
    const live = (await cycleRows(w)).filter((c) => c.kind === 'live');
    for (const c of live)
      expect(c.claimed, `cycle ${c.id} (stage ${c.ramp_stage})`).toBeLessThanOrEqual(c.ceiling);
    expect(live.map((c) => c.ramp_stage)).toEqual([1, 1, 1, 2, 2, 1, 3, 4]);
    await w.check({ finalStates: ['exported', 'pending'], leadCount: 60 });
  });

  it('lead age: eligible up to exactly 14 days, expired a second later; a backward jump revives nothing; a lead going stale during a backoff quarantines its attempted batch', async () => {
    const w = await world({ env: { VALHALLA_MAX_LEADS_PER_CYCLE: '5' } });
    await w.ingestAll([
      { tag: 'over', score: 90, ageMs: 14 * DAY - 59 * SECOND },
      { tag: 'edge', score: 80, ageMs: 14 * DAY - 60 * SECOND },
      { tag: 'fresh', score: 70, ageMs: 14 * DAY - 120 * SECOND },
    ]);
    w.clock.advance(60 * SECOND); // edge is exactly 14 days old, over 14 days and 1 s
    expect(await w.cycle()).toMatchObject({ expired: 1, claimed: 2, accepted: 2 });
    let leads = await w.leads();
    expect(leads.get('over')).toMatchObject({ state: 'expired' });
    expect(leads.get('over')!.state_reason).toMatch(/older than 14 days/);
    expect(leads.get('edge')).toMatchObject({ state: 'exported' });
    expect(leads.get('fresh')).toMatchObject({ state: 'exported' });

    w.clock.advance(-10 * MINUTE);
    expect(await w.cycle()).toMatchObject({ claimed: 0, actions: 0 });
    expect((await w.leads()).get('over')).toMatchObject({ state: 'expired' });

    // Sent at 14 days minus 3 s; the partner fails it; the backoff outlasts the lead's 14 days.
    await w.ingestAll([
      { tag: 'late', score: 95, ageMs: 14 * DAY - 3 * SECOND },
      { tag: 'buddy', score: 60, ageMs: HOUR },
    ]);
    w.sandbox.setFaults({ failNext: 1 });
    w.onSleep = () => w.clock.advance(5 * SECOND);
    expect(await w.cycle()).toMatchObject({ claimed: 2, actions: 1, accepted: 0, refused: 2 });
    leads = await w.leads();
    for (const tag of ['late', 'buddy']) {
      expect(leads.get(tag)!.state).toBe('quarantined');
      expect(leads.get(tag)!.state_reason).toMatch(/already attempted/);
    }
    expect(w.sandbox.stats().batches.received).toBe(2);
    await w.check({ finalStates: ['exported', 'expired', 'quarantined'], leadCount: 5 });
  });

  it('token expiry after a forward jump: refreshed before the next request; a backward jump keeps a valid token', async () => {
    const w = await world({ sandboxClock: 'app', env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
    await w.ingestAll(many('t', 6));
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    expect(w.sandbox.stats().tokens.issued).toBe(1);
    w.clock.advance(2 * HOUR); // the 1 h token has expired at both ends
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    expect(w.sandbox.stats().tokens.issued).toBe(2);
    w.clock.advance(-HOUR);
    expect(await w.cycle()).toMatchObject({ accepted: 2 });
    expect(w.sandbox.stats().tokens.issued).toBe(2);
    expect(w.sandbox.stats().requests.byStatus['401']).toBeUndefined();
    await w.check({ finalStates: ['exported'], leadCount: 6 });
  });

  it('the rate limiter is monotonic: wall-clock jumps of a day either way, between and inside cycles, neither stall it nor let more than 5 requests into any real second', async () => {
    const w = await world({ env: { VALHALLA_MAX_LEADS_PER_CYCLE: '1' } });
    await w.ingestAll(many('r', 6));
    // Between the guard's decision and the request, the clock steps back an hour (then forward again).
    w.beforeSend = () => w.clock.advance(-HOUR);
    w.afterSend = () => w.clock.advance(HOUR);
    for (let i = 0; i < 6; i++) {
      w.clock.set(NOW + (i % 2 === 0 ? DAY : 0) + i * MINUTE);
      expect(await w.cycle()).toMatchObject({ claimed: 1, accepted: 1 });
    }
    const stats = w.sandbox.stats();
    // Not stalled: all 13 went out (6 health checks, 1 token, 6 batches), and the partner's record
    // holds the rule in every window (w.check), whatever the wall-clock jumps said.
    expect(stats.requests.total).toBe(13);
    await w.check({ finalStates: ['exported'], leadCount: 6 });
  });
});
