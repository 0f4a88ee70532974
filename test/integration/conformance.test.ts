/**
 * The partner conformance suite (gate 2) and the dedup self-test (gate 3): every scenario passes
 * against the healthy sandbox partner (the dedup self-test under either dedup rule: a lead is one
 * person under its e-mail or its external id), and a check fails, with a detail that says why, when
 * the setup under it is broken (a partner that stays up while it should be down; a policy no lead of
 * the scenarios passes). The CLI runs it, prints it, records it, sets the exit code.
 *
 * On SQLite and PostgreSQL: the scenarios' private installation on each (the product gives it a
 * SQLite file; `ScenarioSetup.env` points it at the backend), and the installation the CLI records
 * the result in and reads the gates from, on each.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import {
  CONFORMANCE_SCENARIOS,
  type ConformanceResult,
  type ConformanceScenarioName,
  type ConformanceScenarioResult,
  conformanceScenarios,
  runScenario,
  type ScenarioSetup,
} from '../../src/rehearsal/conformance.js';
import { conformanceProfileFor } from '../../src/rehearsal/private-install.js';
import {
  type SandboxPartner,
  type SandboxPartnerOptions,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { type Backend, backends, databaseExists, dropTestSchemas } from '../support/backends.js';
import { policyFileWith, REPO_ROOT, runInProcess, testEnv } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const list = await backends();
afterAll(dropTestSchemas);

const certDir = tempDir('valhalla-conformance-cert-');

/** The installation the suite is run for: a Phase 3 test installation with its own data folder. */
function installation(extra: Record<string, string> = {}): ScenarioSetup {
  const dir = tempDir();
  return { config: loadConfig({ cwd: dir, env: testEnv(dir, extra) }), certDir };
}

/** The same, with the scenario's private installation on a fresh database of `backend` (one scenario each). */
function installationOn(backend: Backend, extra: Record<string, string> = {}): ScenarioSetup {
  return { ...installation(extra), env: { VALHALLA_DATABASE_URL: backend.databaseUrl() } };
}

/** The scenario ran on the database it was given (and not on the private SQLite file it has by default). */
async function expectRanOn(setup: ScenarioSetup): Promise<void> {
  const url = setup.env?.VALHALLA_DATABASE_URL;
  expect(url).toBeDefined();
  expect(await databaseExists(url!), url).toBe(true);
}

/** The checks of each scenario under the product's own contract (profile `valhalla`, OAuth2). */
const EXPECTED_CHECKS: Record<ConformanceScenarioName, string[]> = {
  endpoint: [
    'health check passes',
    'a batch POST /api/leads is accepted',
    'the partner holds exactly the leads sent, with their idempotency keys',
  ],
  token_refresh: [
    'every cycle exports its batch',
    'no 401 reaches a batch',
    'the token is refreshed before it expires',
    'a valid token is reused, not fetched for every request',
  ],
  failure_handling: [
    'a 401 on a batch gets a fresh token and a resend',
    "a permanent refusal quarantines the batch's leads with the reason",
    'nothing is retried after a permanent refusal',
  ],
  retries: [
    'the batch is retried after 1 s and 2 s',
    'every attempt carries the same idempotency key',
    'accepted, and the partner counts one batch',
    'nothing quarantined',
  ],
  total_failure: [
    'no batch is sent',
    'rolled back within 3 failed requests',
    'nothing lost: every lead still pending or queued',
    'no request after the rollback',
  ],
  dedup: [
    'the same person ingested twice is stored once',
    'a lead already exported is not sent again by later cycles',
    'the partner never saw a lead key in two batches',
  ],
  partial_answer: [
    'a refused lead refuses its whole batch (the contract has no per-lead refusal)',
    "every lead of the batch quarantined with the partner's reason",
    'nothing resent, and the refusal counted as a failed request',
  ],
};

/**
 * The same under the CRM profile (`crm-batch-contacts`: a static bearer token, no batch idempotency
 * header, per-record answers): what each scenario can prove there, said as such.
 */
const EXPECTED_CRM_CHECKS: Record<ConformanceScenarioName, string[]> = {
  endpoint: [
    'health check passes',
    'a batch POST /crm/v3/objects/contacts/batch/create is accepted',
    'the partner holds exactly the leads sent, each once under its lead key',
  ],
  token_refresh: [
    'every cycle exports its batch',
    'no 401 reaches a batch',
    'the static credential is presented on every batch and taken',
    'no token endpoint is asked',
  ],
  failure_handling: [
    'a 401 under a static credential is not cured by a resend: the batch is quarantined with the reason and counted as failed',
    'the next batch is taken once the partner takes the credential again',
    "a permanent refusal quarantines the batch's leads with the reason",
    'nothing is retried after a permanent refusal',
  ],
  retries: [
    'the batch is retried after 1 s and 2 s',
    'every attempt carries the same batch and the same lead keys',
    'accepted, and the partner holds each lead once',
    'nothing quarantined',
  ],
  total_failure: EXPECTED_CHECKS.total_failure,
  dedup: [
    'the same person ingested twice is stored once',
    'a lead already exported is not sent again by later cycles',
    'the partner never received a lead twice',
  ],
  partial_answer: [
    "the refused leads are quarantined with the partner's reason",
    'the other leads of the batch are exported, each held once by the partner',
    'nothing resent, and the partly refused answer counted as a failed request',
  ],
};

/** The CRM installation's settings: the shipped CRM profile (its credentials are the sandbox's own). */
const CRM = { VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts' };

function checkOf(scenario: ConformanceScenarioResult, name: string) {
  const found = scenario.checks.find((c) => c.name === name);
  expect(found, `check "${name}" of ${scenario.name}`).toBeDefined();
  return found!;
}

/** A partner that ignores `down`: it keeps answering while the scenario believes it dead. */
async function partnerThatNeverGoesDown(options: SandboxPartnerOptions): Promise<SandboxPartner> {
  const { down: _ignored, ...faults } = options.faults ?? {};
  const sandbox = await startSandboxPartner({ ...options, faults });
  return {
    ...sandbox,
    setFaults: ({ down: _alsoIgnored, ...patch }) => sandbox.setFaults(patch),
  };
}

describe.each(list)('conformance scenarios, the private installation on $name', (backend: Backend) => {
  it('pass against the healthy sandbox partner: every scenario, every check', async () => {
    const scenarios: ConformanceScenarioResult[] = [];
    for (const name of CONFORMANCE_SCENARIOS) {
      const setup = installationOn(backend);
      scenarios.push(await runScenario(name, setup));
      await expectRanOn(setup);
    }
    const failures = scenarios.flatMap((s) =>
      s.checks.filter((c) => !c.ok).map((c) => `${s.name} / ${c.name}: ${c.detail}`),
    );
    expect(failures).toEqual([]);
    expect(scenarios.map((s) => s.name)).toEqual([...CONFORMANCE_SCENARIOS]);
    for (const scenario of scenarios) {
      expect(scenario.checks.map((c) => c.name)).toEqual(EXPECTED_CHECKS[scenario.name]);
      expect(scenario.passed).toBe(true);
      for (const c of scenario.checks)
        expect(c.detail.length, `${scenario.name} / ${c.name}`).toBeGreaterThan(0);
    }
    // No lead data in the results (they go into the audit chain).
    expect(JSON.stringify(scenarios)).not.toMatch(/@|Conformance Lead|Lovelace/i);
  });

  it('total_failure fails when the partner keeps answering while it should be down', async () => {
    const setup = installationOn(backend);
    const scenario = await runScenario('total_failure', { ...setup, startPartner: partnerThatNeverGoesDown });
    await expectRanOn(setup);
    expect(scenario.passed).toBe(false);
    const noBatch = checkOf(scenario, 'no batch is sent');
    expect(noBatch.ok).toBe(false);
    expect(noBatch.detail).toMatch(/^1 batch request\(s\) made, 1 received by the partner$/);
    const rolledBack = checkOf(scenario, 'rolled back within 3 failed requests');
    expect(rolledBack.ok).toBe(false);
    expect(rolledBack.detail).toMatch(/^still live after 5 cycles and 0 failed request\(s\)$/);
    const nothingLost = checkOf(scenario, 'nothing lost: every lead still pending or queued');
    expect(nothingLost.ok).toBe(false);
    expect(nothingLost.detail).toContain('0 pending or queued; others exported');
    expect(checkOf(scenario, 'no request after the rollback')).toMatchObject({
      ok: false,
      detail: 'never rolled back',
    });
  });

  it('dedup passes when the installation keys leads by external id: the same person under another id is a duplicate', async () => {
    const setup = installationOn(backend, { VALHALLA_DEDUP_KEY: 'external_id' });
    const checks = await conformanceScenarios.dedup(setup);
    await expectRanOn(setup);
    const [storedOnce, notSentAgain, partnerKeys] = checks;
    expect(storedOnce).toMatchObject({ name: 'the same person ingested twice is stored once', ok: true });
    expect(storedOnce!.detail).toBe(
      "4 people in 5 rows over 2 files: 4 stored; the second file's 1 duplicate(s) counted (dedup key: external_id)",
    );
    expect(notSentAgain).toMatchObject({
      name: 'a lead already exported is not sent again by later cycles',
      ok: true,
      detail: '3 exported in the first cycle; 0 of them sent again in 1 later batch request(s)',
    });
    expect(partnerKeys).toMatchObject({ ok: true });
  });
});

describe('conformance scenarios against the sandbox playing the CRM profile (static bearer token, per-record answers)', () => {
  it('pass: every scenario, every check, each saying what it proves under a static credential', async () => {
    const scenarios: ConformanceScenarioResult[] = [];
    for (const name of CONFORMANCE_SCENARIOS) scenarios.push(await runScenario(name, installation(CRM)));
    const failures = scenarios.flatMap((s) =>
      s.checks.filter((c) => !c.ok).map((c) => `${s.name} / ${c.name}: ${c.detail}`),
    );
    expect(failures).toEqual([]);
    for (const scenario of scenarios) {
      expect(scenario.checks.map((c) => c.name)).toEqual(EXPECTED_CRM_CHECKS[scenario.name]);
    }
    const detail = (scenario: ConformanceScenarioName, n: number) =>
      scenarios.find((s) => s.name === scenario)!.checks[n]!.detail;
    // What ran, in the details: no token endpoint, the 401 resent once and then quarantined, a 207.
    expect(detail('token_refresh', 3)).toBe('0 token(s) issued, 0 request(s) to a token endpoint');
    expect(detail('failure_handling', 0)).toMatch(
      /^with the credential refused by the partner: HTTP 401, HTTP 401 under the same batch key, the same credential; the lead is quarantined \(refused by the partner \(HTTP 401\)/,
    );
    expect(detail('partial_answer', 0)).toMatch(
      /^the partner answered HTTP 207, refusing 2 of 4 lead\(s\); 2 quarantined \(reason: refused by the partner: /,
    );
    expect(JSON.stringify(scenarios)).not.toMatch(/@|Conformance Lead|Lovelace/i);
  });

  it("a profile of the operator's own (a static token): the sandbox plays the CRM, the shipped profile of its auth family, in its stead", async () => {
    const dir = tempDir();
    const setup = installation({ VALHALLA_PARTNER_PROFILE: otherProfile(dir) });
    expect(conformanceProfileFor(setup.config)).toEqual({ played: 'crm-batch-contacts', standIn: true });
    const oauth = installation({ VALHALLA_PARTNER_PROFILE: oauthProfile(dir) });
    expect(conformanceProfileFor(oauth.config)).toEqual({ played: 'valhalla', standIn: true });
    expect(conformanceProfileFor(installation(CRM).config)).toEqual({
      played: 'crm-batch-contacts',
      standIn: false,
    });
    // A file under the shipped name is the shipped profile only when its content is: an exact copy is
    // played as itself; an edited one (its name unchanged) is the operator's own, played by a stand-in.
    const shipped = readFileSync(join(REPO_ROOT, 'config/partners/crm-batch-contacts.json'), 'utf8');
    const copy = join(tempDir(), 'crm-batch-contacts.json');
    writeFileSync(copy, shipped);
    expect(conformanceProfileFor(installation({ VALHALLA_PARTNER_PROFILE: copy }).config)).toEqual({
      played: 'crm-batch-contacts',
      standIn: false,
    });
    const edited = join(tempDir(), 'crm-batch-contacts.json');
    const profile = JSON.parse(shipped) as { name: string; batch: { maxLeads: number } };
    writeFileSync(edited, JSON.stringify({ ...profile, batch: { ...profile.batch, maxLeads: 50 } }));
    const editedSetup = installation({ VALHALLA_PARTNER_PROFILE: edited });
    expect(editedSetup.config.partner.profile.profile.name).toBe('crm-batch-contacts');
    expect(conformanceProfileFor(editedSetup.config)).toEqual({
      played: 'crm-batch-contacts',
      standIn: true,
    });
    const scenario = await runScenario('endpoint', setup);
    expect(scenario.passed).toBe(true);
    expect(scenario.checks.map((c) => c.name)).toContain(
      'a batch POST /crm/v3/objects/contacts/batch/create is accepted',
    );
  });
});

/** The product's own contract under another name (OAuth2): a profile of the operator's own. */
function oauthProfile(dir: string): string {
  const file = join(dir, 'oauth.json');
  const own = JSON.parse(readFileSync(join(REPO_ROOT, 'config', 'partners', 'valhalla.json'), 'utf8'));
  writeFileSync(file, JSON.stringify({ ...own, name: 'oauth-own' }));
  return file;
}

/** A partner profile of another name (the CRM's, renamed): one the sandbox does not play. */
function otherProfile(dir: string): string {
  const file = join(dir, 'acme.json');
  const crm = JSON.parse(
    readFileSync(join(REPO_ROOT, 'config', 'partners', 'crm-batch-contacts.json'), 'utf8'),
  );
  // An API key in its own header: a static credential, as the CRM's token is.
  writeFileSync(
    file,
    JSON.stringify({ ...crm, name: 'acme-contacts', auth: { kind: 'api_key', header: 'X-Acme-Key' } }),
  );
  return file;
}

describe('conformance suite', () => {
  it('a scenario that cannot run is a failed scenario with the reason, not an exception', async () => {
    const scenario = await runScenario('endpoint', {
      ...installation(),
      startPartner: async () => {
        throw new Error('port in use');
      },
    });
    expect(scenario).toEqual({
      name: 'endpoint',
      passed: false,
      checks: [{ name: 'scenario ran to its end', ok: false, detail: 'Error: port in use' }],
    });
  });
});

describe.each(list)('valhalla gates conformance, the installation on $name', (backend: Backend) => {
  it('prints the checks, records the result in the audit chain, exit 0 when all passed', async () => {
    const dir = tempDir();
    const env = testEnv(dir, { VALHALLA_DATABASE_URL: backend.databaseUrl() });
    expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);
    const json = await runInProcess(['gates', 'conformance', '--json'], { env, cwd: dir });
    expect(json.stderr).toBe('');
    expect(json.code).toBe(0);
    // What runConformance returns, printed: every scenario, well under a minute, no lead data.
    const result = JSON.parse(json.stdout) as ConformanceResult;
    expect(result.passed).toBe(true);
    expect(result.partner).toBe('sandbox');
    expect(result.scenarios.map((s) => [s.name, s.passed])).toEqual(
      CONFORMANCE_SCENARIOS.map((name) => [name, true]),
    );
    for (const scenario of result.scenarios)
      expect(scenario.checks.map((c) => c.name)).toEqual(EXPECTED_CHECKS[scenario.name]);
    expect(result.durationMs).toBeLessThan(60_000);
    expect(Date.parse(result.startedAt)).not.toBeNaN();
    expect(json.stdout).not.toMatch(/@|Conformance Lead|Lovelace/i);

    const app = await openApp({ config: loadConfig({ cwd: dir, env }) });
    try {
      const entry = await app.audit.latest('gates.conformance');
      expect(entry).toMatchObject({ actor: 'test-operator' });
      expect(JSON.parse(entry!.details)).toEqual(result);
      expect((await app.audit.verify()).ok).toBe(true);
    } finally {
      await app.close();
    }

    // The gates read it: each scenario that passed verifies its item.
    const status = await runInProcess(['gates', 'status', '--json'], { env, cwd: dir });
    expect(status.code).toBe(0);
    const report = JSON.parse(status.stdout) as { gates: { items: { id: string; state: string }[] }[] };
    const items = report.gates.flatMap((g) => g.items);
    const conformanceItems = [
      '2.endpoint',
      '2.token_refresh',
      '2.failure_handling',
      '2.retries',
      '2.total_failure',
      '3.dedup_tested',
    ];
    expect(items.filter((i) => conformanceItems.includes(i.id)).map((i) => [i.id, i.state])).toEqual(
      conformanceItems.map((id) => [id, 'ok']),
    );
  });

  it('exit 1 with the failed checks in the table when a scenario fails', async () => {
    const dir = tempDir();
    const env = testEnv(dir, {
      VALHALLA_DATABASE_URL: backend.databaseUrl(),
      // A policy no lead of the scenarios (score 80) passes: nothing is ever sent.
      VALHALLA_POLICY_FILE: policyFileWith(dir, { minLeadScore: 90 }),
    });
    expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);
    const out = await runInProcess(['gates', 'conformance'], { env, cwd: dir });
    expect(out.code).toBe(1);
    expect(out.stdout).toMatch(
      /^conformance FAILED in \d+\.\d s against the sandbox partner playing the profile valhalla \(sha256 [0-9a-f]{12}…\): failed endpoint\b/,
    );
    expect(out.stdout).toMatch(/^SCENARIO\s+CHECK\s+OK\s+DETAIL$/m);
    expect(out.stdout).toMatch(
      /^endpoint\s+a batch POST \/api\/leads is accepted\s+FAILED\s+0 request\(s\): none; 0 of 3 lead\(s\) exported$/m,
    );
    expect(out.stdout).toContain('recorded in the audit chain as gates.conformance');
    expect(out.stderr).toContain('valhalla: the conformance suite failed: see the checks above');
  });
});

describe('valhalla gates conformance, the installation configured for the CRM profile', () => {
  it('runs against the sandbox playing the CRM profile, names the profile (name and SHA-256) in the output and the evidence', async () => {
    const dir = tempDir();
    const env = testEnv(dir, CRM);
    expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);
    const json = await runInProcess(['gates', 'conformance', '--json'], { env, cwd: dir });
    expect(json.stderr).toBe('');
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout) as ConformanceResult;
    const config = loadConfig({ cwd: dir, env });
    expect(result.profile).toEqual({ name: 'crm-batch-contacts', sha256: config.partner.profile.sha256 });
    expect(result.scenarios.map((s) => [s.name, s.passed])).toEqual(
      CONFORMANCE_SCENARIOS.map((name) => [name, true]),
    );
    const app = await openApp({ config });
    try {
      const entry = await app.audit.latest('gates.conformance');
      expect(JSON.parse(entry!.details)).toEqual(result);
    } finally {
      await app.close();
    }
    const table = await runInProcess(['gates', 'conformance'], { env, cwd: dir });
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(
      new RegExp(
        `^conformance PASSED in \\d+\\.\\d s against the sandbox partner playing the profile crm-batch-contacts \\(sha256 ${config.partner.profile.sha256.slice(0, 12)}…\\)$`,
        'm',
      ),
    );
    expect(table.stdout).toMatch(
      /^endpoint\s+a batch POST \/crm\/v3\/objects\/contacts\/batch\/create is accepted\s+ok\s/m,
    );
  });

  it('a run counts only for the profile it was made for: one for another profile (tried for one command) neither counts nor hides it', async () => {
    const dir = tempDir();
    const env = testEnv(dir, CRM);
    expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);
    const app = await openApp({ config: loadConfig({ cwd: dir, env }) });
    try {
      const record = (profile: { name: string; sha256: string }) =>
        app.audit.record({
          actor: 'test',
          action: 'gates.conformance',
          details: {
            passed: true,
            partner: 'sandbox',
            profile,
            played: { profile: 'valhalla', standIn: false },
            scenarios: CONFORMANCE_SCENARIOS.map((name) => ({ name, passed: true, checks: [] })),
          },
        });
      const endpoint = async () =>
        (await app.gatesReport()).gates.flatMap((g) => g.items).find((i) => i.id === '2.endpoint');
      const other = { name: 'valhalla', sha256: 'b'.repeat(64) };
      const own = { name: 'crm-batch-contacts', sha256: app.config.partner.profile.sha256 };
      await record(other);
      expect(await endpoint()).toMatchObject({
        state: 'missing',
        detail: `the last conformance run was for partner profile valhalla (sha256 bbbbbbbbbbbb…), not the configured crm-batch-contacts (sha256 ${own.sha256.slice(0, 12)}…): run \`valhalla gates conformance\``,
      });
      await record(own);
      expect(await endpoint()).toMatchObject({ state: 'ok' });
      // A later run for another profile (VALHALLA_PARTNER_PROFILE set for one command) hides nothing.
      await record(other);
      expect(await endpoint()).toMatchObject({ state: 'ok' });
    } finally {
      await app.close();
    }
  });
});
