/**
 * The VALHALLA_* variables: the names the product reads, which of them hold secrets, where a value
 * came from, and the known name a misspelt one most likely meant.
 */

export type SettingSource = 'environment' | '.env' | 'policy file' | 'default';

/** Every VALHALLA_* variable the product reads; any other VALHALLA_* name is refused as a likely typo. */
export const KNOWN_VARIABLES = [
  'VALHALLA_PHASE',
  'VALHALLA_REAL_DATA_INGEST',
  'VALHALLA_DRY_RUN',
  'VALHALLA_DISABLE_OUTBOUND',
  'VALHALLA_MAX_LEADS_PER_CYCLE',
  'VALHALLA_MAX_ACTIONS_PER_CYCLE',
  'VALHALLA_RATE_LIMIT',
  'VALHALLA_DATABASE_URL',
  'VALHALLA_DATA_DIR',
  'VALHALLA_POLICY_FILE',
  'VALHALLA_PSEUDONYM_SECRET',
  'VALHALLA_PSEUDONYM_SECRET_FILE',
  'VALHALLA_DEDUP_KEY',
  'VALHALLA_LOG_LEVEL',
  'VALHALLA_LOG_FILE',
  'VALHALLA_OPERATOR',
  'VALHALLA_ENV_FILE',
  'VALHALLA_PARTNER_URL',
  'VALHALLA_PARTNER_TOKEN_URL',
  'VALHALLA_PARTNER_CLIENT_ID',
  'VALHALLA_PARTNER_CLIENT_SECRET',
  'VALHALLA_PARTNER_CA_FILE',
  'VALHALLA_PARTNER_PROFILE',
  'VALHALLA_PARTNER_API_KEY',
  'VALHALLA_PARTNER_BEARER_TOKEN',
  'VALHALLA_CYCLE_INTERVAL_S',
  'VALHALLA_SLACK_WEBHOOK_URL',
  'VALHALLA_SMTP_URL',
  'VALHALLA_ALERT_EMAIL_TO',
  'VALHALLA_ALERT_EMAIL_FROM',
  'VALHALLA_METRICS_PORT',
  'VALHALLA_SERVER_PORT',
  'VALHALLA_SERVER_HOST',
  'VALHALLA_PUBLIC_HOST',
  'VALHALLA_API_TOKENS',
  'VALHALLA_RETENTION_DAYS',
  'VALHALLA_RUNNER_NAME',
] as const;
export type VariableName = (typeof KNOWN_VARIABLES)[number];

export const SECRET_VARIABLES: ReadonlySet<string> = new Set([
  'VALHALLA_PSEUDONYM_SECRET',
  'VALHALLA_PARTNER_CLIENT_SECRET',
  'VALHALLA_PARTNER_API_KEY',
  'VALHALLA_PARTNER_BEARER_TOKEN',
  'VALHALLA_SLACK_WEBHOOK_URL',
  'VALHALLA_SMTP_URL',
]);

/** The known variable a typo most likely meant (at most 3 edits away), or null. */
export function nearestKnownVariable(name: string): string | null {
  let best: { name: string; distance: number } | null = null;
  for (const known of KNOWN_VARIABLES) {
    const distance = editDistance(name, known);
    if (distance <= 3 && (best === null || distance < best.distance)) best = { name: known, distance };
  }
  return best?.name ?? null;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}
