/**
 * Gate 9's 72-hour stability verification on SQLite and PostgreSQL. One simulated Phase 3 run per
 * backend, written as the worker, the supervisor, the engine and the guard write it: a heartbeat every
 * 30 s, the daily restart at 02:00 UTC (audited, a 75 s gap, a new worker), a dry-run cycle every
 * 5 minutes recording 3 leads of a stable score distribution. Each fault is applied to that database
 * inside a transaction that is rolled back after the verification, so every case starts from the
 * same healthy run. The run ends at the real time of the test (plus a margin), so the CLI, which
 * verifies the 72 hours ending now, sees it too.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, initialize } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { type Config, loadConfig } from '../../src/config/index.js';
import { type StabilityResult, verifyStability } from '../../src/gates/stability.js';
import { type AuditAction, nextDailyRestart } from '../../src/policy/index.js';
import { recordHeartbeat, recordRequest } from '../../src/store/index.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { runInProcess, testEnv } from '../support/cli.js';
import { seedPhase3Run, type Trx } from '../support/phase3-run.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, MINUTE, SECOND } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const MB = 1024 * 1024;
/** The end of the verified window in the direct cases: the real time when the file started. */
const ANCHOR = Math.floor(Date.now() / SECOND) * SECOND;
/** The run covers the window with margins: the CLI's window (ending at its own now) falls inside it. */
const START = ANCHOR - 72 * HOUR - 10 * MINUTE;
const END = ANCHOR + 10 * MINUTE;
const LEADS_PER_CYCLE = 3;
const iso = (ms: number) => new Date(ms).toISOString();

interface World {
  backend: Backend;
  dir: string;
  env: Record<string, string>;
  config: Config;
  clock: ManualClock;
  app: App;
  /** Verify the 72 hours ending at ANCHOR, after `alter` (rolled back afterwards) when given. */
  verify(alter?: (trx: Trx) => Promise<void>): Promise<StabilityResult>;
}

async function simulate(backend: Backend): Promise<World> {
  const dir = tempDir();
  const env = testEnv(dir, { VALHALLA_DATABASE_URL: backend.databaseUrl(), VALHALLA_LOG_LEVEL: 'warn' });
  const config = loadConfig({ env, cwd: dir });
  const clock = new ManualClock(START - HOUR);
  const { app } = await initialize(config, { clock });
  const { store } = app;

  await seedPhase3Run(app, clock, { start: START, end: END });

  const ROLLBACK = Symbol('rollback');
  return {
    backend,
    dir,
    env,
    config,
    clock,
    app,
    async verify(alter) {
      if (!alter) return verifyStability({ store, clock, config }, { hours: 72, until: ANCHOR });
      let result: StabilityResult | undefined;
      await store.db
        .transaction()
        .execute(async (trx) => {
          await alter(trx);
          result = await verifyStability(
            { store: { ...store, db: trx }, clock, config },
            { hours: 72, until: ANCHOR },
          );
          throw ROLLBACK;
        })
        .catch((error: unknown) => {
          if (error !== ROLLBACK) throw error;
        });
      return result!;
    },
  };
}

const failedChecks = (result: StabilityResult) => result.checks.filter((c) => !c.passed).map((c) => c.name);
const checkNamed = (result: StabilityResult, name: string) => result.checks.find((c) => c.name === name)!;

describe.each(list)('72-hour stability ($name)', (backend) => {
  let w: World;
  beforeAll(async () => {
    w = await simulate(backend);
  });
  afterAll(async () => {
    await w?.app.close();
  });

  /** Append an audit entry at `at`, inside the case's transaction. */
  const auditAt = async (trx: Trx, at: number, action: AuditAction, details: Record<string, unknown>) => {
    w.clock.set(at);
    await w.app.audit.append(trx, { actor: 'supervisor', action, details });
  };

  it('a healthy Phase 3 run passes every check, with its figures', async () => {
    const result = await w.verify();
    expect(failedChecks(result)).toEqual([]);
    expect(result.passed).toBe(true);
    expect(result).toMatchObject({ from: iso(ANCHOR - 72 * HOUR), until: iso(ANCHOR), hours: 72 });
    expect(result.checks.map((c) => c.name)).toEqual([
      'this installation',
      'uninterrupted',
      'export quality',
      'memory',
      'orphaned processes',
      'guard',
    ]);
    expect(result.largestGapSeconds).toBe(30);
    // A 72-hour window always holds three 02:00 UTC restarts, each a 75 s gap.
    expect(checkNamed(result, 'uninterrupted').figure).toMatch(
      /^86\d\d heartbeats, largest gap 30 s; 3 daily restart\(s\), longest 75 s$/,
    );
    expect(result.psi).not.toBeNull();
    expect(result.psi!).toBeLessThan(0.02);
    const firstTotal = result.bins.reduce((sum, b) => sum + b.first, 0);
    const lastTotal = result.bins.reduce((sum, b) => sum + b.last, 0);
    expect(firstTotal).toBe(24 * 12 * LEADS_PER_CYCLE);
    expect(lastTotal).toBe(24 * 12 * LEADS_PER_CYCLE);
    expect(result.bins.map((b) => b.label)).toEqual([
      '0–39',
      '40–49',
      '50–59',
      '60–69',
      '70–79',
      '80–89',
      '90–100',
    ]);
    expect(Math.abs(result.rssSlopeMbPerHour!)).toBeLessThan(0.5);
    expect(checkNamed(result, 'orphaned processes').figure).toBe('4 worker process(es), 0 overlapping');
    expect(checkNamed(result, 'guard').figure).toMatch(
      /^0 request\(s\), 0 guard\.allowed, 864 guard\.dry_run; (86\d\d)\/\1 heartbeats Phase 3$/,
    );
    for (const c of result.checks) expect(c.at).toBeUndefined();
  });

  it('a window that runs past the last heartbeat is not covered', async () => {
    const result = await verifyStability(
      { store: w.app.store, clock: w.clock, config: w.config },
      { hours: 72, until: END + HOUR },
    );
    expect(failedChecks(result)).toContain('uninterrupted');
    expect(checkNamed(result, 'uninterrupted').detail).toContain('no heartbeat before the window ended');
  });

  it('a 5-minute heartbeat gap fails "uninterrupted", naming when', async () => {
    // Mid-morning, well away from a daily restart.
    const gapFrom = nextDailyRestart(w.config.policy.dailyRestartUtc, ANCHOR - 48 * HOUR) + 8 * HOUR;
    const result = await w.verify(async (trx) => {
      await trx
        .deleteFrom('heartbeats')
        .where('at', '>', gapFrom)
        .where('at', '<', gapFrom + 5 * MINUTE)
        .execute();
    });
    expect(failedChecks(result)).toEqual(['uninterrupted']);
    const check = checkNamed(result, 'uninterrupted');
    // The last beat before the hole: on the 30 s grid at or before gapFrom.
    const lastBefore = Date.parse(check.at!);
    expect(gapFrom - lastBefore).toBeGreaterThanOrEqual(0);
    expect(gapFrom - lastBefore).toBeLessThan(30 * SECOND);
    expect(check.detail).toMatch(/^a heartbeat gap of 3\d\d s \(limit 60 s\), from /);
    expect(check.detail).toContain(`from ${check.at}`);
    expect(result.largestGapSeconds).toBeGreaterThanOrEqual(300);
  });

  it('a daily restart whose gap lasts over 5 minutes fails "uninterrupted"', async () => {
    const restart = nextDailyRestart(w.config.policy.dailyRestartUtc, ANCHOR - 48 * HOUR);
    const result = await w.verify(async (trx) => {
      await trx
        .deleteFrom('heartbeats')
        .where('at', '>', restart)
        .where('at', '<', restart + 6 * MINUTE)
        .execute();
    });
    expect(failedChecks(result)).toEqual(['uninterrupted']);
    expect(checkNamed(result, 'uninterrupted').detail).toMatch(
      /around a daily restart lasted \d+ s \(limit 300 s\)/,
    );
  });

  it('drifted scores in the last 24 hours fail "export quality" with PSI ≥ 0.1', async () => {
    const result = await w.verify(async (trx) => {
      // The last day's dry-run leads all score 40–49.
      await trx
        .updateTable('leads')
        .set({ score: sql<number>`40 + (id % 10)` })
        .where(
          'id',
          'in',
          trx
            .selectFrom('delivery_leads')
            .innerJoin('deliveries', 'deliveries.id', 'delivery_leads.delivery_id')
            .select('delivery_leads.lead_id')
            .where('deliveries.created_at', '>=', ANCHOR - 24 * HOUR),
        )
        .execute();
    });
    expect(failedChecks(result)).toEqual(['export quality']);
    expect(result.psi!).toBeGreaterThanOrEqual(0.1);
    const check = checkNamed(result, 'export quality');
    expect(check.at).toBe(iso(ANCHOR - 24 * HOUR));
    expect(check.detail).toContain('score distribution drifted');
    expect(check.detail).toMatch(/last 24 h: 0–39 0 \(0\.0%\), 40–49 864 \(100\.0%\)/);
    expect(result.bins.find((b) => b.label === '40–49')!.last).toBe(864);
  });

  it('too few leads dry-run fails "export quality", stating the minimum', async () => {
    const result = await w.verify(async (trx) => {
      await trx
        .deleteFrom('delivery_leads')
        .where(
          'delivery_id',
          'in',
          trx
            .selectFrom('deliveries')
            .select('id')
            .where('created_at', '<', ANCHOR - 50 * HOUR),
        )
        .execute();
    });
    expect(failedChecks(result)).toEqual(['export quality']);
    expect(result.psi).toBeNull();
    expect(checkNamed(result, 'export quality').detail).toMatch(
      /^too few leads dry-run to compare score distributions \(first 24 h: \d+, last 24 h: 864; minimum 500 each\)$/,
    );
  });

  it('a steadily growing RSS fails "memory", even with the daily restarts resetting it', async () => {
    const result = await w.verify(async (trx) => {
      // +4 MB per hour of each worker's life.
      await trx
        .updateTable('heartbeats')
        .set({ rss_bytes: sql<number>`rss_bytes + ((at - worker_started_at) / 900000) * ${MB}` })
        .execute();
    });
    expect(failedChecks(result)).toEqual(['memory']);
    expect(result.rssSlopeMbPerHour!).toBeGreaterThan(3.5);
    expect(result.rssSlopeMbPerHour!).toBeLessThan(4.5);
    // The slope depends on where the workers' lives fall in the 72 hours (the daily restart is at
    // 02:00 UTC, the window ends now): the detail says the slope found, within the range above.
    const slope = result.rssSlopeMbPerHour!.toFixed(2).replace('.', '\\.');
    expect(checkNamed(result, 'memory').detail).toMatch(
      new RegExp(`^RSS grows ${slope} MB/h within a worker's life \\(limit 2 MB/h\\); peak \\d+ MB at `),
    );
  });

  it('a recorded crash or memory restart fails "memory", naming each with its time', async () => {
    const crashAt = ANCHOR - 40 * HOUR;
    const memoryAt = ANCHOR - 20 * HOUR;
    const result = await w.verify(async (trx) => {
      await auditAt(trx, crashAt, 'worker.crashed', { pid: 5002, code: 1, signal: null, restartInMs: 1000 });
      await auditAt(trx, memoryAt, 'worker.memory_restart', {
        pid: 5003,
        rssBytes: 460 * MB,
        limitBytes: 456 * MB,
      });
    });
    expect(failedChecks(result)).toEqual(['memory']);
    const check = checkNamed(result, 'memory');
    expect(check.at).toBe(iso(crashAt));
    expect(check.figure).toMatch(/1 memory restart\(s\), 1 crash\(es\)$/);
    expect(check.detail).toBe(
      `worker.crashed at ${iso(crashAt)} (pid 5002, code 1); worker.memory_restart at ${iso(memoryAt)} (pid 5003, rssBytes ${460 * MB})`,
    );
  });

  it('an outbound request fails "guard"', async () => {
    const at = ANCHOR - 10 * HOUR;
    const result = await w.verify(async (trx) => {
      await recordRequest(trx, {
        at,
        endpoint: 'leads',
        deliveryId: null,
        attempt: 1,
        outcome: 'accepted',
        status: 200,
        class: 'success',
        ms: 40,
      });
    });
    expect(failedChecks(result)).toEqual(['guard']);
    expect(checkNamed(result, 'guard')).toMatchObject({
      at: iso(at),
      detail: `1 outbound request(s) recorded, the first to leads at ${iso(at)}`,
    });
  });

  it('a guard.allowed entry, or a Phase 4 heartbeat, fails "guard"', async () => {
    const allowedAt = ANCHOR - 20 * HOUR;
    const result = await w.verify(async (trx) => {
      w.clock.set(allowedAt);
      await w.app.audit.append(trx, {
        actor: 'guard',
        action: 'guard.allowed',
        subject: 'batch:x',
        details: {},
      });
      await trx
        .updateTable('heartbeats')
        .set({ phase: 4 })
        .where('at', '>=', ANCHOR - 2 * HOUR)
        .execute();
    });
    expect(failedChecks(result)).toEqual(['guard']);
    const check = checkNamed(result, 'guard');
    expect(check.at).toBe(iso(allowedAt));
    expect(check.detail).toMatch(
      new RegExp(
        `^the guard allowed 1 live request\\(s\\), the first at ${iso(allowedAt)}; 2\\d\\d heartbeat\\(s\\) from a Phase 4 worker`,
      ),
    );
  });

  it('a second worker heartbeating alongside fails "orphaned processes"', async () => {
    // Hours away from a daily restart: the first worker's beats surround the second's whatever the
    // time of day the suite runs (12 h before a run at 14:00 UTC fell on the 02:00 restart).
    const from = nextDailyRestart(w.config.policy.dailyRestartUtc, ANCHOR - 48 * HOUR) + 4 * HOUR;
    const result = await w.verify(async (trx) => {
      // A second supervisor's worker: its start is in the chain, as a real one's is.
      w.clock.set(from);
      await w.app.audit.append(trx, {
        actor: 'supervisor',
        action: 'worker.started',
        details: { pid: 6666 },
      });
      for (let at = from; at < from + HOUR; at += 30 * SECOND) {
        await recordHeartbeat(trx, {
          at: at + 5 * SECOND,
          runner: 'sim-host:6666',
          pid: 6666,
          worker_started_at: from,
          phase: 3,
          rss_bytes: 120 * MB,
          heap_used_bytes: 60 * MB,
          state: 'idle',
          cycle_id: null,
        });
      }
    });
    expect(failedChecks(result)).toEqual(['orphaned processes']);
    const check = checkNamed(result, 'orphaned processes');
    expect(check.at).toBe(iso(from + 5 * SECOND));
    expect(check.detail).toMatch(/^sim-host:500\d@\d+ and sim-host:6666@\d+ both heartbeating from /);
  });

  it('heartbeats of a worker whose start is not in the chain fail "this installation", naming it', async () => {
    const from = ANCHOR - 30 * HOUR;
    const result = await w.verify(async (trx) => {
      await trx
        .updateTable('heartbeats')
        .set({ worker_started_at: from - 7 * HOUR, runner: 'elsewhere:7777', pid: 7777 })
        .where('at', '>=', from)
        .where('at', '<', from + HOUR)
        .execute();
    });
    expect(failedChecks(result)).toContain('this installation');
    expect(checkNamed(result, 'this installation').detail).toContain(
      'heartbeats from worker pid 7777 (started ',
    );
    expect(checkNamed(result, 'this installation').detail).toContain('whose start is not in the audit chain');
  });

  it('history written in afterwards, dated before the installation’s initialisation, fails "this installation"', async () => {
    // Another installation, initialised now; then 72 h of Phase 3 written into it, dated in the past.
    const dir = tempDir();
    const env = testEnv(dir, { VALHALLA_DATABASE_URL: backend.databaseUrl(), VALHALLA_LOG_LEVEL: 'warn' });
    const config = loadConfig({ env, cwd: dir });
    const clock = new ManualClock(ANCHOR);
    const { app } = await initialize(config, { clock });
    try {
      await seedPhase3Run(app, clock, { start: START, end: END });
      const result = await verifyStability({ store: app.store, clock, config }, { hours: 72, until: ANCHOR });
      expect(result.passed).toBe(false);
      expect(failedChecks(result)).toEqual(['this installation']);
      const own = checkNamed(result, 'this installation');
      expect(own.detail).toMatch(
        new RegExp(
          `^\\d+ heartbeat\\(s\\) dated before this installation's initialisation \\(${iso(ANCHOR)}\\)`,
        ),
      );
      expect(own.detail).toContain(
        "audit entries in the window dated before this installation's initialisation",
      );
    } finally {
      await app.close();
    }
  });

  it('`valhalla stability verify`: exit 0 and audited when it passes, 2 below 72 hours, 3 naming what failed', async () => {
    const latestVerified = async () => {
      const row = await w.app.store.db
        .selectFrom('audit_log')
        .select(['actor', 'details'])
        .where('action', '=', 'stability.verified')
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row && { actor: row.actor, details: JSON.parse(row.details) as StabilityResult };
    };

    // A trial: the verdict, and nothing recorded.
    const trial = await runInProcess(['stability', 'verify'], { env: w.env, cwd: w.dir });
    expect(trial.code, trial.stderr).toBe(0);
    expect(trial.stdout).toContain('not recorded (a trial): add --record to record it as gate 9 evidence');
    expect(await latestVerified()).toBeUndefined();
    const help = await runInProcess(['stability', 'verify', '--help'], { env: w.env, cwd: w.dir });
    expect(help.stdout).toContain('72 h in the shipped policy');

    const ok = await runInProcess(['stability', 'verify', '--record', '--json'], { env: w.env, cwd: w.dir });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const { recorded: wasRecorded, ...printed } = JSON.parse(ok.stdout) as StabilityResult & {
      recorded: boolean;
    };
    expect(wasRecorded).toBe(true);
    expect(printed.passed).toBe(true);
    expect(printed.hours).toBe(72);
    expect(Date.now() - Date.parse(printed.until)).toBeLessThan(5 * MINUTE);
    const recorded = await latestVerified();
    expect(recorded?.actor).toBe('test-operator');
    expect(recorded?.details).toEqual(printed);

    const table = await runInProcess(['stability', 'verify', '--record'], { env: w.env, cwd: w.dir });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^Phase 3 stability over 72 h \(.+ → .+\): PASSED$/m);
    expect(table.stdout).toMatch(/^check\s+result\s+figure\s+detail$/m);
    for (const name of [
      'this installation',
      'uninterrupted',
      'export quality',
      'memory',
      'orphaned processes',
      'guard',
    ]) {
      expect(table.stdout).toMatch(new RegExp(`^${name}\\s+ok\\s+`, 'm'));
    }

    const afterTable = await latestVerified();
    expect(afterTable?.details.passed).toBe(true);
    expect(afterTable?.details.until).not.toBe(printed.until);

    const short = await runInProcess(['stability', 'verify', '--hours', '24'], { env: w.env, cwd: w.dir });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('--hours 24 refused: the policy requires 72 hours');
    expect(await latestVerified()).toEqual(afterTable);

    // A crash an hour ago, for real this time.
    const crashAt = Date.now() - HOUR;
    w.clock.set(crashAt);
    await w.app.audit.record({
      actor: 'supervisor',
      action: 'worker.crashed',
      details: { pid: 5004, code: null, signal: 'SIGKILL', restartInMs: 1000 },
    });
    const failed = await runInProcess(['stability', 'verify', '--record', '--json'], {
      env: w.env,
      cwd: w.dir,
    });
    expect(failed.code).toBe(3);
    expect(failed.stderr).toContain('Phase 3 stability not proven: failed memory');
    const { recorded: _recorded, ...failedResult } = JSON.parse(failed.stdout) as StabilityResult & {
      recorded: boolean;
    };
    expect(failedResult.passed).toBe(false);
    expect(checkNamed(failedResult, 'memory')).toMatchObject({ passed: false, at: iso(crashAt) });
    expect((await latestVerified())?.details).toEqual(failedResult);

    const failedTable = await runInProcess(['stability', 'verify'], { env: w.env, cwd: w.dir });
    expect(failedTable.code).toBe(3);
    expect(failedTable.stdout).toMatch(
      /^memory\s+FAILED\s+.+at .+: worker\.crashed at .+ \(pid 5004, signal SIGKILL\)/m,
    );
  });
});
