export type { Dialect } from './dialect.js';
export { isStoreError, StoreError, type StoreErrorCode } from './errors.js';
export {
  addIngestCounts,
  createIngestRun,
  finishIngestRun,
  getIngestRun,
  ingestTotals,
  recordRowOutcomes,
} from './ingest-runs.js';
export { countLeadsByState, findLeadOrigins, insertLeadsSkippingDuplicates, listLeads } from './leads.js';
export { migrateToLatest } from './migrate.js';
export { openStore, type Store, type StoreTarget } from './open.js';
export { getRuntimeValue, setRuntimeValue } from './runtime-state.js';
export type { AuditRow, Database, IngestRun, Lead, NewLead } from './schema.js';
