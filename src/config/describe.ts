/**
 * The configuration as `valhalla config show` prints it: each variable's effective value and its
 * source, every value passed through the one masking rule.
 */
import { maskSecrets } from './mask.js';
import type { Phase } from './phase.js';
import type { PolicyDocument } from './policy-file.js';
import { describeRetention } from './retention.js';
import type { Config } from './types.js';
import { KNOWN_VARIABLES, type SettingSource, type VariableName } from './variables.js';

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
    VALHALLA_PARTNER_TOKEN_URL:
      config.partner.profile.profile.auth.kind !== 'oauth2_client_credentials'
        ? `(not used: the profile's auth is ${config.partner.profile.profile.auth.kind})`
        : config.partner.tokenUrl === null
          ? '(not set)'
          : config.raw.VALHALLA_PARTNER_TOKEN_URL === undefined
            ? `${config.partner.tokenUrl} (the profile's endpoints.token below the partner URL)`
            : config.partner.tokenUrl,
    VALHALLA_PARTNER_CLIENT_ID: config.partner.clientId ?? '(not set)',
    VALHALLA_PARTNER_CLIENT_SECRET: config.partner.clientSecret === null ? '(not set)' : '******** (set)',
    VALHALLA_PARTNER_PROFILE: `${config.partner.profile.profile.name} (${config.partner.profile.file}; sha256 ${config.partner.profile.sha256.slice(0, 12)}…)`,
    VALHALLA_PARTNER_API_KEY: config.partner.apiKey === null ? '(not set)' : '******** (set)',
    VALHALLA_PARTNER_BEARER_TOKEN: config.partner.bearerToken === null ? '(not set)' : '******** (set)',
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
