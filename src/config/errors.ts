import { maskSecrets } from './mask.js';

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
  /** The issues as given, each value passed through the masking rule (a URL's password, a secret parameter). */
  readonly issues: readonly ConfigIssue[];
  constructor(
    readonly code: ConfigErrorCode,
    issues: readonly ConfigIssue[],
    options?: { cause?: unknown },
  ) {
    const masked = issues.map((i) => ({
      ...i,
      value: i.value === undefined ? undefined : maskSecrets(i.value),
    }));
    super(
      `configuration refused:\n${masked.map((i) => `  - ${i.setting}${i.value === undefined ? '' : `=${JSON.stringify(i.value)}`}: ${i.problem}`).join('\n')}`,
      options,
    );
    this.issues = masked;
  }
}

export function isConfigError(error: unknown): error is ConfigError {
  return error instanceof ConfigError;
}
