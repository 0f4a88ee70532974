/**
 * What an operator sees of the running service, through the built binary against a real
 * `valhalla run`: a mode change reports whether the running worker acknowledged it and how long that
 * took (or that none is running, or that one did not answer), and the rollback's exit code says so.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { createApiToken } from '../../src/server/index.js';
import { apiClient } from '../support/api.js';
import { BIN, harnessScript, phase4Env, phase4Settings, runBinary, testEnv } from '../support/cli.js';
import { seedPhase3Run } from '../support/phase3-run.js';
import { type Spawned, spawnNode } from '../support/processes.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, until } from '../support/world.js';

const HARNESS = harnessScript('live-run');
const children = new Set<ChildProcess>();
const partners: SandboxPartner[] = [];
afterEach(async () => {
  await Promise.all(partners.splice(0).map((p) => p.close()));
  for (const child of children) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  children.clear();
});
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

async function sandbox(dir: string): Promise<SandboxPartner> {
  const partner = await startSandboxPartner({
    certDir: join(dir, 'cert'),
    clientId: 'operator-test',
    clientSecret: 'operator-test-secret-0123',
  });
  partners.push(partner);
  return partner;
}

/** The settings of a Phase 4 installation sending to `partner`, as lines of a `.env`. */
function phase4Dotenv(partner: SandboxPartner, extra: Record<string, string> = {}): string {
  const settings = phase4Settings(partner, extra);
  return `${Object.entries(settings)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
}

interface Installation {
  cwd: string;
  env: Record<string, string>;
  dbFile: string;
  cli(args: string[]): ReturnType<typeof runBinary>;
}

async function installation(extra: Record<string, string> = {}): Promise<Installation> {
  const cwd = tempDir();
  const env = testEnv(join(cwd, 'data'), {
    VALHALLA_CYCLE_INTERVAL_S: '1',
    // No synthetic leads to load at the start: the worker beats at once.
    VALHALLA_REAL_DATA_INGEST: '1',
    VALHALLA_METRICS_PORT: 'off',
    VALHALLA_SERVER_PORT: 'off',
    ...extra,
  });
  const cli = (args: string[]) => runBinary(args, { cwd, env, timeoutMs: 120_000 });
  const init = await cli(['init']);
  expect(init.code, init.stderr).toBe(0);
  return { cwd, env, dbFile: join(cwd, 'data', 'valhalla.db'), cli };
}

/** `valhalla run` of this installation, once its worker has written a heartbeat: the worker's pid. */
async function startService(inst: Installation): Promise<{ run: Spawned; workerPid: number }> {
  const run = spawnNode(BIN, ['run'], { cwd: inst.cwd, env: inst.env, children, guardMs: 180_000 });
  const beat = await until(
    () =>
      query<{ pid: number }>(
        inst.dbFile,
        "select pid from heartbeats where state != 'stopped' order by id desc limit 1",
      )[0],
    { what: `the worker's first heartbeat (${run.out()})` },
  );
  return { run, workerPid: beat.pid };
}

interface AckJson {
  change: { kind: string; from?: string; to?: string };
  acknowledgement: {
    kind: 'acknowledged' | 'no_worker' | 'not_acknowledged';
    workers: { pid: number; latencyMs: number }[];
    silent?: { pid: number }[];
  };
}

describe('mode changes are acknowledged by the running service', () => {
  it('rollback from the right folder: the worker acknowledges, with its latency, exit 0; from the wrong one: exit 1, nothing created', async () => {
    const inst = await installation();
    const { run, workerPid } = await startService(inst);

    // An operator in another folder reaches nothing, and says so; the service is untouched.
    const elsewhere = tempDir();
    const wrong = await runBinary(['rollback', '--reason', 'error rate on the dashboard'], {
      cwd: elsewhere,
      env: { VALHALLA_PSEUDONYM_SECRET: inst.env.VALHALLA_PSEUDONYM_SECRET! },
    });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`no Valhalla installation at ${join(elsewhere, 'data', 'valhalla.db')}`);
    expect(wrong.stdout).not.toContain('rolled_back');
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(query(inst.dbFile, "select seq from audit_log where action like 'mode.%'")).toEqual([]);

    const paused = await inst.cli(['pause', '--reason', 'partner maintenance', '--wait', '60']);
    expect(paused.code, paused.stderr).toBe(0);
    expect(paused.stdout).toContain('mode live → paused');
    expect(paused.stdout).toMatch(
      new RegExp(
        `acknowledged by the running service: worker pid ${workerPid} \\(.+\\) took it \\d+ ms after the change`,
      ),
    );
    const resumed = await inst.cli(['resume', '--wait', '60']);
    expect(resumed.stdout).toContain(`worker pid ${workerPid}`);

    const rolled = await inst.cli([
      'rollback',
      '--reason',
      'error rate on the dashboard',
      '--wait',
      '60',
      '--json',
    ]);
    expect(rolled.code, rolled.stderr).toBe(0);
    const json = JSON.parse(rolled.stdout) as AckJson;
    expect(json.change).toMatchObject({ kind: 'change', from: 'live', to: 'rolled_back' });
    expect(json.acknowledgement.kind).toBe('acknowledged');
    expect(json.acknowledgement.workers.map((w) => w.pid)).toEqual([workerPid]);
    expect(json.acknowledgement.workers[0]!.latencyMs).toBeGreaterThanOrEqual(0);
    // The acknowledgement is the worker's own record, for the change the command made.
    const [ack] = query<{ pid: number; mode: string; change_seq: number }>(
      inst.dbFile,
      'select pid, mode, change_seq from mode_acks order by acked_at desc limit 1',
    );
    const [entry] = query<{ seq: number }>(
      inst.dbFile,
      "select seq from audit_log where action = 'mode.rollback'",
    );
    expect(ack).toEqual({ pid: workerPid, mode: 'rolled_back', change_seq: entry!.seq });

    // The service stops cleanly: the same command now says no worker is running, exit 4.
    run.child.kill('SIGTERM');
    expect((await run.exited).code).toBe(0);
    const again = await inst.cli(['rollback', '--reason', 'still rolled back?']);
    expect(again.code).toBe(4);
    expect(again.stdout).toContain('mode unchanged (rolled_back)');
    expect(again.stdout).toContain('NOT acknowledged: no worker of this installation is running');
    expect(again.stderr).toContain(
      'rollback recorded, not confirmed: no worker of this installation is running',
    );
  });

  it('with no service running: recorded, said plainly, never "outbound stops within a second"; exit 4', async () => {
    const inst = await installation();
    const rolled = await inst.cli(['rollback', '--reason', 'drill without a service']);
    expect(rolled.code).toBe(4);
    expect(rolled.stdout).toContain('mode live → rolled_back');
    expect(rolled.stdout).toContain('NOT acknowledged: no worker of this installation is running');
    expect(rolled.stdout).not.toContain('within a second');
    expect(rolled.stdout).not.toContain('outbound stopped');
    expect(query(inst.dbFile, "select seq from audit_log where action = 'mode.rollback'")).toHaveLength(1);
  });

  it('a worker that cannot answer (stopped with SIGSTOP): not confirmed within --wait, exit 1, naming it', async () => {
    // One cycle, then an hour's wait: frozen between cycles, the worker holds no database lock (the
    // supervisor's own heartbeat limit is 45 s, far beyond this test's freeze).
    const inst = await installation({ VALHALLA_CYCLE_INTERVAL_S: '3600' });
    const { workerPid } = await startService(inst);
    await until(
      () =>
        query<{ state: string }>(inst.dbFile, 'select state from heartbeats order by id desc limit 1')[0]
          ?.state === 'idle' || query(inst.dbFile, 'select id from cycles').length > 0,
      { what: 'the first cycle' },
    );
    process.kill(workerPid, 'SIGSTOP');
    try {
      const rolled = await inst.cli(['rollback', '--reason', 'frozen worker', '--wait', '1']);
      expect(rolled.code).toBe(1);
      expect(rolled.stdout).toContain('mode live → rolled_back');
      expect(rolled.stdout).toMatch(
        new RegExp(`NOT acknowledged within \\d+\\.\\d s by worker pid ${workerPid}`),
      );
      expect(rolled.stderr).toContain('NOT confirmed by the running worker');
    } finally {
      process.kill(workerPid, 'SIGCONT');
    }
    // Once it runs again it takes the change, and says so.
    await until(() => query(inst.dbFile, 'select pid from mode_acks where pid = ?', workerPid).length > 0, {
      what: 'the acknowledgement after SIGCONT',
    });
  });
});

describe('status tells the running service’s truth', () => {
  it('.env edited to Phase 3 while Phase 4 runs: status, status --json and /api/status say Phase 4, and the local difference on a line of its own', async () => {
    const cwd = tempDir();
    const partner = await sandbox(cwd);
    const viewer = createApiToken('victor', 'viewer');
    const env = testEnv(join(cwd, 'data'), {
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_API_TOKENS: viewer.entry,
    });
    const dotenv = join(cwd, '.env');
    writeFileSync(dotenv, phase4Dotenv(partner, { VALHALLA_MAX_LEADS_PER_CYCLE: '2' }));
    const cli = (args: string[]) => runBinary(args, { cwd, env });
    expect((await cli(['init'])).code).toBe(0);
    // The real supervisor and worker in Phase 4 (the harness gives the gate clearance).
    const run = spawnNode(HARNESS, [], { cwd, env, children, guardMs: 180_000 });
    const baseUrl = await until(() => /dashboard: (http:\/\/[^\s/]+)\//.exec(run.out())?.[1], {
      what: `the dashboard URL (${run.out()})`,
    });
    const dbFile = join(cwd, 'data', 'valhalla.db');
    const workerPid = (
      await until(
        () =>
          query<{ pid: number }>(
            dbFile,
            'select pid from heartbeats where phase = 4 order by id desc limit 1',
          )[0],
        { what: "the Phase 4 worker's heartbeat" },
      )
    ).pid;

    // The operator edits .env back to Phase 3 (and another cap) without restarting the service.
    writeFileSync(dotenv, 'VALHALLA_PHASE=3\nVALHALLA_MAX_LEADS_PER_CYCLE=7\n');
    const status = await cli(['status']);
    expect(status.code, status.stderr).toBe(0);
    const lines = status.stdout.split('\n');
    expect(lines[0]).toMatch(
      new RegExp(
        `^Phase 4 \\(LIVE\\), mode live, limits 2 leads/cycle, 5 actions/cycle, 5 requests/s, policy [0-9a-f]{16}…: the running service \\(worker pid ${workerPid}, heartbeat \\d+ s ago\\)`,
      ),
    );
    expect(lines[1]).toBe(
      'Local configuration differs from the running service: phase 3 here, Phase 4 in the running service; leads/cycle 7 here, 2 in the running service; actions/cycle 0 here, 5 in the running service (it applies only when the service restarts)',
    );
    expect(status.stdout).not.toContain('Phase 3 (DRY-RUN)');

    const json = JSON.parse((await cli(['status', '--json'])).stdout) as {
      phase: number;
      localConfiguration: { phase: number };
      run: { service: { running: boolean; phase: number; limits: { leadsPerCycle: number } } };
    };
    expect(json.phase).toBe(4);
    expect(json.localConfiguration.phase).toBe(3);
    expect(json.run.service).toMatchObject({ running: true, phase: 4, limits: { leadsPerCycle: 2 } });

    const api = apiClient(baseUrl);
    const fromApi = await api<{ phase: number; service: { running: boolean; phase: number } }>(
      'GET',
      '/api/status',
      {
        token: viewer.token,
      },
    );
    expect(fromApi.status).toBe(200);
    expect(fromApi.body.phase).toBe(4);
    expect(fromApi.body.service).toMatchObject({ running: true, phase: 4 });
    run.child.kill('SIGTERM');
    await run.exited;
  });
});

describe('synthetic leads can never leave', () => {
  it('marked at birth (generate, the 5,000 of an empty store), refused at ingest with real data on, archived at go-live; the partner receives real leads only', async () => {
    const cwd = tempDir();
    const partner = await sandbox(cwd);
    const base = testEnv(join(cwd, 'data'), {
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'warn',
    });
    const phase3 = { ...base, VALHALLA_REAL_DATA_INGEST: '0' };
    const cli = (args: string[], env: Record<string, string> = phase3) =>
      runBinary(args, { cwd, env, timeoutMs: 120_000 });
    const dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await cli(['init'])).code).toBe(0);

    // Phase 3 as `npm start` runs it: an empty store gets 5,000 synthetic leads, each marked.
    const once = await cli(['run', '--once']);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toContain('loaded 5000 synthetic leads');
    const loaded = query<{ n: number; marked: number }>(
      dbFile,
      'select count(*) as n, sum(synthetic) as marked from leads',
    )[0]!;
    expect(loaded.n).toBeGreaterThan(4_000);
    expect(loaded.marked).toBe(loaded.n);

    // `leads generate` writes the mark into the file (the reserved external-id prefix) and ingest keeps it.
    expect((await cli(['leads', 'generate', '--count', '40', '--seed', '9', '--out', 'gen.csv'])).code).toBe(
      0,
    );
    const ingested = JSON.parse((await cli(['ingest', 'gen.csv', '--json'])).stdout) as { accepted: number };
    expect(ingested.accepted).toBeGreaterThan(0);
    expect(
      query<{ n: number }>(
        dbFile,
        "select count(*) as n from leads where external_id like 'SYNTHETIC-9-%' and synthetic = 1",
      )[0]!.n,
    ).toBe(ingested.accepted);
    // Ten real leads.
    const now = Date.now();
    const rows = ['external_id,name,email,score,source_timestamp,value'];
    for (let i = 0; i < 10; i++) {
      rows.push(
        `R-${i},Real Person ${i},real.${i}@example.org,${95 - i},${new Date(now - HOUR).toISOString()},20`,
      );
    }
    writeFileSync(join(cwd, 'real.csv'), `${rows.join('\n')}\n`);
    expect((await cli(['ingest', 'real.csv'])).code).toBe(0);

    // With real data on, a synthetic file is refused row by row, with the reason.
    const phase4 = { ...base, ...phase4Settings(partner, { VALHALLA_MAX_LEADS_PER_CYCLE: '25' }) };
    expect(
      (await cli(['leads', 'generate', '--count', '20', '--seed', '11', '--out', 'more.csv'])).code,
    ).toBe(0);
    const refused = await cli(['ingest', 'more.csv', '--json'], phase4);
    const summary = JSON.parse(refused.stdout) as { accepted: number; rejected: number; read: number };
    expect(summary).toMatchObject({ accepted: 0, rejected: 20, read: 20 });
    expect(
      query<{ n: number }>(
        dbFile,
        "select count(*) as n from ingest_outcomes where reason like '%a synthetic lead (reserved prefix SYNTHETIC-, or an id of the former generator EXT-<seed>-<n>): VALHALLA_REAL_DATA_INGEST=1 takes real data only%'",
      )[0]!.n,
    ).toBeGreaterThan(0);

    // Go-live: the real supervisor and worker in Phase 4 (gates given by the harness).
    const pendingSynthetic = query<{ n: number }>(
      dbFile,
      "select count(*) as n from leads where synthetic = 1 and state = 'pending'",
    )[0]!.n;
    expect(pendingSynthetic).toBeGreaterThan(0);
    const run = spawnNode(HARNESS, [], { cwd, env: phase4, children, guardMs: 180_000 });
    await until(() => query(dbFile, "select id from leads where state = 'exported'").length === 10, {
      what: `the ten real leads exported (${run.out()})`,
    });
    expect(run.out()).toContain(
      `Phase 4 start: ${pendingSynthetic} synthetic lead(s) were pending: archived, never sent live`,
    );
    // A few more live cycles: nothing else goes.
    const cyclesNow = query(dbFile, "select id from cycles where kind = 'live'").length;
    await until(() => query(dbFile, "select id from cycles where kind = 'live'").length >= cyclesNow + 3, {
      what: 'three more live cycles',
    });
    run.child.kill('SIGTERM');
    await run.exited;

    // The partner's own record: ten leads, every one real.
    const received = Object.keys(partner.records().leadBatches);
    expect(received).toHaveLength(10);
    const sent = query<{ dedup_key: string; synthetic: number; external_id: string }>(
      dbFile,
      'select lower(hex(dedup_key)) as dedup_key, synthetic, external_id from leads',
    ).filter((l) => received.includes(`lk_${l.dedup_key.slice(0, 32)}`));
    expect(sent).toHaveLength(10);
    expect(sent.every((l) => l.synthetic === 0 && l.external_id.startsWith('R-'))).toBe(true);
    expect(
      query(
        dbFile,
        "select id from leads where synthetic = 1 and state in ('pending', 'in_flight', 'exported')",
      ),
    ).toEqual([]);
    expect(query(dbFile, "select seq from audit_log where action = 'leads.synthetic_archived'")).toHaveLength(
      1,
    );
  }, 300_000);
});

describe('gate 9 evidence is this installation’s own', () => {
  it('a trial records nothing; history written in before the initialisation fails with the reason, even with --record', async () => {
    const inst = await installation();
    const help = await inst.cli(['stability', 'verify', '--help']);
    expect(help.stdout).toContain('72 h in the shipped policy');
    expect(help.stdout).toContain('--record');

    // A newcomer tries it once: the verdict, exit 3, and no gate 9 entry.
    const trial = await inst.cli(['stability', 'verify']);
    expect(trial.code).toBe(3);
    expect(trial.stdout).toMatch(/^Phase 3 stability over 72 h \(.+\): FAILED$/m);
    expect(trial.stdout).toContain('not recorded (a trial): add --record to record it as gate 9 evidence');
    expect(query(inst.dbFile, "select seq from audit_log where action = 'stability.verified'")).toEqual([]);

    // 72 h of a healthy-looking Phase 3, written into the installation after its `init`, dated before it.
    const clock = new ManualClock(Date.now() - 73 * HOUR);
    const app = await openApp({ config: loadConfig({ cwd: inst.cwd, env: inst.env }), clock });
    try {
      await seedPhase3Run(app, clock, {
        start: Date.now() - 72 * HOUR - 600_000,
        end: Date.now() + 300_000,
      });
    } finally {
      await app.close();
    }
    const recorded = await inst.cli(['stability', 'verify', '--record']);
    expect(recorded.code).toBe(3);
    expect(recorded.stderr).toContain('Phase 3 stability not proven: failed this installation');
    expect(recorded.stdout).toMatch(
      /^this installation\s+FAILED\s+.+heartbeat\(s\) dated before this installation's initialisation/m,
    );
    expect(recorded.stdout).toContain('recorded in the audit chain as stability.verified');
    const [entry] = query<{ details: string }>(
      inst.dbFile,
      "select details from audit_log where action = 'stability.verified'",
    );
    expect(JSON.parse(entry!.details).passed).toBe(false);
  });
});

describe('ramp stage 1: a confirmation is a review', () => {
  it('a blind `cycle confirm` loop confirms nothing; the review shows the batch and the partner answer; only the named, current cycle is confirmed', async () => {
    const cwd = tempDir();
    const partner = await sandbox(cwd);
    const env = phase4Env(join(cwd, 'data'), partner, { VALHALLA_LOG_LEVEL: 'warn' });
    const cli = (args: string[]) => runBinary(args, { cwd, env });
    const dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await cli(['init'])).code).toBe(0);
    const rows = ['external_id,name,email,score,source_timestamp,value'];
    for (let i = 0; i < 3; i++) {
      rows.push(
        `S1-${i},Stage One ${i},stage.one.${i}@example.org,${90 - i},${new Date(Date.now() - HOUR).toISOString()},10`,
      );
    }
    writeFileSync(join(cwd, 'leads.csv'), `${rows.join('\n')}\n`);
    expect((await cli(['ingest', 'leads.csv'])).code).toBe(0);
    // The Phase 4 test worker (gates given), live from now: ramp stage 1, one lead a cycle, each confirmed.
    const worker = harnessScript('live-worker');
    const cycles = async (n: number) => {
      const w = spawnNode(worker, [String(n)], {
        cwd,
        env: { ...env, VALHALLA_TEST_GO_LIVE_AT: String(goLiveAt), VALHALLA_TEST_INTERVAL_MS: '10' },
        children,
      });
      expect((await w.exited).code, w.out()).toBe(0);
    };
    const goLiveAt = Date.now();
    await cycles(2); // the first sends one lead; the second waits for its confirmation
    const [first] = query<{ id: number }>(
      dbFile,
      "select id from cycles where kind = 'live' and claimed > 0",
    );
    expect(partner.stats().batches.received).toBe(1);

    // A blind loop: each time the review, exit 3, and nothing confirmed.
    for (let i = 0; i < 3; i++) {
      const blind = await cli(['cycle', 'confirm']);
      expect(blind.code).toBe(3);
      expect(blind.stdout).toContain(`cycle ${first!.id} (live, ramp stage 1)`);
      expect(blind.stdout).toMatch(/^batch \S+: accepted after 1 attempt\(s\); partner answered HTTP 2\d\d/m);
      expect(blind.stdout).toMatch(/^\s+\d+\s+L-\S+\s+S\*+ O\*+ 0\*+\s+s\*+@example\.org\s+90\s+exported/m);
      expect(blind.stdout).not.toContain('stage.one.0@example.org');
    }
    expect(query(dbFile, "select seq from audit_log where action = 'cycle.confirmed'")).toEqual([]);
    await cycles(1);
    expect(partner.stats().batches.received).toBe(1); // still waiting

    const wrong = await cli(['cycle', 'confirm', String(first!.id + 100)]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(
      `cycle ${first!.id + 100} is not the cycle awaiting confirmation: cycle ${first!.id} is`,
    );
    const ok = await cli(['cycle', 'confirm', String(first!.id)]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`cycle ${first!.id} confirmed by test-operator`);

    await cycles(1); // the next lead goes, and waits for its own review
    expect(partner.stats().batches.received).toBe(2);
    const stale = await cli(['cycle', 'confirm', String(first!.id)]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(
      new RegExp(`cycle ${first!.id} is not the cycle awaiting confirmation: cycle \\d+ is`),
    );
  });
});
