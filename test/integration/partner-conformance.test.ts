/**
 * `gates conformance --partner configured`: the scenarios safe against a partner's own sandbox, run
 * against the partner the installation is configured for (a real HTTPS server here: the sandbox
 * partner, with and without faults), recorded as evidence naming that partner, and judged by the
 * gates against the release manifest's partner.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type App, openApp } from '../../src/app/index.js';
import { loadConfig } from '../../src/config/index.js';
import { recordPartnerConformance, runPartnerConformance } from '../../src/rehearsal/partner-conformance.js';
import {
  type SandboxFaultsPatch,
  type SandboxPartner,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { claimInstallationId } from '../../src/store/index.js';
import { phase4Env } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function partner(faults: SandboxFaultsPatch = {}): Promise<SandboxPartner> {
  const started = await startSandboxPartner({ certDir: join(tempDir(), 'cert'), faults });
  closers.push(() => started.close());
  return started;
}

async function installation(to: SandboxPartner, dir = tempDir()): Promise<App> {
  const app = await openApp({ config: loadConfig({ cwd: dir, env: phase4Env(dir, to) }) });
  closers.push(() => app.close());
  await claimInstallationId(app.store.db, TEST_INSTALLATION, Date.now());
  return app;
}

const problemOf = async (app: App) =>
  (await app.gatesReport()).manifest.problems.filter((p) => p.includes('configured partner'));

describe('conformance against the configured partner', () => {
  it('a partner that keeps the contract: every scenario passes; the evidence names it; the gates take it for the manifest’s partner', async () => {
    const sandbox = await partner();
    const app = await installation(sandbox);
    expect(await problemOf(app)).toEqual([
      'no conformance run against the configured partner: run `valhalla gates conformance --partner configured`',
    ]);
    const result = await runPartnerConformance({ config: app.config });
    expect(result.scenarios.map((s) => [s.name, s.passed])).toEqual([
      ['health', true],
      ['token', true],
      ['endpoint', true],
      ['idempotent_replay', true],
      ['error_handling', true],
    ]);
    expect(result.passed).toBe(true);
    expect(result.partner).toEqual({
      kind: 'configured',
      url: `${sandbox.url}/`,
      tokenUrl: sandbox.tokenUrl,
      caFingerprints: [expect.stringMatching(/^[0-9a-f]{64}$/)],
      profile: { name: 'valhalla', sha256: app.config.partner.profile.sha256 },
    });
    // What the partner saw: one batch of two synthetic leads, replayed once, one batch refused.
    const stats = sandbox.stats();
    expect(stats.leads.accepted).toBe(2);
    expect(stats.batches.replayed).toBe(1);
    expect(stats.batches.refused).toBe(1);
    expect(Object.keys(sandbox.records().leadBatches).every((key) => key.startsWith('conformance-'))).toBe(
      true,
    );
    // Nothing of the installation's own leads was touched.
    expect(await app.store.db.selectFrom('leads').select('id').execute()).toEqual([]);

    await recordPartnerConformance(app.audit, result, 'test');
    expect(await problemOf(app)).toEqual([]);
    // The same installation configured for another partner: that run is not its partner's.
    const elsewhere = await partner();
    const moved = await installation(elsewhere, tempDir());
    await recordPartnerConformance(moved.audit, result, 'test');
    const [problem] = await problemOf(moved);
    expect(problem).toContain(`ran against ${sandbox.url}/`);
    expect(problem).toContain(`not the manifest's ${elsewhere.url}/`);
  });

  it('a partner that refuses every batch: the endpoint and the replay fail, the refusal of a bad batch still holds; recorded as failed', async () => {
    const sandbox = await partner({ permanentStatus: 422 });
    const app = await installation(sandbox);
    const result = await runPartnerConformance({ config: app.config });
    expect(result.passed).toBe(false);
    expect(Object.fromEntries(result.scenarios.map((s) => [s.name, s.passed]))).toEqual({
      health: true,
      token: true,
      endpoint: false,
      idempotent_replay: false,
      error_handling: true,
    });
    expect(result.scenarios.find((s) => s.name === 'endpoint')!.detail).toContain('HTTP 422, permanent');
    await recordPartnerConformance(app.audit, result, 'test');
    expect(await problemOf(app)).toEqual([
      'the last conformance run against the configured partner failed (endpoint, idempotent_replay): run `valhalla gates conformance --partner configured`',
    ]);
  });

  it('a partner that is down: every scenario fails with what happened, nothing throws', async () => {
    const sandbox = await partner({ down: true });
    const app = await installation(sandbox);
    const result = await runPartnerConformance({ config: app.config });
    expect(result.passed).toBe(false);
    expect(result.scenarios).toHaveLength(5);
    expect(result.scenarios.every((s) => !s.passed)).toBe(true);
    expect(result.scenarios[0]!.detail).toMatch(/^failed: /);
  });
});
