import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import type { z } from 'zod';
import { type DatabaseTarget, databaseTarget } from './database.js';
import { envSchemas } from './env-schemas.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import { RUNNER_NAME, safeRunnerName, safeUserName } from './identity.js';
import { maskSecrets } from './mask.js';
import {
  type AlertSettings,
  type MetricsSettings,
  readAlertSettings,
  readMetricsSettings,
} from './monitoring.js';
import { type PartnerSettings, readPartnerSettings } from './partner.js';
import { DEFAULT_POLICY_FILE } from './paths.js';
import { checkPhaseCombination, type Phase } from './phase.js';
import { deepFreeze, loadPolicyFile, type PolicyDocument, policyHash } from './policy-file.js';
import { readSecret } from './pseudonym-secret.js';
import { describeRetention } from './retention.js';
import { readServerSettings, type ServerSettings } from './server.js';
import {
  KNOWN_VARIABLES,
  nearestKnownVariable,
  SECRET_VARIABLES,
  type SettingSource,
  type VariableName,
} from './variables.js';

export type { DatabaseTarget } from './database.js';
export { ConfigError, type ConfigIssue, isConfigError } from './errors.js';
export { describeTokenEntry, isSecretParameterName, looksLikeApiToken, MASK, maskSecrets } from './mask.js';
export type { AlertSettings, MetricsSettings } from './monitoring.js';
export type { PartnerSettings } from './partner.js';
export { DEFAULT_POLICY_FILE, PACKAGE_ROOT } from './paths.js';
export type { Phase } from './phase.js';
export {
  loadPolicyFile,
  MANIFEST_LIMIT_FIELDS,
  type PolicyDocument,
  policyHash,
  policySchema,
} from './policy-file.js';
export { API_ROLES, type ApiRole, type ApiTokenEntry, type ServerSettings } from './server.js';
export { KNOWN_VARIABLES, type SettingSource, type VariableName } from './variables.js';

export type DedupKeyKind = 'email' | 'external_id';

export interface Config {
  readonly phase: Phase;
  readonly realDataIngest: boolean;
  readonly dryRun: boolean;
  readonly outboundDisabled: boolean;
  /** The limits in force for this process: the environment's value, else the policy file's. */
  readonly limits: {
    readonly leadsPerCycle: number;
    readonly actionsPerCycle: number;
    readonly rateLimitPerSecond: number;
  };
  readonly policy: PolicyDocument;
  readonly policyHash: string;
  readonly policyFile: string;
  readonly database: DatabaseTarget;
  readonly dataDir: string;
  /** The pseudonym secret, or null when none is configured yet (`valhalla init` creates one). */
  readonly pseudonymSecret: string | null;
  readonly pseudonymSecretFile: string;
  readonly dedupKey: DedupKeyKind;
  readonly logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  readonly logFile: string | null;
  readonly operator: string;
  /** This runner's name among several on one database (default: the host name). */
  readonly runnerName: string;
  readonly partner: PartnerSettings;
  /** Seconds between the starts of two cycles of `valhalla run`. */
  readonly cycleIntervalSeconds: number;
  readonly alerts: AlertSettings;
  readonly metrics: MetricsSettings;
  /** The admin API and dashboard. */
  readonly server: ServerSettings;
  /** Days a completed lead keeps its personal data after its last change (`archive --retention`); null: no window. */
  readonly retentionDays: number | null;
  /** Where each variable's value came from, for `config show`. */
  readonly sources: Readonly<Record<string, SettingSource>>;
  /** The raw values as read (secrets included: print only through `describeConfig`). */
  readonly raw: Readonly<Partial<Record<VariableName, string>>>;
}

export interface LoadConfigOptions {
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
}

/**
 * Read the environment (and an optional `.env`) plus the policy file, validate everything, and
 * return a frozen Config. Every problem is collected and thrown together as one ConfigError.
 */
export function loadConfig({ env, cwd }: LoadConfigOptions): Config {
  const issues: ConfigIssue[] = [];
  const sources: Record<string, SettingSource> = {};
  const raw: Partial<Record<VariableName, string>> = {};

  const envFile = env.VALHALLA_ENV_FILE ? resolve(cwd, env.VALHALLA_ENV_FILE) : join(cwd, '.env');
  let dotenv: Record<string, string> = {};
  if (existsSync(envFile)) {
    try {
      dotenv = parseDotenv(readFileSync(envFile));
    } catch (cause) {
      issues.push({
        setting: 'VALHALLA_ENV_FILE',
        value: envFile,
        problem: `cannot read: ${(cause as Error).message}`,
      });
    }
  } else if (env.VALHALLA_ENV_FILE) {
    issues.push({ setting: 'VALHALLA_ENV_FILE', value: envFile, problem: 'no such file' });
  }

  const known: ReadonlySet<string> = new Set(KNOWN_VARIABLES);
  for (const [name, origin] of [
    ...Object.keys(dotenv).map((n) => [n, '.env'] as const),
    ...Object.keys(env).map((n) => [n, 'environment'] as const),
  ]) {
    if (name.startsWith('VALHALLA_') && !known.has(name)) {
      // The value is not echoed: a misspelt secret variable would print the secret.
      const nearest = nearestKnownVariable(name);
      issues.push({
        setting: name,
        value: undefined,
        problem: `unknown variable (from the ${origin})${nearest ? `, did you mean ${nearest}?` : ''}; known: ${KNOWN_VARIABLES.join(', ')}`,
      });
    }
  }
  for (const name of KNOWN_VARIABLES) {
    // An empty validated setting (`VALHALLA_MAX_LEADS_PER_CYCLE=`) is refused like any other bad value:
    // quietly falling back to the default would run with a limit the operator did not choose.
    // An empty path or name means "not set".
    const keepEmpty = name in envSchemas;
    const fromEnv = env[name];
    const fromDotenv = dotenv[name];
    if (fromEnv !== undefined && (fromEnv !== '' || keepEmpty)) {
      raw[name] = fromEnv;
      sources[name] = 'environment';
    } else if (fromDotenv !== undefined && (fromDotenv !== '' || keepEmpty)) {
      raw[name] = fromDotenv;
      sources[name] = '.env';
    }
  }

  function read<K extends keyof typeof envSchemas>(name: K): z.output<(typeof envSchemas)[K]> | undefined {
    const value = raw[name];
    if (value === undefined) return undefined;
    const parsed = envSchemas[name].safeParse(value);
    if (parsed.success) return parsed.data as z.output<(typeof envSchemas)[K]>;
    for (const issue of parsed.error.issues) {
      issues.push({
        setting: name,
        value: SECRET_VARIABLES.has(name) ? '(secret)' : value,
        problem: issue.message,
      });
    }
    return undefined;
  }
  function withDefault<T>(
    name: VariableName,
    value: T | undefined,
    fallback: T,
    source: SettingSource = 'default',
  ): T {
    if (value !== undefined) return value;
    if (raw[name] === undefined) sources[name] = source;
    return fallback;
  }

  const phase = withDefault('VALHALLA_PHASE', read('VALHALLA_PHASE'), 3 as Phase);
  // The defaults are the safe Phase 3 values; Phase 4 must set each one explicitly (policy §5 step 2).
  const realDataIngest = withDefault('VALHALLA_REAL_DATA_INGEST', read('VALHALLA_REAL_DATA_INGEST'), false);
  const dryRun = withDefault('VALHALLA_DRY_RUN', read('VALHALLA_DRY_RUN'), true);
  const outboundDisabled = withDefault('VALHALLA_DISABLE_OUTBOUND', read('VALHALLA_DISABLE_OUTBOUND'), true);

  const dataDir = resolve(cwd, raw.VALHALLA_DATA_DIR ?? withDefault('VALHALLA_DATA_DIR', undefined, 'data'));
  const policyFile = raw.VALHALLA_POLICY_FILE
    ? resolve(cwd, raw.VALHALLA_POLICY_FILE)
    : withDefault('VALHALLA_POLICY_FILE', undefined, DEFAULT_POLICY_FILE);
  let policy: PolicyDocument | undefined;
  try {
    policy = loadPolicyFile(policyFile);
  } catch (error) {
    if (error instanceof ConfigError) issues.push(...error.issues);
    else throw error;
  }

  const leadsPerCycle = withDefault(
    'VALHALLA_MAX_LEADS_PER_CYCLE',
    read('VALHALLA_MAX_LEADS_PER_CYCLE'),
    policy?.leadsPerCycle ?? 0,
    'policy file',
  );
  // The policy: actions/cycle default 0 in Phase 3, 5 (the policy file's value) in Phase 4.
  const actionsPerCycle = withDefault(
    'VALHALLA_MAX_ACTIONS_PER_CYCLE',
    read('VALHALLA_MAX_ACTIONS_PER_CYCLE'),
    phase === 4 ? (policy?.actionsPerCycle ?? 0) : 0,
    phase === 4 ? 'policy file' : 'default',
  );
  const rateLimitPerSecond = withDefault(
    'VALHALLA_RATE_LIMIT',
    read('VALHALLA_RATE_LIMIT'),
    policy?.rateLimitPerSecond ?? 0,
    'policy file',
  );
  const dedupKey = withDefault('VALHALLA_DEDUP_KEY', read('VALHALLA_DEDUP_KEY'), 'email' as DedupKeyKind);
  const logLevel = withDefault(
    'VALHALLA_LOG_LEVEL',
    read('VALHALLA_LOG_LEVEL'),
    'info' as Config['logLevel'],
  );

  checkPhaseCombination(phase, { realDataIngest, dryRun, outboundDisabled }, raw, issues);
  // Node.js adds NODE_EXTRA_CA_CERTS to the CAs it trusts: the partner could then be vouched for by a
  // CA the release manifest does not name. Phase 4 names its partner's CAs in VALHALLA_PARTNER_CA_FILE.
  if (phase === 4 && (env.NODE_EXTRA_CA_CERTS ?? '') !== '') {
    issues.push({
      setting: 'NODE_EXTRA_CA_CERTS',
      value: env.NODE_EXTRA_CA_CERTS,
      problem:
        'Phase 4 trusts for its partner only the CAs the release manifest names: unset it, and put the partner’s CA in VALHALLA_PARTNER_CA_FILE',
    });
  }

  const databaseUrl = withDefault(
    'VALHALLA_DATABASE_URL',
    raw.VALHALLA_DATABASE_URL,
    join(dataDir, 'valhalla.db'),
  );
  const database = databaseTarget(databaseUrl, cwd, issues);

  const pseudonymSecretFile = raw.VALHALLA_PSEUDONYM_SECRET_FILE
    ? resolve(cwd, raw.VALHALLA_PSEUDONYM_SECRET_FILE)
    : withDefault('VALHALLA_PSEUDONYM_SECRET_FILE', undefined, join(dataDir, 'pseudonym.key'));
  const pseudonymSecret = readSecret(raw, pseudonymSecretFile, issues);

  const logFile = raw.VALHALLA_LOG_FILE ? resolve(cwd, raw.VALHALLA_LOG_FILE) : null;
  const operator = raw.VALHALLA_OPERATOR ?? withDefault('VALHALLA_OPERATOR', undefined, safeUserName());
  const runnerName =
    raw.VALHALLA_RUNNER_NAME ?? withDefault('VALHALLA_RUNNER_NAME', undefined, safeRunnerName(hostname()));
  if (raw.VALHALLA_RUNNER_NAME !== undefined && !RUNNER_NAME.test(raw.VALHALLA_RUNNER_NAME)) {
    issues.push({
      setting: 'VALHALLA_RUNNER_NAME',
      value: raw.VALHALLA_RUNNER_NAME,
      problem: 'must be 1-64 letters, digits, dots, dashes or underscores',
    });
  }

  const partner = readPartnerSettings(raw, phase, cwd, issues);
  const cycleIntervalSeconds = withDefault(
    'VALHALLA_CYCLE_INTERVAL_S',
    read('VALHALLA_CYCLE_INTERVAL_S'),
    300,
  );
  const alerts = readAlertSettings(raw, issues);
  const metrics = readMetricsSettings(raw, issues);
  const server = readServerSettings(raw, issues);
  const retentionDays = withDefault('VALHALLA_RETENTION_DAYS', read('VALHALLA_RETENTION_DAYS'), null);

  if (issues.length > 0 || policy === undefined) throw new ConfigError('CONFIG_INVALID', issues);

  return deepFreeze({
    phase,
    realDataIngest,
    dryRun,
    outboundDisabled,
    limits: { leadsPerCycle, actionsPerCycle, rateLimitPerSecond },
    policy,
    policyHash: policyHash(policy),
    policyFile,
    database,
    dataDir,
    pseudonymSecret,
    pseudonymSecretFile,
    dedupKey,
    logLevel,
    logFile,
    operator,
    runnerName,
    partner,
    cycleIntervalSeconds,
    alerts,
    metrics,
    server,
    retentionDays,
    sources,
    raw,
  });
}

/** The configuration as an operator may see it: values with their source, secrets masked. */
export function describeConfig(config: Config): {
  phase: Phase;
  policyHash: string;
  policyFile: string;
  variables: { name: VariableName; value: string; source: SettingSource }[];
  policy: PolicyDocument;
} {
  const effective: Record<VariableName, string> = {
    VALHALLA_PHASE: String(config.phase),
    VALHALLA_REAL_DATA_INGEST: config.realDataIngest ? '1' : '0',
    VALHALLA_DRY_RUN: config.dryRun ? '1' : '0',
    VALHALLA_DISABLE_OUTBOUND: config.outboundDisabled ? '1' : '0',
    VALHALLA_MAX_LEADS_PER_CYCLE: String(config.limits.leadsPerCycle),
    VALHALLA_MAX_ACTIONS_PER_CYCLE: String(config.limits.actionsPerCycle),
    VALHALLA_RATE_LIMIT: String(config.limits.rateLimitPerSecond),
    VALHALLA_DATABASE_URL: config.database.kind === 'postgres' ? config.database.url : config.database.path,
    VALHALLA_DATA_DIR: config.dataDir,
    VALHALLA_POLICY_FILE: config.policyFile,
    VALHALLA_PSEUDONYM_SECRET:
      config.raw.VALHALLA_PSEUDONYM_SECRET === undefined ? '(not set)' : '******** (set)',
    VALHALLA_PSEUDONYM_SECRET_FILE:
      config.raw.VALHALLA_PSEUDONYM_SECRET !== undefined
        ? '(not used: the secret is set directly)'
        : `${config.pseudonymSecretFile}${config.pseudonymSecret === null ? ' (missing: run valhalla init)' : ''}`,
    VALHALLA_DEDUP_KEY: config.dedupKey,
    VALHALLA_LOG_LEVEL: config.logLevel,
    VALHALLA_LOG_FILE: config.logFile ?? '(standard error)',
    VALHALLA_OPERATOR: config.operator,
    VALHALLA_RUNNER_NAME: config.runnerName,
    VALHALLA_ENV_FILE: config.raw.VALHALLA_ENV_FILE ?? '.env',
    VALHALLA_PARTNER_URL: config.partner.url ?? '(not set)',
    VALHALLA_PARTNER_TOKEN_URL: config.partner.tokenUrl ?? '(not set)',
    VALHALLA_PARTNER_CLIENT_ID: config.partner.clientId ?? '(not set)',
    VALHALLA_PARTNER_CLIENT_SECRET: config.partner.clientSecret === null ? '(not set)' : '******** (set)',
    VALHALLA_PARTNER_CA_FILE: config.partner.caFile ?? '(system CAs)',
    VALHALLA_CYCLE_INTERVAL_S: String(config.cycleIntervalSeconds),
    VALHALLA_SLACK_WEBHOOK_URL: config.alerts.slackWebhookUrl === null ? '(not set)' : '******** (set)',
    VALHALLA_SMTP_URL: config.alerts.smtpUrl ?? '(not set)',
    VALHALLA_ALERT_EMAIL_TO:
      config.alerts.emailTo.length === 0 ? '(not set)' : config.alerts.emailTo.join(', '),
    VALHALLA_ALERT_EMAIL_FROM: config.alerts.emailFrom,
    VALHALLA_METRICS_PORT: config.metrics.port === null ? 'off' : `127.0.0.1:${config.metrics.port}`,
    VALHALLA_SERVER_PORT: config.server.port === null ? 'off' : `${config.server.host}:${config.server.port}`,
    VALHALLA_SERVER_HOST: config.server.host,
    VALHALLA_PUBLIC_HOST: config.server.publicHost ?? '(not set: loopback names only)',
    VALHALLA_API_TOKENS:
      config.server.tokens.length === 0
        ? '(none: the dashboard and API refuse everyone)'
        : config.server.tokens.map((t) => `${t.name} (${t.role})`).join(', '),
    VALHALLA_RETENTION_DAYS: describeRetention(config.retentionDays),
  };
  return {
    phase: config.phase,
    policyHash: config.policyHash,
    policyFile: config.policyFile,
    // Every value passes the one masking rule: a path or a name may hold a URL's credentials too.
    variables: KNOWN_VARIABLES.map((name) => ({
      name,
      value: maskSecrets(effective[name]),
      source: config.sources[name] ?? 'default',
    })),
    policy: config.policy,
  };
}
