/**
 * The Config a process runs with (what loadConfig returns, frozen) and the dedup key kind it names.
 */
import type { DatabaseTarget } from './database.js';
import type { AlertSettings, MetricsSettings } from './monitoring.js';
import type { PartnerSettings } from './partner.js';
import type { Phase } from './phase.js';
import type { PolicyDocument } from './policy-file.js';
import type { ServerSettings } from './server.js';
import type { SettingSource, VariableName } from './variables.js';

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
