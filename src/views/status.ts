import type { LeadState } from '../policy/index.js';
import { countAuditEntries, countLeadsByState, ingestTotals, type Store } from '../store/index.js';

export interface StatusReport {
  phase: 3 | 4;
  policyHash: string;
  database: 'sqlite' | 'postgres';
  leads: Record<LeadState, number> & { total: number };
  ingest: Awaited<ReturnType<typeof ingestTotals>>;
  auditEntries: number;
}

/** The installation's leads by state, its ingest totals and the audit chain's length, for `status`. */
export async function readStatus(deps: {
  store: Store;
  config: { phase: 3 | 4; policyHash: string };
}): Promise<StatusReport> {
  const { store, config } = deps;
  const [byState, ingest, audited] = await Promise.all([
    countLeadsByState(store.db),
    ingestTotals(store.db),
    countAuditEntries(store.db),
  ]);
  const leads = {
    pending: 0,
    in_flight: 0,
    exported: 0,
    below_threshold: 0,
    expired: 0,
    quarantined: 0,
    archived: 0,
    ...byState,
    total: 0,
  };
  leads.total = Object.values(byState).reduce((a, b) => a + b, 0);
  return {
    phase: config.phase,
    policyHash: config.policyHash,
    database: store.dialect,
    leads,
    ingest,
    auditEntries: audited,
  };
}
