/**
 * `valhalla simulate`: the real engine under a virtual clock against the in-process sandbox partner.
 * 72 simulated hours with a healthy partner follow the ramp and hold the daily caps; with a degraded
 * partner a rollback happens, nothing more is sent, nothing is lost. The run time is printed (the
 * aim: a 72 h simulation within 60 s on this machine), never asserted.
 *
 * The simulation runs from private databases the product always makes SQLite files
 * (src/rehearsal/private-install.ts), whatever the installation's backend; the installation's own database
 * is never opened. The CLI test checks that on an installation of each backend.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { mostStartsInAnyWindow, type SimulationResult, simulate } from '../../src/rehearsal/simulate.js';
import { type Backend, backends, databaseExists, dropTestSchemas } from '../support/backends.js';
import { phase4Env, REPO_ROOT, runInProcess, testEnv, UNCALLED_PARTNER } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const list = await backends();
afterAll(dropTestSchemas);

const START = Date.parse('2026-12-01T00:00:00Z');

function installation(extra: Record<string, string> = {}) {
  const cwd = tempDir();
  const env = testEnv(join(cwd, 'data'), { VALHALLA_LOG_LEVEL: 'warn', ...extra });
  return { cwd, env, config: loadConfig({ cwd, env }) };
}

/** The policy's ramp: stage → [from hour, ceiling] (config/policy.json), with leads/cycle 100 last. */
const RAMP: Record<number, [number, number]> = { 1: [0, 1], 2: [2, 5], 3: [6, 10], 4: [24, 100] };

describe('valhalla simulate', () => {
  it('72 h with a healthy partner: the ramp follows the policy, the daily caps hold, the partner’s record agrees', async () => {
    const { config } = installation({ VALHALLA_MAX_LEADS_PER_CYCLE: '100' });
    const result = await simulate({
      config,
      hours: 72,
      leadsPerHour: 800,
      faults: 'healthy',
      seed: 3,
      start: START,
    });
    console.log(`[simulate] 72 h healthy, 800 leads/h: ${result.runMs} ms real time`);

    expect(result.cycles).toHaveLength(72 * 12);
    expect(result.ramp.map((s) => [s.stage, s.hour, s.ceiling])).toEqual(
      Object.entries(RAMP).map(([stage, [hour, ceiling]]) => [Number(stage), hour, ceiling]),
    );
    // Each cycle's stage is the one the policy gives its hour since go-live; never more leads than its
    // ceiling, never more actions than the limit.
    const stageAt = (hour: number) => (hour < 2 ? 1 : hour < 6 ? 2 : hour < 24 ? 3 : 4);
    for (const cycle of result.cycles) {
      expect(cycle.kind).toBe('live');
      expect(cycle.rampStage, `hour ${cycle.hour}`).toBe(stageAt(cycle.hour));
      expect(cycle.claimed).toBeLessThanOrEqual(RAMP[cycle.rampStage!]![1]);
      expect(cycle.actions).toBeLessThanOrEqual(result.limits.actionsPerCycle);
    }
    expect(result.limits).toMatchObject({ leadsPerCycle: 100, actionsPerCycle: 5, rateLimitPerSecond: 5 });
    // Stage 1: one lead a cycle, each cycle confirmed by the (simulated) operator before the next.
    expect(result.cycles.filter((c) => c.rampStage === 1).every((c) => c.claimed === 1)).toBe(true);

    // Three UTC days; the caps bind on the full days and are never exceeded, by the daily counters nor
    // by the partner's own record of what it accepted each day.
    expect(result.days.map((d) => d.day)).toEqual(['2026-12-01', '2026-12-02', '2026-12-03']);
    for (const day of result.days) {
      expect(day.claimed).toBeLessThanOrEqual(10_000);
      expect(day.atPartner).toBeLessThanOrEqual(10_000);
      expect(day.atPartner).toBe(day.exported);
      expect(day.exposure).toBeLessThanOrEqual(50_000_000);
      expect(day.dailyCapHeld).toBe(true);
    }
    const full = result.days.slice(1);
    expect(full.every((d) => d.claimed >= 9_000 || d.exposure >= 49_000_000)).toBe(true);

    expect(result.rollbacks).toEqual([]);
    expect(result.totals.failedRequests).toBe(0);
    expect(result.reconciliation).toEqual({
      sentTwice: 0,
      unexpected: 0,
      exportedNotAtPartner: 0,
      mostRequestsInAnySecond: expect.any(Number),
      rateCheckedRequests: result.totals.requests,
      replayMismatches: 0,
      lost: 0,
      ok: true,
    });
    expect(result.reconciliation.mostRequestsInAnySecond).toBeLessThanOrEqual(5);
    expect(result.totals.exported).toBe(result.totals.leadsByState.exported);
    expect(result.days.reduce((sum, d) => sum + d.exported, 0)).toBe(result.totals.exported);
    expect(result.stability.passed).toBe(true);
    expect(result.stability.checks.map((c) => c.name)).toEqual([
      'this installation',
      'uninterrupted',
      'export quality',
      'memory',
      'orphaned processes',
      'guard',
    ]);
  });

  it('72 h with a degraded partner (15% errors): a rollback, then only dry runs; nothing lost or sent twice', async () => {
    const { config } = installation();
    const result = await simulate({
      config,
      hours: 72,
      leadsPerHour: 300,
      faults: 'degraded',
      seed: 1,
      start: START,
    });
    console.log(`[simulate] 72 h degraded, 300 leads/h: ${result.runMs} ms real time`);

    expect(result.rollbacks).toHaveLength(1);
    const [rollback] = result.rollbacks;
    expect(rollback!.reason).toMatch(/^error rate: /);
    expect(result.totals.failedRequests).toBeGreaterThan(0);
    // After the rollback every cycle is a dry run: nothing more reached the partner.
    const after = result.cycles.filter((c) => c.hour > rollback!.hour);
    expect(after.length).toBeGreaterThan(0);
    expect(after.every((c) => c.kind === 'dry_run' && c.mode === 'rolled_back' && c.accepted === 0)).toBe(
      true,
    );
    expect(after.some((c) => c.dryRun > 0)).toBe(true);
    expect(result.reconciliation).toMatchObject({
      sentTwice: 0,
      unexpected: 0,
      exportedNotAtPartner: 0,
      lost: 0,
      ok: true,
    });
    // Every lead is in a state, and nothing is left mid-request: a lead still in flight is in a
    // batch waiting in the queue (the rollback keeps it; only a re-arm sends it).
    expect(result.totals.leadsByState.in_flight ?? 0).toBe(result.totals.waitingInBatches);
    expect(Object.values(result.totals.leadsByState).reduce((a, b) => a + b, 0)).toBe(result.totals.ingested);
  });

  it('the same seed gives the same run; an outage rolls back within 3 failed requests; a 429 storm pauses once, quarantines nothing and rolls nothing back', async () => {
    const { config } = installation();
    const run = (faults: 'flaky' | 'outage' | '429-storm' | 'slow', hours: number) =>
      simulate({ config, hours, leadsPerHour: 200, faults, seed: 9, start: START });
    const strip = (r: SimulationResult) => ({ ...r, runMs: 0 });
    expect(strip(await run('flaky', 8))).toEqual(strip(await run('flaky', 8)));

    const outage = await run('outage', 8);
    expect(outage.rollbacks).toHaveLength(1);
    expect(outage.rollbacks[0]!.hour).toBeGreaterThanOrEqual(6);
    // The rate (2 failures of the 13 counted: above 10%) or the run of three, whichever comes first.
    expect(outage.rollbacks[0]!.reason).toMatch(/in a row|is above 10\.0%/);
    expect(outage.reconciliation.ok).toBe(true);

    const storm = await run('429-storm', 3);
    expect(storm.rollbacks).toEqual([]);
    expect(storm.totals.quarantined).toBe(0);
    expect(storm.pauses).toHaveLength(1);
    expect(storm.pauses[0]!.reason).toContain('only 429');
    expect(storm.totals.rateLimited).toBeGreaterThan(0);
    expect(storm.totals.failedRequests).toBe(0);
    expect(storm.reconciliation.ok).toBe(true);

    // A slow partner (2 s answers, in virtual time): the same leads go out, nothing fails.
    const slow = await run('slow', 3);
    expect(slow.rollbacks).toEqual([]);
    expect(slow.totals.failedRequests).toBe(0);
    expect(slow.totals.exported).toBeGreaterThan(0);
    expect(slow.reconciliation.ok).toBe(true);
  });

  it('simulates the installation’s own limits: a lower rate and fewer actions per cycle hold at the partner', async () => {
    const cwd = tempDir();
    const env = phase4Env(join(cwd, 'data'), UNCALLED_PARTNER, {
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_MAX_ACTIONS_PER_CYCLE: '2',
      VALHALLA_RATE_LIMIT: '2',
    });
    const config = loadConfig({ cwd, env });
    // Flaky: retries come due beside new batches, so cycles would take more actions if allowed.
    const result = await simulate({
      config,
      hours: 30,
      leadsPerHour: 400,
      faults: 'flaky',
      seed: 4,
      start: START,
    });
    expect(result.limits).toMatchObject({ actionsPerCycle: 2, rateLimitPerSecond: 2 });
    expect(result.totals.failedRequests).toBeGreaterThan(0);
    expect(Math.max(...result.cycles.map((c) => c.actions))).toBeLessThanOrEqual(2);
    expect(result.reconciliation.mostRequestsInAnySecond).toBeLessThanOrEqual(2);
    expect(result.reconciliation.ok).toBe(true);
  });

  it('counts the most requests in any window of the partner’s record', () => {
    expect(mostStartsInAnyWindow([], 1000)).toBe(0);
    expect(mostStartsInAnyWindow([0, 999], 1000)).toBe(2);
    expect(mostStartsInAnyWindow([0, 1000], 1000)).toBe(1);
    expect(mostStartsInAnyWindow([0, 100, 200, 300, 400, 1100, 1150], 1000)).toBe(5);
    expect(mostStartsInAnyWindow([0, 500, 600, 700, 800, 900, 1400], 1000)).toBe(6);
  });
});

describe('valhalla simulate with the installation configured for the CRM profile', () => {
  it('24 h against the sandbox playing the CRM profile with a flaky partner: reconciled against its per-lead ledger, the profile named', async () => {
    const { config } = installation({ VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' });
    const result = await simulate({
      config,
      hours: 24,
      leadsPerHour: 300,
      faults: 'flaky',
      seed: 2,
      start: START,
    });
    console.log(`[simulate] 24 h flaky, CRM profile: ${result.runMs} ms real time`);
    expect(result.profile).toEqual({ name: 'crm-batch-contacts', sha256: config.partner.profile.sha256 });
    expect(result.totals.exported).toBeGreaterThan(0);
    // 5% of requests answered 503 (before the CRM reads the body): retried, and counted.
    expect(result.totals.failedRequests).toBeGreaterThan(0);
    // A static bearer token: no token endpoint at all.
    expect(result.totals.tokensIssued).toBe(0);
    expect(result.reconciliation).toMatchObject({
      sentTwice: 0,
      unexpected: 0,
      exportedNotAtPartner: 0,
      replayMismatches: 0,
      lost: 0,
      ok: true,
    });
    // The CRM's own record of what it created each day is what the engine exported that day.
    for (const day of result.days) expect(day.atPartner, day.day).toBe(day.exported);
    expect(result.days.reduce((sum, d) => sum + d.atPartner, 0)).toBe(result.totals.exported);
    expect(result.totals.exported).toBe(result.totals.leadsByState.exported);
  });

  it('the CLI names the profile; refuses --faults token-expiry under a static credential and a profile the sandbox cannot play (exit 2)', async () => {
    const { cwd, env } = installation({ VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' });
    const table = await runInProcess(['simulate', '--hours', '2', '--leads-per-hour', '20'], { cwd, env });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/; partner profile crm-batch-contacts \(sha256 [0-9a-f]{12}…\)$/m);
    expect(table.stdout).toContain("Against the partner's own record: OK");

    const expiry = await runInProcess(['simulate', '--hours', '2', '--faults', 'token-expiry'], { cwd, env });
    expect(expiry.code).toBe(2);
    expect(expiry.stdout).toBe('');
    expect(expiry.stderr).toContain(
      '--faults token-expiry needs a partner whose tokens expire (OAuth2); the partner profile crm-batch-contacts uses a static credential (bearer)',
    );

    const file = join(cwd, 'acme.json');
    const crm = JSON.parse(
      readFileSync(join(REPO_ROOT, 'config', 'partners', 'crm-batch-contacts.json'), 'utf8'),
    );
    writeFileSync(file, JSON.stringify({ ...crm, name: 'acme-contacts' }));
    const other = await runInProcess(['simulate', '--hours', '1'], {
      cwd,
      env: { ...env, VALHALLA_PARTNER_PROFILE: file },
    });
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('the installation\'s partner profile "acme-contacts"');
    expect(other.stderr).toContain('the simulation rehearses only the contracts the sandbox plays');
  });
});

describe.each(list)('valhalla simulate on an installation on $name', (backend: Backend) => {
  it('the CLI prints the table, --json, an HTML report with charts and no script; bad options are usage errors; the installation’s database is left alone', async () => {
    const databaseUrl = backend.databaseUrl();
    const { cwd, env } = installation({ VALHALLA_DATABASE_URL: databaseUrl });
    const table = await runInProcess(
      [
        'simulate',
        '--hours',
        '3',
        '--leads-per-hour',
        '50',
        '--start',
        '2026-12-01T09:00:00Z',
        '--html',
        'sim.html',
      ],
      { cwd, env },
    );
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toContain('Simulated 3 h from 2026-12-01T09:00:00.000Z');
    expect(table.stdout).toMatch(/stage 1 from hour 0 .*ceiling 1, most claimed in a cycle 1/);
    expect(table.stdout).toContain("Against the partner's own record: OK");
    expect(table.stdout).toContain(`report: ${join(cwd, 'sim.html')}`);
    const html = readFileSync(join(cwd, 'sim.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script|https?:\/\//);

    const json = await runInProcess(['simulate', '--hours', '2', '--faults', 'token-expiry', '--json'], {
      cwd,
      env,
    });
    expect(json.code, json.stderr).toBe(0);
    const parsed = JSON.parse(json.stdout) as SimulationResult;
    expect(parsed.options).toMatchObject({ hours: 2, faults: 'token-expiry', leadsPerHour: 300, seed: 1 });
    expect(parsed.cycles).toHaveLength(24);
    expect(parsed.reconciliation.ok).toBe(true);
    // Two-minute tokens over two hours: refreshed again and again, never a failed request.
    expect(parsed.totals.tokensIssued).toBeGreaterThan(10);
    expect(parsed.totals.failedRequests).toBe(0);

    for (const [args, message] of [
      [['--hours', '0'], 'must be from 1 to 168'],
      [['--faults', 'chaos'], "argument 'chaos' is invalid"],
      [['--start', 'tomorrow'], 'not an ISO 8601 time'],
    ] as const) {
      const bad = await runInProcess(['simulate', ...args], { cwd, env });
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr).toContain(message);
    }
    expect(await databaseExists(databaseUrl)).toBe(false);
  });
});
