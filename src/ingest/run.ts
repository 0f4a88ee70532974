/** What an ingest run is given (its dependencies), what it reports (its summary), and its audit actor. */
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { DedupKeyKind } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { ProfileAttribute } from '../partner/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import type { EligibilityRules } from '../policy/index.js';
import type { Store } from '../store/index.js';
import type { SourceFormat } from './source.js';

export interface IngestDeps {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  logger: Logger;
  pseudonymizer: Pseudonymizer;
  rules: EligibilityRules;
  dedupKey: DedupKeyKind;
  operator: string;
  /** Where rejects files go when no path is given: `<rejectsDir>/ingest-run-<id>.jsonl`. */
  rejectsDir: string;
  /** VALHALLA_REAL_DATA_INGEST=1: real data only, a synthetic lead is rejected (README). */
  realDataOnly?: boolean;
  /**
   * The extra columns kept as the lead's attributes (the partner profile's `attributes`), typed and
   * checked; a column none names is reported in `ignoredColumns`. None by default.
   */
  attributes?: readonly ProfileAttribute[];
}

export interface IngestSummary {
  runId: number;
  source: string;
  format: SourceFormat;
  read: number;
  accepted: number;
  /** Accepted rows by the state they start in. */
  states: { pending: number; below_threshold: number; expired: number };
  duplicate: number;
  rejected: number;
  rejectsFile: string | null;
  ignoredColumns: string[];
  fileSha256: string | null;
}

export const ACTOR = 'ingest';
