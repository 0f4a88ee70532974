/**
 * The release manifest on SQLite and PostgreSQL: what the signed documents approve is what Phase 4
 * runs. Each test opens the installation as an operator's commands would, one configuration at a
 * time on one database (the installation id is the database's), signs over the manifest the app
 * computes, and then changes what an operator can change: the `.env`/environment values of the
 * partner, the limits and the monitoring; a document made for another installation; a document
 * stored by an older release.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import {
  addSigner,
  createKeyPair,
  documentBytes,
  type GatesReport,
  type ReleaseManifest,
  recordSignature,
  type SignedFields,
  signDocument,
  validSignatures,
} from '../../src/gates/index.js';
import { claimInstallationId, type SignerRole } from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { phase4Env } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';
import { NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const ROLES: SignerRole[] = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'];
const PARTNER = {
  url: 'https://partner-a.example.test',
  tokenUrl: 'https://partner-a.example.test/oauth/token',
  clientId: 'valhalla',
  clientSecret: 's'.repeat(32),
  caFile: null,
};
/** Everything Phase 4 needs on: the dashboard (any port), metrics, Slack, e-mail, warnings logged. */
const MONITORED = {
  VALHALLA_SERVER_PORT: '0',
  VALHALLA_METRICS_PORT: '0',
  VALHALLA_SLACK_WEBHOOK_URL: 'https://hooks.slack.example.test/services/T0/B0/x',
  VALHALLA_SMTP_URL: 'smtp://127.0.0.1:2525',
  VALHALLA_ALERT_EMAIL_TO: 'ops@example.org',
  VALHALLA_LOG_LEVEL: 'info',
};

const apps: App[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});
const keys = Object.fromEntries(ROLES.map((role) => [role, createKeyPair()])) as Record<
  SignerRole,
  ReturnType<typeof createKeyPair>
>;

describe.each(list)('the release manifest on $name', (backend) => {
  /** The installation, opened with this configuration (`changes` over the monitored Phase 4 one). */
  async function open(
    databaseUrl: string,
    clock: ManualClock,
    changes: Record<string, string | undefined> = {},
  ) {
    const dir = tempDir();
    const env = phase4Env(dir, PARTNER, { VALHALLA_DATABASE_URL: databaseUrl, ...MONITORED });
    for (const [name, value] of Object.entries(changes)) {
      if (value === undefined) delete env[name];
      else env[name] = value;
    }
    const app = await openApp({ config: loadConfig({ cwd: dir, env }), clock });
    apps.push(app);
    return app;
  }

  async function install(changes: Record<string, string | undefined> = {}) {
    const clock = new ManualClock(NOW);
    const databaseUrl = backend.databaseUrl();
    const app = await open(databaseUrl, clock, changes);
    // What `valhalla init` gives an installation: its id.
    await claimInstallationId(app.store.db, TEST_INSTALLATION, clock.now());
    // A passing conformance run against the configured partner (test/integration/partner-conformance.test.ts
    // proves those): the problems left are the ones each test makes.
    await app.audit.record({
      actor: 't',
      action: 'gates.partner_conformance',
      details: {
        passed: true,
        partner: {
          kind: 'configured',
          url: PARTNER.url,
          tokenUrl: PARTNER.tokenUrl,
          caFingerprints: null,
          profile: {
            name: app.config.partner.profile.profile.name,
            sha256: app.config.partner.profile.sha256,
          },
        },
        scenarios: [],
      },
    });
    for (const role of ROLES) {
      const added = await addSigner(
        deps(app),
        { role, name: `Name ${role}`, publicKeyPem: keys[role].publicKeyPem },
        { actor: 't', now: clock.now() },
      );
      expect(added.ok).toBe(true);
    }
    return { app, clock, databaseUrl };
  }

  const deps = (app: App) => ({ db: app.store.db, dialect: app.store.dialect, audit: app.audit });

  /** The CFO's sign-off row written around recordSignature, as the database's owner (or an older release) could. */
  async function storeByHand(
    app: App,
    row: { policyHash: string; document: string; signature: string },
    clock: ManualClock,
    by: string,
  ) {
    await app.store.db
      .insertInto('signatures')
      .values({
        kind: 'signoff',
        role: 'cfo',
        name: 'Name cfo',
        gate: null,
        item: null,
        policy_hash: row.policyHash,
        key_id: keys.cfo.keyId,
        document: row.document,
        signature: row.signature,
        recorded_at: clock.now(),
        recorded_by: by,
      })
      .execute();
  }

  /** A document signed over `manifest` (the app's running one unless given), then submitted to `app`. */
  async function sign(
    app: App,
    clock: ManualClock,
    role: SignerRole,
    kind: SignedFields['kind'] = 'signoff',
    manifest?: ReleaseManifest,
  ) {
    const over = manifest ?? (await app.releaseManifest())!;
    const doc = signDocument(
      {
        kind,
        role,
        name: `Name ${role}`,
        date: '2026-11-20',
        comments: '',
        gate: null,
        item: null,
        policyHash: over.policyHash,
        manifest: over,
        keyId: keys[role].keyId,
      },
      keys[role].privateKeyPem,
    );
    clock.advance(1_000);
    return recordSignature(deps(app), doc, {
      actor: 't',
      now: clock.now(),
      manifest: await app.releaseManifest(),
    });
  }

  async function signAll(app: App, clock: ManualClock) {
    for (const role of ROLES) expect(await sign(app, clock, role)).toMatchObject({ ok: true });
    expect(await sign(app, clock, 'ceo', 'activation')).toMatchObject({ ok: true });
  }

  const signoffState = (report: GatesReport, role: SignerRole) =>
    report.gates.flatMap((g) => g.items).find((i) => i.id === `8.${role}`)!;

  it('signed over the running manifest: no manifest problem, the sign-offs count; the hash is the canonical JSON’s', async () => {
    const { app, clock } = await install();
    await signAll(app, clock);
    const report = await app.gatesReport();
    expect(report.manifest.problems).toEqual([]);
    expect(report.missing.filter((m) => m.startsWith('release manifest'))).toEqual([]);
    for (const role of ROLES) expect(signoffState(report, role).state).toBe('ok');
    expect(report.activation.state).toBe('ok');
    const manifest = report.manifest.document!;
    expect(manifest).toMatchObject({
      installationId: TEST_INSTALLATION,
      policyHash: app.config.policyHash,
      limits: { leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 5 },
      partner: {
        url: `${PARTNER.url}/`,
        tokenUrl: PARTNER.tokenUrl,
        clientId: 'valhalla',
        caFingerprints: null,
      },
      dedupKey: 'email',
      memoryPerProcessMb: 512,
      monitoring: { slack: true, email: true, dashboard: true, metrics: true, logLevel: 'info' },
    });
    expect(report.manifest.approvedLimits).toEqual(manifest.limits);
    expect(report.manifest.approvedBy).toBe('the sign-offs (5 of 5)');
    expect(report.manifest.hash).toMatch(/^[0-9a-f]{64}$/);
    // The audit chain names the manifest each document approved.
    const recorded = await app.store.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'signature.recorded')
      .execute();
    expect(recorded).toHaveLength(6);
    for (const r of recorded) {
      expect(JSON.parse(r.details)).toMatchObject({
        installationId: TEST_INSTALLATION,
        manifestSha256: report.manifest.hash,
      });
    }
  });

  it('the partner URL changed by the environment after the sign-offs: every signature void, the difference named with its setting and fix; set back, they count again', async () => {
    const { app, clock, databaseUrl } = await install();
    await signAll(app, clock);
    const moved = await open(databaseUrl, clock, { VALHALLA_PARTNER_URL: 'https://partner-b.example.test' });
    const report = await moved.gatesReport();
    expect(report.cleared).toBe(false);
    expect(report.missing[0]).toBe(
      'release manifest: the running configuration differs from the signed one: partner.url (VALHALLA_PARTNER_URL): signed "https://partner-a.example.test/", running "https://partner-b.example.test/". Fix: set the signed values again, or have the sign-offs, attestations and activation signed again over the running manifest (valhalla gates manifest)',
    );
    const cfo = signoffState(report, 'cfo');
    expect(cfo.state).toBe('invalid');
    expect(cfo.detail).toContain(
      'void: signed over another release manifest (partner.url (VALHALLA_PARTNER_URL)',
    );
    // The gate clearance (what a Phase 4 start asks) names the difference first.
    const clearance = await moved.gates.check();
    expect(clearance.cleared).toBe(false);
    expect(clearance.reason).toContain(
      'partner.url (VALHALLA_PARTNER_URL): signed "https://partner-a.example.test/"',
    );
    // A document over the signed (old) manifest is refused now, naming the difference.
    const old = (await app.releaseManifest())!;
    const refused = await sign(moved, clock, 'cfo', 'signoff', old);
    expect(refused).toMatchObject({ ok: false });
    expect(!refused.ok && refused.reason).toContain(
      'signed over another release manifest than the running one: partner.url (VALHALLA_PARTNER_URL)',
    );
    // The signed value again: everything counts, nothing was signed anew.
    const back = await open(databaseUrl, clock);
    const again = await back.gatesReport();
    expect(again.manifest.problems).toEqual([]);
    for (const role of ROLES) expect(signoffState(again, role).state).toBe('ok');
  });

  it('another partner profile for one command after the sign-offs: every signature void, the clearance names VALHALLA_PARTNER_PROFILE; the signed profile again, they count', async () => {
    const { app, clock, databaseUrl } = await install();
    await signAll(app, clock);
    const crm = await open(databaseUrl, clock, {
      VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
      VALHALLA_PARTNER_BEARER_TOKEN: 'crm-token-0123456789',
    });
    const clearance = await crm.gates.check();
    expect(clearance.cleared).toBe(false);
    expect(clearance.reason).toContain(
      'partner.profile.name (VALHALLA_PARTNER_PROFILE): signed "valhalla", running "crm-batch-contacts"',
    );
    expect(clearance.reason).toContain(
      'partner.profile.sha256 (VALHALLA_PARTNER_PROFILE (the profile file))',
    );
    expect(signoffState(await crm.gatesReport(), 'cfo').state).toBe('invalid');
    const back = await open(databaseUrl, clock);
    for (const role of ROLES) expect(signoffState(await back.gatesReport(), role).state).toBe('ok');
  });

  // (The dedup rule is in the manifest too, but an installation cannot even be opened with another
  // rule than its own: test/integration/dedup.test.ts, test/e2e/dedup-rule.test.ts.)
  it.each([
    [
      'the token URL',
      { VALHALLA_PARTNER_TOKEN_URL: 'https://partner-b.example.test/token' },
      'partner.tokenUrl (VALHALLA_PARTNER_TOKEN_URL)',
    ],
    [
      'the client id',
      { VALHALLA_PARTNER_CLIENT_ID: 'someone-else' },
      'partner.clientId (VALHALLA_PARTNER_CLIENT_ID)',
    ],
    ['the log level', { VALHALLA_LOG_LEVEL: 'warn' }, 'monitoring.logLevel (VALHALLA_LOG_LEVEL)'],
    [
      'the cycle interval',
      { VALHALLA_CYCLE_INTERVAL_S: '1' },
      'cycleIntervalSeconds (VALHALLA_CYCLE_INTERVAL_S)',
    ],
    [
      'the Slack webhook',
      { VALHALLA_SLACK_WEBHOOK_URL: 'https://hooks.slack.example.test/services/T0/B0/unread' },
      'monitoring.slackWebhookSha256 (VALHALLA_SLACK_WEBHOOK_URL)',
    ],
    [
      'the ops list',
      { VALHALLA_ALERT_EMAIL_TO: 'nobody@example.org' },
      'monitoring.emailTo (VALHALLA_ALERT_EMAIL_TO)',
    ],
  ])('%s changed after the sign-offs voids them, named', async (_what, change, named) => {
    const { app, clock, databaseUrl } = await install();
    await signAll(app, clock);
    const report = await (await open(databaseUrl, clock, change)).gatesReport();
    expect(report.missing[0]).toContain(`differs from the signed one: ${named}: signed `);
    expect(signoffState(report, 'risk_officer').state).toBe('invalid');
  });

  it('a document for another installation is refused, naming both; one stored by hand is void', async () => {
    const { app, clock } = await install();
    const elsewhere = {
      ...(await app.releaseManifest())!,
      installationId: '00000000-0000-4000-8000-00000000beef',
    };
    const refused = await sign(app, clock, 'cfo', 'signoff', elsewhere);
    expect(refused).toEqual({
      ok: false,
      reason: `signed for installation 00000000-0000-4000-8000-00000000beef, and this is installation ${TEST_INSTALLATION}: a document approves one installation only`,
    });
    const audited = await app.store.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'signature.refused')
      .execute();
    expect(JSON.parse(audited.at(-1)!.details).reason).toContain('signed for installation');
    // Written around the check (as the database's owner could): void when read.
    const doc = signDocument(
      {
        kind: 'signoff',
        role: 'cfo',
        name: 'Name cfo',
        date: '2026-11-20',
        comments: '',
        gate: null,
        item: null,
        policyHash: elsewhere.policyHash,
        manifest: elsewhere,
        keyId: keys.cfo.keyId,
      },
      keys.cfo.privateKeyPem,
    );
    const { signature, ...fields } = doc;
    await storeByHand(
      app,
      { policyHash: elsewhere.policyHash, document: documentBytes(fields), signature },
      clock,
      'mallory',
    );
    const { invalid } = await validSignatures(app.store.db, await app.releaseManifest());
    expect(invalid.map((i) => i.reason)).toEqual([
      `void: signed for installation 00000000-0000-4000-8000-00000000beef, and this is installation ${TEST_INSTALLATION}: a document approves one installation only`,
    ]);
  });

  it('limits: a lowering needs no signature; a raise is refused naming the setting until the CFO signs an amendment, which carries the other sign-offs over', async () => {
    const { app, clock, databaseUrl } = await install({ VALHALLA_RATE_LIMIT: '3' });
    await signAll(app, clock);
    expect((await app.gatesReport()).manifest.approvedLimits).toEqual({
      leadsPerCycle: 25,
      actionsPerCycle: 5,
      rateLimitPerSecond: 3,
    });
    // Lower than signed: cleared of any manifest problem, the sign-offs still count.
    const lower = await (
      await open(databaseUrl, clock, { VALHALLA_RATE_LIMIT: '2', VALHALLA_MAX_LEADS_PER_CYCLE: '10' })
    ).gatesReport();
    expect(lower.manifest.problems).toEqual([]);
    expect(signoffState(lower, 'cfo').state).toBe('ok');
    // Higher than signed (within the hard maximum 5): refused, naming it and the fix.
    const raised = await open(databaseUrl, clock, { VALHALLA_RATE_LIMIT: '5' });
    const refused = await raised.gatesReport();
    expect(refused.cleared).toBe(false);
    expect(refused.missing[0]).toBe(
      'release manifest: limits above those approved by the sign-offs (5 of 5): VALHALLA_RATE_LIMIT 5 requests/s, approved 3. Fix: lower them, or have the CFO sign an amendment with the new values (valhalla amend)',
    );
    // The sign-offs themselves are not void: only the limits are above them.
    expect(signoffState(refused, 'general_counsel').state).toBe('ok');
    // An amendment is the CFO's alone.
    const running = (await raised.releaseManifest())!;
    const byCeo = await sign(raised, clock, 'ceo', 'amendment', running);
    expect(byCeo).toEqual({ ok: false, reason: "an amendment is the CFO's, not the ceo's" });
    // An amendment that changes more than the limits is refused, naming what else it changes.
    const sneaky = { ...running, partner: { ...running.partner, url: 'https://partner-c.example.test/' } };
    const moreThanLimits = await sign(raised, clock, 'cfo', 'amendment', sneaky);
    expect(!moreThanLimits.ok && moreThanLimits.reason).toContain('partner.url (VALHALLA_PARTNER_URL)');
    // The CFO's amendment naming rate 5: accepted, and with it the running limits are approved.
    expect(await sign(raised, clock, 'cfo', 'amendment', running)).toMatchObject({ ok: true });
    const amended = await raised.gatesReport();
    expect(amended.manifest.problems).toEqual([]);
    expect(amended.manifest.approvedLimits).toEqual({
      leadsPerCycle: 25,
      actionsPerCycle: 5,
      rateLimitPerSecond: 5,
    });
    expect(amended.manifest.approvedBy).toMatch(/^the CFO's amendment #\d+ \(Name cfo\)$/);
    for (const role of ROLES) expect(signoffState(amended, role).state).toBe('ok');
    expect(amended.activation.state).toBe('ok');
    // The amendment's limits are in the chain.
    const entry = await app.store.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'signature.recorded')
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    expect(JSON.parse(entry.details)).toMatchObject({
      kind: 'amendment',
      role: 'cfo',
      limits: { leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 5 },
    });
  });

  it('limits read again while running: a lowering is taken (audited, alerted); a raise above the approved is refused once and kept out; an unreadable configuration keeps them', async () => {
    const { app, clock } = await install({ VALHALLA_RATE_LIMIT: '3' });
    await signAll(app, clock);
    const dir = tempDir();
    const configWith = (changes: Record<string, string>) => () =>
      loadConfig({
        cwd: dir,
        env: phase4Env(dir, PARTNER, { VALHALLA_DATABASE_URL: 'unused.db', ...MONITORED, ...changes }),
      });
    expect(app.limitsInForce()).toEqual({ leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 3 });
    expect(await app.reloadLimits(configWith({ VALHALLA_RATE_LIMIT: '3' }))).toEqual({ kind: 'unchanged' });

    const lowered = await app.reloadLimits(
      configWith({ VALHALLA_RATE_LIMIT: '2', VALHALLA_MAX_LEADS_PER_CYCLE: '10' }),
    );
    expect(lowered).toMatchObject({
      kind: 'applied',
      to: { leadsPerCycle: 10, actionsPerCycle: 5, rateLimitPerSecond: 2 },
    });
    expect(app.limitsInForce()).toEqual({ leadsPerCycle: 10, actionsPerCycle: 5, rateLimitPerSecond: 2 });
    // Back up to what the sign-offs approve: allowed, no signature.
    expect(await app.reloadLimits(configWith({ VALHALLA_RATE_LIMIT: '3' }))).toMatchObject({
      kind: 'applied',
    });
    // Above it: refused, said once however many cycles read it, the limits in force kept.
    const raise = configWith({ VALHALLA_RATE_LIMIT: '5' });
    const refused = await app.reloadLimits(raise);
    expect(refused).toEqual({
      kind: 'refused',
      message:
        "limits on disk above those approved (VALHALLA_RATE_LIMIT 5 requests/s, approved 3): kept 25 leads/cycle, 5 actions/cycle, 3 requests/s; a raise needs the CFO's amendment (valhalla amend), then it is taken at the next cycle",
    });
    expect(await app.reloadLimits(raise)).toEqual({ kind: 'unchanged' });
    expect(app.limitsInForce().rateLimitPerSecond).toBe(3);
    // The CFO amends: the same raise is taken at the next read.
    const running = (await app.releaseManifest())!;
    const amendment = { ...running, limits: { ...running.limits, rateLimitPerSecond: 5 } };
    expect(await sign(app, clock, 'cfo', 'amendment', amendment)).toMatchObject({ ok: true });
    expect(await app.reloadLimits(raise)).toMatchObject({ kind: 'applied' });
    expect(app.limitsInForce().rateLimitPerSecond).toBe(5);
    // A configuration that no longer loads: kept, and said.
    const broken = await app.reloadLimits(configWith({ VALHALLA_RATE_LIMIT: 'fast' }));
    expect(broken.kind).toBe('refused');
    expect(app.limitsInForce().rateLimitPerSecond).toBe(5);

    const actions = await app.store.db
      .selectFrom('audit_log')
      .select(['action', 'details'])
      .where('action', 'in', ['limits.changed', 'limits.refused'])
      .orderBy('seq')
      .execute();
    expect(actions.map((a) => a.action)).toEqual([
      'limits.changed',
      'limits.changed',
      'limits.refused',
      'limits.changed',
    ]);
    const alerts = await app.store.db.selectFrom('alerts').select(['event', 'severity']).execute();
    expect(alerts.filter((a) => a.event.startsWith('limits_'))).toEqual([
      { event: 'limits_changed', severity: 'warning' },
      { event: 'limits_changed', severity: 'warning' },
      { event: 'limits_refused', severity: 'warning' },
      { event: 'limits_changed', severity: 'warning' },
    ]);
  });

  it('approval: the sign-offs together approve the lower of each limit; an amendment is lowered only by sign-offs after it; a running worker above approval is stopped by its gates', async () => {
    const { app, clock, databaseUrl } = await install({ VALHALLA_RATE_LIMIT: '3' });
    for (const role of ['ceo', 'cfo', 'general_counsel'] as const) {
      expect(await sign(app, clock, role)).toMatchObject({ ok: true });
    }
    // Two roles sign while the installation runs with a lower rate and fewer leads.
    const lower = await open(databaseUrl, clock, {
      VALHALLA_RATE_LIMIT: '2',
      VALHALLA_MAX_LEADS_PER_CYCLE: '20',
    });
    for (const role of ['risk_officer', 'head_of_operations'] as const) {
      expect(await sign(lower, clock, role)).toMatchObject({ ok: true });
    }
    const both = (await app.gatesReport()).manifest;
    expect(both.approvedLimits).toEqual({ leadsPerCycle: 20, actionsPerCycle: 5, rateLimitPerSecond: 2 });
    expect(both.approvedBy).toBe('the sign-offs (5 of 5)');
    // The CFO amends to 25 leads and 5/s; a later sign-off at the running 25/4 lowers the rate only.
    const at5 = await open(databaseUrl, clock, { VALHALLA_RATE_LIMIT: '5' });
    expect(await sign(at5, clock, 'cfo', 'amendment')).toMatchObject({ ok: true });
    expect((await at5.gatesReport()).manifest.approvedLimits).toEqual({
      leadsPerCycle: 25,
      actionsPerCycle: 5,
      rateLimitPerSecond: 5,
    });
    // A worker that took 5/s from its disk while it was approved...
    expect(await app.reloadLimits(() => at5.config)).toMatchObject({ kind: 'applied' });
    expect(app.limitsInForce().rateLimitPerSecond).toBe(5);
    expect((await app.gates.check()).reason).not.toContain('limits above');
    const at4 = await open(databaseUrl, clock, { VALHALLA_RATE_LIMIT: '4' });
    expect(await sign(at4, clock, 'ceo')).toMatchObject({ ok: true });
    const after = (await at4.gatesReport()).manifest;
    expect(after.approvedLimits).toEqual({ leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 4 });
    expect(after.approvedBy).toMatch(
      /^the CFO's amendment #\d+ \(Name cfo\) and the 1 sign-off\(s\) after it$/,
    );
    // ...is stopped by its own gates once the approval falls under what it runs (its limits in force).
    const clearance = await app.gates.check();
    expect(clearance.cleared).toBe(false);
    expect(clearance.reason).toContain('VALHALLA_RATE_LIMIT 5 requests/s, approved 4');
    // One edit lowering the leads and raising the rate: the lowering is taken, the raise refused.
    const mixed = await app.reloadLimits(() => lower.config);
    expect(mixed).toMatchObject({ kind: 'applied' });
    expect(app.limitsInForce()).toEqual({ leadsPerCycle: 20, actionsPerCycle: 5, rateLimitPerSecond: 2 });
    const raiseAndLower = await open(databaseUrl, clock, {
      VALHALLA_RATE_LIMIT: '5',
      VALHALLA_MAX_LEADS_PER_CYCLE: '10',
    });
    const split = await app.reloadLimits(() => raiseAndLower.config);
    expect(split.kind).toBe('refused');
    expect(app.limitsInForce()).toEqual({ leadsPerCycle: 10, actionsPerCycle: 5, rateLimitPerSecond: 2 });
    const said = split.kind === 'refused' ? split.message : '';
    expect(said).toContain('limits in force from the next cycle: 10 leads/cycle');
    expect(said).toContain('VALHALLA_RATE_LIMIT 5 requests/s, approved 4');
  });

  it('a sign-off must approve the running limits as they are', async () => {
    const { app, clock } = await install({ VALHALLA_RATE_LIMIT: '3' });
    const running = (await app.releaseManifest())!;
    const higher = { ...running, limits: { ...running.limits, rateLimitPerSecond: 5 } };
    const refused = await sign(app, clock, 'cfo', 'signoff', higher);
    expect(!refused.ok && refused.reason).toContain(
      'limits.rateLimitPerSecond (VALHALLA_RATE_LIMIT): signed 5, running 3',
    );
  });

  it('monitoring switched off: each setting is named, whatever was signed', async () => {
    const { databaseUrl, clock } = await install();
    const off = await open(databaseUrl, clock, {
      VALHALLA_SERVER_PORT: 'off',
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_SLACK_WEBHOOK_URL: undefined,
      VALHALLA_SMTP_URL: undefined,
      VALHALLA_ALERT_EMAIL_TO: undefined,
      VALHALLA_LOG_LEVEL: 'silent',
    });
    const report = await off.gatesReport();
    expect(report.manifest.problems).toEqual([
      'VALHALLA_SERVER_PORT=off: Phase 4 needs the dashboard and admin API on',
      'VALHALLA_METRICS_PORT=off: Phase 4 needs /metrics on',
      'VALHALLA_SLACK_WEBHOOK_URL is not set: Phase 4 needs Slack alerts',
      'VALHALLA_SMTP_URL and VALHALLA_ALERT_EMAIL_TO are not both set: Phase 4 needs e-mail alerts',
      'VALHALLA_LOG_LEVEL=silent: Phase 4 needs warn or more (trace, debug, info, warn)',
    ]);
    expect((await off.gates.check()).reason).toContain('VALHALLA_SERVER_PORT=off');
  });

  it('a sign-off stored by an older release (no manifest) is void and says to sign again', async () => {
    const { app, clock } = await install();
    const legacy = JSON.stringify({
      comments: '',
      date: '2026-11-20',
      format: 'valhalla-signature/1',
      gate: null,
      item: null,
      keyId: keys.cfo.keyId,
      kind: 'signoff',
      name: 'Name cfo',
      policyHash: app.config.policyHash,
      role: 'cfo',
    });
    await storeByHand(
      app,
      { policyHash: app.config.policyHash, document: legacy, signature: Buffer.alloc(64).toString('base64') },
      clock,
      'an older release',
    );
    const cfo = signoffState(await app.gatesReport(), 'cfo');
    expect(cfo.state).toBe('invalid');
    expect(cfo.detail).toContain('valhalla-signature/1) names no installation and no manifest: sign again');
  });
});
