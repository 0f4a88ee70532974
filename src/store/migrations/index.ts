import type { Migration } from 'kysely';
import type { Dialect } from '../dialect.js';
import { foundation } from './0001-foundation.js';
import { auditNoReplace } from './0002-audit-no-replace.js';
import { exportedLeadsKept } from './0003-exported-leads-kept.js';
import { outbox } from './0004-outbox.js';
import { monitoring } from './0005-monitoring.js';
import { gates } from './0006-gates.js';
import { dashboard } from './0007-dashboard.js';
import { erasure } from './0008-erasure.js';
import { runners } from './0009-runners.js';
import { ZEROED_PAGES_MIGRATION, zeroedPages } from './0010-zeroed-pages.js';
import { operatorSafety } from './0011-operator-safety.js';
import { deliveryOutcomes } from './0012-delivery-outcomes.js';
import { identityKeys } from './0013-identity-keys.js';
import { leadStateCounts } from './0014-lead-state-counts.js';
import { leadIdentities } from './0015-lead-identities.js';
import { leadAttributes } from './0016-lead-attributes.js';
import { expiryThroughEligible } from './0017-expiry-through-eligible.js';

export { ZEROED_PAGES_MIGRATION };

/** Numbered, append-only, applied in order. Never edit a released migration: add the next one. */
export function migrations(dialect: Dialect): Record<string, Migration> {
  return {
    '0001-foundation': foundation(dialect),
    '0002-audit-no-replace': auditNoReplace(dialect),
    '0003-exported-leads-kept': exportedLeadsKept(dialect),
    '0004-outbox': outbox(dialect),
    '0005-monitoring': monitoring(dialect),
    '0006-gates': gates(dialect),
    '0007-dashboard': dashboard(dialect),
    '0008-erasure': erasure(dialect),
    '0009-runners': runners(dialect),
    [ZEROED_PAGES_MIGRATION]: zeroedPages(),
    '0011-operator-safety': operatorSafety(dialect),
    '0012-delivery-outcomes': deliveryOutcomes(),
    '0013-identity-keys': identityKeys(),
    '0014-lead-state-counts': leadStateCounts(dialect),
    '0015-lead-identities': leadIdentities(dialect),
    '0016-lead-attributes': leadAttributes(),
    '0017-expiry-through-eligible': expiryThroughEligible(),
  };
}
