import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isConfigError, loadConfig } from '../../src/config/index.js';
import { buildManifest, caFingerprints, limitsAbove, manifestDifferences } from '../../src/gates/index.js';
import { manifestEndpoint, manifestSchema } from '../../src/gates/manifest.js';
import { SHIPPED_PROFILES_DIR } from '../../src/partner/index.js';
import { createSelfSignedCertificate } from '../../src/sandbox/certificate.js';
import { phase4Env, policyFileWith, testEnv, UNCALLED_PARTNER } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';

function configError(work: () => unknown): { setting: string; problem: string }[] {
  try {
    work();
  } catch (error) {
    if (isConfigError(error)) return error.issues.map((i) => ({ setting: i.setting, problem: i.problem }));
    throw error;
  }
  throw new Error('expected a configuration error');
}

describe('the manifest’s partner endpoints', () => {
  it('two URLs that differ in port or path never look the same, whatever their query holds', () => {
    const a = manifestEndpoint('https://p.example:8443/v1?c=ops@x');
    const b = manifestEndpoint('https://p.example:9443/other?c=ops@x');
    expect(a).toBe('https://p.example:8443/v1?c=ops@x');
    expect(b).toBe('https://p.example:9443/other?c=ops@x');
    expect(a).not.toBe(b);
  });

  it('masks a password and a secret parameter, keeps the rest, in the URL’s normal form', () => {
    expect(manifestEndpoint('HTTPS://Partner.Example/oauth/token?client_id=v&client_secret=s3cr3t')).toBe(
      'https://partner.example/oauth/token?client_id=v&client_secret=***',
    );
    expect(manifestEndpoint('https://user:pa55@partner.example')).toBe('https://user:***@partner.example/');
    expect(manifestEndpoint(null)).toBeNull();
  });
});

describe('the manifest’s CA', () => {
  it('names each certificate of VALHALLA_PARTNER_CA_FILE by its SHA-256 fingerprint; another CA file is a difference', async () => {
    const dir = tempDir();
    const one = await createSelfSignedCertificate(Date.now());
    const two = await createSelfSignedCertificate(Date.now());
    writeFileSync(join(dir, 'ca.pem'), `${one.cert}\n${two.cert}`);
    const expected = [one.cert, two.cert].map((pem) =>
      new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase(),
    );
    expect(caFingerprints(`${one.cert}\n${two.cert}`)).toEqual(expected);
    const config = loadConfig({
      cwd: dir,
      env: phase4Env(dir, { ...UNCALLED_PARTNER, caFile: join(dir, 'ca.pem') }),
    });
    const signed = buildManifest(config, TEST_INSTALLATION);
    expect(signed.partner.caFingerprints).toEqual(expected);
    writeFileSync(join(dir, 'other.pem'), one.cert);
    const other = loadConfig({
      cwd: dir,
      env: phase4Env(dir, { ...UNCALLED_PARTNER, caFile: join(dir, 'other.pem') }),
    });
    expect(manifestDifferences(signed, buildManifest(other, TEST_INSTALLATION), { limits: false })).toEqual([
      {
        field: 'partner.caFingerprints',
        setting: 'VALHALLA_PARTNER_CA_FILE',
        signed: expected,
        running: [expected[0]],
      },
    ]);
  });

  it('refuses a CA file holding blocks other than CERTIFICATE (they would be trusted unnamed)', async () => {
    const dir = tempDir();
    const { cert } = await createSelfSignedCertificate(Date.now());
    const trusted = cert.replaceAll('CERTIFICATE', 'TRUSTED CERTIFICATE');
    writeFileSync(join(dir, 'ca.pem'), `${cert}\n${trusted}`);
    const issues = configError(() =>
      loadConfig({ cwd: dir, env: phase4Env(dir, { ...UNCALLED_PARTNER, caFile: join(dir, 'ca.pem') }) }),
    );
    expect(issues).toEqual([
      {
        setting: 'VALHALLA_PARTNER_CA_FILE',
        problem:
          "holds PEM blocks other than CERTIFICATE (TRUSTED CERTIFICATE): keep only the partner's CA certificates",
      },
    ]);
  });

  it('refuses NODE_EXTRA_CA_CERTS in Phase 4 (a CA the manifest does not name), not in Phase 3', () => {
    const dir = tempDir();
    const issues = configError(() =>
      loadConfig({
        cwd: dir,
        env: { ...phase4Env(dir, UNCALLED_PARTNER), NODE_EXTRA_CA_CERTS: '/etc/extra.pem' },
      }),
    );
    expect(issues.map((i) => i.setting)).toEqual(['NODE_EXTRA_CA_CERTS']);
    expect(issues[0]!.problem).toContain('unset it, and put the partner’s CA in VALHALLA_PARTNER_CA_FILE');
    expect(() =>
      loadConfig({ cwd: dir, env: { ...testEnv(dir), NODE_EXTRA_CA_CERTS: '/etc/extra.pem' } }),
    ).not.toThrow();
  });
});

describe('the manifest’s partner profile', () => {
  it('names the profile and its SHA-256; another profile, or an edit of the file, is a difference a signature no longer covers', () => {
    const dir = tempDir();
    const env = phase4Env(dir, { ...UNCALLED_PARTNER });
    const signed = buildManifest(loadConfig({ cwd: dir, env }), TEST_INSTALLATION);
    expect(signed.partner.profile?.name).toBe('valhalla');
    expect(signed.partner.profile?.sha256).toMatch(/^[0-9a-f]{64}$/);

    // The same contract copied to the operator's own file, one mapping's type changed.
    const shipped = JSON.parse(readFileSync(join(SHIPPED_PROFILES_DIR, 'valhalla.json'), 'utf8'));
    shipped.fields[6].type = 'number';
    writeFileSync(join(dir, 'edited.json'), JSON.stringify(shipped));
    const edited = loadConfig({ cwd: dir, env: { ...env, VALHALLA_PARTNER_PROFILE: 'edited.json' } });
    const differences = manifestDifferences(signed, buildManifest(edited, TEST_INSTALLATION), {
      limits: false,
    });
    expect(differences.map((d) => [d.field, d.setting])).toEqual([
      ['partner.profile.sha256', 'VALHALLA_PARTNER_PROFILE (the profile file)'],
    ]);

    // A document signed before profiles existed still reads, and differs: it must be signed again.
    const { profile: _profile, ...partner } = signed.partner;
    const older = manifestSchema.parse({ ...signed, partner });
    expect(
      manifestDifferences(older, signed, { limits: false }).map((d) => [d.field, d.signed, d.running]),
    ).toEqual([
      ['partner.profile.name', null, 'valhalla'],
      ['partner.profile.sha256', null, signed.partner.profile?.sha256],
    ]);
  });
});

describe('limits above the approved ones, in words', () => {
  it('names each raised limit by its setting and where it was set (environment, .env, the policy file)', () => {
    const dir = tempDir();
    const policy = policyFileWith(dir, { rateLimitPerSecond: 4 });
    writeFileSync(join(dir, '.env'), 'VALHALLA_MAX_LEADS_PER_CYCLE=40\n');
    const config = loadConfig({
      cwd: dir,
      env: {
        ...phase4Env(dir, UNCALLED_PARTNER),
        VALHALLA_POLICY_FILE: policy,
        VALHALLA_MAX_ACTIONS_PER_CYCLE: '6',
      },
    });
    const approved = { leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 3 };
    expect(limitsAbove(config.limits, approved, config.sources)).toEqual([
      'VALHALLA_MAX_LEADS_PER_CYCLE 40 leads/cycle (in .env), approved 25',
      'VALHALLA_MAX_ACTIONS_PER_CYCLE 6 actions/cycle, approved 5',
      "VALHALLA_RATE_LIMIT 4 requests/s (the policy file's rateLimitPerSecond), approved 3",
    ]);
    // Within the approved ones: nothing to name.
    expect(
      limitsAbove(config.limits, { leadsPerCycle: 40, actionsPerCycle: 6, rateLimitPerSecond: 4 }),
    ).toEqual([]);
  });
});
