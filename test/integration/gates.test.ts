/**
 * The gates' evaluation on SQLite and PostgreSQL, where the e2e happy path cannot look: the
 * clearance the guard asks is cached, but a new signature (or revocation, or evidence) is seen at
 * once; the CEO's activation counts only after the sign-offs that count now; a signature over a
 * policy the installation moved away from stays void if the policy returns.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import {
  addSigner,
  createKeyPair,
  recordSignature,
  revokeSigner,
  type SignedFields,
  signDocument,
} from '../../src/gates/index.js';
import { claimInstallationId, type SignerRole } from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { phase4Env } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';
import { DAY, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const ROLES: SignerRole[] = ['ceo', 'cfo', 'general_counsel', 'risk_officer', 'head_of_operations'];
const PARTNER = {
  url: 'https://127.0.0.1:9',
  tokenUrl: 'https://127.0.0.1:9/t',
  clientId: 'c',
  clientSecret: 's'.repeat(32),
  caFile: null,
};

const apps: App[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

describe.each(list)('gate evaluation on $name', (backend) => {
  async function install(
    policyFile = DEFAULT_POLICY_FILE,
    databaseUrl = backend.databaseUrl(),
    clock = new ManualClock(NOW),
  ) {
    const dir = tempDir();
    const config = loadConfig({
      cwd: dir,
      env: phase4Env(dir, PARTNER, { VALHALLA_DATABASE_URL: databaseUrl, VALHALLA_POLICY_FILE: policyFile }),
    });
    const app = await openApp({ config, clock });
    apps.push(app);
    // What `valhalla init` gives an installation: an id for its documents to name.
    await claimInstallationId(app.store.db, TEST_INSTALLATION, clock.now());
    return { app, clock, databaseUrl };
  }
  const keys = Object.fromEntries(ROLES.map((r) => [r, createKeyPair()])) as Record<
    SignerRole,
    ReturnType<typeof createKeyPair>
  >;
  const deps = (app: App) => ({ db: app.store.db, dialect: app.store.dialect, audit: app.audit });
  async function register(app: App, clock: ManualClock) {
    for (const role of ROLES) {
      const added = await addSigner(
        deps(app),
        { role, name: `Name ${role}`, publicKeyPem: keys[role].publicKeyPem },
        { actor: 't', now: clock.now() },
      );
      expect(added.ok).toBe(true);
    }
  }
  async function sign(
    app: App,
    clock: ManualClock,
    role: SignerRole,
    kind: SignedFields['kind'],
    key = keys[role],
  ) {
    const doc = signDocument(
      {
        kind,
        role,
        name: `Name ${role}`,
        date: '2026-11-20',
        comments: '',
        gate: null,
        item: null,
        policyHash: app.config.policyHash,
        manifest: (await app.releaseManifest())!,
        keyId: key.keyId,
      },
      key.privateKeyPem,
    );
    clock.advance(1_000);
    return recordSignature(deps(app), doc, {
      actor: 't',
      now: clock.now(),
      manifest: await app.releaseManifest(),
    });
  }
  const missingCount = async (app: App) => {
    const { reason } = await app.gates.check();
    return Number(/\((\d+) missing\)/.exec(reason)?.[1]);
  };

  it('the cached clearance sees a new sign-off or a revocation at once (no waiting out the cache)', async () => {
    const { app, clock } = await install();
    await register(app, clock);
    const before = await missingCount(app);
    expect((await sign(app, clock, 'cfo', 'signoff')).ok).toBe(true);
    expect(await missingCount(app)).toBe(before - 1);
    const revoked = await revokeSigner(
      deps(app),
      { keyId: keys.cfo.keyId, reason: 'left' },
      { actor: 't', now: clock.now() },
    );
    expect(revoked.ok).toBe(true);
    expect(await missingCount(app)).toBe(before);
  });

  it("the CEO's activation counts only after every sign-off that counts now", async () => {
    const { app, clock } = await install();
    await register(app, clock);
    for (const role of ROLES) expect((await sign(app, clock, role, 'signoff')).ok).toBe(true);
    expect((await sign(app, clock, 'ceo', 'activation')).ok).toBe(true);
    expect((await app.gatesReport()).activation.state).toBe('ok');
    // The CFO's key is replaced and the CFO signs again: the old activation no longer counts.
    await revokeSigner(
      deps(app),
      { keyId: keys.cfo.keyId, reason: 'new laptop' },
      { actor: 't', now: clock.now() },
    );
    const newCfo = createKeyPair();
    await addSigner(
      deps(app),
      { role: 'cfo', name: 'Name cfo', publicKeyPem: newCfo.publicKeyPem },
      { actor: 't', now: clock.now() },
    );
    expect((await sign(app, clock, 'cfo', 'signoff', newCfo)).ok).toBe(true);
    const report = await app.gatesReport();
    expect(report.activation.state).toBe('invalid');
    expect(report.activation.detail).toContain('made before the sign-offs that count now');
    expect((await sign(app, clock, 'ceo', 'activation')).ok).toBe(true);
    expect((await app.gatesReport()).activation.state).toBe('ok');
  });

  it('evidence ages: a test alert counts for 7 days before the activation; a broken chain fails 1.audit_trail', async () => {
    const { app, clock } = await install();
    const item = async (id: string) =>
      (await app.gatesReport()).gates.flatMap((g) => g.items).find((i) => i.id === id)!;
    await app.audit.record({
      actor: 't',
      action: 'alerts.test',
      details: { results: [{ channel: 'slack', ok: true }] },
    });
    // No Slack configured in this installation: the item says so, whatever the evidence.
    expect((await item('5.slack')).detail).toBe('no slack channel configured');
    await app.audit.record({
      actor: 't',
      action: 'drill.rollback',
      details: { passed: true, durationMs: 4_000, checks: [] },
    });
    expect((await item('7.tested')).state).toBe('ok');
    clock.advance(31 * DAY);
    const stale = await item('7.tested');
    expect(stale.state).toBe('missing');
    expect(stale.detail).toMatch(/the last rollback drill \(.*\) is older than 30 days/);
    expect((await item('1.audit_trail')).state).toBe('ok');
    if (backend.name === 'sqlite') {
      // As the database's owner could: the append-only trigger off, an entry edited.
      await sql.raw('drop trigger audit_log_no_update').execute(app.store.db);
      await sql.raw("update audit_log set actor = 'mallory' where seq = 1").execute(app.store.db);
      const broken = await item('1.audit_trail');
      expect(broken.state).toBe('missing');
      expect(broken.detail).toContain('does not verify');
    }
  });

  it('policy A → B → A: the signatures over A from before the change stay void', async () => {
    const dir = tempDir();
    const other = join(dir, 'policy-b.json');
    writeFileSync(
      other,
      JSON.stringify({ ...JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')), alertDedupMinutes: 10 }),
    );
    const a = await install();
    await register(a.app, a.clock);
    await a.app.checkPolicy('config');
    expect((await sign(a.app, a.clock, 'cfo', 'signoff')).ok).toBe(true);
    expect(
      (await a.app.gatesReport()).gates.find((g) => g.gate === 8)!.items.find((i) => i.id === '8.cfo')!.state,
    ).toBe('ok');
    // The installation runs policy B (recorded as a change), then A again.
    a.clock.advance(60_000);
    const b = await install(other, a.databaseUrl, a.clock);
    expect((await b.app.checkPolicy('config')).changed).toBe(true);
    a.clock.advance(60_000);
    const back = await install(DEFAULT_POLICY_FILE, a.databaseUrl, a.clock);
    expect((await back.app.checkPolicy('config')).changed).toBe(true);
    const item = (await back.app.gatesReport()).gates
      .find((g) => g.gate === 8)!
      .items.find((i) => i.id === '8.cfo')!;
    expect(item.state).toBe('invalid');
    expect(item.detail).toContain('signed before the policy moved away from this hash');
    // Signed again under A: it counts.
    expect((await sign(back.app, back.clock, 'cfo', 'signoff')).ok).toBe(true);
    expect(
      (await back.app.gatesReport()).gates.find((g) => g.gate === 8)!.items.find((i) => i.id === '8.cfo')!
        .state,
    ).toBe('ok');
  });
});
