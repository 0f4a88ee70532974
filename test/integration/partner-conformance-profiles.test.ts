/**
 * `gates conformance --partner configured` under the CRM profile: the same scenarios, written and read
 * as the configured profile says (a static bearer token, per-record answers), against a real HTTPS
 * sandbox playing that CRM; and the gates take a run only for the profile it spoke.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { recordPartnerConformance, runPartnerConformance } from '../../src/rehearsal/partner-conformance.js';
import { type SandboxPartner, startSandboxPartner } from '../../src/sandbox/index.js';
import { claimInstallationId } from '../../src/store/index.js';
import { phase4Env } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const TOKEN = 'crm-conformance-token-0123456789';

async function crm(): Promise<SandboxPartner> {
  const started = await startSandboxPartner({
    certDir: join(tempDir(), 'cert'),
    profile: 'crm-batch-contacts',
    bearerToken: TOKEN,
  });
  closers.push(() => started.close());
  return started;
}

async function installation(to: SandboxPartner, env: Record<string, string>): Promise<App> {
  const dir = tempDir();
  const base = phase4Env(dir, to);
  const app = await openApp({ config: loadConfig({ cwd: dir, env: { ...base, ...env } }) });
  closers.push(() => app.close());
  await claimInstallationId(app.store.db, TEST_INSTALLATION, Date.now());
  return app;
}

const problemOf = async (app: App) =>
  (await app.gatesReport()).manifest.problems.filter((p) => p.includes('configured partner'));

describe('conformance against the configured partner, CRM profile', () => {
  it('every scenario passes through the CRM profile: bearer token, per-record answers (the replay comes back CONFLICT for each, the bad e-mail a VALIDATION_ERROR)', async () => {
    const sandbox = await crm();
    const app = await installation(sandbox, {
      VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
      VALHALLA_PARTNER_BEARER_TOKEN: TOKEN,
    });
    const result = await runPartnerConformance({ config: app.config });
    expect(Object.fromEntries(result.scenarios.map((s) => [s.name, s.passed]))).toEqual({
      health: true,
      token: true,
      endpoint: true,
      idempotent_replay: true,
      error_handling: true,
    });
    const detail = (name: string) => result.scenarios.find((s) => s.name === name)!.detail;
    expect(detail('token')).toContain("the profile's auth is bearer");
    expect(detail('endpoint')).toContain('(per lead: 2 accepted)');
    expect(detail('idempotent_replay')).toContain('(per lead: 2 duplicate)');
    expect(detail('error_handling')).toContain('(per lead: 1 refused)');
    expect(result.partner.profile).toEqual({
      name: 'crm-batch-contacts',
      sha256: app.config.partner.profile.sha256,
    });
    // The CRM's own ledger: two contacts created once each, the second send a conflict, one refused.
    const ledger = Object.values(sandbox.leads());
    expect(
      ledger.map((l) => [l.received, l.acceptedAt !== null, l.duplicates, l.refusals.length]).sort(),
    ).toEqual([
      [1, false, 0, 1],
      [2, true, 1, 0],
      [2, true, 1, 0],
    ]);
    await recordPartnerConformance(app.audit, result, 'test');
    expect(await problemOf(app)).toEqual([]);
  });

  it('a wrong bearer token: the endpoint scenario fails with the 401, recorded as failed', async () => {
    const sandbox = await crm();
    const app = await installation(sandbox, {
      VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
      VALHALLA_PARTNER_BEARER_TOKEN: 'not-the-crm-token-0000',
    });
    const result = await runPartnerConformance({ config: app.config });
    expect(result.passed).toBe(false);
    expect(result.scenarios.find((s) => s.name === 'endpoint')).toMatchObject({
      passed: false,
      detail: expect.stringContaining('HTTP 401, auth'),
    });
  });

  it('a run made under another profile does not count for the manifest’s: the gates name both profiles', async () => {
    const sandbox = await crm();
    const app = await installation(sandbox, {
      VALHALLA_PARTNER_PROFILE: 'crm-batch-contacts',
      VALHALLA_PARTNER_BEARER_TOKEN: TOKEN,
    });
    const result = await runPartnerConformance({ config: app.config });
    expect(result.passed).toBe(true);
    // The same partner, the run recorded as if spoken under the product's own contract.
    const other = {
      ...result,
      partner: { ...result.partner, profile: { name: 'valhalla', sha256: 'a'.repeat(64) } },
    };
    await recordPartnerConformance(app.audit, other, 'test');
    const [problem] = await problemOf(app);
    expect(problem).toBe(
      `the last conformance run against the configured partner spoke partner profile valhalla (sha256 aaaaaaaaaaaa…), not the manifest's crm-batch-contacts (sha256 ${app.config.partner.profile.sha256.slice(0, 12)}…): run \`valhalla gates conformance --partner configured\``,
    );
  });
});
