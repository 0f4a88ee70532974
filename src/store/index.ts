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
export {
  ClaimConflict,
  confirmCycle,
  createCycle,
  createDelivery,
  dailyUsage,
  deliveriesInState,
  deliveryLeads,
  dueDeliveries,
  expireStalePending,
  finishCycle,
  lastLiveCycle,
  nextRetryAt,
  quarantinedLeads,
  recentCycles,
  recordAlert,
  releaseFromDeliveries,
  selectEligible,
  setDeliveryState,
  setLeadsState,
  utcDay,
  waitingLeadCount,
} from './outbox.js';
export { getRuntimeValue, setRuntimeValue } from './runtime-state.js';
export type {
  AuditRow,
  Cycle,
  CycleKind,
  Database,
  Delivery,
  DeliveryState,
  IngestRun,
  Lead,
  NewLead,
} from './schema.js';
