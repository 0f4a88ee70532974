/**
 * The cycle engine end to end, in the shared live world (test/support/live-world.ts): the real app,
 * guard, store (SQLite and PostgreSQL), the REAL partner client the app builds from the
 * configuration, against the REAL sandbox partner over HTTPS. Only two things are given: the gate
 * clearance and time (a ManualClock, whose sleep makes backoff waits instant). The client's rate
 * limiter runs on real time (≤ 5 starts/s), so every test keeps its request count small.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import { isConfigError, loadConfig } from '../../src/config/index.js';
import { describeCycle, leadKey, payloadSha256, toProfileLead } from '../../src/engine/index.js';
import {
  type ActionRequest,
  createGuard,
  readMode,
  writeGoLiveAt,
  writeMode,
} from '../../src/guard/index.js';
import { createPartnerClient } from '../../src/outbound/index.js';
import { createPseudonymizer, maskEmail } from '../../src/pii/index.js';
import { deliveryLeads, type Lead, utcDay } from '../../src/store/index.js';
import { type Backend, backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
import { testEnv } from '../support/cli.js';
import { workerBeat } from '../support/heartbeat.js';
import {
  closeLater,
  closeWorlds,
  emailOf,
  keyOf,
  type LeadSpec,
  many,
  nameOf,
  startSandbox,
  type World,
  type WorldOptions,
  world,
} from '../support/live-world.js';
import { tempDir } from '../support/tmp.js';
import { CLEARED, DAY, HOUR, NOW, SECOND } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
// Apps (and their partner clients) first, then the servers they talked to.
afterEach(closeWorlds);

/** A live world whose engine builds its own partner client from the configuration (none passed). */
const engineWorld = (backend: Backend, options: Omit<WorldOptions, 'backend' | 'partner'> = {}) =>
  world({ ...options, backend, partner: 'app' });

function lead(all: Map<string, Lead>, tag: string): Lead {
  const found = all.get(tag);
  if (!found) throw new Error(`no lead ${tag}`);
  return found;
}

async function auditText(w: World): Promise<string> {
  const rows = await w.app.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
  return JSON.stringify(rows);
}

/** The lead keys of a delivery, as the engine stored them. */
async function leadKeysOf(w: World, deliveryId: number): Promise<string[]> {
  return (await deliveryLeads(w.app.store.db, deliveryId)).map((l) => l.lead_key);
}

function expectNoPii(text: string, tags: string[]) {
  for (const tag of tags) {
    expect(text).not.toContain(emailOf(tag));
    expect(text).not.toContain(nameOf(tag));
  }
  expect(text).not.toMatch(/7946\d{4}/); // a phone number, normalised or not
  expect(text).not.toContain('7946 1');
}

describe.each(list)('cycle engine on $name', (backend) => {
  it('Phase 3: dry runs record a hash and masked audit entries, keep leads pending, send nothing', async () => {
    const w = await engineWorld(backend, { phase: 3 });
    expect(w.config.phase).toBe(3);
    const specs = many('d', 30);
    await w.ingest(specs);

    const first = await w.cycle();
    expect(first).toMatchObject({ kind: 'dry_run', ceiling: 25, dryRunRecorded: 25, actions: 0, claimed: 0 });
    const second = await w.cycle();
    expect(second.dryRunRecorded).toBe(5);
    const third = await w.cycle();
    expect(third.dryRunRecorded).toBe(0);

    // Deliveries: dry_run only, each with the hash of the payload it would have sent.
    const deliveries = await w.app.store.db.selectFrom('deliveries').selectAll().orderBy('id').execute();
    expect(deliveries.map((d) => [d.kind, d.state, d.lead_count])).toEqual([
      ['dry_run', 'dry_run', 25],
      ['dry_run', 'dry_run', 5],
    ]);
    for (const d of deliveries) {
      const carried = (await deliveryLeads(w.app.store.db, d.id)).sort(
        (a, b) => b.score - a.score || a.source_ts - b.source_ts || a.id - b.id,
      );
      expect(d.payload_sha256).toBe(payloadSha256(d.batch_key, carried));
      expect(d.attempts).toBe(0);
      // The outbox row keeps a masked summary of what would have been sent, and no raw PII.
      const summary = JSON.parse(d.summary ?? 'null') as { lead: number; email: string }[];
      expect(summary.map((l) => l.lead).sort((a, b) => a - b)).toEqual(
        carried.map((l) => l.id).sort((a, b) => a - b),
      );
      for (const l of carried) {
        expect(summary.find((x) => x.lead === l.id)?.email).toBe(maskEmail(l.email));
        expect(d.summary).not.toContain(l.email);
      }
    }

    // Leads: all still pending, each dry-run exactly once.
    const all = [...(await w.leads()).values()];
    expect(all).toHaveLength(30);
    expect(all.every((l) => l.state === 'pending' && l.exported_at === null && l.dry_run_at !== null)).toBe(
      true,
    );
    const dryRunRows = await w.app.store.db.selectFrom('delivery_leads').selectAll().execute();
    expect(dryRunRows).toHaveLength(30);
    expect(new Set(dryRunRows.map((r) => r.lead_id)).size).toBe(30);
    expect(dryRunRows.every((r) => r.live === 0)).toBe(true);

    // Audit: batch.dry_run with pseudonyms and scores only (not even masked e-mails: the chain cannot
    // be edited by an erasure); the batch summary keeps the masked e-mails. The guard said dry_run.
    const dry = await w.audit('batch.dry_run');
    expect(dry).toHaveLength(2);
    const audited = dry.flatMap((e) => e.details.leads as Record<string, unknown>[]);
    expect(audited).toHaveLength(30);
    for (const entry of audited) expect(Object.keys(entry).sort()).toEqual(['lead', 'pseudonym', 'score']);
    const summarised = deliveries.flatMap(
      (d) => JSON.parse(d.summary ?? '[]') as { email: string; pseudonym: string }[],
    );
    const byEmail = new Set(summarised.map((l) => l.email));
    for (const s of specs) expect(byEmail.has(maskEmail(emailOf(s.tag)))).toBe(true);
    expect(new Set(audited.map((l) => l.pseudonym))).toEqual(new Set(summarised.map((l) => l.pseudonym)));
    expect(dry[0]!.details.payloadSha256).toBe(deliveries[0]!.payload_sha256);
    expect(await w.audit('guard.dry_run')).toHaveLength(2);
    expect(await w.audit('guard.allowed')).toHaveLength(0);
    expectNoPii(
      await auditText(w),
      specs.map((s) => s.tag),
    );
    expect((await w.app.audit.verify()).ok).toBe(true);

    // Not one request reached the partner: in Phase 3 no client exists.
    expect(w.sandbox.stats().requests.total).toBe(0);
    const cycles = await w.app.store.db.selectFrom('cycles').selectAll().execute();
    expect(cycles.every((c) => c.phase === 3 && c.kind === 'dry_run' && c.actions === 0)).toBe(true);
  });

  it('Phase 4: exports each lead once, one batch key each, audited guard-first; eligibility and dedup hold', async () => {
    const w = await engineWorld(backend);
    const good = many('g', 27, 68); // scores 68 … 42
    const specs: LeadSpec[] = [
      ...good,
      { tag: 'edge40', score: 40 }, // the threshold itself is allowed
      { tag: 'lowered', score: 90 }, // its score drops below 40 while pending (below)
      { tag: 'aging', score: 99, ageMs: 14 * DAY - 30 * SECOND }, // fresh at ingest, stale by the cycle
      { tag: 'low', score: 39 }, // below_threshold at ingest
    ];
    const summary = await w.ingest(specs);
    expect(summary.states).toEqual({ pending: 30, below_threshold: 1, expired: 0 });
    const before = await w.leads();
    await w.app.store.db
      .updateTable('leads')
      .set({ score: 39 })
      .where('id', '=', lead(before, 'lowered').id)
      .execute();
    w.clock.advance(60 * SECOND);

    const first = await w.cycle();
    expect(first).toMatchObject({
      kind: 'live',
      rampStage: 4,
      ceiling: 25,
      limitedBy: 'leads_per_cycle',
      expired: 1,
      claimed: 25,
      actions: 1,
      accepted: 25,
      retrying: 0,
      quarantined: 0,
      healthFailed: false,
    });
    const second = await w.cycle();
    expect(second).toMatchObject({ kind: 'live', claimed: 3, actions: 1, accepted: 3 });
    const statsAfterTwo = w.sandbox.stats();
    const third = await w.cycle();
    expect(third).toMatchObject({ kind: 'live', claimed: 0, actions: 0, accepted: 0 });
    // Nothing to send: not even a health check.
    expect(w.sandbox.stats().requests.total).toBe(statsAfterTwo.requests.total);

    const after = await w.leads();
    const exported = [...after.values()].filter((l) => l.state === 'exported');
    expect(exported).toHaveLength(28);
    expect(exported.every((l) => l.exported_at !== null)).toBe(true);
    expect(lead(after, 'edge40').state).toBe('exported');
    expect(lead(after, 'lowered')).toMatchObject({ state: 'pending', exported_at: null });
    expect(lead(after, 'aging')).toMatchObject({ state: 'expired', exported_at: null });
    expect(lead(after, 'aging').state_reason).toMatch(/older than 14 days/);
    expect(lead(after, 'low')).toMatchObject({ state: 'below_threshold', exported_at: null });

    // The partner's view: each exported lead's key exactly once, under the batch key we stored.
    const deliveries = await w.deliveries();
    expect(deliveries.map((d) => [d.state, d.attempts, d.lead_count])).toEqual([
      ['accepted', 1, 25],
      ['accepted', 1, 3],
    ]);
    const records = w.sandbox.records();
    expect(records.batches.map((b) => b.batchKey)).toEqual(deliveries.map((d) => d.batch_key));
    expect(Object.keys(records.leadBatches).sort()).toEqual(exported.map((l) => leadKey(l)).sort());
    for (const d of deliveries) {
      for (const key of await leadKeysOf(w, d.id)) expect(records.leadBatches[key]).toEqual([d.batch_key]);
    }
    for (const tag of ['lowered', 'aging', 'low']) {
      expect(records.leadBatches[leadKey(lead(after, tag))]).toBeUndefined();
    }
    const stats = w.sandbox.stats();
    expect(stats.batches).toMatchObject({ received: 2, accepted: 2, replayed: 0, failedByFault: 0 });
    expect(stats.leads).toEqual({ accepted: 28, duplicates: 0 });
    expect(stats.requests.byPath['/oauth/token']).toBe(1); // one token, reused

    // Daily usage counts what was claimed.
    const usage = await w.app.store.db
      .selectFrom('daily_usage')
      .selectAll()
      .where('day', '=', utcDay(w.clock.now()))
      .executeTakeFirstOrThrow();
    expect(Number(usage.leads)).toBe(28);

    // Audit: verifies; for each batch, queued → guard.allowed → accepted, in that order.
    expect((await w.app.audit.verify()).ok).toBe(true);
    const entries = await w.audit();
    for (const d of deliveries) {
      const seqOf = (action: string) =>
        entries.filter((e) => e.action === action && keyOf(e.subject) === d.batch_key).map((e) => e.seq);
      const [queued] = seqOf('batch.queued');
      const allowed = seqOf('guard.allowed');
      const accepted = seqOf('batch.accepted');
      expect(allowed).toHaveLength(1);
      expect(accepted).toHaveLength(1);
      expect(queued!).toBeLessThan(allowed[0]!);
      expect(allowed[0]!).toBeLessThan(accepted[0]!);
    }
    expect(entries.filter((e) => e.action === 'leads.expired')).toHaveLength(1);
    expectNoPii(
      await auditText(w),
      specs.map((s) => s.tag),
    );

    // Dedup: the same people again are duplicates, and nothing more is sent.
    const again = await w.ingest(specs);
    expect(again).toMatchObject({ accepted: 0, duplicate: specs.length });
    const fourth = await w.cycle();
    expect(fourth.claimed).toBe(0);
    expect(w.sandbox.stats().batches.received).toBe(2);
    // …and at the database level a second live delivery for an exported lead is refused.
    const sent = lead(after, 'g1');
    await expect(
      w.app.store.db
        .insertInto('delivery_leads')
        .values({ delivery_id: deliveries[1]!.id, lead_id: sent.id, lead_key: leadKey(sent), live: 1 })
        .execute(),
    ).rejects.toThrow(/unique|constraint/i);
  });

  it('caps: the ramp sends 1 (confirmed each cycle), then 5, 10 and 25 leads per cycle', async () => {
    const w = await engineWorld(backend, { goLiveAgoMs: 0 });
    await w.ingest(many('r', 45));
    const ops = w.app.operatorActions();

    const c1 = await w.cycle();
    expect(c1).toMatchObject({ kind: 'live', rampStage: 1, ceiling: 1, limitedBy: 'ramp_stage', claimed: 1 });
    expect(c1.accepted).toBe(1);
    const requests = w.sandbox.stats().requests.total;
    const c2 = await w.cycle();
    expect(c2.kind).toBe('idle');
    expect(c2.idleReason).toMatch(new RegExp(`confirm cycle ${c1.cycleId}`));
    expect(w.sandbox.stats().requests.total).toBe(requests); // idle: not even a health check
    expect(await ops.confirmCycle()).toEqual({ confirmed: c1.cycleId });
    const confirmed = await w.audit('cycle.confirmed');
    expect(confirmed).toHaveLength(1);
    expect(confirmed[0]).toMatchObject({ actor: 'test-operator', subject: `cycle:${c1.cycleId}` });
    const c3 = await w.cycle();
    expect(c3).toMatchObject({ kind: 'live', rampStage: 1, claimed: 1, accepted: 1 });

    // Later stages need no confirmation (c3 is left unconfirmed on purpose).
    const stages: [number, number, number][] = [
      [3 * HOUR, 2, 5],
      [10 * HOUR, 3, 10],
      [30 * HOUR, 4, 25],
    ];
    for (const [ago, stage, ceiling] of stages) {
      await writeGoLiveAt(w.app.store.db, w.clock.now() - ago);
      const report = await w.cycle();
      expect(report).toMatchObject({ kind: 'live', rampStage: stage, ceiling, claimed: ceiling });
      expect(report.accepted).toBe(ceiling);
      expect(report.limitedBy).toBe(stage === 4 ? 'leads_per_cycle' : 'ramp_stage');
    }
    expect(w.sandbox.records().batches.map((b) => b.leads.length)).toEqual([1, 1, 5, 10, 25]);
    expect(w.sandbox.stats().leads).toEqual({ accepted: 42, duplicates: 0 });
    const cycles = await w.app.store.db.selectFrom('cycles').selectAll().orderBy('id').execute();
    expect(cycles.map((c) => [c.kind, c.ramp_stage, c.claimed])).toEqual([
      ['live', 1, 1],
      ['idle', 1, 0],
      ['live', 1, 1],
      ['live', 2, 5],
      ['live', 3, 10],
      ['live', 4, 25],
    ]);
  });

  it('caps: the daily cap stops claiming for the rest of the UTC day', async () => {
    const w = await engineWorld(backend, {
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '20' },
      policy: { dailyLeads: 30 },
    });
    expect(w.config.limits.leadsPerCycle).toBe(20);
    expect(w.config.policy.dailyLeads).toBe(30);
    await w.ingest(many('c', 45));

    const c1 = await w.cycle();
    expect(c1).toMatchObject({ ceiling: 20, limitedBy: 'leads_per_cycle', claimed: 20, accepted: 20 });
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ ceiling: 10, limitedBy: 'daily_cap', claimed: 10, accepted: 10 });
    const requests = w.sandbox.stats().requests.total;
    const c3 = await w.cycle();
    expect(c3).toMatchObject({ ceiling: 0, limitedBy: 'daily_cap', claimed: 0, actions: 0 });
    expect(w.sandbox.stats().requests.total).toBe(requests);
    const usage = await w.app.store.db.selectFrom('daily_usage').selectAll().execute();
    expect(usage.map((u) => [u.day, Number(u.leads)])).toEqual([[utcDay(NOW), 30]]);
    expect([...(await w.leads()).values()].filter((l) => l.state === 'pending')).toHaveLength(15);

    // The next UTC day has its own allowance.
    w.clock.advance(DAY);
    const c4 = await w.cycle();
    expect(c4).toMatchObject({ ceiling: 20, limitedBy: 'leads_per_cycle', claimed: 15, accepted: 15 });
    expect(w.sandbox.stats().leads).toEqual({ accepted: 45, duplicates: 0 });
  });

  it('caps: at most actions/cycle requests per cycle, retries included; a retry due later goes first next cycle', async () => {
    const w = await engineWorld(backend, {
      env: { VALHALLA_MAX_ACTIONS_PER_CYCLE: '2', VALHALLA_MAX_LEADS_PER_CYCLE: '4' },
      // Two failures, not three: a third in a row would roll back (the error-rate rule, tested elsewhere).
      sandbox: { faults: { failNext: 2 } },
    });
    await w.ingest(many('a', 2));

    const c1 = await w.cycle();
    // Two failed answers for one batch: its 2 leads are retried, counted once (not leads × attempts).
    expect(c1).toMatchObject({ claimed: 2, actions: 2, accepted: 0, retrying: 2, retryingBatches: 1 });
    const [a] = await w.deliveries();
    expect(a).toMatchObject({
      state: 'retry_wait',
      attempts: 2,
      next_attempt_at: w.clock.now() + 2 * SECOND,
    });
    expect(w.sandbox.stats().batches.received).toBe(2);

    await w.ingest(many('b', 3));
    w.clock.advance(2 * SECOND);
    const c2 = await w.cycle();
    // One action is left for new leads, and 2 of the 4 leads/cycle (A's 2 count): B takes 2 of the
    // 3 pending leads; A (due) goes first.
    expect(c2).toMatchObject({ claimed: 2, actions: 2, accepted: 4, retrying: 0 });
    w.clock.advance(4 * SECOND);
    const c3 = await w.cycle();
    expect(c3).toMatchObject({ claimed: 1, actions: 1, accepted: 1 });

    const deliveries = await w.deliveries();
    expect(deliveries.map((d) => [d.state, d.attempts, d.lead_count])).toEqual([
      ['accepted', 3, 2],
      ['accepted', 1, 2],
      ['accepted', 1, 1],
    ]);
    const allowed = await w.audit('guard.allowed');
    const perCycle = new Map<number, string[]>();
    for (const e of allowed) {
      const cycle = e.details.cycle as number;
      perCycle.set(cycle, [...(perCycle.get(cycle) ?? []), keyOf(e.subject)]);
    }
    const [keyA, keyB, keyC] = deliveries.map((d) => d.batch_key);
    expect([...perCycle.entries()]).toEqual([
      [c1.cycleId, [keyA, keyA]],
      [c2.cycleId, [keyA, keyB]],
      [c3.cycleId, [keyC]],
    ]);
    const cycles = await w.app.store.db.selectFrom('cycles').selectAll().orderBy('id').execute();
    expect(cycles.map((c) => c.actions)).toEqual([2, 2, 1]);
    // Every request the partner saw was one of these actions.
    expect(w.sandbox.stats().batches.received).toBe(5);
    expect(w.sandbox.stats().leads).toEqual({ accepted: 5, duplicates: 0 });
    expect(await w.audit('guard.refused')).toHaveLength(0);
  });
});

describe('failure classes against sandbox faults (SQLite)', () => {
  const backend = sqliteBackend;

  it('the guard refuses every unsafe action, audited; without the gates (the production default) nothing is sent', async () => {
    const w = await engineWorld(backend);
    await w.ingest(many('gd', 3));
    const rows = [...(await w.leads()).values()].map((l) => ({ ...l, state: 'in_flight' as const }));
    const first = rows[0]!;
    const guard = createGuard({
      config: w.config,
      audit: w.app.audit,
      clock: w.clock,
      pseudonymizer: createPseudonymizer(w.config.pseudonymSecret!),
      gates: CLEARED,
    });
    const base: ActionRequest = {
      cycleId: 1,
      deliveryId: null,
      batchKey: 'guard-test',
      attempt: 1,
      leads: rows,
      actionsUsedThisCycle: 0,
      actionsPerCycle: 5,
      ceiling: 25,
      healthCheckPassedAt: w.clock.now(),
    };
    const decide = (change: Partial<ActionRequest>, g = guard) =>
      w.app.store.db.transaction().execute((trx) => g.authorize({ ...base, ...change }, trx));

    // Without the gates asked (outside the transaction) in the last 60 s, nothing is allowed.
    expect(await decide({})).toMatchObject({
      code: 'GATES_NOT_CLEARED',
      reason: 'the gates were not checked in the last 60 s',
    });
    await guard.prepare();
    expect(await decide({})).toEqual({ allowed: true });
    w.clock.advance(61 * SECOND);
    expect(await decide({ healthCheckPassedAt: w.clock.now() })).toMatchObject({ code: 'GATES_NOT_CLEARED' });
    await guard.prepare();
    base.healthCheckPassedAt = w.clock.now();
    expect(await decide({})).toEqual({ allowed: true });
    expect(await decide({ actionsUsedThisCycle: 5 })).toMatchObject({ code: 'ACTIONS_EXHAUSTED' });
    // The hard maximum of 10 holds whatever the caller says.
    expect(await decide({ actionsPerCycle: 50, actionsUsedThisCycle: 10 })).toMatchObject({
      code: 'ACTIONS_EXHAUSTED',
    });
    expect(await decide({ healthCheckPassedAt: null })).toMatchObject({ code: 'NO_HEALTH_CHECK' });
    expect(await decide({ healthCheckPassedAt: w.clock.now() - 61 * SECOND })).toMatchObject({
      code: 'NO_HEALTH_CHECK',
    });
    expect(await decide({ ceiling: 2 })).toMatchObject({ code: 'BATCH_TOO_LARGE' });
    expect(await decide({ ceiling: 2, attempt: 2 })).toEqual({ allowed: true }); // a retry's size was checked at claim
    const ineligible = [
      { ...first, score: 39 },
      { ...first, source_ts: w.clock.now() - 15 * DAY },
      { ...first, exported_at: w.clock.now() },
      { ...first, state: 'pending' as const },
    ];
    for (const bad of ineligible) {
      expect(await decide({ leads: [bad, rows[1]!] })).toMatchObject({
        allowed: false,
        code: 'LEAD_INELIGIBLE',
        ineligibleLeadIds: [first.id],
      });
    }
    // A synthetic lead never leaves, whatever selected it; the refusal is audited like any other.
    expect(await decide({ leads: [{ ...first, synthetic: 1 }, rows[1]!] })).toEqual({
      allowed: false,
      code: 'LEAD_INELIGIBLE',
      reason: '1 synthetic lead(s): a synthetic lead is never sent live',
      ineligibleLeadIds: [first.id],
    });
    const refusal = await w.app.store.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'guard.refused')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(refusal.details).toContain('a synthetic lead is never sent live');
    const notCleared = createGuard({
      config: w.config,
      audit: w.app.audit,
      clock: w.clock,
      pseudonymizer: createPseudonymizer(w.config.pseudonymSecret!),
      gates: { check: async () => ({ cleared: false, reason: 'gate 8: CFO sign-off missing' }) },
    });
    await notCleared.prepare();
    expect(await decide({}, notCleared)).toMatchObject({
      code: 'GATES_NOT_CLEARED',
      reason: 'gate 8: CFO sign-off missing',
    });
    await w.app.store.db
      .insertInto('daily_usage')
      .values({ day: utcDay(w.clock.now()), leads: 10_001, exposure: 0 })
      .execute();
    expect(await decide({})).toMatchObject({ code: 'DAILY_CAP' });
    await writeMode(w.app.store.db, 'paused', w.clock.now());
    expect(await decide({})).toMatchObject({ code: 'MODE_NOT_LIVE' });
    const decisions = (await w.audit()).filter((e) => e.actor === 'guard');
    expect(decisions.map((e) => [e.action, e.details.code ?? null])).toEqual([
      ['guard.refused', 'GATES_NOT_CLEARED'],
      ['guard.allowed', null],
      ['guard.refused', 'GATES_NOT_CLEARED'],
      ['guard.allowed', null],
      ['guard.refused', 'ACTIONS_EXHAUSTED'],
      ['guard.refused', 'ACTIONS_EXHAUSTED'],
      ['guard.refused', 'NO_HEALTH_CHECK'],
      ['guard.refused', 'NO_HEALTH_CHECK'],
      ['guard.refused', 'BATCH_TOO_LARGE'],
      ['guard.allowed', null],
      ['guard.refused', 'LEAD_INELIGIBLE'],
      ['guard.refused', 'LEAD_INELIGIBLE'],
      ['guard.refused', 'LEAD_INELIGIBLE'],
      ['guard.refused', 'LEAD_INELIGIBLE'],
      ['guard.refused', 'LEAD_INELIGIBLE'], // the synthetic lead
      ['guard.refused', 'GATES_NOT_CLEARED'],
      ['guard.refused', 'DAILY_CAP'],
      ['guard.refused', 'MODE_NOT_LIVE'],
    ]);

    // The app's engine without injected gates: the gates module's answer, and nothing is signed here.
    await writeMode(w.app.store.db, 'live', w.clock.now());
    await w.app.store.db.deleteFrom('daily_usage').execute();
    const production = w.app.engine({ sleep: w.clock.sleep });
    const report = await production.runCycle();
    expect(report).toMatchObject({ kind: 'live', actions: 0, accepted: 0 });
    expect(w.sandbox.stats().batches.received).toBe(0);
    // (the batch was claimed before the guard refused it: it waits, queued, with its key)
    expect(await w.deliveries()).toMatchObject([{ state: 'queued', attempts: 0, lead_count: 3 }]);
    const refused = (await w.audit('guard.refused')).at(-1)!;
    expect(refused.details.code).toBe('GATES_NOT_CLEARED');
    expect(refused.details.reason).toMatch(/the go-live gates are not all green \(\d+ missing\)/);
  });

  it('caps: the budget (Σ score × value) limits claims, and the guard re-checks it after a restart with a lower budget', async () => {
    const w = await engineWorld(backend, {
      policy: { budgetExposure: 20_000 },
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest([
      { tag: 'b1', score: 90, value: 100 }, // exposure 9,000
      { tag: 'b2', score: 80, value: 100 }, // 8,000 (17,000)
      { tag: 'b3', score: 70, value: 100 }, // 7,000: would make 24,000, skipped
      { tag: 'b4', score: 60, value: 10 }, // 600 (17,600)
    ]);
    const c1 = await w.cycle();
    // The day's budget bound the claim (b3 did not fit), not the ceiling: the cycle line says so.
    expect(c1).toMatchObject({
      claimed: 3,
      claimedBatches: 1,
      actions: 1,
      retrying: 3,
      boundBy: 'daily_budget',
    });
    expect(describeCycle(c1)).toMatch(
      /ceiling \d+ \(leads per cycle; bound by the day's budget\), claimed 3 lead\(s\) in 1 batch,/,
    );
    const [a] = await w.deliveries();
    const held = await w.leads();
    expect(['b1', 'b2', 'b3', 'b4'].map((t) => lead(held, t).state)).toEqual([
      'in_flight',
      'in_flight',
      'pending',
      'in_flight',
    ]);
    const usage = await w.app.store.db.selectFrom('daily_usage').selectAll().executeTakeFirstOrThrow();
    expect(Number(usage.exposure)).toBeCloseTo(17_600);

    // A restart with the budget lowered below today's exposure: the waiting retry is refused, not sent.
    w.sandbox.setFaults({ rateLimit: null });
    await w.restart({ budgetExposure: 15_000 });
    w.clock.advance(61 * SECOND);
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 0, actions: 0, accepted: 0 });
    expect(w.sandbox.stats().batches.received).toBe(1);
    const refused = await w.audit('guard.refused');
    expect(refused.map((e) => [keyOf(e.subject), e.details.code])).toEqual([[a!.batch_key, 'BUDGET_CAP']]);
    expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', attempts: 1 });
    expect(lead(await w.leads(), 'b1').state).toBe('in_flight'); // kept, not lost
  });

  it('lowering leads/cycle while a batch waits for its retry does not strand it: the retry goes out, new claims follow the new limit', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('q', 18));
    expect(await w.cycle()).toMatchObject({ claimed: 18, retrying: 18 });
    w.sandbox.setFaults({ rateLimit: null });
    await w.restart({ leadsPerCycle: 10 });
    w.clock.advance(61 * SECOND);
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ ceiling: 10, actions: 1, accepted: 18 });
    expect(w.sandbox.stats().leads).toEqual({ accepted: 18, duplicates: 0 });
    await w.ingest(many('r', 15));
    expect(await w.cycle()).toMatchObject({ claimed: 10, accepted: 10 });
  });

  it('after a rollback the cycle is a dry run again: recorded, nothing sent, the waiting batch kept', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('m', 1));
    expect(await w.cycle()).toMatchObject({ kind: 'live', claimed: 1, retrying: 1 });
    await w.ingest(many('o', 2));
    await writeMode(w.app.store.db, 'rolled_back', w.clock.now());
    w.sandbox.setFaults({ rateLimit: null });
    w.clock.advance(61 * SECOND);
    const requests = w.sandbox.stats().requests.total;
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ kind: 'dry_run', dryRunRecorded: 2, actions: 0, claimed: 0 });
    expect(w.sandbox.stats().requests.total).toBe(requests);
    expect(await w.audit('batch.dry_run')).toHaveLength(1);
    const after = await w.leads();
    expect(lead(after, 'm1').state).toBe('in_flight');
    expect(['o1', 'o2'].map((t) => lead(after, t).state)).toEqual(['pending', 'pending']);
    expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', attempts: 1 });
  });

  it('503 twice then recovery: backoff 1 s, 2 s, same key; 429 with Retry-After 7 s waits 7 s', async () => {
    const w = await engineWorld(backend, { sandbox: { faults: { failNext: 2 } } });
    await w.ingest(many('f', 3));
    const t0 = w.clock.now();
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ claimed: 3, actions: 3, accepted: 3, quarantined: 0 });
    expect(w.clock.now() - t0).toBe(3 * SECOND);
    expect(w.sleeps).toEqual([1000, 2000]);
    const [d] = await w.deliveries();
    expect(d).toMatchObject({ state: 'accepted', attempts: 3 });
    const retries = await w.audit('batch.retry_scheduled');
    expect(retries.map((e) => [e.details.retryInMs, e.details.status, e.details.outcome])).toEqual([
      [1000, 503, 'retryable'],
      [2000, 503, 'retryable'],
    ]);
    const allowed = await w.audit('guard.allowed');
    expect(allowed.map((e) => [keyOf(e.subject), e.details.attempt])).toEqual([
      [d!.batch_key, 1],
      [d!.batch_key, 2],
      [d!.batch_key, 3],
    ]);
    expect(w.sandbox.records().batches.map((b) => b.batchKey)).toEqual([d!.batch_key]);
    expect(w.sandbox.stats().batches).toMatchObject({ received: 3, failedByFault: 2, accepted: 1 });

    // 429 with Retry-After: 7 s (longer than the 1 s backoff) is honoured; then the partner lets it through.
    await w.ingest(many('h', 1));
    w.sandbox.setFaults({ rateLimit: { retryAfter: 7, every: 1 } });
    w.onSleep = () => {
      w.sandbox.setFaults({ rateLimit: null });
    };
    const t1 = w.clock.now();
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 1, actions: 2, accepted: 1 });
    expect(w.clock.now() - t1).toBeGreaterThanOrEqual(7 * SECOND);
    expect(w.sleeps.slice(2)).toEqual([7000]);
    const rateLimited = (await w.audit('batch.retry_scheduled')).slice(2);
    expect(rateLimited.map((e) => [e.details.retryInMs, e.details.status])).toEqual([[7000, 429]]);
    const second = (await w.deliveries())[1]!;
    expect(second).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(w.sandbox.records().batches.map((b) => b.batchKey)).toEqual([d!.batch_key, second.batch_key]);
  });

  it('401: the token is refreshed and the batch resent at once; two 401s in a row quarantine it', async () => {
    // The sandbox keeps its own time: moving it past the token's lifetime expires the token on the
    // partner's side only, which the client learns from a 401.
    const partnerClock = new ManualClock(NOW);
    const w = await engineWorld(backend, { sandbox: { clock: partnerClock } });
    await w.ingest(many('t', 1));
    expect((await w.cycle()).accepted).toBe(1);
    expect(w.sandbox.stats().tokens.issued).toBe(1);

    partnerClock.advance(2 * HOUR);
    await w.ingest(many('u', 1));
    const t0 = w.clock.now();
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 1, actions: 2, accepted: 1, quarantined: 0 });
    expect(w.clock.now()).toBe(t0); // resent at once: no wait
    const authRetry = await w.audit('batch.retry_scheduled');
    expect(authRetry.map((e) => [e.details.outcome, e.details.status, e.details.retryInMs])).toEqual([
      ['auth', 401, 0],
    ]);
    expect(w.sandbox.stats().tokens.issued).toBe(2);
    expect(w.sandbox.stats().requests.byStatus['401']).toBe(1);
    const second = (await w.deliveries())[1]!;
    expect(second).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(w.sandbox.records().batches.at(-1)!.batchKey).toBe(second.batch_key);

    // Now every batch is refused 401: refreshed once, refused again → quarantined, no third try.
    w.sandbox.setFaults({ reject401: true });
    await w.ingest(many('v', 1));
    const received = w.sandbox.stats().batches.received;
    const c3 = await w.cycle();
    expect(c3).toMatchObject({ claimed: 1, actions: 2, accepted: 0, quarantined: 1 });
    expect(w.sandbox.stats().batches.received - received).toBe(2);
    expect(w.sandbox.stats().tokens.issued).toBe(3);
    const third = (await w.deliveries())[2]!;
    expect(third).toMatchObject({ state: 'quarantined', attempts: 2, last_status: 401 });
    const v1 = lead(await w.leads(), 'v1');
    expect(v1.state).toBe('quarantined');
    expect(v1.state_reason).toMatch(/HTTP 401/);
  });

  it('actions/cycle 1: a 401 resend due at once waits for the next cycle, and goes first there', async () => {
    const partnerClock = new ManualClock(NOW);
    const w = await engineWorld(backend, {
      env: { VALHALLA_MAX_ACTIONS_PER_CYCLE: '1' },
      sandbox: { clock: partnerClock },
    });
    await w.ingest(many('i', 1));
    expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 1 });
    partnerClock.advance(2 * HOUR); // the client's token is now expired at the partner
    await w.ingest(many('j', 1));
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 1, actions: 1, retrying: 1, accepted: 0 });
    const j = (await w.deliveries())[1]!;
    expect(j).toMatchObject({
      state: 'retry_wait',
      attempts: 1,
      last_status: 401,
      next_attempt_at: w.clock.now(),
    });
    expect(w.sandbox.stats().batches.received).toBe(2);

    await w.ingest(many('l', 1));
    const c3 = await w.cycle();
    expect(c3).toMatchObject({ claimed: 0, actions: 1, accepted: 1 });
    expect((await w.deliveries())[1]).toMatchObject({ state: 'accepted', attempts: 2 });
    const c4 = await w.cycle();
    expect(c4).toMatchObject({ claimed: 1, actions: 1, accepted: 1 });
    const cycles = await w.app.store.db.selectFrom('cycles').selectAll().orderBy('id').execute();
    expect(cycles.map((c) => c.actions)).toEqual([1, 1, 1, 1]);
    expect(w.sandbox.stats().batches.received).toBe(4);
    // The engine never even asked the guard for an action beyond its cap.
    expect(await w.audit('guard.refused')).toHaveLength(0);
  });

  it('100% batch failure: rolled back at the 3rd failed request (1 s, 2 s apart), the batch kept; after a re-arm the last retry (4 s) fails and quarantines with a PII-free alert', async () => {
    const w = await engineWorld(backend, { sandbox: { faults: { failNext: 4 } } });
    const specs = many('q', 2);
    await w.ingest(specs);
    const t0 = w.clock.now();
    const c1 = await w.cycle();
    // Three failed requests in a row: the error-rate rule rolls back; the batch waits, not quarantined.
    expect(c1).toMatchObject({ claimed: 2, actions: 3, accepted: 0, quarantined: 0 });
    expect(c1.halted).toMatch(/rolled back: 3 requests in a row failed/);
    expect(w.sleeps).toEqual([1000, 2000]);
    expect(w.clock.now() - t0).toBe(3 * SECOND);
    expect(
      (await w.audit('batch.retry_scheduled')).map((e) => [e.details.attempt, e.details.retryInMs]),
    ).toEqual([
      [1, 1000],
      [2, 2000],
      [3, 4000],
    ]);
    const rollback = await w.audit('mode.rollback');
    expect(rollback).toHaveLength(1);
    expect(rollback[0]).toMatchObject({ actor: 'monitor' });
    expect(rollback[0]!.details).toMatchObject({ from: 'live', to: 'rolled_back', consecutiveFailures: 3 });
    expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', attempts: 3 });
    expect([...(await w.leads()).values()].every((l) => l.state === 'in_flight')).toBe(true);
    // Rolled back: the next cycle is a dry run and sends nothing.
    w.clock.advance(5 * SECOND);
    expect(await w.cycle()).toMatchObject({ kind: 'dry_run', actions: 0 });
    expect(w.sandbox.stats().batches.received).toBe(3);
    // Re-armed (Phase 4, the gates, a worker restarted since the rollback): the last retry goes out, fails, quarantines.
    await workerBeat(w.app.store.db, { at: w.clock.now() + 1, startedAt: w.clock.now() + 1 });
    w.clock.advance(10);
    const rearmed = await w.app.changeMode('rearm', { reason: 'partner fixed', gates: CLEARED });
    expect(rearmed).toMatchObject({ kind: 'change', from: 'rolled_back', to: 'live' });
    const c1b = await w.cycle();
    expect(c1b).toMatchObject({ claimed: 0, actions: 1, accepted: 0, quarantined: 2, halted: null });
    const [d] = await w.deliveries();
    expect(d).toMatchObject({ state: 'quarantined', attempts: 4, last_status: 503, next_attempt_at: null });
    const all = [...(await w.leads()).values()];
    for (const l of all) {
      expect(l.state).toBe('quarantined');
      expect(l.state_reason).toMatch(/retries spent: 4 failed answers from the partner/);
    }
    expect(d).toMatchObject({ failed_answers: 4, unanswered: 0, partner_may_have: 0 });
    const quarantined = await w.audit('batch.quarantined');
    expect(quarantined).toHaveLength(1);
    const alerts = await w.app.store.db.selectFrom('alerts').selectAll().orderBy('id').execute();
    expect(alerts.map((a) => [a.event, a.severity])).toEqual([
      ['rollback', 'critical'],
      ['mode_change', 'warning'],
      ['quarantine', 'warning'],
    ]);
    expect(alerts[2]!.message).toMatch(/2 lead\(s\) quarantined/);
    expect(JSON.parse(alerts[2]!.details)).toMatchObject({ batchKey: d!.batch_key, leads: 2, status: 503 });
    expectNoPii(
      JSON.stringify(alerts),
      specs.map((s) => s.tag),
    );
    expect(w.sandbox.stats().batches).toMatchObject({ received: 4, failedByFault: 4, accepted: 0 });

    // errorRate 1 also fails /health: the cycle claims nothing and sends nothing.
    w.sandbox.setFaults({ errorRate: 1 });
    await w.ingest(many('e', 1));
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
    // A failed health check counts as a failed request (one of them: no rollback yet).
    expect(
      await w.app.store.db
        .selectFrom('requests')
        .select(['endpoint', 'class'])
        .where('endpoint', '=', 'health')
        .execute(),
    ).toEqual([{ endpoint: 'health', class: 'failure' }]);
    expect(w.sandbox.stats().batches.received).toBe(4);
    expect(lead(await w.leads(), 'e1').state).toBe('pending');
    const failed = await w.audit('partner.health_failed');
    expect(failed.map((e) => e.details.status)).toEqual([503]);
  });

  it('422 quarantines at once; release sends the lead in a NEW batch, drop archives it; both audited', async () => {
    const w = await engineWorld(backend, { sandbox: { faults: { permanentStatus: 422 } } });
    await w.ingest(many('p', 2));
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ claimed: 2, actions: 1, quarantined: 2, retrying: 0 });
    expect(w.sleeps).toEqual([]);
    expect(await w.audit('batch.retry_scheduled')).toHaveLength(0);
    const [old] = await w.deliveries();
    expect(old).toMatchObject({ state: 'quarantined', attempts: 1, last_status: 422 });
    const before = await w.leads();
    const p1 = lead(before, 'p1');
    const p2 = lead(before, 'p2');
    expect(p1.state_reason).toMatch(/refused by the partner \(HTTP 422\)/);
    expect(await w.app.store.db.selectFrom('alerts').selectAll().execute()).toHaveLength(1);

    const ops = w.app.operatorActions();
    const listed = await ops.quarantined(10);
    expect(listed.map((l) => l.email).sort()).toEqual([maskEmail(p1.email), maskEmail(p2.email)].sort());
    expect(await ops.release([p1.id], 'partner fixed its validation')).toEqual({
      changed: [p1.id],
      skipped: [],
    });
    expect(await ops.drop([p2.id, p1.id], 'not wanted')).toEqual({ changed: [p2.id], skipped: [p1.id] });
    const released = await w.audit('quarantine.released');
    const dropped = await w.audit('quarantine.dropped');
    expect(released).toHaveLength(1);
    expect(dropped).toHaveLength(1);
    expect(released[0]).toMatchObject({ actor: 'test-operator' });
    expect((released[0]!.details.leads as { lead: number }[]).map((l) => l.lead)).toEqual([p1.id]);
    expect((dropped[0]!.details.leads as { lead: number }[]).map((l) => l.lead)).toEqual([p2.id]);
    const mid = await w.leads();
    expect(lead(mid, 'p1')).toMatchObject({ state: 'pending', state_reason: null });
    expect(lead(mid, 'p2').state).toBe('archived');
    expect(lead(mid, 'p2').state_reason).toMatch(/dropped from quarantine by test-operator: not wanted/);

    w.sandbox.setFaults({ permanentStatus: null });
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 1, actions: 1, accepted: 1 });
    const fresh = (await w.deliveries())[1]!;
    expect(fresh.batch_key).not.toBe(old!.batch_key);
    expect(fresh).toMatchObject({ state: 'accepted', attempts: 1 });
    expect(await leadKeysOf(w, fresh.id)).toEqual([leadKey(p1)]);
    expect((await leadKeysOf(w, old!.id)).sort()).toEqual([leadKey(p1), leadKey(p2)].sort());
    const lastAllowed = (await w.audit('guard.allowed')).at(-1)!;
    expect(lastAllowed.details.attempt).toBe(1); // retries start again at 0
    expect(w.sandbox.records().leadBatches).toEqual({ [leadKey(p1)]: [fresh.batch_key] });
    expect((await w.cycle()).claimed).toBe(0);
    const after = await w.leads();
    expect(lead(after, 'p1').state).toBe('exported');
    expect(lead(after, 'p2')).toMatchObject({ state: 'archived', exported_at: null });
  });

  it('partner down: the health check fails, nothing is sent or lost; on return the same batch key is resent', async () => {
    const w = await engineWorld(backend, {
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '1' },
      // Retry-After 60 s: longer than a cycle waits, so the retry is left for a later cycle.
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest([
      { tag: 'n1', score: 90 },
      { tag: 'n2', score: 80 },
    ]);
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ claimed: 1, actions: 1, retrying: 1, accepted: 0 });
    expect(w.sleeps).toEqual([]);
    const [a] = await w.deliveries();
    expect(a).toMatchObject({
      state: 'retry_wait',
      attempts: 1,
      next_attempt_at: w.clock.now() + 60 * SECOND,
    });

    w.sandbox.setFaults({ rateLimit: null, down: true });
    w.clock.advance(61 * SECOND);
    const received = w.sandbox.stats().batches.received;
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
    expect(w.sandbox.stats().batches.received).toBe(received);
    expect(w.sandbox.stats().requests.dropped).toBe(1); // the health check, and nothing else
    const held = await w.leads();
    expect(lead(held, 'n1').state).toBe('in_flight');
    expect(lead(held, 'n2').state).toBe('pending');
    expect((await w.deliveries()).map((d) => [d.batch_key, d.state, d.attempts])).toEqual([
      [a!.batch_key, 'retry_wait', 1],
    ]);
    expect((await w.audit('partner.health_failed')).length).toBe(1);

    w.sandbox.setFaults({ down: false });
    const c3 = await w.cycle();
    // A's lead fills this cycle's ceiling of 1: n2 waits for the next cycle.
    expect(c3).toMatchObject({ healthFailed: false, claimed: 0, actions: 1, accepted: 1 });
    expect(w.sandbox.records().batches[0]!.batchKey).toBe(a!.batch_key);
    expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 2 });
    const c4 = await w.cycle();
    expect(c4).toMatchObject({ claimed: 1, accepted: 1 });
    const done = await w.leads();
    expect([lead(done, 'n1').state, lead(done, 'n2').state]).toEqual(['exported', 'exported']);
  });

  it('a hung request is cut by the client timeout (apiTimeoutSeconds 1) and retried with the same key', async () => {
    const w = await engineWorld(backend, {
      policy: { apiTimeoutSeconds: 1 },
      sandbox: { faults: { failNext: 1 } },
    });
    expect(w.config.policy.apiTimeoutSeconds).toBe(1);
    // After the 503 (health passed already), the partner hangs; after the next backoff it answers again.
    w.onSleep = (_ms, nth) => {
      w.sandbox.setFaults({ hang: nth === 1 });
    };
    await w.ingest(many('k', 1));
    const started = performance.now();
    const c1 = await w.cycle();
    const elapsed = performance.now() - started;
    expect(c1).toMatchObject({ actions: 3, accepted: 1 });
    expect(w.sandbox.stats().requests.hung).toBe(1);
    expect(elapsed).toBeGreaterThanOrEqual(900); // the 1 s timeout, in real time
    const retries = await w.audit('batch.retry_scheduled');
    expect(retries.map((e) => e.details.retryInMs)).toEqual([1000, 2000]);
    expect(retries[1]!.details.message).toMatch(/timed out/);
    const [d] = await w.deliveries();
    expect(d).toMatchObject({ state: 'accepted', attempts: 3 });
    const allowed = await w.audit('guard.allowed');
    expect(new Set(allowed.map((e) => e.subject))).toEqual(new Set([`batch:${d!.batch_key}`]));
  });

  it('a TLS 1.1-only partner is refused as what it is: nothing sent or claimed, not counted as an outage, outbound paused with a critical alert', async () => {
    const w = await engineWorld(backend, { sandbox: { tlsMaxVersion: 'TLSv1.1' } });
    await w.ingest(many('s', 2));
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ healthFailed: true, claimed: 0, actions: 0 });
    expect(c1.halted).toMatch(/does not offer TLS 1\.2 or newer.*outbound paused/);
    expect(w.sandbox.stats().requests.total).toBe(0); // no request got past the handshake
    const [refused] = await w.audit('partner.tls_refused');
    expect(refused!.details).toMatchObject({ endpoint: 'health' });
    expect(String(refused!.details.reason)).toMatch(
      /does not offer TLS 1\.2 or newer \(ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION\)/,
    );
    // Not an outage: nothing for the error rate, no rollback; the mode is paused, the queue kept.
    expect(await w.app.store.db.selectFrom('requests').selectAll().execute()).toEqual([]);
    expect(await w.audit('mode.rollback')).toEqual([]);
    expect(await w.audit('partner.health_failed')).toEqual([]);
    expect(await readMode(w.app.store.db)).toBe('paused');
    const alerts = await w.app.store.db.selectFrom('alerts').selectAll().execute();
    expect(alerts.filter((a) => a.event === 'partner_tls_refused').map((a) => a.severity)).toEqual([
      'critical',
    ]);
    expect([...(await w.leads()).values()].every((l) => l.state === 'pending')).toBe(true);
    expect(await w.deliveries()).toHaveLength(0);
    // Paused: the next cycles do not try again (one audit entry, one alert), until an operator resumes.
    w.clock.advance(10 * SECOND);
    expect(await w.cycle()).toMatchObject({ kind: 'idle' });
    expect(await w.audit('partner.tls_refused')).toHaveLength(1);
  });

  it('a plain http:// partner URL is refused by loadConfig in Phase 4', async () => {
    const sandbox = await startSandbox({ plainHttp: true });
    const dir = tempDir();
    const attempt = () =>
      loadConfig({
        cwd: dir,
        env: testEnv(dir, {
          VALHALLA_PHASE: '4',
          VALHALLA_DRY_RUN: '0',
          VALHALLA_DISABLE_OUTBOUND: '0',
          VALHALLA_REAL_DATA_INGEST: '1',
          VALHALLA_PARTNER_URL: sandbox.url,
          VALHALLA_PARTNER_TOKEN_URL: sandbox.tokenUrl,
          VALHALLA_PARTNER_CLIENT_ID: sandbox.clientId,
          VALHALLA_PARTNER_CLIENT_SECRET: sandbox.clientSecret,
        }),
      });
    let error: unknown;
    try {
      attempt();
    } catch (e) {
      error = e;
    }
    expect(isConfigError(error)).toBe(true);
    if (!isConfigError(error)) return;
    expect(error.issues.map((i) => i.setting)).toEqual([
      'VALHALLA_PARTNER_URL',
      'VALHALLA_PARTNER_TOKEN_URL',
    ]);
    expect(error.issues[0]!.problem).toMatch(/plain http:\/\/ is refused in Phase 4/);
    expect(sandbox.stats().requests.total).toBe(0);
  });

  it('crash after authorization: recover() resends the same batch key; the partner replays, no lead accepted twice', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('x', 2));
    expect(await w.cycle()).toMatchObject({ claimed: 2, retrying: 2 });
    const [a] = await w.deliveries();
    expect(a).toMatchObject({ state: 'retry_wait', attempts: 1 });

    // The crash: attempt 2 was authorised (delivery `sending`, as authorizeNext commits it), its
    // request reached the partner and was accepted, and the process died before recording that.
    w.sandbox.setFaults({ rateLimit: null });
    await w.app.store.db
      .updateTable('deliveries')
      .set({ state: 'sending', attempts: 2 })
      .where('id', '=', a!.id)
      .execute();
    const carried = await deliveryLeads(w.app.store.db, a!.id);
    const client = createPartnerClient({
      baseUrl: w.sandbox.url,
      tokenUrl: w.sandbox.tokenUrl,
      clientId: w.sandbox.clientId,
      clientSecret: w.sandbox.clientSecret,
      caPem: w.sandbox.caPem,
      allowPlainHttpLoopback: false,
      rateLimitPerSecond: 5,
      rateWindowMs: 1000,
      maxConcurrent: 1,
      timeoutMs: 5000,
      clock: w.clock,
    });
    closeLater(() => client.close());
    const lost = await client.sendBatch({ batchKey: a!.batch_key, leads: carried.map(toProfileLead) });
    expect(lost).toMatchObject({ kind: 'accepted', body: { replayed: false, accepted: 2 } });

    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 1, quarantined: 0 });
    expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', last_outcome: 'interrupted' });
    expect(await w.audit('recovery.resend')).toHaveLength(1);
    w.clock.advance(61 * SECOND); // the first 429's wait holds every request to the partner
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ claimed: 0, actions: 1, accepted: 2 });
    const stats = w.sandbox.stats();
    expect(stats.batches).toMatchObject({ accepted: 1, replayed: 1, replayMismatches: 0 });
    expect(stats.leads).toEqual({ accepted: 2, duplicates: 0 });
    const records = w.sandbox.records();
    expect(records.batches.map((b) => b.batchKey)).toEqual([a!.batch_key]);
    for (const l of carried) expect(records.leadBatches[leadKey(l)]).toEqual([a!.batch_key]);
    expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 3 });
    const allowed = await w.audit('guard.allowed');
    expect(allowed.map((e) => [keyOf(e.subject), e.details.attempt])).toEqual([
      [a!.batch_key, 1],
      [a!.batch_key, 3],
    ]);
    expect((await w.app.audit.verify()).ok).toBe(true);
  });

  it('crash during the 4th attempt, after 3 failed answers: recover() asks the partner again under the same key (an unanswered request spends no retry); exported once', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('z', 2));
    expect(await w.cycle()).toMatchObject({ claimed: 2, retrying: 2, retryingBatches: 1 });
    const [a] = await w.deliveries();
    // Three failed answers spent the retries; attempt 4 was authorised and the process died before
    // its outcome was recorded (the partner may have accepted it).
    await w.app.store.db
      .updateTable('deliveries')
      .set({ state: 'sending', attempts: 4, failed_answers: 3 })
      .where('id', '=', a!.id)
      .execute();
    w.sandbox.setFaults({ rateLimit: null });
    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 1, quarantined: 0 });
    expect((await w.deliveries())[0]).toMatchObject({
      state: 'retry_wait',
      attempts: 4,
      failed_answers: 3,
      unanswered: 1,
      last_outcome: 'interrupted',
    });
    w.clock.advance(61 * SECOND); // the 429's partner-wide wait
    expect(await w.cycle()).toMatchObject({ actions: 1, accepted: 2, quarantined: 0 });
    expect((await w.deliveries())[0]).toMatchObject({ state: 'accepted', attempts: 5 });
    const carried = [...(await w.leads()).values()];
    expect(carried.map((l) => l.state)).toEqual(['exported', 'exported']);
    for (const l of carried) expect(w.sandbox.records().leadBatches[leadKey(l)]).toEqual([a!.batch_key]);
    expect(await w.audit('recovery.quarantined')).toEqual([]);
  });

  it('a request nobody answered keeps the batch one the partner may have: quarantined later after failed answers, a release replays its original key', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('v', 2));
    expect(await w.cycle()).toMatchObject({ claimed: 2 });
    const [a] = await w.deliveries();
    // Earlier: one request timed out (the partner may have accepted it), three were answered 503.
    await w.app.store.db
      .updateTable('deliveries')
      .set({ attempts: 5, failed_answers: 3, unanswered: 1, partner_may_have: 1, last_status: 503 })
      .where('id', '=', a!.id)
      .execute();
    w.sandbox.setFaults({ rateLimit: null, failNext: 1 });
    w.clock.advance(61 * SECOND);
    expect(await w.cycle()).toMatchObject({ actions: 1, quarantined: 2 });
    expect((await w.deliveries())[0]).toMatchObject({
      state: 'quarantined',
      failed_answers: 4,
      partner_may_have: 1,
    });
    const held = [...(await w.leads()).values()];
    await w.app.operatorActions().release(
      held.map((l) => l.id),
      'checked with the partner: ask again',
    );
    expect(await w.cycle()).toMatchObject({ claimed: 0, actions: 1, accepted: 2 });
    const deliveries = await w.deliveries();
    expect(deliveries).toHaveLength(1);
    for (const l of held) expect(w.sandbox.records().leadBatches[leadKey(l)]).toEqual([a!.batch_key]);
  });

  it('a key nobody answers is bounded apart: after 10 unanswered requests it is quarantined as one the partner may have, and a release replays that key', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest(many('u', 3));
    expect(await w.cycle()).toMatchObject({ claimed: 3 });
    const [a] = await w.deliveries();
    // Nine requests of this key went unanswered already; the 10th is interrupted by a crash.
    await w.app.store.db
      .updateTable('deliveries')
      .set({ state: 'sending', attempts: 10, unanswered: 9 })
      .where('id', '=', a!.id)
      .execute();
    w.sandbox.setFaults({ rateLimit: null });
    await w.restart();
    expect(await w.engine.recover()).toEqual({ resumed: 0, quarantined: 1 });
    expect((await w.deliveries())[0]).toMatchObject({
      state: 'quarantined',
      partner_may_have: 1,
      unanswered: 10,
    });
    const held = [...(await w.leads()).values()];
    for (const l of held) {
      expect(l.state).toBe('quarantined');
      expect(l.state_reason).toMatch(/no answer from the partner after 10 requests.*the partner may have it/);
    }
    const alerts = await w.app.store.db
      .selectFrom('alerts')
      .selectAll()
      .where('event', '=', 'quarantine')
      .execute();
    expect(alerts).toHaveLength(1);

    // A release of only some of its leads is refused, naming the rest: the batch is not split.
    const ops = w.app.operatorActions();
    await expect(ops.release([held[0]!.id], 'checked with the partner')).rejects.toMatchObject({
      code: 'WHOLE_BATCH',
      message: expect.stringContaining(`missing: ${held[1]!.id}, ${held[2]!.id}`),
    });
    expect(lead(await w.leads(), 'u1').state).toBe('quarantined');
    // Released together: asked again under the ORIGINAL key; the partner accepts it once.
    await ops.release(
      held.map((l) => l.id),
      'checked with the partner: ask again',
    );
    const [released] = await w.audit('quarantine.released');
    expect(released!.details.replayed).toEqual([
      { batch: a!.batch_key, delivery: a!.id, leads: held.map((l) => l.id) },
    ]);
    expect((await w.deliveries())[0]).toMatchObject({
      state: 'retry_wait',
      failed_answers: 0,
      unanswered: 0,
    });
    w.clock.advance(61 * SECOND);
    expect(await w.cycle()).toMatchObject({ claimed: 0, actions: 1, accepted: 3 });
    const deliveries = await w.deliveries();
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ state: 'accepted', batch_key: a!.batch_key });
    for (const l of held) expect(w.sandbox.records().leadBatches[leadKey(l)]).toEqual([a!.batch_key]);
  });

  it('a batch already attempted is never re-keyed: changed or ineligible on retry, its leads are quarantined for an operator', async () => {
    const w = await engineWorld(backend, {
      sandbox: { faults: { rateLimit: { retryAfter: 60, every: 1 } } },
    });
    await w.ingest([
      { tag: 'ok', score: 90 },
      { tag: 'fell', score: 80 },
      { tag: 'old', score: 70, ageMs: 14 * DAY - 30 * SECOND },
    ]);
    expect(await w.cycle()).toMatchObject({ claimed: 3, retrying: 3 });
    const [a] = await w.deliveries();
    const before = await w.leads();
    await w.app.store.db
      .updateTable('leads')
      .set({ score: 30 })
      .where('id', '=', lead(before, 'fell').id)
      .execute();
    w.sandbox.setFaults({ rateLimit: null });
    w.clock.advance(61 * SECOND); // the retry is due, and `old` is now past 14 days

    const c2 = await w.cycle();
    expect(c2).toMatchObject({ refused: 3, actions: 0, accepted: 0 });
    expect(w.sandbox.stats().batches.received).toBe(1); // only the first, rate-limited attempt
    const [quarantined] = await w.audit('batch.quarantined');
    expect(quarantined).toMatchObject({ subject: `batch:${a!.batch_key}` });
    expect(String(quarantined!.details.reason)).toContain('already attempted');
    expect((await w.deliveries())[0]!.state).toBe('quarantined');
    const mid = await w.leads();
    for (const tag of ['ok', 'fell', 'old']) {
      expect(lead(mid, tag).state).toBe('quarantined');
      expect(lead(mid, tag).state_reason).toContain('check with the partner before releasing');
    }
    const alerts = await w.app.store.db.selectFrom('alerts').selectAll().execute();
    expect(alerts.filter((al) => al.event === 'quarantine')).toHaveLength(1);

    // Nothing goes out under another batch key on its own ...
    expect(await w.cycle()).toMatchObject({ claimed: 0, actions: 0 });
    expect(w.sandbox.records().leadBatches).toEqual({});
    // ... only after an operator's release: a new batch, the lead's own key unchanged, accepted once.
    await w.app.operatorActions().release([lead(mid, 'ok').id], 'checked with the partner: not received');
    const c4 = await w.cycle();
    expect(c4).toMatchObject({ claimed: 1, accepted: 1 });
    const deliveries = await w.deliveries();
    expect(w.sandbox.records().leadBatches).toEqual({
      [leadKey(lead(mid, 'ok'))]: [deliveries[1]!.batch_key],
    });
    expect(deliveries[1]!.batch_key).not.toBe(a!.batch_key);
  });

  it('pausing during a backoff wait stops the cycle: no further request, the batch stays queued', async () => {
    const w = await engineWorld(backend, { sandbox: { faults: { failNext: 1 } } });
    await w.ingest(many('z', 1));
    w.onSleep = () => writeMode(w.app.store.db, 'paused', w.clock.now());
    const c1 = await w.cycle();
    expect(c1).toMatchObject({ actions: 1, retrying: 1, accepted: 0 });
    expect(w.sandbox.stats().batches.received).toBe(1);
    expect((await w.deliveries())[0]).toMatchObject({ state: 'retry_wait', attempts: 1 });
    const c2 = await w.cycle();
    expect(c2).toMatchObject({ kind: 'idle' });
    expect(c2.idleReason).toMatch(/paused/);
    expect(w.sandbox.stats().batches.received).toBe(1);
    expect(lead(await w.leads(), 'z1').state).toBe('in_flight');
  });
});
