/**
 * `valhalla run` through the built binary (a separate process, so a socket it opened would reach the
 * sandbox), and the operator commands `quarantine list|release|drop` and `cycle confirm` in-process.
 * The quarantine is made the real way: the Phase 4 test worker (test/harness/live-worker.ts, built by
 * `npm run build:test`) sends to a sandbox partner that refuses every batch with HTTP 422.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import {
  BIN,
  type CliResult,
  harnessScript,
  phase3Env,
  runBinary,
  runInProcess,
  phase4Env as sharedPhase4Env,
  testEnv,
} from '../support/cli.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { HOUR } from '../support/world.js';

const WORKER = harnessScript('live-worker');
const CYCLE_LINE = /^cycle \d+ \[(dry_run|live|idle)\] /;

const children = new Set<ChildProcess>();
const partners: SandboxPartner[] = [];
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(partners.map((p) => p.close()));
});

async function sandbox(options: Parameters<typeof startSandboxPartner>[0]): Promise<SandboxPartner> {
  const partner = await startSandboxPartner({
    clientId: 'run-test',
    clientSecret: 'run-test-secret-0123',
    ...options,
  });
  partners.push(partner);
  return partner;
}

function cycleLines(result: CliResult): string[] {
  return result.stdout.split('\n').filter((line) => CYCLE_LINE.test(line));
}

/** A CSV of `count` valid, fresh leads (score 40–100). */
function leadFile(path: string, count: number, prefix: string): void {
  const rows = ['external_id,name,email,phone,company,score,source_timestamp,value'];
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    const ts = new Date(now - HOUR - i * 60_000).toISOString();
    rows.push(
      `${prefix}-${i},Ada Lovelace ${i},ada.${prefix}.${i}@example.org,,Engines Ltd,${90 - i},${ts},250`,
    );
  }
  writeFileSync(path, `${rows.join('\n')}\n`);
}

/** Run the Phase 4 test worker for `cycles` cycles; SIGKILLed after `guardMs` (then the exit code is null). */
function runWorker(
  env: Record<string, string>,
  cwd: string,
  cycles: number,
  guardMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER, String(cycles)], {
      cwd,
      env: { PATH: process.env.PATH, ...env, VALHALLA_TEST_INTERVAL_MS: '10' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), guardMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(guard);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The environment of a Phase 4 installation sending to `partner`. */
function phase4Env(dataDir: string, partner: SandboxPartner): Record<string, string> {
  return sharedPhase4Env(dataDir, partner, {
    VALHALLA_MAX_LEADS_PER_CYCLE: '10',
    VALHALLA_LOG_LEVEL: 'warn',
  });
}

describe('valhalla run in Phase 3 (DRY-RUN), with a sandbox configured as the partner', () => {
  let cwd: string;
  let env: Record<string, string>;
  let dbFile: string;
  let partner: SandboxPartner;

  beforeAll(async () => {
    // Plain HTTP to a loopback sandbox is allowed in Phase 3: the point is that nothing reaches it.
    partner = await sandbox({ plainHttp: true });
    cwd = tempDir();
    env = phase3Env(join(cwd, 'data'), partner, { VALHALLA_CYCLE_INTERVAL_S: '1' });
    dbFile = join(cwd, 'data', 'valhalla.db');
    const init = await runBinary(['init'], { cwd, env });
    expect(init.code, init.stderr).toBe(0);
  });

  it('run --once on an empty store loads 5,000 synthetic leads, prints one dry-run cycle, exits 0, sends nothing', async () => {
    const result = await runBinary(['run', '--once'], { cwd, env, timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      /empty store, VALHALLA_REAL_DATA_INGEST=0: loaded 5000 synthetic leads \(accepted \d+, duplicate \d+, rejected \d+\)/,
    );
    expect(result.stdout).toContain('Phase 3 (DRY-RUN: nothing is sent)');
    const lines = cycleLines(result);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^cycle 1 \[dry_run\] ceiling 25 .*dry-run recorded 25 lead\(s\), nothing sent$/,
    );

    const [ingest] = query<{ rows_read: number }>(dbFile, 'select rows_read from ingest_runs');
    expect(ingest?.rows_read).toBe(5000);
    const dryRuns = query<{ n: number }>(
      dbFile,
      `select count(*) as n from delivery_leads dl join deliveries d on d.id = dl.delivery_id
        where d.kind = 'dry_run' and d.state = 'dry_run'`,
    );
    expect(dryRuns[0]?.n).toBe(25);
    // A dry run consumes nothing: the leads stay pending; none was claimed, none exported.
    const moved = query<{ n: number }>(
      dbFile,
      `select count(*) as n from leads where state in ('in_flight', 'exported', 'quarantined')`,
    );
    expect(moved[0]?.n).toBe(0);
    expect(query(dbFile, `select 1 from deliveries where kind = 'live'`)).toHaveLength(0);
    expect(partner.stats().requests.total).toBe(0);
  });

  it('run --cycles 2 prints two cycle lines, the second dry-running other leads, and loads nothing more', async () => {
    const result = await runBinary(['run', '--cycles', '2'], { cwd, env, timeoutMs: 30_000 });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain('synthetic leads');
    const lines = cycleLines(result);
    expect(lines).toHaveLength(2);
    for (const line of lines)
      expect(line).toMatch(/\[dry_run\] .*dry-run recorded 25 lead\(s\), nothing sent$/);
    expect(query(dbFile, 'select id from ingest_runs')).toHaveLength(1);

    const rows = query<{ cycle_id: number; lead_id: number }>(
      dbFile,
      `select d.cycle_id, dl.lead_id from deliveries d join delivery_leads dl on dl.delivery_id = d.id
        where d.kind = 'dry_run' order by d.cycle_id`,
    );
    const byCycle = new Map<number, Set<number>>();
    for (const r of rows) byCycle.set(r.cycle_id, (byCycle.get(r.cycle_id) ?? new Set()).add(r.lead_id));
    expect([...byCycle.keys()]).toEqual([1, 2, 3]);
    const [first, second, third] = [...byCycle.values()] as [Set<number>, Set<number>, Set<number>];
    for (const s of [first, second, third]) expect(s.size).toBe(25);
    // No lead dry-run twice: the three cycles' leads are 75 different ones.
    expect(new Set([...first, ...second, ...third]).size).toBe(75);
    const marked = query<{ n: number }>(
      dbFile,
      'select count(*) as n from leads where dry_run_at is not null',
    );
    expect(marked[0]?.n).toBe(75);
    expect(partner.stats().requests.total).toBe(0);

    const verify = await runInProcess(['audit', 'verify'], { cwd, env });
    expect(verify.code, verify.stderr).toBe(0);
    const audited = query<{ n: number }>(
      dbFile,
      `select count(*) as n from audit_log where action = 'batch.dry_run'`,
    );
    expect(audited[0]?.n).toBe(3);
  });

  it('SIGTERM while waiting between cycles: exits 0 within seconds and says it is shutting down', async () => {
    const cyclesBefore = query(dbFile, 'select id from cycles').length;
    const child = spawn(process.execPath, [BIN, 'run'], {
      cwd,
      env: { PATH: process.env.PATH, ...env, VALHALLA_CYCLE_INTERVAL_S: '60' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c;
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('close', (code, signal) => {
        clearTimeout(guard);
        children.delete(child);
        resolve({ code, signal });
      }),
    );
    // The first cycle runs at once; then the runner waits 60 s for the next.
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => {
        stdout += c;
        if (stdout.split('\n').some((l) => CYCLE_LINE.test(l))) resolve();
      });
      void exited.then(() => reject(new Error(`run exited before its first cycle: ${stderr}`)));
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const signalledAt = Date.now();
    child.kill('SIGTERM');
    const exit = await exited;
    const tookMs = Date.now() - signalledAt;
    expect(exit, stderr).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(5_000);
    expect(stderr).toContain('SIGTERM: finishing the current work');
    expect(stderr).toContain('claiming nothing new');
    expect(cycleLines({ code: 0, stdout, stderr: '' })).toHaveLength(1);
    // Exactly the one cycle ran; the database is closed cleanly and the chain intact.
    expect(query(dbFile, 'select id from cycles')).toHaveLength(cyclesBefore + 1);
    expect(partner.stats().requests.total).toBe(0);
    const verify = await runInProcess(['audit', 'verify'], { cwd, env });
    expect(verify.code, verify.stderr).toBe(0);
  });
});

describe('valhalla run in Phase 4', () => {
  it('refuses with exit 3 naming the gates, audits run.refused, claims and sends nothing', async () => {
    const cwd = tempDir();
    const partner = await sandbox({ certDir: join(cwd, 'cert') });
    const env = phase4Env(join(cwd, 'data'), partner);
    const dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    leadFile(join(cwd, 'leads.csv'), 5, 'p4');
    const ingest = await runInProcess(['ingest', 'leads.csv'], { cwd, env });
    expect(ingest.code, ingest.stderr).toBe(0);

    for (const args of [['run', '--once'], ['run']]) {
      const result = await runBinary(args, { cwd, env, timeoutMs: 30_000 });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(3);
      expect(result.stderr).toContain('Phase 4 refused');
      expect(result.stderr).toMatch(
        /the go-live gates are not all green \(\d+ missing\): release manifest: VALHALLA_SLACK_WEBHOOK_URL is not set: Phase 4 needs Slack alerts; .*gate 1 1\.legal_signoff/,
      );
      expect(cycleLines(result)).toHaveLength(0);
    }
    const refused = query<{ actor: string; details: string }>(
      dbFile,
      `select actor, details from audit_log where action = 'run.refused' order by seq`,
    );
    expect(refused).toHaveLength(2);
    expect(refused[0]?.actor).toBe('test-operator');
    expect(JSON.parse(refused[0]!.details)).toMatchObject({
      phase: 4,
      reason: expect.stringContaining('gates'),
    });
    // A refused start is a critical alert too, naming why (the second, within the alerts'
    // de-duplication window, is counted against the first, not sent again).
    const alerted = query<{ severity: string; message: string }>(
      dbFile,
      `select severity, message from alerts where event = 'phase4_refused' order by id`,
    );
    expect(alerted.map((a) => a.severity)).toEqual(['critical']);
    expect(alerted[0]!.message).toMatch(/^Phase 4 refused to start: the go-live gates are not all green/);
    expect(query(dbFile, `select id from leads where state <> 'pending'`)).toHaveLength(0);
    expect(query(dbFile, 'select id from cycles')).toHaveLength(0);
    expect(query(dbFile, 'select id from deliveries')).toHaveLength(0);
    expect(partner.stats().requests.total).toBe(0);
  });
});

describe('quarantine list|release|drop and cycle confirm', () => {
  let cwd: string;
  let env: Record<string, string>;
  let dbFile: string;
  let partner: SandboxPartner;
  let ids: number[];
  let liveCycle: number;

  beforeAll(async () => {
    expect(existsSync(WORKER), `${WORKER} is missing: run \`npm run build:test\` first`).toBe(true);
    cwd = tempDir();
    partner = await sandbox({ certDir: join(cwd, 'cert'), faults: { permanentStatus: 422 } });
    env = phase4Env(join(cwd, 'data'), partner);
    dbFile = join(cwd, 'data', 'valhalla.db');
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
    leadFile(join(cwd, 'leads.csv'), 3, 'q');
    expect((await runInProcess(['ingest', 'leads.csv'], { cwd, env })).code).toBe(0);
    // One live cycle: the three leads go out in one batch, the partner refuses it (422, permanent).
    const worker = await runWorker(env, cwd, 1);
    expect(worker.code, worker.stderr).toBe(0);
    const report = JSON.parse(worker.stdout.trim().split('\n')[0]!);
    expect(report).toMatchObject({ kind: 'live', claimed: 3, accepted: 0, quarantined: 3 });
    liveCycle = report.cycleId;
    ids = query<{ id: number }>(dbFile, `select id from leads where state = 'quarantined' order by id`).map(
      (r) => r.id,
    );
    expect(ids).toHaveLength(3);
    expect(partner.stats().batches.failedByFault).toBe(1);
  });

  it('quarantine list shows the leads masked, newest first, with the partner refusal as reason', async () => {
    const result = await runInProcess(['quarantine', 'list'], { cwd, env });
    expect(result.code, result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+EMAIL\s+SCORE\s+REASON$/);
    expect(lines.slice(1).map((l) => Number(l.split(/\s+/)[0]))).toEqual([...ids].reverse());
    for (const line of lines.slice(1)) expect(line).toContain('refused by the partner (HTTP 422)');
    // Invariant 7: no e-mail address or full name in clear.
    expect(result.stdout).not.toMatch(/ada\.q\.\d@example\.org/);
    expect(result.stdout).not.toContain('Lovelace');

    const json = await runInProcess(['quarantine', 'list', '--json', '--limit', '2'], { cwd, env });
    expect(json.code, json.stderr).toBe(0);
    const { leads } = JSON.parse(json.stdout) as { leads: { id: number; reason: string }[] };
    expect(leads.map((l) => l.id)).toEqual([ids[2], ids[1]]);
    const next = await runInProcess(['quarantine', 'list', '--json', '--before-id', String(ids[1])], {
      cwd,
      env,
    });
    expect((JSON.parse(next.stdout) as { leads: { id: number }[] }).leads.map((l) => l.id)).toEqual([ids[0]]);
  });

  it('cycle confirm shows the batch and confirms nothing; cycle confirm N confirms that cycle once; again, or another number, exits 1', async () => {
    // The review: what the cycle sent (masked) and what the partner answered; nothing confirmed (exit 3).
    const review = await runInProcess(['cycle', 'confirm'], { cwd, env });
    expect(review.code).toBe(3);
    expect(review.stdout).toContain(`cycle ${liveCycle} (live, ramp stage`);
    expect(review.stdout).toMatch(/^batch \S+: quarantined after 1 attempt\(s\); partner answered HTTP 422/m);
    expect(review.stdout).toMatch(/^\s+LEAD\s+PSEUDONYM\s+NAME\s+EMAIL\s+SCORE\s+STATE\s+REASON$/m);
    for (const id of ids)
      expect(review.stdout).toMatch(new RegExp(`^\\s+${id}\\s+L-\\S+\\s+.+quarantined`, 'm'));
    expect(review.stdout).not.toMatch(/ada\.q\.\d@example\.org/);
    expect(review.stdout).not.toContain('Lovelace');
    expect(review.stderr).toContain(
      `nothing confirmed: check the batch above, then confirm it with \`valhalla cycle confirm ${liveCycle}\``,
    );
    expect(query(dbFile, `select seq from audit_log where action = 'cycle.confirmed'`)).toHaveLength(0);

    const first = await runInProcess(['cycle', 'confirm', String(liveCycle)], { cwd, env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.trim().split('\n').at(-1)).toBe(`cycle ${liveCycle} confirmed by test-operator`);
    const [row] = query<{ confirmed_by: string | null }>(
      dbFile,
      'select confirmed_by from cycles where id = ?',
      liveCycle,
    );
    expect(row?.confirmed_by).toBe('test-operator');
    expect(
      query(
        dbFile,
        `select seq from audit_log where action = 'cycle.confirmed' and subject = ?`,
        `cycle:${liveCycle}`,
      ),
    ).toHaveLength(1);

    for (const args of [
      ['cycle', 'confirm', String(liveCycle)],
      ['cycle', 'confirm', '--cycle', String(liveCycle)],
      ['cycle', 'confirm', '999999'],
    ]) {
      const again = await runInProcess(args, { cwd, env });
      expect(again.code, args.join(' ')).toBe(1);
      expect(again.stderr).toContain(
        `nothing to confirm: cycle ${liveCycle} was confirmed by test-operator at `,
      );
      expect(again.stdout).toBe('');
    }
    // With nothing to confirm, it says what the ramp waits for (exit 0).
    const nothing = await runInProcess(['cycle', 'confirm'], { cwd, env });
    expect(nothing.code).toBe(0);
    expect(nothing.stdout).toContain(`nothing to confirm: cycle ${liveCycle} was confirmed by test-operator`);
    expect(query(dbFile, `select seq from audit_log where action = 'cycle.confirmed'`)).toHaveLength(1);
  });

  it('cycle confirm with no live cycle yet says what the ramp waits for; naming a cycle exits 1', async () => {
    const fresh = tempDir();
    const freshEnv = testEnv(join(fresh, 'data'));
    expect((await runInProcess(['init'], { cwd: fresh, env: freshEnv })).code).toBe(0);
    const result = await runInProcess(['cycle', 'confirm'], { cwd: fresh, env: freshEnv });
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      'nothing to confirm: no live cycle yet: the ramp starts with the first live cycle',
    );
    const named = await runInProcess(['cycle', 'confirm', '1'], { cwd: fresh, env: freshEnv });
    expect(named.code).toBe(1);
    expect(named.stderr).toContain('nothing to confirm: no live cycle yet');
  });

  it('release and drop change quarantined leads only, audited; others are named and exit 1', async () => {
    const [a, b, c] = ids as [number, number, number];
    const release = await runInProcess(
      ['quarantine', 'release', String(a), '--reason', 'partner fixed the schema'],
      {
        cwd,
        env,
      },
    );
    expect(release.code, release.stderr).toBe(0);
    expect(release.stdout.trim()).toBe(`released: ${a}`);

    const drop = await runInProcess(['quarantine', 'drop', String(b), '--reason', 'bad contact'], {
      cwd,
      env,
    });
    expect(drop.code, drop.stderr).toBe(0);
    expect(drop.stdout.trim()).toBe(`dropped: ${b}`);

    // a is pending now and b archived: only c changes, the others are named.
    const mixed = await runInProcess(['quarantine', 'release', `${a},${b},${c}`, '--reason', 'retry'], {
      cwd,
      env,
    });
    expect(mixed.code).toBe(1);
    expect(mixed.stdout.trim()).toBe(`released: ${c}`);
    expect(mixed.stderr).toContain(`not quarantined, left as they are: ${a}, ${b}`);

    const none = await runInProcess(['quarantine', 'drop', '999999', '--reason', 'x'], { cwd, env });
    expect(none.code).toBe(1);
    expect(none.stdout.trim()).toBe('dropped: none');
    expect(none.stderr).toContain('not quarantined, left as they are: 999999');

    const states = query<{ id: number; state: string; state_reason: string | null }>(
      dbFile,
      'select id, state, state_reason from leads order by id',
    );
    expect(states.map((s) => s.state)).toEqual(['pending', 'archived', 'pending']);
    expect(states[0]?.state_reason).toBeNull();
    expect(states[1]?.state_reason).toBe('dropped from quarantine by test-operator: bad contact');
    const audited = query<{ action: string; actor: string; details: string }>(
      dbFile,
      `select action, actor, details from audit_log where action like 'quarantine.%' order by seq`,
    );
    expect(audited.map((e) => e.action)).toEqual([
      'quarantine.released',
      'quarantine.dropped',
      'quarantine.released',
    ]);
    expect(audited.every((e) => e.actor === 'test-operator')).toBe(true);
    expect(JSON.parse(audited[0]!.details).reason).toBe('partner fixed the schema');
    expect(audited.map((e) => e.details).join('')).not.toContain('@example.org');

    const empty = await runInProcess(['quarantine', 'list'], { cwd, env });
    expect(empty.code).toBe(0);
    expect(empty.stdout.trim()).toBe('quarantine is empty');
  });

  it('a released lead goes out again in a new batch, with its own key, and is accepted once', async () => {
    partner.setFaults({ permanentStatus: null });
    const worker = await runWorker(env, cwd, 2);
    expect(worker.code, worker.stderr).toBe(0);
    const states = query<{ state: string }>(dbFile, 'select state from leads order by id');
    expect(states.map((s) => s.state)).toEqual(['exported', 'archived', 'exported']);
    const keys = query<{ lead_id: number; lead_key: string; released: number; state: string }>(
      dbFile,
      `select dl.lead_id, dl.lead_key, dl.released, d.state from delivery_leads dl
         join deliveries d on d.id = dl.delivery_id where d.kind = 'live' order by d.id, dl.lead_id`,
    );
    const [a, , c] = ids as [number, number, number];
    for (const id of [a, c]) {
      const rows = keys.filter((k) => k.lead_id === id);
      expect(rows.map((r) => [r.state, r.released])).toEqual([
        ['quarantined', 1],
        ['accepted', 0],
      ]);
      expect(rows[0]?.lead_key).toBe(rows[1]?.lead_key);
      expect(partner.records().leadBatches[rows[0]!.lead_key]).toHaveLength(1);
    }
    expect(partner.stats().leads).toEqual({ accepted: 2, duplicates: 0 });
  });
});

describe('usage errors exit 2', () => {
  let cwd: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    cwd = tempDir();
    env = testEnv(join(cwd, 'data'));
    expect((await runInProcess(['init'], { cwd, env })).code).toBe(0);
  });

  it.each([
    [['run', '--cycles', '0'], 'must be from 1 to 1000000'],
    [['run', '--cycles', 'two'], 'not a whole number: two'],
    [['run', '--once', '--cycles', '3'], "option '--once' cannot be used with option '--cycles <n>'"],
    [['run', 'now'], 'too many arguments'],
    [['run', '--forever'], "unknown option '--forever'"],
    [['cycle'], 'Usage: valhalla cycle'],
    [['cycle', 'confirm', '--cycle', '0'], 'must be from 1 to'],
    [['cycle', 'confirm', '--cycle', 'last'], 'not a whole number: last'],
    [['quarantine'], 'Usage: valhalla quarantine'],
    [['quarantine', 'release', '--reason', 'x'], "missing required argument 'ids'"],
    [['quarantine', 'release', '7'], "required option '--reason <text>' not specified"],
    [['quarantine', 'drop', 'abc', '--reason', 'x'], 'not a lead id or comma-separated ids: abc'],
    [['quarantine', 'drop', '1,,2', '--reason', 'x'], 'not a lead id or comma-separated ids: 1,,2'],
    [['quarantine', 'list', '--limit', '0'], 'must be from 1 to 1000'],
    [['quarantine', 'purge'], "unknown command 'purge'"],
  ])('%j', async (args, message) => {
    const result = await runInProcess(args, { cwd, env });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it('the binary exits 2 too, and runs nothing', async () => {
    const result = await runBinary(['run', '--cycles', '0'], { cwd, env });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('must be from 1 to 1000000');
    expect(query(join(cwd, 'data', 'valhalla.db'), 'select id from cycles')).toHaveLength(0);
  });
});
