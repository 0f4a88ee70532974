import { createHash, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import {
  type Config,
  isSecretParameterName,
  MASK,
  maskSecrets,
  type ProfileIdentity,
  profileIdentity,
  type SettingSource,
} from '../config/index.js';
import { canonicalJson, HARD_CAPS } from '../policy/index.js';

/**
 * The release manifest: everything that decides what Phase 4 does, in one canonical document. The
 * sign-offs, the attestations, the CEO's activation and the CFO's amendments each carry the manifest
 * they approve, so a signature covers the partner it sends to, the limits it sends under, the dedup
 * rule, the memory cap and the monitoring, not only the policy file. It is what Phase 4 would run
 * with, whatever the phase it is computed in: stakeholders sign while the installation is still in
 * Phase 3, so the actions/cycle are Phase 4's (the policy file's, unless the environment sets them).
 */
export const MANIFEST_FORMAT = 'valhalla-manifest/1';

export interface ManifestLimits {
  leadsPerCycle: number;
  actionsPerCycle: number;
  rateLimitPerSecond: number;
}

export interface ReleaseManifest {
  format: typeof MANIFEST_FORMAT;
  /** The installation (`valhalla init` made it): a document for another one is refused. */
  installationId: string;
  /** The policy file's numbers (SHA-256 of its canonical JSON). */
  policyHash: string;
  /** The limits Phase 4 runs with here; lowering one needs no signature, raising one a CFO amendment. */
  limits: ManifestLimits;
  partner: {
    url: string | null;
    tokenUrl: string | null;
    clientId: string | null;
    /** SHA-256 fingerprints of the certificates in VALHALLA_PARTNER_CA_FILE; null: the system's CAs. */
    caFingerprints: string[] | null;
    /**
     * The partner profile (VALHALLA_PARTNER_PROFILE): its name and the SHA-256 of its canonical JSON,
     * so a signature covers the endpoints, the auth kind, the field mapping and the reading of answers.
     * Absent only in a document signed before profiles existed (it then differs: re-sign).
     */
    profile?: ProfileIdentity;
  };
  dedupKey: 'email' | 'external_id';
  memoryPerProcessMb: number;
  /** Seconds between two cycles' starts (VALHALLA_CYCLE_INTERVAL_S): how often the limits apply. */
  cycleIntervalSeconds: number;
  monitoring: {
    slack: boolean;
    /** SHA-256 of the Slack webhook URL (the URL is the credential): another channel is a difference. */
    slackWebhookSha256: string | null;
    email: boolean;
    /** The ops list alerts go to. */
    emailTo: string[];
    dashboard: boolean;
    metrics: boolean;
    logLevel: Config['logLevel'];
  };
}

const limitsSchema = z.strictObject({
  leadsPerCycle: z.number().int().min(1).max(HARD_CAPS.leadsPerCycle),
  actionsPerCycle: z.number().int().min(0).max(HARD_CAPS.actionsPerCycle),
  rateLimitPerSecond: z.number().positive().max(HARD_CAPS.rateLimitPerSecond),
});

const HEX64 = /^[0-9a-f]{64}$/;
const INSTALLATION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The manifest as a signed document holds it (strict: an unknown field is refused). */
export const manifestSchema = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  installationId: z.string().regex(INSTALLATION_ID, 'must be an installation id (a UUID)'),
  policyHash: z.string().regex(HEX64, 'must be 64 lowercase hex digits (SHA-256)'),
  limits: limitsSchema,
  partner: z.strictObject({
    url: z.string().max(2000).nullable(),
    tokenUrl: z.string().max(2000).nullable(),
    clientId: z.string().max(500).nullable(),
    caFingerprints: z.array(z.string().regex(HEX64)).max(100).nullable(),
    profile: z.strictObject({ name: z.string().max(64), sha256: z.string().regex(HEX64) }).optional(),
  }),
  dedupKey: z.enum(['email', 'external_id']),
  memoryPerProcessMb: z.number().int().positive(),
  cycleIntervalSeconds: z.number().int().positive(),
  monitoring: z.strictObject({
    slack: z.boolean(),
    slackWebhookSha256: z.string().regex(HEX64).nullable(),
    email: z.boolean(),
    emailTo: z.array(z.string().max(320)).max(100),
    dashboard: z.boolean(),
    metrics: z.boolean(),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']),
  }),
});

/** The limits Phase 4 runs with under this configuration (Phase 3's actions/cycle are 0 by design). */
export function phase4Limits(config: Config): ManifestLimits {
  const fromEnvironment = config.sources.VALHALLA_MAX_ACTIONS_PER_CYCLE;
  const actionsSet = fromEnvironment === 'environment' || fromEnvironment === '.env';
  return {
    leadsPerCycle: config.limits.leadsPerCycle,
    actionsPerCycle:
      config.phase === 4 || actionsSet ? config.limits.actionsPerCycle : config.policy.actionsPerCycle,
    rateLimitPerSecond: config.limits.rateLimitPerSecond,
  };
}

/** SHA-256 fingerprints (hex) of each certificate in a PEM bundle, in the file's order. */
export function caFingerprints(pem: string): string[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => {
    try {
      return new X509Certificate(block).fingerprint256.replaceAll(':', '').toLowerCase();
    } catch {
      // Not a certificate X509 can read: the bytes' own digest still tells two files apart.
      return createHash('sha256').update(block).digest('hex');
    }
  });
}

/** The manifest of what Phase 4 would run with under `config`, in installation `installationId`. */
export function buildManifest(
  config: Config,
  installationId: string,
  /** The limits in force when they are not the configuration's (a running worker's). */
  limits?: ManifestLimits,
): ReleaseManifest {
  return {
    format: MANIFEST_FORMAT,
    installationId,
    policyHash: config.policyHash,
    limits: limits ?? phase4Limits(config),
    partner: {
      // Through the one masking rule: a password or a secret query parameter is never signed,
      // stored in a document or printed; what it points at is.
      url: manifestEndpoint(config.partner.url),
      tokenUrl: manifestEndpoint(config.partner.tokenUrl),
      clientId: config.partner.clientId,
      caFingerprints: config.partner.caPem === null ? null : caFingerprints(config.partner.caPem),
      profile: profileIdentity(config.partner.profile),
    },
    dedupKey: config.dedupKey,
    memoryPerProcessMb: config.policy.memoryPerProcessMb,
    cycleIntervalSeconds: config.cycleIntervalSeconds,
    monitoring: {
      slack: config.alerts.slackWebhookUrl !== null,
      slackWebhookSha256:
        config.alerts.slackWebhookUrl === null
          ? null
          : createHash('sha256').update(config.alerts.slackWebhookUrl).digest('hex'),
      email: config.alerts.smtpUrl !== null && config.alerts.emailTo.length > 0,
      emailTo: [...config.alerts.emailTo].sort(),
      dashboard: config.server.port !== null,
      metrics: config.metrics.port !== null,
      logLevel: config.logLevel,
    },
  };
}

/**
 * A URL as the manifest holds it: in its normal form (`https://a` is `https://a/`), with a password
 * and the value of any parameter named like a secret masked, taken apart by the URL parser (so that
 * two URLs that differ in their host, port or path never look the same).
 */
export function manifestEndpoint(url: string | null): string | null {
  if (url === null) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL the configuration would have let through: masked as text.
    return maskSecrets(url);
  }
  if (parsed.password !== '') parsed.password = MASK;
  for (const name of [...new Set(parsed.searchParams.keys())]) {
    if (isSecretParameterName(name)) parsed.searchParams.set(name, MASK);
  }
  return parsed.toString();
}

/** SHA-256 (hex) of the manifest's canonical JSON: the hash `gates status` and `config show` print. */
export function manifestHash(manifest: ReleaseManifest): string {
  return createHash('sha256').update(canonicalJson(manifest)).digest('hex');
}

/** The setting an operator changes to move each manifest field. */
const FIELD_SETTINGS: Readonly<Record<string, string>> = {
  installationId: 'the database (VALHALLA_DATABASE_URL / VALHALLA_DATA_DIR)',
  policyHash: 'VALHALLA_POLICY_FILE (the policy file)',
  'limits.leadsPerCycle': 'VALHALLA_MAX_LEADS_PER_CYCLE',
  'limits.actionsPerCycle': 'VALHALLA_MAX_ACTIONS_PER_CYCLE',
  'limits.rateLimitPerSecond': 'VALHALLA_RATE_LIMIT',
  'partner.url': 'VALHALLA_PARTNER_URL',
  'partner.tokenUrl': 'VALHALLA_PARTNER_TOKEN_URL',
  'partner.clientId': 'VALHALLA_PARTNER_CLIENT_ID',
  'partner.caFingerprints': 'VALHALLA_PARTNER_CA_FILE',
  'partner.profile.name': 'VALHALLA_PARTNER_PROFILE',
  'partner.profile.sha256': 'VALHALLA_PARTNER_PROFILE (the profile file)',
  dedupKey: 'VALHALLA_DEDUP_KEY',
  memoryPerProcessMb: 'VALHALLA_POLICY_FILE (memoryPerProcessMb)',
  cycleIntervalSeconds: 'VALHALLA_CYCLE_INTERVAL_S',
  'monitoring.slack': 'VALHALLA_SLACK_WEBHOOK_URL',
  'monitoring.slackWebhookSha256': 'VALHALLA_SLACK_WEBHOOK_URL',
  'monitoring.email': 'VALHALLA_SMTP_URL and VALHALLA_ALERT_EMAIL_TO',
  'monitoring.emailTo': 'VALHALLA_ALERT_EMAIL_TO',
  'monitoring.dashboard': 'VALHALLA_SERVER_PORT',
  'monitoring.metrics': 'VALHALLA_METRICS_PORT',
  'monitoring.logLevel': 'VALHALLA_LOG_LEVEL',
};

export interface ManifestDifference {
  /** The field's path in the manifest, e.g. `partner.url`. */
  field: string;
  /** The variable or file that sets it. */
  setting: string;
  signed: unknown;
  running: unknown;
}

function flatten(value: unknown, prefix: string, out: Map<string, unknown>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out.set(prefix, value);
  }
}

/**
 * Each field where `running` is not `signed`, in the manifest's order. `limits: false` leaves the
 * limits out (a lowering needs no signature; a raise is judged against the approved limits).
 */
export function manifestDifferences(
  signed: ReleaseManifest,
  running: ReleaseManifest,
  options: { limits: boolean },
): ManifestDifference[] {
  const a = new Map<string, unknown>();
  const b = new Map<string, unknown>();
  flatten(signed, '', a);
  flatten(running, '', b);
  const differences: ManifestDifference[] = [];
  for (const field of new Set([...a.keys(), ...b.keys()])) {
    if (!options.limits && field.startsWith('limits.')) continue;
    if (canonicalJson(a.get(field) ?? null) === canonicalJson(b.get(field) ?? null)) continue;
    differences.push({
      field,
      setting: FIELD_SETTINGS[field] ?? field,
      signed: a.get(field) ?? null,
      running: b.get(field) ?? null,
    });
  }
  return differences;
}

/** A value as a difference shows it: URLs through the one masking rule, long hashes cut. */
function shown(value: unknown): string {
  if (typeof value === 'string') {
    return /^[0-9a-f]{64}$/.test(value) ? `${value.slice(0, 12)}…` : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(shown).join(', ')}]`;
  return JSON.stringify(value);
}

/** `partner.url (VALHALLA_PARTNER_URL): signed "https://a/", running "https://b/"`. */
export function describeDifference(d: ManifestDifference): string {
  return `${d.field} (${d.setting}): signed ${shown(d.signed)}, running ${shown(d.running)}`;
}

const LIMIT_WORDS: Readonly<Record<keyof ManifestLimits, { setting: string; unit: string }>> = {
  leadsPerCycle: { setting: 'VALHALLA_MAX_LEADS_PER_CYCLE', unit: 'leads/cycle' },
  actionsPerCycle: { setting: 'VALHALLA_MAX_ACTIONS_PER_CYCLE', unit: 'actions/cycle' },
  rateLimitPerSecond: { setting: 'VALHALLA_RATE_LIMIT', unit: 'requests/s' },
};

/**
 * Each limit above what was approved, worded with its setting and, when it is not the environment,
 * where it was set (what the operator must edit to lower it): `VALHALLA_RATE_LIMIT 5 requests/s (in
 * .env), approved 3`; `VALHALLA_RATE_LIMIT 5 requests/s (the policy file's rateLimitPerSecond), approved 3`.
 */
export function limitsAbove(
  running: ManifestLimits,
  approved: ManifestLimits,
  sources: Readonly<Record<string, SettingSource>> = {},
): string[] {
  return (Object.keys(LIMIT_WORDS) as (keyof ManifestLimits)[])
    .filter((key) => running[key] > approved[key])
    .map((key) => {
      const { setting, unit } = LIMIT_WORDS[key];
      const source = sources[setting];
      const where =
        source === '.env' ? ' (in .env)' : source === 'policy file' ? ` (the policy file's ${key})` : '';
      return `${setting} ${running[key]} ${unit}${where}, approved ${approved[key]}`;
    });
}

/** `25 leads/cycle, 5 actions/cycle, 5 requests/s`: the limits in words, wherever they are printed. */
export function describeLimits(l: ManifestLimits): string {
  return `${l.leadsPerCycle} leads/cycle, ${l.actionsPerCycle} actions/cycle, ${l.rateLimitPerSecond} requests/s`;
}

/** Each limit's lower of the two: what a set of sign-offs approves together. */
export function lowerLimits(a: ManifestLimits, b: ManifestLimits): ManifestLimits {
  return {
    leadsPerCycle: Math.min(a.leadsPerCycle, b.leadsPerCycle),
    actionsPerCycle: Math.min(a.actionsPerCycle, b.actionsPerCycle),
    rateLimitPerSecond: Math.min(a.rateLimitPerSecond, b.rateLimitPerSecond),
  };
}

/** The log levels that still write warnings: Phase 4 needs one of these. */
const WARNING_LEVELS: ReadonlySet<string> = new Set(['trace', 'debug', 'info', 'warn']);

/**
 * What Phase 4 refuses to run without (the policy forbids switching monitoring off): the dashboard
 * server and metrics on, both alert channels configured, and a log level that keeps warnings. One
 * line per setting, naming it.
 */
export function monitoringRefusals(manifest: ReleaseManifest): string[] {
  const m = manifest.monitoring;
  const refusals: string[] = [];
  if (!m.dashboard) refusals.push('VALHALLA_SERVER_PORT=off: Phase 4 needs the dashboard and admin API on');
  if (!m.metrics) refusals.push('VALHALLA_METRICS_PORT=off: Phase 4 needs /metrics on');
  if (!m.slack) refusals.push('VALHALLA_SLACK_WEBHOOK_URL is not set: Phase 4 needs Slack alerts');
  if (!m.email) {
    refusals.push(
      'VALHALLA_SMTP_URL and VALHALLA_ALERT_EMAIL_TO are not both set: Phase 4 needs e-mail alerts',
    );
  }
  if (!WARNING_LEVELS.has(m.logLevel)) {
    refusals.push(`VALHALLA_LOG_LEVEL=${m.logLevel}: Phase 4 needs warn or more (trace, debug, info, warn)`);
  }
  return refusals;
}
