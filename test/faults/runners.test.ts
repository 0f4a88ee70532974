/**
 * Several runners on one PostgreSQL database, as real processes: each runner is
 * `valhalla run` (test/harness/live-run.ts: the real supervisor and worker, gates given) in Phase 4,
 * sending to one sandbox partner over HTTPS.
 *
 * - Three runners; the leader (supervisor and worker) is killed with SIGKILL while a batch of its
 *   is in flight: a standby takes over within two heartbeats, resends what was caught mid-request
 *   under its own key, and carries on. The partner's own record: no lead twice, no 1,000 ms window
 *   with more than 5 request starts, the daily cap (120 here) held across the runners; the audit
 *   chain verifies.
 * - One runner whose database connection is cut (every connection destroyed, new ones refused: the
 *   database gone, as the runner sees it) while a batch is in flight: nothing more is sent while it
 *   is gone; when it is back, the runner recovers: the caught batch is resent under its own key
 *   (the partner replays it), nothing is lost or sent twice.
 *
 * PostgreSQL only (several runners need a shared server); CI=true requires it, elsewhere the file
 * is skipped with a printed reason. Policy files with a 3 s heartbeat keep each run to seconds; every
 * child is killed in afterEach, and every wait is bounded.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { openStore } from '../../src/store/index.js';
import { dropTestSchemas, PG_URL, postgresAvailable, postgresBackend } from '../support/backends.js';
import { harnessScript, phase4Env, policyFileWith, recentLeadsCsv, runInProcess } from '../support/cli.js';
import { expectLedgerConsistent, readLedgerFacts } from '../support/ledger-check.js';
import { type Spawned, spawnNode } from '../support/processes.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { tempDir } from '../support/tmp.js';
import { until } from '../support/world.js';

const HARNESS = harnessScript('live-run');
const HEARTBEAT_S = 3;
const SUPERVISOR_GRACE_S = 20;
const DAILY_CAP = 120;

const withPostgres = await postgresAvailable();
const children = new Set<ChildProcess>();
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  for (const close of closers.splice(0).reverse()) await close();
});
afterAll(dropTestSchemas);

interface Runner extends Spawned {
  name: string;
}

function startRunner(name: string, cwd: string, env: Record<string, string>): Runner {
  const runner = spawnNode(HARNESS, [], {
    cwd,
    env: { ...env, VALHALLA_RUNNER_NAME: name },
    children,
    guardMs: 400_000,
  });
  return { name, ...runner };
}

/** `promise`, or a timeout naming `what`. */
async function within<T>(promise: Promise<T>, what: string, timeoutMs = 180_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A test's view of the schema, on its own connection (never through a proxy). */
async function inspect(schema: string) {
  const client = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
  await client.connect();
  closers.push(() => client.end());
  const rows = async <T>(text: string): Promise<T[]> => (await client.query(text)).rows as T[];
  return {
    rows,
    lease: async () =>
      (
        await rows<{ holder: string; pid: number; epoch: string }>(
          'select holder, pid, epoch from runner_lease',
        )
      )[0],
    sending: async () =>
      Number(
        (await rows<{ n: string }>("select count(*) as n from deliveries where state = 'sending'"))[0]!.n,
      ),
    unfinished: async () =>
      Number(
        (
          await rows<{ n: string }>(
            "select count(*) as n from deliveries where kind = 'live' and state in ('queued', 'sending', 'retry_wait')",
          )
        )[0]!.n,
      ),
    exported: async () =>
      Number((await rows<{ n: string }>("select count(*) as n from leads where state = 'exported'"))[0]!.n),
    audit: async (action: string) =>
      (
        await rows<{ subject: string; details: string }>(
          `select subject, details from audit_log where action = '${action}' order by seq`,
        )
      ).map((r) => ({ subject: r.subject, details: JSON.parse(r.details) as Record<string, unknown> })),
  };
}

/** Installs Phase 4 on a fresh schema with `leads` leads ingested; returns the environment for runners. */
async function install(partner: SandboxPartner, databaseUrl: string, leads: number) {
  const cwd = tempDir();
  const env = (dataDir: string, url = databaseUrl) =>
    phase4Env(dataDir, partner, {
      VALHALLA_DATABASE_URL: url,
      // A 3 s heartbeat (the lease), a 2 s request timeout, a daily cap of 120 leads. The grace is
      // the supervisor's, not the lease's: 20 s, so that a worker starved of CPU on a loaded machine
      // is not taken for a frozen one (a missed heartbeat rolls Phase 4 back and ends the test's run).
      VALHALLA_POLICY_FILE: policyFileWith(cwd, {
        heartbeatIntervalSeconds: HEARTBEAT_S,
        heartbeatGraceSeconds: SUPERVISOR_GRACE_S,
        apiTimeoutSeconds: 2,
        dailyLeads: DAILY_CAP,
      }),
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_MAX_LEADS_PER_CYCLE: '20',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_SERVER_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'info',
    });
  const base = env(join(cwd, 'data'));
  expect((await runInProcess(['init'], { cwd, env: base })).code).toBe(0);
  recentLeadsCsv(join(cwd, 'leads.csv'), leads, {
    name: 'Ada Lovelace',
    email: 'ada',
    top: 95,
    spread: 50,
    value: 40,
  });
  const ingest = await runInProcess(['ingest', 'leads.csv'], { cwd, env: base });
  expect(ingest.code, ingest.stderr).toBe(0);
  return { cwd, env, base };
}

interface ArmedPartner extends SandboxPartner {
  /**
   * Runs `action` once, at the moment a leads request has reached the partner (after at least one
   * batch was accepted) and before the partner answers it: the answer waits for the action. So a
   * cut or kill lands with the batch certainly seen by the partner, on a machine of any speed.
   */
  midBatch(action: () => Promise<void> | void): Promise<void>;
}

async function sandbox(latencyMs: number): Promise<ArmedPartner> {
  let armed: { action: () => Promise<void> | void; done: (error?: unknown) => void } | null = null;
  // The latency fault's wait is the hook: it runs after the request (and its body) arrived.
  const sleep = async (ms: number) => {
    const batches = partner.stats().batches;
    const leadsRequestWaiting = batches.received > batches.accepted + batches.refused + batches.failedByFault;
    if (armed !== null && batches.accepted >= 1 && leadsRequestWaiting) {
      const { action, done } = armed;
      armed = null;
      try {
        await action();
        done();
      } catch (error) {
        done(error);
      }
    }
    await new Promise((r) => setTimeout(r, ms));
  };
  const partner: SandboxPartner = await startSandboxPartner({
    certDir: join(tempDir(), 'cert'),
    faults: { latencyMs },
    sleep,
  });
  closers.push(() => partner.close());
  return Object.assign(partner, {
    midBatch: (action: () => Promise<void> | void) =>
      new Promise<void>((resolve, reject) => {
        armed = { action, done: (error) => (error === undefined ? resolve() : reject(error)) };
      }),
  });
}

async function ledger(databaseUrl: string, partner: SandboxPartner, leadCount: number) {
  const url = new URL(databaseUrl);
  const schema = url.searchParams.get('schema')!;
  url.search = '';
  const store = await openStore({ kind: 'postgres', url: url.toString(), schema });
  try {
    return expectLedgerConsistent(await readLedgerFacts(store.db), partner, {
      finalStates: ['exported', 'pending'],
      leadCount,
    });
  } finally {
    await store.close();
  }
}

/**
 * The end of a run that lost a batch mid-request: every lead exported once (the partner's ledger),
 * the caught batch resent under its own key and replayed by the partner, the audit chain intact.
 */
async function expectAllSentOnceWithAReplay(
  databaseUrl: string,
  partner: SandboxPartner,
  leads: number,
  cwd: string,
  env: Record<string, string>,
): Promise<void> {
  const summary = await ledger(databaseUrl, partner, leads);
  expect(summary.exported).toBe(leads);
  expect(summary.resends).toBeGreaterThanOrEqual(1);
  expect(partner.stats().batches.replayed).toBeGreaterThanOrEqual(1);
  const verify = await runInProcess(['audit', 'verify'], { cwd, env });
  expect(verify.code, verify.stderr).toBe(0);
}

describe.skipIf(!withPostgres)('several runners on one PostgreSQL database', () => {
  it('three runners, the leader killed mid-cycle: a standby takes over within two heartbeats; no lead twice, no 1 s window over 5 starts, the daily cap held, the chain verifies', async () => {
    const partner = await sandbox(500);
    const databaseUrl = postgresBackend.databaseUrl();
    const schema = new URL(databaseUrl).searchParams.get('schema')!;
    const { cwd, env, base } = await install(partner, databaseUrl, 300);
    const db = await inspect(schema);

    const runners = ['r1', 'r2', 'r3'].map((name) => startRunner(name, cwd, env(join(cwd, name))));
    const first = await until(async () => (await db.lease())?.holder, {
      what: 'a leader',
      timeoutMs: 180_000,
    });
    const leader = runners.find((r) => first.startsWith(`${r.name}#`))!;
    // Mid-cycle: the leader has sent a batch, and its next one is in flight (the partner answers in 500 ms).
    await until(async () => partner.stats().batches.accepted >= 1 && (await db.sending()) > 0, {
      what: 'a batch in flight',
      timeoutMs: 180_000,
    }).catch(async (error) => {
      throw new Error(
        `${(error as Error).message}; exported ${await db.exported()}, partner ${JSON.stringify(partner.stats().batches)}, rollbacks ${JSON.stringify(await db.audit('mode.rollback'))}\n${runners.map((r) => `--- ${r.name}\n${r.out()}`).join('\n')}`,
      );
    });
    const { pid: workerPid } = (await db.lease())!;
    leader.child.kill('SIGKILL');
    process.kill(workerPid, 'SIGKILL');
    await leader.exited;

    // The others carry on until the day's cap: 120 leads exported, nothing left on its way.
    await until(async () => (await db.exported()) >= DAILY_CAP && (await db.unfinished()) === 0, {
      what: `${DAILY_CAP} leads exported`,
      timeoutMs: 180_000,
    }).catch((error) => {
      throw new Error(
        `${(error as Error).message}\n${runners.map((r) => `--- ${r.name}\n${r.out()}`).join('\n')}`,
      );
    });
    // A few more cycles at the cap: nothing more goes out.
    const acceptedAtCap = partner.stats().leads.accepted;
    await new Promise((r) => setTimeout(r, 2_500));
    expect(partner.stats().leads.accepted).toBe(acceptedAtCap);
    for (const r of runners) if (r !== leader) r.child.kill('SIGTERM');
    for (const r of runners) if (r !== leader) expect((await r.exited).code).toBe(0);

    // The takeover: another runner, within two heartbeats of the dead leader's last renewal (the
    // database's own times), and the batch it caught mid-request resent under its own key.
    const leads = await db.audit('runner.lead');
    const takeover = leads.find((e) => (e.details.previous as { holder?: string } | null)?.holder === first);
    expect(takeover, JSON.stringify(leads)).toBeDefined();
    expect(takeover!.subject).not.toBe(`runner:${first}`);
    expect(['dead', 'expired']).toContain(takeover!.details.how);
    const previous = takeover!.details.previous as { renewedAt: number };
    expect((takeover!.details.at as number) - previous.renewedAt).toBeLessThanOrEqual(2 * HEARTBEAT_S * 1000);

    // The partner's record: each lead once, the rate held, exactly the day's cap and no more.
    const summary = await ledger(databaseUrl, partner, 300);
    expect(summary.busiestWindow).toBeLessThanOrEqual(5);
    expect(partner.stats().leads.accepted).toBe(DAILY_CAP);
    expect(summary.exported).toBe(DAILY_CAP);
    const usage = await db.rows<{ leads: string }>('select leads from daily_usage');
    expect(usage.reduce((sum, u) => sum + Number(u.leads), 0)).toBe(DAILY_CAP);
    const verify = await runInProcess(['audit', 'verify'], { cwd, env: base });
    expect(verify.code, verify.stderr).toBe(0);
  }, 400_000);

  it('the database cut mid-batch: nothing more is sent while it is gone; back, the runner recovers and resends the caught batch under its own key, nothing lost or sent twice', async () => {
    const partner = await sandbox(600);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
    closers.push(() => proxy.close());
    const direct = postgresBackend.databaseUrl();
    const schema = new URL(direct).searchParams.get('schema')!;
    const viaProxy = new URL(direct);
    viaProxy.port = String(proxy.port);
    const { cwd, env, base } = await install(partner, direct, 60);
    const db = await inspect(schema);

    const cut = partner.midBatch(() => proxy.cut());
    const runner = startRunner('solo', cwd, env(join(cwd, 'solo'), viaProxy.toString()));
    await within(cut, 'a batch in flight');
    // The request in flight may still arrive; after it, nothing: no request starts without the database.
    await new Promise((r) => setTimeout(r, 1_000));
    const receivedWhileCut = partner.stats().requests.total;
    await new Promise((r) => setTimeout(r, 2 * HEARTBEAT_S * 1000));
    expect(partner.stats().requests.total).toBe(receivedWhileCut);
    expect(await db.sending()).toBe(1);

    proxy.restore();
    await until(async () => (await db.exported()) === 60 && (await db.unfinished()) === 0, {
      what: 'all 60 exported',
      timeoutMs: 180_000,
    }).catch((error) => {
      throw new Error(`${(error as Error).message}\n${runner.out()}`);
    });
    runner.child.kill('SIGTERM');
    expect((await runner.exited).code).toBe(0);
    expect(runner.out()).toMatch(/outbound stopped/);

    await expectAllSentOnceWithAReplay(direct, partner, 60, cwd, base);
  }, 400_000);

  it('the leader cut off from the database, alive: a standby takes over once its lease expires, waits out its last request, then resends what it caught; the cut-off leader sends nothing and stands by when back', async () => {
    const partner = await sandbox(600);
    const direct = postgresBackend.databaseUrl();
    const schema = new URL(direct).searchParams.get('schema')!;
    const { cwd, env, base } = await install(partner, direct, 60);
    const db = await inspect(schema);
    const proxies = await Promise.all(
      ['r1', 'r2'].map(async () => {
        const proxy = await startTcpProxy({ host: '127.0.0.1', port: Number(new URL(PG_URL).port || 5432) });
        closers.push(() => proxy.close());
        return proxy;
      }),
    );
    const urlVia = (port: number) => {
      const url = new URL(direct);
      url.port = String(port);
      return url.toString();
    };
    const runners = ['r1', 'r2'].map((name, i) =>
      startRunner(name, cwd, env(join(cwd, name), urlVia(proxies[i]!.port))),
    );
    const first = await until(async () => (await db.lease())?.holder, {
      what: 'a leader',
      timeoutMs: 180_000,
    });
    const index = runners.findIndex((r) => first.startsWith(`${r.name}#`));
    let cutAt = 0;
    const cut = partner.midBatch(() => {
      cutAt = Date.now();
      proxies[index]!.cut();
    });
    await within(cut, 'a batch in flight');

    const takeover = await until(
      async () =>
        (await db.audit('runner.lead')).find(
          (e) => (e.details.previous as { holder?: string } | null)?.holder === first,
        ),
      { what: 'the takeover', timeoutMs: 180_000 },
    );
    expect(takeover.details.how).toBe('expired');
    const at = takeover.details.at as number;
    const previous = takeover.details.previous as { renewedAt: number; expiresAt: number };
    expect(at).toBeGreaterThanOrEqual(previous.expiresAt);
    expect(at - previous.renewedAt).toBeLessThanOrEqual(2 * HEARTBEAT_S * 1000);
    // The request timeout (2 s) plus 5 s: the cut-off leader's last request has certainly ended.
    const quietUntil = takeover.details.quietUntil as number;
    expect(quietUntil).toBe(at + 7_000);

    await until(async () => (await db.exported()) === 60 && (await db.unfinished()) === 0, {
      what: 'all 60 exported',
      timeoutMs: 180_000,
    }).catch((error) => {
      throw new Error(
        `${(error as Error).message}\n${runners.map((r) => `--- ${r.name}\n${r.out()}`).join('\n')}`,
      );
    });
    // Between the cut (plus the request then in flight) and the end of the quiet period, nothing
    // reached the partner: the cut-off leader could start nothing, the new one had not begun.
    const quiet = partner.stats().requestStarts.filter((t) => t > cutAt + 1_000 && t < quietUntil - 100);
    expect(quiet).toEqual([]);

    proxies[index]!.restore();
    const deposed = runners[index]!;
    await until(async () => /standing by: r\d#/.test(deposed.out().split('outbound stopped').at(-1) ?? ''), {
      what: 'the old leader standing by',
      timeoutMs: 180_000,
    });
    for (const r of runners) r.child.kill('SIGTERM');
    for (const r of runners) expect((await r.exited).code).toBe(0);

    await expectAllSentOnceWithAReplay(direct, partner, 60, cwd, base);
  }, 400_000);
});
