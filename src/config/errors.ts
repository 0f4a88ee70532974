/** One reason a configuration was refused: which setting, the value seen, and why. */
export interface ConfigIssue {
  /** The environment variable or policy-file field, e.g. `VALHALLA_MAX_LEADS_PER_CYCLE` or `policy.leadsPerCycle`. */
  setting: string;
  /** The value as given (secrets are never echoed). */
  value: string | undefined;
  problem: string;
}

export type ConfigErrorCode = 'CONFIG_INVALID' | 'POLICY_FILE_UNREADABLE';

/** Configuration refused at start. Never clamped: the operator must fix the value. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly code: ConfigErrorCode,
    readonly issues: readonly ConfigIssue[],
    options?: { cause?: unknown },
  ) {
    super(
      `configuration refused:\n${issues.map((i) => `  - ${i.setting}${i.value === undefined ? '' : `=${JSON.stringify(i.value)}`}: ${i.problem}`).join('\n')}`,
      options,
    );
  }
}

export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError;
}
