/**
 * Monitoring end to end on SQLite and PostgreSQL, in the shared live world
 * (test/support/live-world.ts): the real app, engine, partner client and sandbox partner over HTTPS,
 * the real alert channel (a local Slack receiver), a ManualClock for policy time. The error-rate
 * rollback (partner down → within 3 requests; 1 failure in 20 → none), the modes and their rules
 * (pause, resume, rollback, rearm), a rollback that lands between an authorisation and the request's
 * start, and the hourly failure alert with its recovery.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createPartnerClientFromConfig } from '../../src/app/partner.js';
import { DEFAULT_POLICY_FILE } from '../../src/config/index.js';
import type { PartnerPort } from '../../src/engine/index.js';
import { readMode } from '../../src/guard/index.js';
import { createPartnerClient, isOutboundError } from '../../src/outbound/index.js';
import type { SandboxPartnerOptions } from '../../src/sandbox/index.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { workerBeat } from '../support/heartbeat.js';
import {
  closeLater,
  closeWorlds,
  emailOf,
  type LeadSpec,
  many,
  nameOf,
  type World,
  world,
} from '../support/live-world.js';
import { type SlackReceiver, startSlackReceiver } from '../support/receivers.js';
import { tempDir } from '../support/tmp.js';
import { CLEARED, HOUR, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
afterEach(closeWorlds);

/** A live world whose engine builds its own partner client, and whose alerts go to a Slack receiver. */
async function monitored(
  backend: Backend,
  options: { sandbox?: SandboxPartnerOptions; env?: Record<string, string> } = {},
): Promise<World & { slack: SlackReceiver }> {
  const slack = await startSlackReceiver('/services/T0/B0/monitoring-test');
  closeLater(() => slack.close());
  const w = await world({
    backend,
    partner: 'app',
    ...(options.sandbox ? { sandbox: options.sandbox } : {}),
    env: { VALHALLA_SLACK_WEBHOOK_URL: slack.webhookUrl, ...options.env },
  });
  return Object.assign(w, { slack });
}

/** The partner requests the monitor counted, in order. */
const requests = (w: World) =>
  w.app.store.db.selectFrom('requests').select(['endpoint', 'class']).orderBy('id').execute();

/** No e-mail, name or phone number of `specs` in `body`. */
function expectNoLeadData(body: string, specs: LeadSpec[]) {
  for (const { tag } of specs) {
    expect(body).not.toContain(emailOf(tag));
    expect(body).not.toContain(nameOf(tag));
  }
  expect(body).not.toMatch(/7946/);
}

describe.each(list)('monitoring on $name', (backend) => {
  it('partner down (100% failure): rolled back at the 3rd failed request, nothing lost, alert sent without PII', async () => {
    const w = await monitored(backend, { sandbox: { faults: { down: true } } });
    const specs = many('m', 3);
    await w.ingest(specs);
    const reports = [];
    for (let i = 0; i < 4; i++) {
      reports.push(await w.engine.runCycle());
      w.clock.advance(60_000);
    }
    // Three cycles each fail their health check (3 failed requests): the third rolls back.
    expect(reports.slice(0, 3).map((r) => [r.kind, r.healthFailed, r.actions])).toEqual([
      ['live', true, 0],
      ['live', true, 0],
      ['live', true, 0],
    ]);
    expect(reports[2]!.halted).toMatch(/rolled back: 3 requests in a row failed/);
    expect(reports[3]!.kind).toBe('dry_run');
    expect(await readMode(w.app.store.db)).toBe('rolled_back');
    expect(await requests(w)).toEqual([
      { endpoint: 'health', class: 'failure' },
      { endpoint: 'health', class: 'failure' },
      { endpoint: 'health', class: 'failure' },
    ]);
    // The partner saw three health checks and no batch; every lead is still waiting, none in flight.
    expect(w.sandbox.stats().requests.dropped).toBe(3);
    expect(w.sandbox.stats().batches.received).toBe(0);
    const states = await w.app.store.db.selectFrom('leads').select('state').execute();
    expect(states.map((s) => s.state)).toEqual(['pending', 'pending', 'pending']);
    const [rollback] = await w.audit('mode.rollback');
    expect(rollback).toMatchObject({
      actor: 'monitor',
      details: { from: 'live', to: 'rolled_back', failures: 3 },
    });

    const sent = await w.app.dispatchAlerts();
    expect(sent).toMatchObject({ sent: 1, failed: 0 });
    expect(w.slack.requests).toHaveLength(1);
    const body = w.slack.requests[0]!.body;
    expect(body).toContain('ROLLED BACK by monitor');
    expect(body).toContain('3 requests in a row failed');
    expectNoLeadData(body, specs);
  });

  it('a quarantine alert, as sent to Slack, names the batch and the reason and carries no lead data', async () => {
    const w = await monitored(backend, { sandbox: { faults: { permanentStatus: 422 } } });
    const specs = many('q', 2);
    await w.ingest(specs);
    expect(await w.engine.runCycle()).toMatchObject({ quarantined: 2 });
    expect(await w.app.dispatchAlerts()).toMatchObject({ sent: 1, failed: 0 });
    const body = w.slack.requests.at(-1)!.body;
    expect(body).toContain('quarantine');
    expect(body).toContain('HTTP 422');
    const [delivery] = await w.app.store.db.selectFrom('deliveries').select('batch_key').execute();
    expect(body).toContain(delivery!.batch_key);
    expectNoLeadData(body, specs);
  });

  it('one failed request in 20 does not roll back', async () => {
    // One lead per cycle: 20 batches; the first request is answered 503 and retried a second later.
    const w = await monitored(backend, {
      sandbox: { faults: { failNext: 1 } },
      env: { VALHALLA_MAX_LEADS_PER_CYCLE: '1' },
    });
    await w.ingest(many('m', 20));
    for (let i = 0; i < 20; i++) {
      const report = await w.engine.runCycle();
      expect(report.halted, `cycle ${i + 1}`).toBeNull();
      w.clock.advance(60_000);
    }
    const counted = await requests(w);
    expect(counted).toHaveLength(21);
    expect(counted.filter((r) => r.class === 'failure')).toHaveLength(1);
    expect(await readMode(w.app.store.db)).toBe('live');
    const decision = await w.app.requestMonitor.current(w.app.store.db);
    expect(decision).toMatchObject({ requests: 21, failures: 1, rollback: false });
    expect(w.sandbox.stats().leads.accepted).toBe(20);
    expect(await w.audit('mode.rollback')).toHaveLength(0);
  });

  it('pause keeps the queue and sends nothing; resume; rollback; rearm only after a restart with the gates', async () => {
    const w = await monitored(backend);
    await w.ingest(many('m', 2));

    expect(await w.app.changeMode('pause', { reason: 'checking the dashboard' })).toMatchObject({
      kind: 'change',
      to: 'paused',
    });
    const paused = await w.engine.runCycle();
    expect(paused).toMatchObject({ kind: 'idle', claimed: 0 });
    expect(paused.idleReason).toContain('paused');
    expect(w.sandbox.stats().requests.total).toBe(0);
    expect(await w.app.changeMode('pause', { reason: 'again' })).toMatchObject({ kind: 'unchanged' });

    expect(await w.app.changeMode('resume', { reason: 'all good' })).toMatchObject({ to: 'live' });
    expect(await w.engine.runCycle()).toMatchObject({ kind: 'live', accepted: 2 });

    expect(await w.app.changeMode('rollback', { reason: 'drill by hand' })).toMatchObject({
      from: 'live',
      to: 'rolled_back',
    });
    expect(await w.app.changeMode('resume', { reason: 'try' })).toMatchObject({ kind: 'refused' });
    expect(await w.app.changeMode('pause', { reason: 'try' })).toMatchObject({ kind: 'refused' });

    // Rearm: refused without the gates (the production default) …
    const noGates = await w.app.changeMode('rearm', { reason: 'fixed' });
    expect(noGates).toMatchObject({ kind: 'refused' });
    expect(noGates.kind === 'refused' && noGates.reason).toContain('gates are not verified');
    // … with no worker restarted since the rollback …
    const rolledBackAt = w.clock.now();
    w.clock.advance(1_000);
    const none = await w.app.changeMode('rearm', { reason: 'fixed', gates: CLEARED });
    expect(none.kind === 'refused' && none.reason).toContain('no worker started since the rollback');
    // … and while the worker that was running at the rollback still beats.
    await workerBeat(w.app.store.db, { at: w.clock.now(), startedAt: rolledBackAt - HOUR, pid: 4242 });
    const stale = await w.app.changeMode('rearm', { reason: 'fixed', gates: CLEARED });
    expect(stale.kind === 'refused' && stale.reason).toContain('pid 4242');
    // A worker started after the rollback beats, and the old one has not beaten since: allowed.
    w.clock.advance(500);
    await workerBeat(w.app.store.db, { at: w.clock.now() + 500, startedAt: w.clock.now(), pid: 4343 });
    w.clock.advance(1_000);
    expect(await w.app.changeMode('rearm', { reason: 'fixed', gates: CLEARED })).toMatchObject({
      kind: 'change',
      from: 'rolled_back',
      to: 'live',
    });

    const changes = await w.app.store.db
      .selectFrom('audit_log')
      .select(['action', 'actor'])
      .where('action', 'like', 'mode.%')
      .orderBy('seq')
      .execute();
    expect(changes.map((c) => c.action)).toEqual([
      'mode.pause',
      'mode.resume',
      'mode.rollback',
      'mode.rearm_refused',
      'mode.rearm_refused',
      'mode.rearm_refused',
      'mode.rearm',
    ]);
    expect(changes.every((c) => c.actor === 'test-operator')).toBe(true);
    const alerts = await w.app.store.db
      .selectFrom('alerts')
      .select(['event', 'severity'])
      .orderBy('id')
      .execute();
    expect(alerts).toEqual([
      { event: 'mode_change', severity: 'warning' },
      { event: 'mode_change', severity: 'warning' },
      { event: 'rollback', severity: 'critical' },
      { event: 'mode_change', severity: 'warning' },
    ]);
  });

  it('a rollback between the authorisation and the request start: the batch is held, uncounted, and sent later under its key', async () => {
    const w = await monitored(backend);
    await w.ingest(many('m', 2));
    const real = createPartnerClient({
      baseUrl: w.sandbox.url,
      tokenUrl: w.sandbox.tokenUrl,
      clientId: w.sandbox.clientId,
      clientSecret: w.sandbox.clientSecret,
      caPem: w.sandbox.caPem,
      clock: w.clock,
      timeoutMs: 30_000,
      rateLimitPerSecond: 5,
      rateWindowMs: 1_000,
      maxConcurrent: 5,
      allowPlainHttpLoopback: false,
    });
    closeLater(() => real.close());
    const hold = new AbortController();
    // What the mode watch does when another process rolls back: abort `holdNew`. Here it happens
    // after the guard allowed the batch and before the client starts the request.
    const partner: PartnerPort = {
      health: (signal) => real.health(signal),
      ensureToken: (ms, signal) => real.ensureToken(ms, signal),
      async sendBatch(batch, signal, holdNew) {
        await w.app.changeMode('rollback', { reason: 'from another process' });
        hold.abort();
        return real.sendBatch(batch, signal, holdNew);
      },
    };
    const engine = w.app.engine({ gates: CLEARED, partner, sleep: w.clock.sleep });
    const report = await engine.runCycle({ holdNew: hold.signal });
    expect(report).toMatchObject({ kind: 'live', claimed: 2, actions: 1, accepted: 0 });
    expect(report.halted).toContain('before the request started');
    expect(w.sandbox.stats().batches.received).toBe(0);
    const [delivery] = await w.app.store.db.selectFrom('deliveries').selectAll().execute();
    expect(delivery).toMatchObject({ state: 'queued', attempts: 0 });
    expect(await w.audit('batch.held')).toHaveLength(1);
    expect(await requests(w)).toEqual([]);

    // Re-armed: the same batch goes out, under its own key, as its first attempt.
    await workerBeat(w.app.store.db, { at: w.clock.now() + 1, startedAt: w.clock.now() + 1 });
    w.clock.advance(10);
    expect(await w.app.changeMode('rearm', { reason: 'ok', gates: CLEARED })).toMatchObject({ to: 'live' });
    const next = await w.app.engine({ gates: CLEARED, sleep: w.clock.sleep }).runCycle();
    expect(next).toMatchObject({ claimed: 0, actions: 1, accepted: 2 });
    expect(w.sandbox.records().batches.map((b) => b.batchKey)).toEqual([delivery!.batch_key]);
    const [allowed] = (await w.audit('guard.allowed')).slice(-1);
    expect(allowed!.details.attempt).toBe(1);
  });

  it('a policy change voids the sign-offs: audited, alerted (gate voided), rolled back; an unreadable file too', async () => {
    const dir = tempDir();
    const file = join(dir, 'policy.json');
    const shipped = JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify(shipped));
    const w = await monitored(backend, { env: { VALHALLA_POLICY_FILE: file } });
    expect(await w.app.checkPolicy('config')).toMatchObject({ changed: false, from: null });
    expect(await w.app.checkPolicy('disk')).toMatchObject({ changed: false });
    expect(await w.audit('policy.changed')).toHaveLength(0);

    writeFileSync(file, JSON.stringify({ ...shipped, alertDedupMinutes: 10 }));
    const changed = await w.app.checkPolicy('disk');
    expect(changed).toMatchObject({ changed: true, from: w.app.config.policyHash });
    expect(changed.to).not.toBe(w.app.config.policyHash);
    expect(await readMode(w.app.store.db)).toBe('rolled_back');
    const [entry] = await w.audit('policy.changed');
    expect(entry).toMatchObject({ actor: 'policy', details: { from: changed.from, to: changed.to } });
    const [rollback] = await w.audit('mode.rollback');
    expect(rollback).toMatchObject({ actor: 'policy' });
    // Checked again: the new policy is now the recorded one, nothing more happens.
    expect(await w.app.checkPolicy('disk')).toMatchObject({ changed: false });

    writeFileSync(file, '{ not json');
    const broken = await w.app.checkPolicy('disk');
    expect(broken).toMatchObject({ changed: true, to: null });
    const voided = await w.app.store.db
      .selectFrom('alerts')
      .select(['severity', 'message'])
      .where('event', '=', 'gate_voided')
      .orderBy('id')
      .execute();
    expect(voided).toHaveLength(2);
    expect(voided.every((a) => a.severity === 'critical')).toBe(true);
    expect(voided[0]!.message).toContain('every sign-off made against the old policy is void');
    expect(voided[1]!.message).toContain('the policy file can no longer be read or is invalid');
  });

  it('rolled back: the worker keeps recording dry runs (its mode watch holding new requests does not stop them)', async () => {
    const w = await monitored(backend);
    await w.ingest(many('m', 4));
    await w.app.changeMode('rollback', { reason: 'test' });
    // What the worker passes once its mode watch has seen the rollback: an aborted hold.
    const report = await w.engine.runCycle({ holdNew: AbortSignal.abort() });
    expect(report).toMatchObject({ kind: 'dry_run', dryRunRecorded: 4, actions: 0 });
    expect(w.sandbox.stats().requests.total).toBe(0);
  });

  it("the app's partner client passes the hold on: a held request never reaches the partner", async () => {
    const w = await monitored(backend);
    const client = createPartnerClientFromConfig(w.app.config, w.clock);
    closeLater(() => client.close());
    const batch = {
      batchKey: 'held-batch-key-0001',
      leads: [
        {
          lead_key: 'lk_held',
          external_id: null,
          name: 'Held Person',
          email: 'held.person@leads.example.test',
          phone: null,
          company: null,
          score: 80,
          source_ts: NOW - HOUR,
          value: 10,
          attributes: {},
        },
      ],
    };
    const error = await client.sendBatch(batch, undefined, AbortSignal.abort()).catch((e: unknown) => e);
    expect(isOutboundError(error, 'CANCELLED')).toBe(true);
    expect(w.sandbox.stats().batches.received).toBe(0);
    // Without a hold the same client sends.
    expect((await client.sendBatch(batch)).kind).toBe('accepted');
    expect(w.sandbox.stats().batches.received).toBe(1);
  });

  it('5 failed requests within an hour raise one critical alert (e-mail threshold); it recovers when the hour has passed', async () => {
    const w = await monitored(backend);
    const monitor = w.app.requestMonitor;
    const db = w.app.store.db;
    let batches = 0;
    const fail = { endpoint: 'health' as const, outcome: 'retryable' as const, status: 503, ms: 5 };
    // Failures spread out (never 3 in a row, under 10 requests): the alert, not a rollback.
    const record = (failed: boolean) =>
      db.transaction().execute(async (trx) => {
        if (failed) await monitor.afterRequest(trx, fail);
        else {
          const d = await trx
            .insertInto('cycles')
            .values({ started_at: w.clock.now(), phase: 4, kind: 'live', ceiling: 1, limited_by: 'x' })
            .returning('id')
            .executeTakeFirstOrThrow();
          const delivery = await trx
            .insertInto('deliveries')
            .values({
              batch_key: `k-${++batches}`,
              cycle_id: d.id,
              kind: 'live',
              state: 'accepted',
              lead_count: 1,
              payload_sha256: 'x',
              created_at: w.clock.now(),
              updated_at: w.clock.now(),
            })
            .returning('id')
            .executeTakeFirstOrThrow();
          await monitor.afterRequest(trx, {
            endpoint: 'leads',
            deliveryId: delivery.id,
            attempt: 1,
            outcome: { kind: 'accepted', status: 200, body: null, bodyIssue: null, ms: 5 },
          });
        }
      });
    // Four failures among 40 requests a minute apart, never above 10% of those counted so far.
    for (let i = 0; i < 40; i++) {
      await record(i % 10 === 9);
      w.clock.advance(60_000);
    }
    const hourly = () =>
      db
        .selectFrom('alerts')
        .select(['kind', 'severity', 'message'])
        .where('event', '=', 'failures_hourly')
        .orderBy('id')
        .execute();
    expect(await hourly()).toEqual([]);
    for (let i = 0; i < 9; i++) await record(false);
    await record(true); // the 5th within the hour (5 of 50: 10%, not above it)
    expect(await hourly()).toMatchObject([{ kind: 'raised', severity: 'critical' }]);
    expect((await hourly())[0]!.message).toContain('5 failed partner requests in the last hour');
    for (let i = 0; i < 9; i++) await record(false);
    await record(true); // the 6th: still one alert, no storm
    expect(await hourly()).toHaveLength(1);
    expect(await readMode(db)).toBe('live');
    // An hour later with no traffic, the heartbeat's re-check sends the recovery.
    w.clock.advance(HOUR);
    await db.transaction().execute((trx) => monitor.checkHourlyFailures(trx));
    expect((await hourly()).map((a) => a.kind)).toEqual(['raised', 'recovered']);
    await db.transaction().execute((trx) => monitor.checkHourlyFailures(trx));
    expect(await hourly()).toHaveLength(2);
    // Routed to the e-mail channel's level (critical): with Slack only configured, Slack has both.
    const deliveries = await db.selectFrom('alert_deliveries').select(['channel']).execute();
    expect(new Set(deliveries.map((d) => d.channel))).toEqual(new Set(['slack']));
  });
});
