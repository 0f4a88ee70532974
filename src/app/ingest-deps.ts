import { join } from 'node:path';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { IngestDeps } from '../ingest/index.js';
import type { Logger } from '../log/index.js';
import type { ProfileAttribute } from '../partner/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import type { Store } from '../store/index.js';

/**
 * The lead attributes the configured partner profile declares (VALHALLA_PARTNER_PROFILE): the extra
 * columns an ingest keeps (typed, checked) and the classes (personal data or not) every view masks
 * them by. A profile that declares none keeps no extra column (each is reported in `ignoredColumns`),
 * and a view then masks every attribute a lead holds.
 */
export function declaredLeadAttributes(config: Config): readonly ProfileAttribute[] {
  return config.partner.profile.profile.attributes ?? [];
}

/**
 * What an ingest run needs, from the configuration and the parts already open: shared by the app
 * (the CLI's `valhalla ingest`) and the upload thread, so both read, validate and record alike.
 */
export function ingestDepsOf(
  config: Config,
  parts: { store: Store; audit: AuditLog; clock: Clock; logger: Logger; pseudonymizer: Pseudonymizer },
): IngestDeps {
  return {
    ...parts,
    rules: { minLeadScore: config.policy.minLeadScore, maxLeadAgeDays: config.policy.maxLeadAgeDays },
    dedupKey: config.dedupKey,
    operator: config.operator,
    rejectsDir: join(config.dataDir, 'rejects'),
    // With real data on, synthetic leads are refused at ingest, whatever door they come through.
    realDataOnly: config.realDataIngest,
    // Every door (the CLI, the upload thread, the dashboard's upload) keeps the same columns.
    attributes: declaredLeadAttributes(config),
  };
}
