/**
 * Loading the configuration: the environment and an optional .env file, then the policy file, each
 * value validated and given its source; every problem gathered into one ConfigError, else a frozen Config.
 */
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import type { z } from 'zod';
import { deepFreeze } from '../policy/index.js';
import { databaseTarget } from './database.js';
import { envSchemas } from './env-schemas.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import { RUNNER_NAME, safeRunnerName, safeUserName } from './identity.js';
import { readAlertSettings, readMetricsSettings } from './monitoring.js';
import { readPartnerSettings } from './partner.js';
import { DEFAULT_POLICY_FILE } from './paths.js';
import { checkPhaseCombination, type Phase } from './phase.js';
import { loadPolicyFile, type PolicyDocument, policyHash } from './policy-file.js';
import { readSecret } from './pseudonym-secret.js';
import { readServerSettings } from './server.js';
import type { Config, DedupKeyKind } from './types.js';
import {
  KNOWN_VARIABLES,
  nearestKnownVariable,
  SECRET_VARIABLES,
  type SettingSource,
  type VariableName,
} from './variables.js';

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

  if (issues.length > 0 || policy === undefined || partner === null)
    throw new ConfigError('CONFIG_INVALID', issues);

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
