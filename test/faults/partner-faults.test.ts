/**
 * Partner faults of every class, each its own bounded scenario through the real engine, guard, store
 * and partner client against the HTTPS sandbox partner (test/support/live-world.ts: a ManualClock, so
 * backoff waits take no real time). What the policy says must happen (README "The cycle", "Monitoring,
 * alerts and rollback"):
 *
 * - network errors, timeouts, 408, 429 and 5xx are retried under the same key after 1 s, 2 s, 4 s (a
 *   longer Retry-After, in seconds or as an HTTP date, wins); at most 3 retries, then the batch's
 *   leads are quarantined with the reason and an ops alert;
 * - a 401 refreshes the token and resends once (a second 401 in a row quarantines);
 * - 400/403/404/422 are not retried: quarantined at once, with an alert;
 * - no batch without a passing health check and a token that outlives the request;
 * - the error-rate rule counts every failure but a 429, and rolls back when the last 3 counted
 *   requests failed; the batch waits in the queue, nothing is lost.
 *
 * Each runs in both partner profiles the sandbox plays: the product's own contract (`valhalla`: OAuth2,
 * a batch Idempotency-Key) and a CRM's batch create (`crm-batch-contacts`: a static bearer token, no
 * batch key, per-record answers). Under the CRM a 401 is resent once with the same credential (no
 * token to refresh), and tokens that expire do not exist, so that case runs under OAuth2 only.
 *
 * Per-lead refusals (the `refuseLeads` fault): the CRM answers 207 with the refused records in
 * `errors`; they are quarantined with its reason and the others exported. The product's own contract
 * has no per-lead refusal: the whole batch is refused (422).
 *
 * Every scenario ends with the ledger check against the sandbox's own per-lead record
 * (./lead-ledger.ts, both profiles), the batch-level one (test/support/ledger-check.ts, the product's
 * contract, which has batch records), the rate at the partner and the audit chain.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import { readMode } from '../../src/guard/index.js';
import { CRM_HEALTH_PATH, SANDBOX_PROFILES } from '../../src/sandbox/index.js';
import { type LedgerExpectations, maxInAnyWindow, readLedgerFacts } from '../support/ledger-check.js';
import { closeWorlds, keyOf, many, type World, type WorldOptions, world } from '../support/live-world.js';
import { HOUR, NOW, SECOND } from '../support/world.js';
import { expectLeadLedgerConsistent, type LeadLedgerExpectations } from './lead-ledger.js';

afterEach(closeWorlds);

const PROFILES = [...SANDBOX_PROFILES];

/**
 * The end of every scenario: the database against the partner's per-lead ledger (both profiles);
 * under the product's contract also the batch-level check; the rate held at the partner and the chain.
 */
async function checkLedger(w: World, expectations: LedgerExpectations & LeadLedgerExpectations = {}) {
  const { refused, ...batchLevel } = expectations;
  const facts = await readLedgerFacts(w.app.store.db);
  const summary = expectLeadLedgerConsistent(facts, w.sandbox.leads(), expectations);
  if (w.sandbox.profile === 'valhalla') {
    await w.check(batchLevel);
  } else {
    const starts = [...w.sandbox.stats().requestStarts].sort((a, b) => a - b);
    expect(maxInAnyWindow(starts, 1_000).max).toBeLessThanOrEqual(5);
    expect((await w.app.audit.verify()).ok).toBe(true);
  }
  return summary;
}

/** The attempts the guard allowed, as [batch key, attempt]. */
async function allowed(w: World): Promise<[string, unknown][]> {
  return (await w.audit('guard.allowed')).map((e) => [keyOf(e.subject), e.details.attempt]);
}

async function quarantineAlerts(w: World) {
  return w.app.store.db.selectFrom('alerts').selectAll().where('event', '=', 'quarantine').execute();
}

describe.each(PROFILES)(
  'partner faults, class by class, profile %s (real engine, real client, sandbox partner)',
  (profile) => {
    const oauth = profile === 'valhalla';
    const open = (options: WorldOptions = {}) => world({ profile, ...options });
    const healthPath = oauth ? '/health' : CRM_HEALTH_PATH;

    it('5xx, transient: 503 twice, resent after 1 s and 2 s under the same key, accepted once; no rollback', async () => {
      const w = await open({ sandbox: { faults: { failNext: 2 } } });
      await w.ingestAll(many('a', 3));
      const report = await w.cycle();
      expect(report).toMatchObject({ claimed: 3, actions: 3, accepted: 3, quarantined: 0, halted: null });
      expect(w.sleeps).toEqual([1_000, 2_000]);
      const [d] = await w.deliveries();
      expect(d).toMatchObject({ state: 'accepted', attempts: 3 });
      expect(await allowed(w)).toEqual([
        [d!.batch_key, 1],
        [d!.batch_key, 2],
        [d!.batch_key, 3],
      ]);
      expect(w.sandbox.stats().batches).toMatchObject({ received: 3, failedByFault: 2, accepted: 1 });
      expect(await readMode(w.app.store.db)).toBe('live');
      const rate = await w.app.requestMonitor.current(w.app.store.db);
      expect(rate).toMatchObject({ requests: 3, failures: 2, consecutiveFailures: 0, rollback: false });
      await checkLedger(w, { finalStates: ['exported'], leadCount: 3 });
    });

    it('5xx, persistent: rolled back at the 3rd failed request; the batch waits in the queue, no 4th request, nothing lost', async () => {
      const w = await open({ sandbox: { faults: { failNext: 100 } } });
      await w.ingestAll(many('b', 2));
      const report = await w.cycle();
      expect(report).toMatchObject({ actions: 3, accepted: 0, quarantined: 0 });
      expect(report.halted).toMatch(/rolled back/);
      expect(w.sleeps).toEqual([1_000, 2_000]);
      expect(await readMode(w.app.store.db)).toBe('rolled_back');
      expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', attempts: 3, last_status: 503 });
      // Rolled back: the next cycles are dry runs; the waiting batch is kept, never sent.
      w.clock.advance(10 * SECOND);
      expect(await w.cycle()).toMatchObject({ kind: 'dry_run', actions: 0 });
      expect(w.sandbox.stats().batches.received).toBe(3);
      const rollback = await w.audit('mode.rollback');
      expect(rollback).toHaveLength(1);
      await checkLedger(w, { finalStates: ['in_flight'], leadCount: 2 });
    });

    it('503, 429, 503, 429, 200: the 429s wait their Retry-After, spend no retry and do not count toward the error rate; accepted at the 5th request', async () => {
      const w = await open();
      const faults = [
        { failNext: 1 },
        { rateLimit: { retryAfter: 0 } },
        { failNext: 1 },
        { rateLimit: { retryAfter: 3 } },
      ];
      w.beforeSend = (_batch, nth) => {
        w.sandbox.setFaults({ rateLimit: null, failNext: 0, ...(faults[nth - 1] ?? {}) });
      };
      await w.ingestAll(many('c', 2));
      const report = await w.cycle();
      expect(report).toMatchObject({
        actions: 5,
        accepted: 2,
        quarantined: 0,
        retrying: 2,
        retryingBatches: 1,
      });
      // 1 s and 2 s for the failed answers; the 429s' waits: the default 4 s for a Retry-After of 0 (a
      // 429 is never resent at once), then the 3 s asked for.
      expect(w.sleeps).toEqual([1_000, 4_000, 2_000, 3_000]);
      const [d] = await w.deliveries();
      expect(d).toMatchObject({ state: 'accepted', attempts: 5, failed_answers: 2, unanswered: 0 });
      expect(await readMode(w.app.store.db)).toBe('live');
      const rate = await w.app.requestMonitor.current(w.app.store.db);
      expect(rate).toMatchObject({ requests: 3, failures: 2, rollback: false });
      expect(w.sandbox.stats().batches.received).toBe(5);
      await checkLedger(w, { finalStates: ['exported'], leadCount: 2 });
    });

    it('timeout: a hung batch request is cut by the client timeout (apiTimeoutSeconds 1), resent after 1 s under the same key', async () => {
      const w = await open({ policy: { apiTimeoutSeconds: 1 } });
      w.beforeSend = (_batch, nth) => {
        w.sandbox.setFaults({ hang: nth === 1 });
      };
      await w.ingestAll(many('t', 2));
      const report = await w.cycle();
      expect(report).toMatchObject({ actions: 2, accepted: 2 });
      expect(w.sleeps).toEqual([1_000]);
      const [retry] = await w.audit('batch.retry_scheduled');
      expect(String(retry!.details.message)).toMatch(/timed out/);
      expect(w.sandbox.stats().requests.hung).toBe(1);
      expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 2 });
      await checkLedger(w, { finalStates: ['exported'], leadCount: 2 });
    });

    it('connection reset: the partner drops the batch connection, the batch is resent after 1 s under the same key', async () => {
      const w = await open();
      w.beforeSend = (_batch, nth) => {
        w.sandbox.setFaults({ down: nth === 1 });
      };
      await w.ingestAll(many('r', 2));
      const report = await w.cycle();
      expect(report).toMatchObject({ actions: 2, accepted: 2 });
      expect(w.sleeps).toEqual([1_000]);
      const [retry] = await w.audit('batch.retry_scheduled');
      expect(retry!.details).toMatchObject({ outcome: 'retryable', status: null });
      expect(String(retry!.details.message)).toMatch(/batch request failed: \w+/);
      expect(w.sandbox.stats().requests.dropped).toBe(1);
      await checkLedger(w, { finalStates: ['exported'], leadCount: 2 });
    });

    it('429 with Retry-After: 7 s (seconds) and +5 s (HTTP date) win over the backoff, a past date waits the default 4 s; never counted as failures', async () => {
      const w = await open();
      const httpDate = (offsetMs: number) => new Date(w.clock.now() + offsetMs).toUTCString();
      w.beforeSend = (_batch, nth) => {
        const retryAfter = [7, httpDate(5 * SECOND), httpDate(-HOUR)][nth - 1];
        w.sandbox.setFaults({ rateLimit: retryAfter === undefined ? null : { retryAfter } });
      };
      await w.ingestAll(many('l', 2));
      const report = await w.cycle();
      expect(report).toMatchObject({ actions: 4, accepted: 2, halted: null });
      expect(w.sleeps).toEqual([7_000, 5_000, 4_000]);
      const retries = await w.audit('batch.retry_scheduled');
      expect(retries.map((e) => [e.details.status, e.details.retryInMs])).toEqual([
        [429, 7_000],
        [429, 5_000],
        [429, 4_000],
      ]);
      expect(w.sandbox.stats().requests.byStatus['429']).toBe(3);
      const rate = await w.app.requestMonitor.current(w.app.store.db);
      expect(rate).toMatchObject({ requests: 1, failures: 0, rollback: false });
      expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 4 });
      await checkLedger(w, { finalStates: ['exported'], leadCount: 2 });
    });

    it(`401 then recovery: ${oauth ? 'the token is refreshed and' : 'the same static bearer token is'} resent at once under the same key; a second 401 in a row quarantines`, async () => {
      const w = await open({ env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
      w.beforeSend = (_batch, nth) => {
        // Batch 1: refused once, then accepted with a fresh token. Batch 2: refused twice.
        w.sandbox.setFaults({ reject401: nth !== 2 });
      };
      await w.ingestAll(many('u', 4));
      const first = await w.cycle();
      expect(first).toMatchObject({ actions: 2, accepted: 2 });
      expect(w.sleeps).toEqual([]); // a 401 is resent at once, no backoff
      // OAuth2: a fresh token for the resend. A static credential: nothing to fetch, the same one again.
      expect(w.sandbox.stats().tokens.issued).toBe(oauth ? 2 : 0);
      const [a] = await w.deliveries();
      expect(a).toMatchObject({ state: 'accepted', attempts: 2 });
      expect(await allowed(w)).toEqual([
        [a!.batch_key, 1],
        [a!.batch_key, 2],
      ]);

      const second = await w.cycle();
      expect(second).toMatchObject({ actions: 2, accepted: 0, quarantined: 2 });
      const [, b] = await w.deliveries();
      expect(b).toMatchObject({ state: 'quarantined', attempts: 2, last_status: 401 });
      const quarantined = [...(await w.leads()).values()].filter((l) => l.state === 'quarantined');
      expect(quarantined).toHaveLength(2);
      for (const lead of quarantined)
        expect(lead.state_reason).toMatch(/refused by the partner \(HTTP 401\)/);
      expect(await quarantineAlerts(w)).toHaveLength(1);
      expect(w.sandbox.stats().requests.byStatus['401']).toBe(3);
      await checkLedger(w, { leadCount: 4 });
    });

    it.each([400, 403, 404, 422])(
      'permanent %i: quarantined at once (no retry) with an alert; the next batch goes out',
      async (status) => {
        const w = await open({ env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' } });
        w.beforeSend = (_batch, nth) => {
          w.sandbox.setFaults({ permanentStatus: nth === 1 ? status : null });
        };
        await w.ingestAll(many('p', 4));
        expect(await w.cycle()).toMatchObject({ actions: 1, quarantined: 2, retrying: 0 });
        expect(w.sleeps).toEqual([]);
        expect(await w.audit('batch.retry_scheduled')).toHaveLength(0);
        const [q] = await w.deliveries();
        expect(q).toMatchObject({ state: 'quarantined', attempts: 1, last_status: status });
        expect(await quarantineAlerts(w)).toHaveLength(1);
        expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
        const states = [...(await w.leads()).values()].map((l) => l.state);
        expect(states).toEqual(['quarantined', 'quarantined', 'exported', 'exported']);
        await checkLedger(w, { leadCount: 4 });
      },
    );

    // Tokens that expire exist only under OAuth2. A static bearer token has no expiry of ours (the 401
    // it may meet is the case above): under the CRM the same stretch of time proves nothing is fetched.
    if (!oauth) {
      it('a static bearer token across hours, a stalled backoff and a partner clock ahead: no token is ever fetched, no 401, the same credential taken', async () => {
        const partnerClock = new ManualClock(NOW);
        const w = await open({
          sandboxClock: partnerClock,
          sandbox: { faults: { tokenTtlSeconds: 120, failNext: 1 } },
          env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' },
        });
        w.onSleep = () => {
          w.clock.advance(200 * SECOND);
          partnerClock.advance(200 * SECOND);
        };
        await w.ingestAll(many('k', 6));
        expect(await w.cycle()).toMatchObject({ actions: 2, accepted: 2 });
        w.onSleep = null;
        w.clock.advance(2 * HOUR);
        partnerClock.advance(3 * HOUR);
        expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
        w.clock.advance(30 * SECOND);
        expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
        const stats = w.sandbox.stats();
        expect(stats.tokens.issued).toBe(0);
        expect(stats.requests.byStatus['401']).toBeUndefined();
        expect(stats.requests.byPath['/oauth/token']).toBeUndefined();
        // The 503 was answered before the credential was looked at: 3 batches taken, each with it.
        expect(stats.tokens.presented).toEqual({ valid: 3, expired: 0, unknown: 0 });
        await checkLedger(w, { finalStates: ['exported'], leadCount: 6 });
      });
    }
    if (oauth)
      it('token expiry mid-run: a token that expires during a backoff or between cycles is refreshed before the request; a partner that expires it early answers 401, refreshed and resent', async () => {
        const partnerClock = new ManualClock(NOW);
        const w = await open({
          sandboxClock: partnerClock,
          sandbox: { faults: { tokenTtlSeconds: 120, failNext: 1 } },
          env: { VALHALLA_MAX_LEADS_PER_CYCLE: '2' },
        });
        const advance = (ms: number) => {
          w.clock.advance(ms);
          partnerClock.advance(ms);
        };
        // During the first backoff, 200 s pass (a stalled host): the token has expired on both sides.
        w.onSleep = () => advance(200 * SECOND);
        await w.ingestAll(many('k', 6));
        const first = await w.cycle();
        expect(first).toMatchObject({ actions: 2, accepted: 2 });
        expect(w.sandbox.stats().tokens.issued).toBe(2);
        expect(w.sandbox.stats().requests.byStatus['401']).toBeUndefined();

        // Between cycles, 100 s: 20 s left, less than a request may take: refreshed before the batch.
        w.onSleep = null;
        advance(100 * SECOND);
        expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2 });
        expect(w.sandbox.stats().tokens.issued).toBe(3);
        expect(w.sandbox.stats().requests.byStatus['401']).toBeUndefined();

        // The partner's clock runs 100 s ahead: the token it issued expires there while we still trust it.
        advance(30 * SECOND);
        partnerClock.advance(100 * SECOND);
        const third = await w.cycle();
        expect(third).toMatchObject({ actions: 2, accepted: 2 });
        expect(w.sandbox.stats().requests.byStatus['401']).toBe(1);
        expect(w.sandbox.stats().tokens.issued).toBe(4);
        const deliveries = await w.deliveries();
        expect(deliveries.map((d) => [d.state, d.attempts])).toEqual([
          ['accepted', 2],
          ['accepted', 1],
          ['accepted', 2],
        ]);
        await checkLedger(w, { finalStates: ['exported'], leadCount: 6 });
      });

    it('health check failing (503, then a hang cut at 1 s): nothing claimed or sent, the leads stay pending; on recovery they go out once', async () => {
      const w = await open({ policy: { apiTimeoutSeconds: 1 }, sandbox: { faults: { errorRate: 1 } } });
      await w.ingestAll(many('h', 2));
      const failed = await w.cycle();
      expect(failed).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
      w.sandbox.setFaults({ errorRate: 0, hang: true });
      w.clock.advance(10 * SECOND);
      const hung = await w.cycle();
      expect(hung).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
      expect(w.sandbox.stats().batches.received).toBe(0);
      expect([...(await w.leads()).values()].map((l) => l.state)).toEqual(['pending', 'pending']);
      const audited = await w.audit('partner.health_failed');
      expect(audited.map((e) => e.details.status)).toEqual([503, null]);
      await checkLedger(w, { finalStates: ['pending'], leadCount: 2 });
      expect(await readMode(w.app.store.db)).toBe('live'); // two failures: not yet a rollback

      w.sandbox.setFaults({ hang: false });
      w.clock.advance(10 * SECOND);
      expect(await w.cycle()).toMatchObject({ healthFailed: false, accepted: 2 });
      await checkLedger(w, { finalStates: ['exported'], leadCount: 2 });
    });

    it('health check failing three times in a row: rolled back, nothing ever claimed or sent', async () => {
      const w = await open({ sandbox: { faults: { errorRate: 1 } } });
      await w.ingestAll(many('d', 2));
      for (let i = 0; i < 3; i++) {
        expect(await w.cycle()).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
        w.clock.advance(10 * SECOND);
      }
      expect(await readMode(w.app.store.db)).toBe('rolled_back');
      w.sandbox.setFaults({ errorRate: 0 });
      expect(await w.cycle()).toMatchObject({ kind: 'dry_run', actions: 0 });
      expect(w.sandbox.stats().batches.received).toBe(0);
      expect(w.sandbox.stats().requests.byPath[healthPath]).toBe(3);
      await checkLedger(w, { finalStates: ['pending'], leadCount: 2 });
    });

    it(
      oauth
        ? 'a lead the partner refuses: the contract has no per-lead refusal, so its whole batch is refused (422), quarantined with the reason, never resent'
        : 'a partial answer (207): the refused leads quarantined with the partner’s reason, the others exported, nothing resent; counted as a failed request',
      async () => {
        const w = await open({ sandbox: { faults: { refuseLeads: { emailContains: 'r2.', every: null } } } });
        await w.ingestAll(many('r', 3));
        // r2's e-mail is r2.person@…: refused; r1 and r3 are not.
        const report = await w.cycle();
        expect(report).toMatchObject({ actions: 1, retrying: 0 });
        expect(w.sleeps).toEqual([]);
        w.clock.advance(10 * SECOND);
        expect(await w.cycle()).toMatchObject({ actions: 0 });
        const leads = await w.leads();
        const rate = await w.app.requestMonitor.current(w.app.store.db);
        expect(rate).toMatchObject({ requests: 1, failures: 1 });
        if (oauth) {
          expect(report).toMatchObject({ accepted: 0, quarantined: 3 });
          for (const tag of ['r1', 'r2', 'r3']) {
            expect(leads.get(tag)).toMatchObject({ state: 'quarantined' });
            expect(leads.get(tag)!.state_reason).toMatch(/refused by the partner \(HTTP 422\)/);
          }
          await checkLedger(w, { leadCount: 3 });
        } else {
          expect(report).toMatchObject({ accepted: 2, quarantined: 1, refusedByPartner: 1 });
          expect(leads.get('r2')).toMatchObject({ state: 'quarantined' });
          expect(leads.get('r2')!.state_reason).toMatch(/^refused by the partner: /);
          expect(leads.get('r1')).toMatchObject({ state: 'exported' });
          expect(leads.get('r3')).toMatchObject({ state: 'exported' });
          expect(await quarantineAlerts(w)).toHaveLength(1);
          await checkLedger(w, { leadCount: 3, refused: 1 });
        }
        // Each lead reached the partner once: nothing resent.
        expect(Object.values(w.sandbox.leads()).map((l) => l.received)).toEqual([1, 1, 1]);
      },
    );
  },
);
