import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { Logger } from '../log/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import type { Store } from '../store/index.js';

/**
 * What erasure and retention need of an open installation (an opened app is one): its store, its
 * audit chain, its clock, configuration and log, and its keyed pseudonyms.
 */
export interface PrivacyDeps {
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: Store;
  readonly audit: AuditLog;
  /** The installation's pseudonymizer; throws when it has no pseudonym secret (`valhalla init`). */
  pseudonymizer(): Pseudonymizer;
}
