/**
 * Signed means running, against a partner the product did not write. An installation goes live the
 * way operators do (evidence, keys, signers, attestations, sign-offs, the CEO's activation, a Phase 4
 * run) against an HTTPS partner of its own (test/support/foreign-partner.ts: its own paths, tokens,
 * certificate and records). Then each ordinary way around the sign-offs is tried through the real
 * binary and refused naming what differs, with nothing sent: limits raised in `.env`, the partner
 * moved to another host, another dedup rule for one command, monitoring switched off, a document
 * signed for another installation (staging), a conformance run against another partner. A rate
 * lowered in the policy file voids nothing and is taken at the next cycle; the CFO's amendment alone
 * lets the rate up to 5/s while the service runs; a lowering in `.env` is taken at the next cycle
 * with no restart; any other policy change voids the sign-offs and rolls the service back.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiToken } from '../../src/server/index.js';
import {
  BIN,
  type CliResult,
  phase4Env,
  policyFileWith,
  REPO_ROOT,
  runBinary,
  runInProcess,
} from '../support/cli.js';
import { type ForeignPartner, startForeignPartner } from '../support/foreign-partner.js';
import {
  initializeWithPhase3History,
  monitoringSettings,
  nameOf,
  recordEvidence,
  signEverything,
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
import { HOUR, until, untilOutput, whileRunning } from '../support/world.js';

const dashboardToken = createApiToken('ops-check', 'viewer');

let cwd: string;
let env: Record<string, string>;
let dbFile: string;
let policyFile: string;
let partner: ForeignPartner;
/** Another partner, on another host name with another CA: where the walk-arounds point. */
let elsewhere: ForeignPartner;
let slack: SlackReceiver;
let smtp: MailServer;

const cli = (args: string[], extra: Record<string, string> = {}) =>
  runInProcess(args, { cwd, env: { ...env, ...extra } });
const binary = (args: string[], extra: Record<string, string> = {}) =>
  runBinary(args, { cwd, env: { ...env, ...extra }, timeoutMs: 90_000 });
const ok = (result: CliResult, what: string) =>
  expect(result.code, `${what}: ${result.stderr}${result.stdout}`).toBe(0);
const partnerSettings = (p: ForeignPartner) => ({
  VALHALLA_PARTNER_URL: p.url,
  VALHALLA_PARTNER_TOKEN_URL: p.tokenUrl,
  VALHALLA_PARTNER_CA_FILE: p.caFile!,
});
const leadPosts = (p: ForeignPartner) => p.requests.filter((r) => r.path.endsWith('/api/leads')).length;
const auditCount = (action: string) =>
  query<{ n: number }>(dbFile, 'select count(*) as n from audit_log where action = ?', action)[0]!.n;
const signatureCount = () => query<{ n: number }>(dbFile, 'select count(*) as n from signatures')[0]!.n;

/** scripts/verify-gates-report.mjs on `file`, with Node.js alone. */
const offlineCheck = (file: string) =>
  spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'verify-gates-report.mjs'), file], {
    encoding: 'utf8',
  });

/** Confirm the ramp's stage-1 cycle waiting for an operator, if one is. */
async function confirmWaitingCycle(): Promise<void> {
  const review = JSON.parse((await cli(['cycle', 'confirm', '--json'])).stdout) as {
    review: { kind: string; cycle?: { id: number } };
  };
  if (review.review.kind === 'awaiting')
    ok(await cli(['cycle', 'confirm', String(review.review.cycle!.id)]), 'confirm');
}

/** A Phase 4 start refused: exit 3, audited (`run.refused`), alerted; the partners saw no lead post. */
async function expectRefusedStart(extra: Record<string, string>, ...naming: string[]): Promise<string> {
  const postsBefore = leadPosts(partner) + leadPosts(elsewhere);
  const refusedBefore = auditCount('run.refused');
  const run = await binary(['run', '--once'], extra);
  expect(run.code, run.stderr + run.stdout).toBe(3);
  expect(run.stderr).toContain('Phase 4 refused: the go-live gates are not all green');
  for (const words of naming) expect(run.stderr).toContain(words);
  expect(auditCount('run.refused')).toBe(refusedBefore + 1);
  expect(leadPosts(partner) + leadPosts(elsewhere)).toBe(postsBefore);
  return run.stderr;
}

/** The installation's policy file with `changes` to the shipped policy (its rate 3 unless changed). */
function writePolicy(changes: Record<string, unknown>): void {
  const policy = JSON.parse(readFileSync(policyFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(policyFile, JSON.stringify({ ...policy, ...changes }));
}

beforeAll(async () => {
  cwd = tempDir();
  const data = join(cwd, 'data');
  dbFile = join(data, 'valhalla.db');
  const credentials = { clientId: 'valhalla-prod', clientSecret: 'foreign-secret-0123456789abcdef' };
  partner = await startForeignPartner({ dir: cwd, name: 'acme', host: '127.0.0.1', ...credentials });
  elsewhere = await startForeignPartner({ dir: cwd, name: 'elsewhere', host: 'localhost', ...credentials });
  slack = await startSlackReceiver('/services/T0/B0/foreign-partner');
  smtp = await startSmtpServer();
  // The signed rate (3/s) comes from the installation's own policy file, below the hard maximum of 5.
  policyFile = policyFileWith(cwd, { rateLimitPerSecond: 3 });
  env = phase4Env(data, partner, {
    VALHALLA_POLICY_FILE: policyFile,
    ...monitoringSettings(slack, smtp, dashboardToken.entry),
  });
  await initializeWithPhase3History(cwd, env);
});

afterAll(async () => {
  await partner?.close();
  await elsewhere?.close();
  await slack?.close();
  await smtp?.close();
});

describe('signed means running, against a partner the product did not write', () => {
  it('goes live the way an operator does and exports to the foreign partner', async () => {
    await recordEvidence(cli, cwd, env, dashboardToken.token);
    // The configured-partner run reached the foreign partner: a token, the health check, a batch of
    // two synthetic leads, the same batch again (answered as a replay, not new leads), and a batch the
    // contract forbids (refused with 422).
    expect(partner.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      'GET /partner/v2/health 200',
      'POST /oauth2/token 200',
      'POST /partner/v2/api/leads 201',
      'POST /partner/v2/api/leads 201',
      'POST /partner/v2/api/leads 422',
    ]);
    expect(partner.replays).toBe(1);
    expect(partner.leads.map((l) => l.email)).toEqual([
      expect.stringMatching(/@conformance\.invalid$/),
      expect.stringMatching(/@conformance\.invalid$/),
    ]);

    await signEverything(cli, cwd);
    const verify = await cli(['gates', 'verify']);
    ok(verify, 'gates verify');
    // The manifest every document approves names this partner and its CA.
    const manifest = JSON.parse((await cli(['gates', 'manifest', '--json'])).stdout) as {
      document: { partner: { url: string; tokenUrl: string; caFingerprints: string[] }; limits: unknown };
    };
    expect(manifest.document.partner).toMatchObject({ url: partner.url, tokenUrl: partner.tokenUrl });
    expect(manifest.document.partner.caFingerprints).toHaveLength(1);
    expect(manifest.document.limits).toEqual({
      leadsPerCycle: 25,
      actionsPerCycle: 5,
      rateLimitPerSecond: 3,
    });

    const run = await binary(['run', '--once']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/cycle \d+ \[live\] ramp stage 1, .*accepted 1/);
    const exported = partner.leads.filter((l) => !l.key.startsWith('conformance-'));
    expect(exported).toHaveLength(1);
    expect(exported[0]!.email).toMatch(/^lead\d+@example\.com$/);
    await confirmWaitingCycle();
  });

  it('limits raised in .env (within the hard maxima, above the signed ones): refused naming each, audited and alerted', async () => {
    const alertsBefore = query(dbFile, "select id from alerts where event = 'phase4_refused'").length;
    writeFileSync(join(cwd, '.env'), 'VALHALLA_RATE_LIMIT=5\nVALHALLA_MAX_LEADS_PER_CYCLE=50\n');
    try {
      await expectRefusedStart(
        {},
        'VALHALLA_MAX_LEADS_PER_CYCLE 50 leads/cycle (in .env), approved 25',
        'VALHALLA_RATE_LIMIT 5 requests/s (in .env), approved 3',
        'have the CFO sign an amendment with the new values (valhalla amend)',
      );
    } finally {
      rmSync(join(cwd, '.env'));
    }
    expect(query(dbFile, "select id from alerts where event = 'phase4_refused'").length).toBe(
      alertsBefore + 1,
    );
  });

  it('the partner moved to another HTTPS host (URL, token URL and CA): refused naming each; gates verify is red; nothing reaches either partner', async () => {
    const moved = partnerSettings(elsewhere);
    const [signed, running] = [partner, elsewhere];
    const stderr = await expectRefusedStart(
      moved,
      `partner.url (VALHALLA_PARTNER_URL): signed "${signed.url}", running "${running.url}"`,
      `partner.tokenUrl (VALHALLA_PARTNER_TOKEN_URL): signed "${signed.tokenUrl}", running "${running.tokenUrl}"`,
      'partner.caFingerprints (VALHALLA_PARTNER_CA_FILE)',
    );
    expect(stderr).toContain('have the sign-offs, attestations and activation signed again');
    const verify = await cli(['gates', 'verify'], moved);
    expect(verify.code).toBe(3);
    expect(verify.stdout).toContain(`partner.url (VALHALLA_PARTNER_URL): signed "${signed.url}"`);
    expect(elsewhere.requests).toEqual([]);
  });

  it('a conformance run against another partner does not count for the manifest’s: Phase 4 refuses until the configured partner passes again', async () => {
    const elsewhereRun = await cli(
      ['gates', 'conformance', '--partner', 'configured'],
      partnerSettings(elsewhere),
    );
    ok(elsewhereRun, 'conformance against the other partner');
    expect(elsewhereRun.stdout).toContain(`against the configured partner ${elsewhere.url}\n`);
    expect(elsewhere.leads).toHaveLength(2);
    await expectRefusedStart(
      {},
      `the last conformance run against a configured partner ran against ${elsewhere.url} (CA `,
      `not the manifest's ${partner.url} (CA `,
    );
    // A report made now, its verdict flipped by hand: the offline verifier finds the run's partner.
    ok(await cli(['gates', 'report', '--out', join(cwd, 'report-elsewhere')]), 'gates report');
    const file = join(cwd, 'report-elsewhere', 'gates-report.json');
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
      report: { cleared: boolean; missing: unknown[] };
    };
    expect(bundle.report.cleared).toBe(false);
    bundle.report.cleared = true;
    bundle.report.missing = [];
    writeFileSync(file, JSON.stringify(bundle));
    const flipped = offlineCheck(file);
    expect(flipped.status).toBe(1);
    expect(flipped.stdout).toContain(
      `PROBLEM: the conformance run against a configured partner ran against {"caFingerprints":[`,
    );
    expect(flipped.stdout).toContain(`"url":"${elsewhere.url}"}, not the manifest's partner`);
    // Against the manifest's partner again: green, with no new signature.
    const signatures = signatureCount();
    ok(await cli(['gates', 'conformance', '--partner', 'configured']), 'conformance against the partner');
    ok(await cli(['gates', 'verify']), 'gates verify');
    expect(signatureCount()).toBe(signatures);
  });

  it('another dedup rule for one command is refused; a person already exported, arriving under a new external id, is a duplicate and never sent twice', async () => {
    const exported = partner.leads.find((l) => !l.key.startsWith('conformance-'))!;
    const stored = query<{ external_id: string; email: string }>(
      dbFile,
      "select external_id, email from leads where state = 'pending' order by id limit 1",
    )[0]!;
    const at = new Date(Date.now() - HOUR).toISOString();
    writeFileSync(
      join(cwd, 'returning.csv'),
      [
        'external_id,name,email,score,source_timestamp,value',
        // The exported person again, under a new external id (and the e-mail in capitals).
        `NEW-1,Returning Person,${exported.email.toUpperCase()},95,${at},100`,
        // A stored lead's external id, under a new e-mail.
        `${stored.external_id},Other Name,other.address@example.net,95,${at},100`,
        // Someone new.
        `NEW-2,New Person,new.person@example.net,90,${at},100`,
      ].join('\n'),
    );
    const leadsBefore = query(dbFile, 'select id from leads').length;
    const byExternalId = await binary(['ingest', 'returning.csv'], { VALHALLA_DEDUP_KEY: 'external_id' });
    expect(byExternalId.code).toBe(3);
    expect(byExternalId.stderr).toContain(
      'refused: this installation deduplicates by email (the dedup rule recorded in its database), but this command runs with external_id',
    );
    expect(query(dbFile, 'select id from leads').length).toBe(leadsBefore);

    const ingested = await binary(['ingest', 'returning.csv', '--json']);
    expect(ingested.code, ingested.stderr).toBe(0);
    expect(JSON.parse(ingested.stdout)).toMatchObject({ accepted: 1, duplicate: 2 });
    // The returning person is not stored again, so no cycle can send them: the partner holds them once.
    const emails = query<{ email: string }>(dbFile, 'select email from leads').map((l) =>
      l.email.toLowerCase(),
    );
    expect(emails.filter((e) => e === exported.email)).toHaveLength(1);
    const run = await binary(['run', '--once']);
    expect(run.code, run.stderr).toBe(0);
    await confirmWaitingCycle();
    const sent = partner.leads.map((l) => l.email.toLowerCase());
    expect(sent.filter((e) => e === exported.email)).toHaveLength(1);
    expect(new Set(sent).size).toBe(sent.length);
  });

  it('monitoring switched off (no dashboard, no metrics, log level silent): refused naming each setting', async () => {
    await expectRefusedStart(
      { VALHALLA_SERVER_PORT: 'off', VALHALLA_METRICS_PORT: 'off', VALHALLA_LOG_LEVEL: 'silent' },
      'VALHALLA_SERVER_PORT=off: Phase 4 needs the dashboard and admin API on',
      'VALHALLA_METRICS_PORT=off: Phase 4 needs /metrics on',
      'VALHALLA_LOG_LEVEL=silent: Phase 4 needs warn or more',
    );
  });

  it('a sign-off made for staging (same policy, same keys) is refused by production, naming both installations', async () => {
    const staging = join(cwd, 'staging');
    mkdirSync(staging);
    const stagingEnv = {
      VALHALLA_DATA_DIR: join(staging, 'data'),
      VALHALLA_LOG_FILE: join(staging, 'valhalla.log'),
    };
    ok(await cli(['init'], stagingEnv), 'init staging');
    ok(
      await cli(
        ['signers', 'add', '--role', 'cfo', '--name', nameOf('cfo'), '--key', join(cwd, 'cfo.pub')],
        stagingEnv,
      ),
      'signers add (staging)',
    );
    const document = join(staging, 'cfo-signoff.json');
    ok(
      await cli(
        [
          'signoff',
          '--role',
          'cfo',
          '--name',
          nameOf('cfo'),
          '--key',
          join(cwd, 'cfo.key'),
          '--out',
          document,
        ],
        stagingEnv,
      ),
      'signoff for staging',
    );
    const stagingId = (
      JSON.parse((await cli(['gates', 'manifest', '--json'], stagingEnv)).stdout) as {
        document: { installationId: string };
      }
    ).document.installationId;
    const productionId = (
      JSON.parse((await cli(['gates', 'manifest', '--json'])).stdout) as {
        document: { installationId: string };
      }
    ).document.installationId;
    expect(stagingId).not.toBe(productionId);
    const signatures = signatureCount();
    const submitted = await binary(['signoff', 'submit', document]);
    expect(submitted.code).toBe(3);
    expect(submitted.stderr).toContain(
      `signed for installation ${stagingId}, and this is installation ${productionId}: a document approves one installation only`,
    );
    expect(signatureCount()).toBe(signatures);
  });

  it('while the service runs: a rate lowered in the policy file voids nothing and is taken at the next cycle; a raise there waits for the CFO’s amendment alone; a lowering in .env is taken with no restart', async () => {
    const children = new Set<ChildProcess>();
    const run = spawnNode(BIN, ['run'], { cwd, env, children, guardMs: 300_000 });
    const policyChanges = auditCount('policy.changed');
    const signatures = signatureCount();
    const workersBefore = auditCount('worker.started');
    try {
      await untilOutput(run, /cycle \d+ /, 'first cycle');
      writePolicy({ rateLimitPerSecond: 2 });
      await untilOutput(run, '2 requests/s (were', 'the policy file’s lowering');
      expect(run.out()).toContain(
        'limits in force from the next cycle: 25 leads/cycle, 5 actions/cycle, 2 requests/s (were 25 leads/cycle, 5 actions/cycle, 3 requests/s)',
      );
      expect(auditCount('policy.changed')).toBe(policyChanges);
      ok(await cli(['gates', 'verify']), 'gates verify (rate lowered in the policy file)');

      // A raise in the policy file (within 5/s) is refused and kept out…
      writePolicy({ rateLimitPerSecond: 5 });
      await untilOutput(run, 'limits on disk above those approved', 'refusal');
      expect(run.out()).toContain(
        "limits on disk above those approved (VALHALLA_RATE_LIMIT 5 requests/s (the policy file's rateLimitPerSecond), approved 3): kept 25 leads/cycle, 5 actions/cycle, 2 requests/s",
      );
      // …until the CFO signs an amendment naming it: no other signature, no restart.
      const amend = await cli([
        'amend',
        '--name',
        nameOf('cfo'),
        '--key',
        join(cwd, 'cfo.key'),
        '--rate',
        '5',
        '--comments',
        'partner allows 5/s',
      ]);
      ok(amend, 'amend');
      await untilOutput(run, '5 requests/s (were', 'the amended rate');
      expect(run.out()).toContain(
        'limits in force from the next cycle: 25 leads/cycle, 5 actions/cycle, 5 requests/s (were 25 leads/cycle, 5 actions/cycle, 2 requests/s)',
      );
      expect(signatureCount()).toBe(signatures + 1);
      expect(
        query<{ kind: string; role: string }>(
          dbFile,
          'select kind, role from signatures order by id desc limit 1',
        ),
      ).toEqual([{ kind: 'amendment', role: 'cfo' }]);
      ok(await cli(['gates', 'verify']), 'gates verify (amended)');

      // A lowering in .env (which wins over the policy file): taken at the next cycle.
      writeFileSync(join(cwd, '.env'), 'VALHALLA_RATE_LIMIT=1\n');
      await untilOutput(run, '1 requests/s (were', 'the .env lowering');
      expect(run.out()).toContain(
        'limits in force from the next cycle: 25 leads/cycle, 5 actions/cycle, 1 requests/s (were 25 leads/cycle, 5 actions/cycle, 5 requests/s)',
      );
      const changes = query<{ details: string }>(
        dbFile,
        "select details from audit_log where action = 'limits.changed'",
      )
        .map((e) => (JSON.parse(e.details) as { to: { rateLimitPerSecond: number } }).to.rateLimitPerSecond)
        .slice(-3);
      expect(changes).toEqual([2, 5, 1]);
      expect(
        query(dbFile, "select id from alerts where event = 'limits_changed'").length,
      ).toBeGreaterThanOrEqual(3);
      expect(
        query(dbFile, "select id from alerts where event = 'limits_refused'").length,
      ).toBeGreaterThanOrEqual(1);
      // All of it in one worker: no restart.
      expect(auditCount('worker.started')).toBe(workersBefore + 1);
      expect(auditCount('policy.changed')).toBe(policyChanges);
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
      for (const child of children) child.kill('SIGKILL');
      rmSync(join(cwd, '.env'), { force: true });
    }
  });

  it('the evidence report names the foreign partner and the amendment, verifies offline, and an edited amendment is caught', async () => {
    ok(await cli(['gates', 'report', '--out', join(cwd, 'report')]), 'gates report');
    const file = join(cwd, 'report', 'gates-report.json');
    const offline = offlineCheck(file);
    expect(offline.status, offline.stdout + offline.stderr).toBe(0);
    const bundle = JSON.parse(readFileSync(file, 'utf8')) as {
      report: {
        manifest: { document: { partner: { url: string } }; approvedLimits: { rateLimitPerSecond: number } };
      };
      signatures: { document: string; kind: string }[];
    };
    expect(bundle.report.manifest.document.partner.url).toBe(partner.url);
    expect(bundle.report.manifest.approvedLimits.rateLimitPerSecond).toBe(5);
    const amendment = bundle.signatures.find((d) => d.kind === 'amendment')!;
    amendment.document = amendment.document.replace('"rateLimitPerSecond":5', '"rateLimitPerSecond":4');
    writeFileSync(join(cwd, 'report', 'edited.json'), JSON.stringify(bundle));
    const edited = offlineCheck(join(cwd, 'report', 'edited.json'));
    expect(edited.status).toBe(1);
    expect(edited.stdout).toContain('PROBLEM: amendment by Fran Finance (cfo)');
  });

  it('any other change to the policy file while the service runs: every sign-off void, audited, alerted, rolled back', async () => {
    const children = new Set<ChildProcess>();
    const run = spawnNode(BIN, ['run'], { cwd, env, children, guardMs: 300_000 });
    const policyChanges = auditCount('policy.changed');
    const rollbacks = auditCount('mode.rollback');
    try {
      await untilOutput(run, /cycle \d+ /, 'first cycle');
      writePolicy({ alertDedupMinutes: 10 });
      await until(() => auditCount('policy.changed') > policyChanges, {
        what: 'policy.changed',
        ...whileRunning(run),
      });
      await until(() => auditCount('mode.rollback') > rollbacks, {
        what: 'the rollback',
        ...whileRunning(run),
      });
      expect(query(dbFile, "select value from runtime_state where key = 'mode'")).toEqual([
        { value: 'rolled_back' },
      ]);
      expect(
        query(dbFile, "select id from alerts where event = 'gate_voided'").length,
      ).toBeGreaterThanOrEqual(1);
      const verify = await cli(['gates', 'verify']);
      expect(verify.code).toBe(3);
      expect(verify.stdout).toMatch(/8\.cfo: sign-off by .* is not valid: .*polic/);
    } finally {
      run.child.kill('SIGTERM');
      await run.exited;
      for (const child of children) child.kill('SIGKILL');
    }
  });
});
