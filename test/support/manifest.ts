import { MANIFEST_FORMAT, type ReleaseManifest } from '../../src/gates/index.js';

/** The installation the tests' documents are signed for, unless they say otherwise. */
export const TEST_INSTALLATION = '00000000-0000-4000-8000-000000000001';

/**
 * A release manifest for documents signed outside an installation (unit and store-level tests):
 * the shipped limits, a partner, both alert channels, dashboard and metrics on.
 */
export function testManifest(
  overrides: Partial<Omit<ReleaseManifest, 'limits'>> & { limits?: Partial<ReleaseManifest['limits']> } = {},
): ReleaseManifest {
  const { limits, ...rest } = overrides;
  return {
    format: MANIFEST_FORMAT,
    installationId: TEST_INSTALLATION,
    policyHash: 'a'.repeat(64),
    partner: {
      url: 'https://partner.example/',
      tokenUrl: 'https://partner.example/oauth/token',
      clientId: 'valhalla',
      caFingerprints: null,
    },
    dedupKey: 'email',
    memoryPerProcessMb: 512,
    cycleIntervalSeconds: 300,
    monitoring: {
      slack: true,
      slackWebhookSha256: 'b'.repeat(64),
      email: true,
      emailTo: ['ops@example.org'],
      dashboard: true,
      metrics: true,
      logLevel: 'info',
    },
    ...rest,
    limits: { leadsPerCycle: 25, actionsPerCycle: 5, rateLimitPerSecond: 5, ...limits },
  };
}
