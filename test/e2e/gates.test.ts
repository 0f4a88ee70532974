/**
 * The go-live gates end to end, as the operators and the stakeholders run them: a Phase 4
 * installation with 72 hours of Phase 3 behind it (seeded as the worker, the supervisor and the
 * engine write it), the evidence commands (`alerts test` to a local Slack receiver and a real SMTP
 * server, `drill rollback`, `gates conformance`, `stability verify`), five signers with their own
 * Ed25519 keys, the attestations, the five sign-offs and the CEO's activation. Then `gates verify`
 * passes, the evidence report verifies offline, and `valhalla run` starts in Phase 4 and exports
 * to the sandbox partner. Taking away any one signed item or piece of evidence makes `gates verify`
 * refuse naming it, and `run` refuse with exit 3.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import { GATES } from '../../src/gates/index.js';
import { type AuditAction, canonicalJson } from '../../src/policy/index.js';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { createApiToken } from '../../src/server/index.js';
import {
  BIN,
  type CliResult,
  phase4Env,
  REPO_ROOT,
  runBinary,
  runInProcess,
  testEnv,
} from '../support/cli.js';
import {
  ATTESTED,
  initializeWithPhase3History,
  monitoringSettings,
  nameOf,
  SIGNERS,
  withServe,
} from '../support/go-live.js';
import { spawnNode } from '../support/processes.js';
import {
  type MailServer,
  type SlackReceiver,
  startSlackReceiver,
  startSmtpServer,
} from '../support/receivers.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { DAY, until, untilOutput, whileRunning } from '../support/world.js';

const dashboardToken = createApiToken('ops-check', 'viewer');

let cwd: string;
let env: Record<string, string>;
let dbFile: string;
let partner: SandboxPartner;
let slack: SlackReceiver;
let smtp: MailServer;

const cli = (args: string[], extra: Record<string, string> = {}) =>
  runInProcess(args, { cwd, env: { ...env, ...extra } });
const ok = (result: CliResult, what: string) =>
  expect(result.code, `${what}: ${result.stderr}${result.stdout}`).toBe(0);

beforeAll(async () => {
  cwd = tempDir();
  const data = join(cwd, 'data');
  dbFile = join(data, 'valhalla.db');
  partner = await startSandboxPartner({ certDir: join(cwd, 'cert') });
  slack = await startSlackReceiver('/services/T0/B0/gates-test');
  smtp = await startSmtpServer();
  env = phase4Env(data, partner, {
    ...monitoringSettings(slack, smtp, dashboardToken.entry),
    // Below the hard maximum of 5, so that a raise (and the CFO's amendment for it) can be shown.
    VALHALLA_RATE_LIMIT: '3',
  });
  await initializeWithPhase3History(cwd, env);
});

afterAll(async () => {
  await partner?.close();
  await slack?.close();
  await smtp?.close();
});

/** `valhalla serve` (the real binary) on a free port, then `valhalla dashboard check` against it. */
async function checkDashboardAgainstServe(): Promise<void> {
  await withServe(cwd, env, async (url) => {
    const tokenFile = join(cwd, 'dashboard.token');
    writeFileSync(tokenFile, `${dashboardToken.token}\n`, { mode: 0o600 });
    // A wrong token: the check fails, and says so as evidence.
    writeFileSync(join(cwd, 'wrong.token'), 'vh_wrong\n');
    const wrong = await cli(['dashboard', 'check', '--url', url, '--token-file', join(cwd, 'wrong.token')]);
    expect(wrong.code).toBe(3);
    expect(wrong.stdout).toContain('FAIL this installation: GET /api/status: HTTP 401');
    expect((await cli(['gates', 'verify'])).stdout).toContain('5.dashboard: the last dashboard check failed');
    const check = await cli(['dashboard', 'check', '--url', url, '--token-file', tokenFile]);
    ok(check, 'dashboard check');
    expect(check.stdout).toMatch(/ok {3}live lead flow: an audit entry reached the event stream in \d+ ms/);
  });
}

/** A copy of the database (VACUUM INTO) changed by `change`, and the environment that points at it. */
function variant(name: string, change: (db: SqliteDatabase.Database) => void): Record<string, string> {
  const copy = join(cwd, `variant-${name}.db`);
  const source = new SqliteDatabase(dbFile);
  source.exec(`vacuum into '${copy}'`);
  source.close();
  const db = new SqliteDatabase(copy);
  // The copy stands for an installation where the item was never signed: the append-only trigger
  // is dropped in the copy only, to take the row out.
  db.exec('drop trigger if exists signatures_no_delete');
  change(db);
  db.close();
  return { VALHALLA_DATABASE_URL: copy };
}

describe('the go-live gates, from nothing to Phase 4', () => {
  it('without evidence or signatures, gates verify lists everything missing and run refuses (exit 3)', async () => {
    const verify = await cli(['gates', 'verify']);
    expect(verify.code).toBe(3);
    // The verification is on the record, with its verdict.
    const verified = query<{ details: string }>(
      dbFile,
      "select details from audit_log where action = 'gates.verified'",
    );
    expect(verified).toHaveLength(1);
    const details = JSON.parse(verified[0]!.details) as { cleared: boolean; missing: string[] };
    expect(details.cleared).toBe(false);
    expect(details.missing.length).toBeGreaterThan(0);
    expect((await cli(['status'])).stdout).toMatch(/Gates: not cleared, \d+ item\(s\) missing/);
    for (const item of GATES.flatMap((g) => g.items)) {
      if (
        item.check.kind === 'attested' ||
        item.id.startsWith('8.') ||
        item.id.startsWith('2.') ||
        item.id.startsWith('7.')
      ) {
        expect(verify.stdout, item.id).toContain(`${item.id}:`);
      }
    }
    expect(verify.stdout).toContain(
      "activation: the CEO's activation by the CEO / Executive Leadership missing",
    );
    expect(verify.stdout).toContain(
      'missing: release manifest: no conformance run against the configured partner: run `valhalla gates conformance --partner configured`',
    );
    const run = await runBinary(['run', '--once'], { cwd, env, timeoutMs: 60_000 });
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/Phase 4 refused: the go-live gates are not all green/);
    expect(partner.stats().requests.total).toBe(0);
  });

  it('evidence: a test alert to Slack and e-mail, the dashboard check, a rollback drill, the conformance run, 72 h of stability', async () => {
    ok(await cli(['alerts', 'test']), 'alerts test');
    await checkDashboardAgainstServe();
    expect(slack.requests.length).toBeGreaterThan(0);
    expect(smtp.messages.length).toBeGreaterThan(0);
    ok(await cli(['drill', 'rollback']), 'drill rollback');
    ok(await cli(['gates', 'conformance']), 'gates conformance');
    // And against the partner this installation is configured for (here the same sandbox, as a
    // partner's own sandbox would be): the release manifest's partner needs a passing run of its own.
    const partnerRun = await cli(['gates', 'conformance', '--partner', 'configured']);
    ok(partnerRun, 'gates conformance --partner configured');
    expect(partnerRun.stdout).toMatch(
      /^conformance PASSED in [\d.]+ s against the configured partner https:\/\/127\.0\.0\.1:\d+\//,
    );
    for (const scenario of ['health', 'token', 'endpoint', 'idempotent_replay', 'error_handling']) {
      expect(partnerRun.stdout).toMatch(new RegExp(`^${scenario}\\s+ok\\s`, 'm'));
    }
    ok(await cli(['stability', 'verify', '--hours', '72', '--record']), 'stability verify');
    const status = JSON.parse((await cli(['gates', 'status', '--json'])).stdout) as {
      gates: { items: { id: string; kind: string; state: string; detail: string }[] }[];
    };
    const verified = status.gates
      .flatMap((g) => g.items)
      .filter((i) => i.kind === 'verified' && !i.id.startsWith('8.'));
    expect(verified.filter((i) => i.state !== 'ok').map((i) => `${i.id}: ${i.detail}`)).toEqual([]);
  });

  it('signers, attestations, the five sign-offs (one signed elsewhere and submitted), then the CEO activates', async () => {
    for (const s of SIGNERS) {
      ok(await cli(['keys', 'create', '--out', join(cwd, s.role)]), `keys create ${s.role}`);
      expect(statSync(join(cwd, `${s.role}.key`)).mode & 0o777).toBe(0o600);
      ok(
        await cli([
          'signers',
          'add',
          '--role',
          s.role,
          '--name',
          s.name,
          '--key',
          join(cwd, `${s.role}.pub`),
        ]),
        `signers add ${s.role}`,
      );
    }
    // The activation before the sign-offs is refused.
    const early = await cli(['activate', '--name', nameOf('ceo'), '--key', join(cwd, 'ceo.key')]);
    expect(early.code).toBe(3);
    for (const item of ATTESTED) {
      const { role } = item;
      ok(
        await cli([
          'attest',
          '--item',
          item.id,
          '--role',
          role,
          '--name',
          nameOf(role),
          '--key',
          join(cwd, `${role}.key`),
          '--comments',
          'reviewed',
        ]),
        `attest ${item.id}`,
      );
    }
    for (const s of SIGNERS.filter((x) => x.role !== 'cfo')) {
      ok(
        await cli([
          'signoff',
          '--role',
          s.role,
          '--name',
          s.name,
          '--key',
          join(cwd, `${s.role}.key`),
          '--comments',
          'approved',
        ]),
        `signoff ${s.role}`,
      );
    }
    // The CFO signs on another machine and sends the document.
    const doc = join(cwd, 'cfo-signoff.json');
    ok(
      await cli([
        'signoff',
        '--role',
        'cfo',
        '--name',
        nameOf('cfo'),
        '--key',
        join(cwd, 'cfo.key'),
        '--out',
        doc,
      ]),
      'signoff --out',
    );
    ok(await cli(['signoff', 'submit', doc]), 'signoff submit');
    ok(
      await cli(['activate', '--name', nameOf('ceo'), '--key', join(cwd, 'ceo.key'), '--comments', 'go']),
      'activate',
    );

    const verify = await cli(['gates', 'verify']);
    ok(verify, 'gates verify');
    expect((await cli(['status'])).stdout).toContain('Gates: all nine green, activated by the CEO');
    expect(verify.stdout).toContain('all nine gates green');
    // The evidence report verifies offline, with Node.js alone.
    ok(await cli(['gates', 'report', '--out', join(cwd, 'report')]), 'gates report');
    const offline = spawnSync(
      process.execPath,
      [
        join(REPO_ROOT, 'scripts', 'verify-gates-report.mjs'),
        join(cwd, 'report', 'gates-report.json'),
        DEFAULT_POLICY_FILE,
      ],
      {
        encoding: 'utf8',
      },
    );
    expect(offline.status, offline.stdout + offline.stderr).toBe(0);
    expect(offline.stdout).toContain('report: CLEARED');
  });

  it('valhalla run starts in Phase 4 and exports to the sandbox partner (ramp stage 1: one lead)', async () => {
    const before = partner.stats().leads.accepted;
    const run = await runBinary(['run', '--once'], { cwd, env, timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/cycle \d+ \[live\] ramp stage 1, .*accepted 1/);
    expect(partner.stats().leads.accepted).toBe(before + 1);
    expect(
      query<{ n: number }>(dbFile, "select count(*) as n from leads where state = 'exported'")[0]!.n,
    ).toBe(1);
  });

  it('without any one signed item, gates verify names it and run refuses', async () => {
    const rows = query<{ id: number; kind: string; role: string; item: string | null }>(
      dbFile,
      'select id, kind, role, item from signatures order by id',
    );
    expect(rows).toHaveLength(ATTESTED.length + 5 + 1);
    for (const row of rows) {
      const extra = variant(`sig-${row.id}`, (db) =>
        db.prepare('delete from signatures where id = ?').run(row.id),
      );
      const verify = await cli(['gates', 'verify'], extra);
      expect(verify.code, `${row.kind} ${row.role} ${row.item}`).toBe(3);
      const expected =
        row.kind === 'attestation'
          ? `${row.item}:`
          : row.kind === 'activation'
            ? 'activation:'
            : `8.${row.role}:`;
      expect(verify.stdout).toContain(expected);
      const run = await runBinary(['run', '--once'], { cwd, env: { ...env, ...extra }, timeoutMs: 60_000 });
      expect(run.code, expected).toBe(3);
      // A missing sign-off also leaves the activation without its precondition: 2 missing then.
      expect(run.stderr).toContain(
        `Phase 4 refused: the go-live gates are not all green (${row.kind === 'signoff' ? 2 : 1} missing)`,
      );
      expect(run.stderr).toContain(expected);
    }
  });

  it('without any one piece of evidence (its latest record failing), gates verify names it and run refuses', async () => {
    const failing: [AuditAction, string, Record<string, unknown>, string[]][] = [
      [
        'alerts.test',
        'alerts',
        {
          results: [
            { channel: 'slack', ok: false, error: 'HTTP 500' },
            { channel: 'email', ok: true },
          ],
        },
        ['5.slack'],
      ],
      [
        'dashboard.checked',
        'dashboard',
        {
          passed: false,
          url: 'http://127.0.0.1:1',
          latencyMs: null,
          checks: [{ name: 'reachable', ok: false }],
        },
        ['5.dashboard'],
      ],
      [
        'drill.rollback',
        'drill',
        { passed: false, durationMs: 400_000, checks: [{ name: 'nothing lost', ok: false }] },
        ['7.time', '7.clean'],
      ],
      [
        'gates.conformance',
        'conformance',
        {
          passed: false,
          scenarios: [
            { name: 'endpoint', passed: true },
            { name: 'token_refresh', passed: false },
          ],
        },
        ['2.token_refresh', '2.retries', '3.dedup_tested'],
      ],
      [
        'stability.verified',
        'stability',
        { passed: false, hours: 72, checks: [{ name: 'memory', passed: false }] },
        ['9.stability'],
      ],
      // A passing run, but against another partner than the manifest's.
      [
        'gates.partner_conformance',
        'partner-conformance',
        {
          passed: true,
          partner: {
            kind: 'configured',
            url: 'https://elsewhere.example.test/',
            tokenUrl: 'https://elsewhere.example.test/oauth/token',
            caFingerprints: null,
          },
          scenarios: [],
        },
        ['release manifest'],
      ],
    ];
    for (const [action, name, details, items] of failing) {
      const extra = variant(name, () => undefined);
      const copy = await openApp({ config: loadConfig({ cwd, env: { ...env, ...extra } }) });
      // A conformance run is evidence for the profile it names: these name the installation's.
      const profile = {
        name: copy.config.partner.profile.profile.name,
        sha256: copy.config.partner.profile.sha256,
      };
      const named =
        action === 'gates.conformance'
          ? { ...details, profile }
          : action === 'gates.partner_conformance'
            ? { ...details, partner: { ...(details.partner as object), profile } }
            : details;
      await copy.audit.record({ actor: 'test', action, details: named });
      await copy.close();
      const verify = await cli(['gates', 'verify'], extra);
      expect(verify.code, name).toBe(3);
      for (const item of items) expect(verify.stdout, name).toContain(`${item}:`);
      const run = await runBinary(['run', '--once'], { cwd, env: { ...env, ...extra }, timeoutMs: 60_000 });
      expect(run.code, name).toBe(3);
      expect(run.stderr).toContain(`${items[0]}:`);
    }
    // The worker's heap limit: the latest heartbeat reports what `--max-old-space-size=512` alone
    // gives (the old space at 512 MB, the young generation on top): over the policy's 512 MB.
    const heap = variant('heap', (db) =>
      db
        .prepare(
          "insert into heartbeats (at, runner, pid, worker_started_at, phase, rss_bytes, heap_used_bytes, heap_limit_bytes, state, cycle_id) values (?, 'h:1', 1, ?, 4, 1, 1, ?, 'idle', null)",
        )
        .run(Date.now(), Date.now(), 560 * 1024 ** 2),
    );
    const verify = await cli(['gates', 'verify'], heap);
    expect(verify.code).toBe(3);
    expect(verify.stdout).toContain('4.memory_limit:');
    const run = await runBinary(['run', '--once'], { cwd, env: { ...env, ...heap }, timeoutMs: 60_000 });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('4.memory_limit:');
    // And a channel that is not configured.
    const noSlack = await cli(['gates', 'verify'], { VALHALLA_SLACK_WEBHOOK_URL: '' });
    expect(noSlack.code).toBe(3);
    expect(noSlack.stdout).toContain('5.slack: no slack channel configured');
  });

  it("limits: a raise by the environment is refused naming it; the CFO's amendment approves it alone; a lowering needs nothing; the report with the amendment verifies offline and an edited amendment is caught", async () => {
    const raised = { VALHALLA_RATE_LIMIT: '5' };
    const refused = await cli(['gates', 'verify'], raised);
    expect(refused.code).toBe(3);
    expect(refused.stdout).toContain(
      'missing: release manifest: limits above those approved by the sign-offs (5 of 5): VALHALLA_RATE_LIMIT 5 requests/s, approved 3. Fix: lower them, or have the CFO sign an amendment with the new values (valhalla amend)',
    );
    const run = await runBinary(['run', '--once'], { cwd, env: { ...env, ...raised }, timeoutMs: 60_000 });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('VALHALLA_RATE_LIMIT 5 requests/s, approved 3');
    // Lower than signed: nothing to sign.
    ok(await cli(['gates', 'verify'], { VALHALLA_RATE_LIMIT: '2' }), 'gates verify (rate lowered)');
    // Only the CFO amends.
    const byCeo = await cli(
      ['amend', '--name', nameOf('ceo'), '--key', join(cwd, 'ceo.key'), '--rate', '5'],
      raised,
    );
    expect(byCeo.code).toBe(3);
    expect(byCeo.stderr).toContain('amendment refused');
    const aboveCap = await cli(
      ['amend', '--name', nameOf('cfo'), '--key', join(cwd, 'cfo.key'), '--rate', '6'],
      raised,
    );
    expect(aboveCap.code).toBe(3);
    expect(aboveCap.stderr).toMatch(/amendment refused: above the hard maximum: rateLimitPerSecond/);
    const amend = await cli(
      [
        'amend',
        '--name',
        nameOf('cfo'),
        '--key',
        join(cwd, 'cfo.key'),
        '--rate',
        '5',
        '--comments',
        'rate approved',
      ],
      // Run with the leads lowered for a while: the amendment keeps the approved 25, not the running 10.
      { ...raised, VALHALLA_MAX_LEADS_PER_CYCLE: '10' },
    );
    ok(amend, 'amend');
    expect(amend.stdout).toMatch(
      /^recorded amendment #\d+ by Fran Finance \(cfo\) over release manifest [0-9a-f]{12}…, approving 25 leads\/cycle, 5 actions\/cycle, 5 requests\/s \(audited\)/,
    );
    const verify = await cli(['gates', 'verify'], raised);
    ok(verify, 'gates verify (amended)');
    const status = await cli(['gates', 'status'], raised);
    expect(status.stdout).toMatch(
      /^Approved by the CFO's amendment #\d+ \(Fran Finance\): up to 25 leads\/cycle, 5 actions\/cycle, 5 requests\/s$/m,
    );

    ok(
      await cli(['gates', 'report', '--out', join(cwd, 'report-amended')], raised),
      'gates report (amended)',
    );
    const file = join(cwd, 'report-amended', 'gates-report.json');
    const checked = offlineCheck(file, DEFAULT_POLICY_FILE);
    expect(checked.status, checked.stdout).toBe(0);
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
      signatures: { document: string; kind: string }[];
    };
    const amendment = bundle.signatures.find((d) => d.kind === 'amendment')!;
    amendment.document = amendment.document.replace('"rateLimitPerSecond":5', '"rateLimitPerSecond":4');
    writeFileSync(join(cwd, 'report-amended', 'edited.json'), JSON.stringify(bundle));
    const edited = offlineCheck(join(cwd, 'report-amended', 'edited.json'));
    expect(edited.status).toBe(1);
    expect(edited.stdout).toMatch(
      /PROBLEM: amendment by Fran Finance \(cfo\): the report says valid, the check says invalid \(bad signature\)/,
    );
  });

  it('limits edited in .env while valhalla run runs: a lowering is taken at the next cycle with no restart (audited, alerted, in the running service’s status); a raise above the approved is refused and kept out', async () => {
    // The limits come from .env here (the environment would win over it).
    const { VALHALLA_RATE_LIMIT: _fromEnvironment, ...withoutRate } = env;
    const dotenv = join(cwd, '.env');
    writeFileSync(dotenv, 'VALHALLA_RATE_LIMIT=3\n');
    const children = new Set<ChildProcess>();
    const run = spawnNode(BIN, ['run'], { cwd, env: withoutRate, children, guardMs: 300_000 });
    try {
      await untilOutput(run, /cycle \d+ /, 'first cycle');
      writeFileSync(dotenv, 'VALHALLA_RATE_LIMIT=2\nVALHALLA_MAX_LEADS_PER_CYCLE=10\n');
      await untilOutput(run, 'limits in force from the next cycle', 'lowering');
      expect(run.out()).toContain(
        'limits in force from the next cycle: 10 leads/cycle, 5 actions/cycle, 2 requests/s (were 25 leads/cycle, 5 actions/cycle, 3 requests/s)',
      );
      // The running service reports them in its heartbeat (what `status` and the dashboard show):
      // this run's worker, the one its supervisor started (the seeded history has heartbeats too).
      const workerPid = () =>
        query<{ details: string }>(dbFile, "select details from audit_log where action = 'worker.started'")
          .map((e) => (JSON.parse(e.details) as { pid: number }).pid)
          .at(-1);
      await until(
        () =>
          query<{ limits: string | null }>(
            dbFile,
            'select limits from heartbeats where pid = ?',
            workerPid(),
          ).some(
            (h) =>
              h.limits !== null && (JSON.parse(h.limits) as { leadsPerCycle: number }).leadsPerCycle === 10,
          ),
        { what: 'a heartbeat with the lowered limits', ...whileRunning(run) },
      );
      const changed = query<{ details: string }>(
        dbFile,
        "select details from audit_log where action = 'limits.changed'",
      );
      expect(changed.map((c) => JSON.parse(c.details) as Record<string, unknown>)).toEqual([
        expect.objectContaining({
          from: { leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 3 },
          to: { leadsPerCycle: 10, actionsPerCycle: 5, rateLimitPerSecond: 2 },
        }),
      ]);
      expect(query(dbFile, "select id from alerts where event = 'limits_changed'")).toHaveLength(1);
      // Above what the sign-offs and the amendment approve (25 leads/cycle): refused, once, kept out.
      writeFileSync(dotenv, 'VALHALLA_RATE_LIMIT=2\nVALHALLA_MAX_LEADS_PER_CYCLE=30\n');
      await untilOutput(run, 'limits on disk above those approved', 'refusal');
      expect(run.out()).toContain(
        'limits on disk above those approved (VALHALLA_MAX_LEADS_PER_CYCLE 30 leads/cycle (in .env), approved 25): kept 10 leads/cycle, 5 actions/cycle, 2 requests/s',
      );
      expect(query(dbFile, "select seq from audit_log where action = 'limits.refused'")).toHaveLength(1);
      expect(query(dbFile, "select id from alerts where event = 'limits_refused'")).toHaveLength(1);
      expect(query(dbFile, "select seq from audit_log where action = 'limits.changed'")).toHaveLength(1);
      run.child.kill('SIGTERM');
      expect((await run.exited).code).toBe(0);
    } finally {
      for (const child of children) child.kill('SIGKILL');
      rmSync(dotenv, { force: true });
    }
  });

  it('gates that turn red while valhalla run runs (a signer revoked): the next cycle sends nothing, a gate_voided alert says why once, and once more when green again', async () => {
    // Past the ramp (go-live a week ago): every cycle sends, without an operator's confirmation.
    const copy = variant('red-while-running', (db) =>
      db
        .prepare("update runtime_state set value = ? where key = 'go_live_at'")
        .run(String(Date.now() - 7 * DAY)),
    );
    const copyFile = copy.VALHALLA_DATABASE_URL!;
    const runEnv = { ...env, ...copy };
    const children = new Set<ChildProcess>();
    const run = spawnNode(BIN, ['run'], { cwd, env: runEnv, children, guardMs: 300_000 });
    try {
      await untilOutput(run, /cycle \d+ \[live\]/, 'a live cycle');
      const cfo = query<{ key_id: string }>(copyFile, "select key_id from signers where role = 'cfo'")[0]!;
      const revoked = await cli(['signers', 'revoke', '--key-id', cfo.key_id, '--reason', 'key lost'], copy);
      ok(revoked, 'signers revoke');
      const voided = () =>
        query<{ message: string }>(
          copyFile,
          "select message from alerts where event = 'gate_voided' order by id",
        );
      await until(() => voided().length > 0, { what: 'the gate_voided alert', ...whileRunning(run) });
      expect(voided()[0]!.message).toMatch(/^the go-live gates are no longer green, nothing is sent: /);
      // From then on no batch reaches the partner, cycle after cycle, and the alert is not repeated.
      const received = partner.stats().batches.received;
      const cyclesBefore = (run.out().match(/cycle \d+ /g) ?? []).length;
      await until(() => (run.out().match(/cycle \d+ /g) ?? []).length >= cyclesBefore + 3, {
        what: 'three more cycles',
        ...whileRunning(run),
      });
      expect(partner.stats().batches.received).toBe(received);
      expect(voided()).toHaveLength(1);
      // …although leads wait that the same cycles would have sent.
      expect(
        query<{ n: number }>(copyFile, "select count(*) as n from leads where state = 'pending'")[0]!.n,
      ).toBeGreaterThan(0);

      // A new key for the CFO, the CFO's items signed again with it and the CEO's activation again:
      // green at the next cycle.
      const signAgain = (args: string[], what: string) => cli(args, copy).then((r) => ok(r, what));
      await signAgain(['keys', 'create', '--out', join(cwd, 'cfo-2')], 'keys create');
      await signAgain(
        ['signers', 'add', '--role', 'cfo', '--name', nameOf('cfo'), '--key', join(cwd, 'cfo-2.pub')],
        'signers add',
      );
      for (const item of ATTESTED.filter((i) => i.role === 'cfo')) {
        await signAgain(
          [
            'attest',
            '--item',
            item.id,
            '--role',
            'cfo',
            '--name',
            nameOf('cfo'),
            '--key',
            join(cwd, 'cfo-2.key'),
            '--comments',
            'reviewed',
          ],
          `attest ${item.id}`,
        );
      }
      await signAgain(
        ['signoff', '--role', 'cfo', '--name', nameOf('cfo'), '--key', join(cwd, 'cfo-2.key')],
        'signoff',
      );
      // The activation came before the sign-offs that count now: the CEO activates again.
      await signAgain(['activate', '--name', nameOf('ceo'), '--key', join(cwd, 'ceo.key')], 'activate');
      const verify = await cli(['gates', 'verify'], copy);
      expect(verify.code, verify.stdout).toBe(0);
      await until(() => voided().length === 2, { what: 'the gates green again', ...whileRunning(run) });
      expect(voided()[1]!.message).toBe('the go-live gates are green again: outbound may resume');
      // …and the next cycles send again.
      await until(() => partner.stats().batches.received > received, {
        what: 'a batch after the gates are green again',
        ...whileRunning(run),
      });
      run.child.kill('SIGTERM');
      expect((await run.exited).code).toBe(0);
    } finally {
      for (const child of children) child.kill('SIGKILL');
    }
  });

  it('the offline verifier catches a tampered report; a changed policy voids every signature', async () => {
    const file = join(cwd, 'report', 'gates-report.json');
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
      signatures: { document: string; kind: string }[];
    };
    const signoff = bundle.signatures.find((d) => d.kind === 'signoff')!;
    signoff.document = signoff.document.replace(
      '"comments":"approved"',
      '"comments":"approved with changes"',
    );
    const tampered = join(cwd, 'report', 'tampered.json');
    writeFileSync(tampered, JSON.stringify(bundle));
    const offline = spawnSync(
      process.execPath,
      [join(REPO_ROOT, 'scripts', 'verify-gates-report.mjs'), tampered],
      {
        encoding: 'utf8',
      },
    );
    expect(offline.status).toBe(1);
    expect(offline.stdout).toMatch(
      /PROBLEM: signoff by .* the report says valid, the check says invalid \(bad signature\)/,
    );

    // A report of an installation that is not cleared, with its verdict flipped by hand.
    const uncleared = variant('report', (db) =>
      db.prepare("delete from signatures where kind = 'activation'").run(),
    );
    ok(await cli(['gates', 'report', '--out', join(cwd, 'report-2')], uncleared), 'gates report (uncleared)');
    const second = JSON.parse(readFileSync(join(cwd, 'report-2', 'gates-report.json'), 'utf8')) as {
      report: { cleared: boolean };
    };
    expect(second.report.cleared).toBe(false);
    second.report.cleared = true;
    writeFileSync(join(cwd, 'report-2', 'flipped.json'), JSON.stringify(second));
    const flipped = spawnSync(
      process.execPath,
      [join(REPO_ROOT, 'scripts', 'verify-gates-report.mjs'), join(cwd, 'report-2', 'flipped.json')],
      {
        encoding: 'utf8',
      },
    );
    expect(flipped.status).toBe(1);
    expect(flipped.stdout).toContain('PROBLEM: no activation');
    expect(flipped.stdout).toContain('the report says CLEARED; the check says not cleared');

    // The release manifest edited in the report (another partner): its hash no longer matches; with
    // the hash recomputed too, no signed document approves it.
    const original = JSON.parse(readFileSync(file, 'utf8')) as {
      report: { manifest: { hash: string; document: { partner: { url: string }; installationId: string } } };
      installation: { details: string };
    };
    const edited = structuredClone(original);
    edited.report.manifest.document.partner.url = 'https://elsewhere.example.test/';
    writeFileSync(join(cwd, 'report', 'manifest-edited.json'), JSON.stringify(edited));
    expect(offlineCheck(join(cwd, 'report', 'manifest-edited.json')).stdout).toContain(
      "PROBLEM: the release manifest's contents do not match its hash",
    );
    edited.report.manifest.hash = createHash('sha256')
      .update(canonicalJson(edited.report.manifest.document))
      .digest('hex');
    writeFileSync(join(cwd, 'report', 'manifest-rehashed.json'), JSON.stringify(edited));
    const rehashed = offlineCheck(join(cwd, 'report', 'manifest-rehashed.json'));
    expect(rehashed.status).toBe(1);
    expect(rehashed.stdout).toMatch(
      /PROBLEM: signoff by .* the report says valid, the check says invalid \(another installation or release manifest\)/,
    );
    // The installation entry edited (another installation's id): its hash catches it.
    const moved = structuredClone(original);
    const details = JSON.parse(moved.installation.details) as Record<string, unknown>;
    moved.installation.details = JSON.stringify({
      ...details,
      installationId: '00000000-0000-4000-8000-000000000bad',
    });
    writeFileSync(join(cwd, 'report', 'installation-edited.json'), JSON.stringify(moved));
    const movedCheck = offlineCheck(join(cwd, 'report', 'installation-edited.json'));
    expect(movedCheck.status).toBe(1);
    expect(movedCheck.stdout).toMatch(/PROBLEM: the installation entry \d+: contents do not match its hash/);
    expect(movedCheck.stdout).toContain(
      `the release manifest is for installation ${original.report.manifest.document.installationId}, the chain's is 00000000-0000-4000-8000-000000000bad`,
    );

    const policy = { ...JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')), alertDedupMinutes: 10 };
    const changed = join(cwd, 'policy-changed.json');
    writeFileSync(changed, JSON.stringify(policy));
    const verify = await cli(['gates', 'verify'], { VALHALLA_POLICY_FILE: changed });
    expect(verify.code).toBe(3);
    for (const role of ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations']) {
      expect(verify.stdout).toMatch(new RegExp(`8\\.${role}: sign-off by .* is not valid: .*polic`));
    }
    const run = await runBinary(['run', '--once'], {
      cwd,
      env: { ...env, VALHALLA_POLICY_FILE: changed },
      timeoutMs: 60_000,
    });
    expect(run.code).toBe(3);
  });
});

describe('gates conformance in the CRM partner profile, through the built binary', () => {
  it("runs against the sandbox playing the installation's profile (crm-batch-contacts), names it and its SHA-256, and verifies the conformance items", async () => {
    const site = tempDir();
    const crmEnv = testEnv(join(site, 'data'), { VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' });
    ok(await runBinary(['init'], { cwd: site, env: crmEnv }), 'init');
    const sha256 = loadConfig({ cwd: site, env: crmEnv }).partner.profile.sha256;
    const run = await runBinary(['gates', 'conformance'], { cwd: site, env: crmEnv, timeoutMs: 120_000 });
    ok(run, 'gates conformance (CRM profile)');
    expect(run.stdout).toMatch(
      new RegExp(
        `^conformance PASSED in [\\d.]+ s against the sandbox partner playing the profile crm-batch-contacts \\(sha256 ${sha256.slice(0, 12)}…\\)$`,
        'm',
      ),
    );
    expect(run.stdout).toMatch(/^token_refresh\s+no token endpoint is asked\s+ok\s/m);
    expect(run.stdout).toMatch(
      /^partial_answer\s+the refused leads are quarantined with the partner's reason\s+ok\s+the partner answered HTTP 207/m,
    );
    const [entry] = query<{ details: string }>(
      join(site, 'data', 'valhalla.db'),
      "select details from audit_log where action = 'gates.conformance'",
    );
    expect(JSON.parse(entry!.details)).toMatchObject({
      passed: true,
      partner: 'sandbox',
      profile: { name: 'crm-batch-contacts', sha256 },
    });
    const status = JSON.parse(
      (await runBinary(['gates', 'status', '--json'], { cwd: site, env: crmEnv })).stdout,
    ) as {
      gates: { items: { id: string; state: string }[] }[];
    };
    const items = status.gates.flatMap((g) => g.items).filter((i) => /^2\.|^3\.dedup_tested$/.test(i.id));
    for (const id of [
      '2.endpoint',
      '2.token_refresh',
      '2.failure_handling',
      '2.retries',
      '2.total_failure',
      '3.dedup_tested',
    ]) {
      expect(
        items.find((i) => i.id === id),
        id,
      ).toMatchObject({ state: 'ok' });
    }
  });

  it("a profile of the operator's own: the sandbox plays the shipped profile of its auth family in its stead, says so, and the evidence stands for the operator's profile", async () => {
    const site = tempDir();
    const crm = JSON.parse(
      readFileSync(join(REPO_ROOT, 'config', 'partners', 'crm-batch-contacts.json'), 'utf8'),
    );
    // The operator's own partner: an API key in its own header; the sandbox plays the CRM (static token).
    writeFileSync(
      join(site, 'acme.json'),
      JSON.stringify({ ...crm, name: 'acme-contacts', auth: { kind: 'api_key', header: 'X-Acme-Key' } }),
    );
    const acmeEnv = testEnv(join(site, 'data'), { VALHALLA_PARTNER_PROFILE: 'acme.json' });
    ok(await runBinary(['init'], { cwd: site, env: acmeEnv }), 'init');
    const run = await runBinary(['gates', 'conformance'], { cwd: site, env: acmeEnv });
    ok(run, "gates conformance (a profile of the operator's own)");
    expect(run.stdout).toMatch(
      /^conformance PASSED in [\d.]+ s against the sandbox partner playing crm-batch-contacts in the stead of the profile acme-contacts \(sha256 [0-9a-f]{12}…\), which it cannot play: the same auth family; the profile's own mapping is proven by `valhalla gates conformance --partner configured`$/m,
    );
    const [entry] = query<{ details: string }>(
      join(site, 'data', 'valhalla.db'),
      "select details from audit_log where action = 'gates.conformance'",
    );
    expect(JSON.parse(entry!.details)).toMatchObject({
      passed: true,
      profile: { name: 'acme-contacts' },
      played: { profile: 'crm-batch-contacts', standIn: true },
    });
    // The evidence stands for the operator's profile, and the gate items say who played it.
    const status = JSON.parse(
      (await runBinary(['gates', 'status', '--json'], { cwd: site, env: acmeEnv })).stdout,
    ) as {
      gates: { items: { id: string; state: string; detail: string }[] }[];
    };
    const endpoint = status.gates.flatMap((g) => g.items).find((i) => i.id === '2.endpoint');
    expect(endpoint).toMatchObject({
      state: 'ok',
      detail:
        "conformance scenario endpoint passed against the built-in sandbox partner (playing crm-batch-contacts in the profile's stead)",
    });
    // A shipped name on a file of the operator's own is not taken for the shipped profile.
    writeFileSync(
      join(site, 'acme.json'),
      JSON.stringify({ ...crm, name: 'crm-batch-contacts', auth: { kind: 'api_key', header: 'X-Acme-Key' } }),
    );
    const named = await runBinary(['gates', 'conformance'], { cwd: site, env: acmeEnv });
    ok(named, 'gates conformance (an own file under a shipped name)');
    expect(named.stdout).toMatch(/playing crm-batch-contacts in the stead of the profile crm-batch-contacts/);
  });
});

/** scripts/verify-gates-report.mjs, with Node.js alone. */
function offlineCheck(file: string, policyFile?: string) {
  return spawnSync(
    process.execPath,
    [join(REPO_ROOT, 'scripts', 'verify-gates-report.mjs'), file, ...(policyFile ? [policyFile] : [])],
    { encoding: 'utf8' },
  );
}
