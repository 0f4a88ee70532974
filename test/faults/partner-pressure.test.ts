/**
 * A partner under pressure (README "Delivery outcomes"), through the real engine, guard, store and
 * partner client against the HTTPS sandbox partner (test/support/live-world.ts: a ManualClock, so waits
 * take no real time):
 *
 * - a 429 storm: every leads request answered 429 with Retry-After 2 s. The wait holds every request
 *   to the partner (health checks and every batch, not just the one that got it), 429s spend no retry,
 *   nothing is quarantined, and once the partner has held us off for THROTTLE_STORM_MS outbound is
 *   paused, once, with a critical alert; resumed, everything is exported;
 * - the error-rate rule as the policy says: with 15% of requests failing, the rollback comes at the
 *   first request where more than 10% of at least 10 counted requests in the window had failed;
 * - no answer is asked again: a batch whose requests time out spends no retry; it is resent under its
 *   key until the partner answers, and exported once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readMode } from '../../src/guard/index.js';
import { THROTTLE_STORM_MS } from '../../src/policy/index.js';
import { workerBeat } from '../support/heartbeat.js';
import { closeWorlds, many, world } from '../support/live-world.js';
import { CLEARED, SECOND } from '../support/world.js';

afterEach(closeWorlds);

describe('a partner under pressure (real engine, real client, sandbox partner)', () => {
  it('a 429 storm: every request waits the Retry-After, nothing is quarantined, one pause with a critical alert', async () => {
    const w = await world({
      sandbox: { faults: { rateLimit: { retryAfter: 2, every: 1 } } },
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '100' },
    });
    await w.ingestAll(many('s', 300));
    // Every request start at the partner (health checks and batches), on the app's clock, and the
    // time each 429 asked every request to wait until.
    const starts: { at: number; what: string }[] = [];
    let holdUntil = 0;
    const early: string[] = [];
    const start = (what: string) => {
      const at = w.clock.now();
      if (at < holdUntil) early.push(`${what} at +${at - holdUntil} ms before the partner's Retry-After`);
      starts.push({ at, what });
    };
    w.beforeHealth = () => start('health');
    w.beforeSend = (batch) => start(`batch ${batch.batchKey}`);
    w.afterSend = (outcome) => {
      if (outcome.status === 429) holdUntil = w.clock.now() + 2 * SECOND;
      return undefined;
    };

    let cycles = 0;
    while ((await readMode(w.app.store.db)) === 'live' && cycles < 200) {
      await w.cycle();
      cycles++;
      w.clock.advance(SECOND);
    }
    expect(await readMode(w.app.store.db)).toBe('paused');
    expect(early).toEqual([]);
    const batchStarts = starts.filter((s) => s.what.startsWith('batch'));
    // The storm lasted THROTTLE_STORM_MS (2 s per 429, each waited out): tens of requests over a
    // minute, not 300 leads' worth of retries in seconds.
    expect(batchStarts.length).toBeGreaterThanOrEqual(10);
    expect(batchStarts.length).toBeLessThanOrEqual(THROTTLE_STORM_MS / (2 * SECOND) + 1);
    expect(batchStarts.at(-1)!.at - batchStarts[0]!.at).toBeGreaterThanOrEqual(THROTTLE_STORM_MS);
    // Health checks waited too: none started inside a hold (checked above with every other start).
    expect(starts.some((s) => s.what === 'health')).toBe(true);

    // Nothing quarantined; no retry spent by a 429.
    const deliveries = await w.deliveries();
    expect(deliveries.filter((d) => d.state === 'quarantined')).toEqual([]);
    expect(deliveries.every((d) => d.failed_answers === 0 && d.unanswered === 0)).toBe(true);
    const leads = [...(await w.leads()).values()];
    expect(leads.filter((l) => l.state === 'quarantined')).toEqual([]);
    expect(await w.audit('batch.quarantined')).toEqual([]);

    // One pause, by the monitor, with one critical alert naming the storm; no rollback.
    const pauses = await w.audit('mode.pause');
    expect(pauses).toHaveLength(1);
    expect(String(pauses[0]!.details.reason)).toContain('only 429');
    expect(await w.audit('mode.rollback')).toEqual([]);
    const alerts = await w.app.store.db.selectFrom('alerts').selectAll().execute();
    const storm = alerts.filter((a) => a.event === 'throttle_storm');
    expect(storm).toHaveLength(1);
    expect(storm[0]!.severity).toBe('critical');

    // Paused: further cycles send nothing.
    const before = w.sandbox.stats().requests.total;
    for (let i = 0; i < 3; i++) {
      expect(await w.cycle()).toMatchObject({ kind: 'idle' });
      w.clock.advance(5 * SECOND);
    }
    expect(w.sandbox.stats().requests.total).toBe(before);

    // The partner recovers; an operator resumes: every lead exported once, under one key each.
    w.sandbox.setFaults({ rateLimit: null });
    await w.app.changeMode('resume', { reason: 'the partner lifted its rate limit' });
    for (let i = 0; i < 20 && [...(await w.leads()).values()].some((l) => l.state !== 'exported'); i++) {
      await w.cycle();
      w.clock.advance(5 * SECOND);
    }
    await w.check({ finalStates: ['exported'], leadCount: 300 });
  });

  it('15% of requests fail: the rollback comes at the first request where more than 10% of at least 10 had failed', async () => {
    const w = await world({
      sandbox: { faults: { errorRate: 0.15, seed: 4242 } },
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' },
    });
    await w.ingestAll(many('r', 400));
    let cycles = 0;
    while ((await readMode(w.app.store.db)) === 'live' && cycles < 400) {
      await w.cycle();
      cycles++;
      w.clock.advance(5 * SECOND);
    }
    expect(await readMode(w.app.store.db)).toBe('rolled_back');
    // The request log, as the monitor counted it (429s excluded; none here).
    const rows = await w.app.store.db
      .selectFrom('requests')
      .select(['class'])
      .where('class', '!=', 'excluded')
      .orderBy('id')
      .execute();
    let failures = 0;
    let firstOver: number | null = null;
    let run = 0;
    let firstRun: number | null = null;
    rows.forEach((r, i) => {
      if (r.class === 'failure') {
        failures++;
        run++;
      } else run = 0;
      const n = i + 1;
      if (firstOver === null && n >= 10 && failures / n > 0.1) firstOver = n;
      if (firstRun === null && run >= 3) firstRun = n;
    });
    const trigger = Math.min(firstOver ?? Number.POSITIVE_INFINITY, firstRun ?? Number.POSITIVE_INFINITY);
    expect(Number.isFinite(trigger)).toBe(true);
    // The rollback came with the request that crossed the line: no request counted after it.
    expect(rows).toHaveLength(trigger);
    const [rollback] = await w.audit('mode.rollback');
    expect(rollback!.details.requests).toBe(trigger);
    // Nothing lost: what was not exported waits in the queue.
    await w.check({ finalStates: ['exported', 'pending', 'in_flight'], leadCount: 400 });
  });

  it('no answer is asked again: requests that time out spend no retry; the key is resent until the partner answers', async () => {
    const w = await world({ policy: { apiTimeoutSeconds: 1 } });
    await w.ingestAll(many('t', 2));
    // The first five requests of the batch hang (the client's timeout fires); the 6th is answered.
    w.beforeSend = (_batch, nth) => {
      w.sandbox.setFaults({ hang: nth <= 5 });
    };
    // Health checks pass: the hang is switched on only for batch requests.
    w.beforeHealth = () => {
      w.sandbox.setFaults({ hang: false });
    };
    for (let i = 0; i < 12 && [...(await w.leads()).values()].some((l) => l.state !== 'exported'); i++) {
      await w.cycle();
      w.clock.advance(10 * SECOND);
      // The error-rate rule counts the timeouts as failures: re-arm so the run goes on.
      if ((await readMode(w.app.store.db)) === 'rolled_back') {
        // A re-arm needs the worker restarted since the rollback: its heartbeat says so.
        await workerBeat(w.app.store.db, { at: w.clock.now() + 1, startedAt: w.clock.now() + 1 });
        w.clock.advance(10);
        await w.app.changeMode('rearm', { reason: 'test: continue after the timeouts', gates: CLEARED });
      }
    }
    const [d] = await w.deliveries();
    expect(d).toMatchObject({ state: 'accepted', failed_answers: 0, unanswered: 5, attempts: 6 });
    expect(await w.audit('batch.quarantined')).toEqual([]);
    await w.check({ finalStates: ['exported'], leadCount: 2 });
  });

  it('no token for a batch (the token endpoint failed): the leads request never went out, so no retry is spent and nothing is learnt about the key', async () => {
    const w = await world();
    await w.ingestAll(many('k', 2));
    // The first batch request: the partner is made unreachable for it, and the client's answer is the
    // token endpoint's 503 (what sendBatch returns when it cannot get a token: stage `token`).
    w.beforeSend = (_batch, nth) => {
      w.sandbox.setFaults({ down: nth === 1 });
    };
    w.afterSend = (_outcome, nth) => {
      w.sandbox.setFaults({ down: false });
      return nth === 1
        ? {
            kind: 'retryable',
            status: 503,
            retryAfterMs: null,
            message: 'token endpoint answered HTTP 503: partner server error',
            stage: 'token',
            ms: 5,
          }
        : undefined;
    };
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ actions: 1, accepted: 0, retrying: 0, healthFailed: true });
    const [d] = await w.deliveries();
    expect(d).toMatchObject({
      state: 'retry_wait',
      attempts: 0,
      failed_answers: 0,
      unanswered: 0,
      partner_may_have: 0,
    });
    const [failed] = await w.audit('partner.token_failed');
    expect(failed!.details).toMatchObject({ delivery: d!.id, status: 503 });
    // Counted as a failed token request, not as a failed leads request.
    const requests = await w.app.store.db.selectFrom('requests').select(['endpoint', 'class']).execute();
    expect(requests).toEqual([{ endpoint: 'token', class: 'failure' }]);
    w.clock.advance(5 * SECOND);
    expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
    expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 1 });
    await w.check({ finalStates: ['exported'], leadCount: 2 });
  });
});
