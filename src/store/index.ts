export {
  alertDeliveries,
  countAlertRepeat,
  deferAlertDeliveries,
  finishAlertDelivery,
  getAlert,
  insertAlert,
  leaseDueAlertDeliveries,
  type NewAlert,
  recentAlerts,
  recentAlertWithKey,
} from './alerts.js';
export {
  auditDetailsOf,
  auditEntriesBetween,
  countAuditActionBetween,
  countAuditEntries,
} from './audit-log.js';
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
export {
  countedRequestsSince,
  countFailuresSince,
  heartbeatsBetween,
  latestHeartbeat,
  recordHeartbeat,
  recordRequest,
  requestsBetween,
  requestTotals,
} from './monitoring.js';
export { openStore, type Store, type StoreTarget } from './open.js';
export {
  ClaimConflict,
  confirmCycle,
  createCycle,
  createDelivery,
  dailyUsage,
  deliveriesInState,
  deliveryLeads,
  dryRunScoresBetween,
  dueDeliveries,
  expireStalePending,
  finishCycle,
  lastLiveCycle,
  nextRetryAt,
  quarantinedLeads,
  recentCycles,
  releaseFromDeliveries,
  selectEligible,
  setDeliveryState,
  setLeadsState,
  utcDay,
  waitingLeadCount,
} from './outbox.js';
export { getRuntimeValue, setRuntimeValue } from './runtime-state.js';
export type {
  Alert,
  AlertDelivery,
  AlertKind,
  AlertSeverity,
  AuditRow,
  Cycle,
  CycleKind,
  Database,
  Delivery,
  DeliveryState,
  Heartbeat,
  IngestRun,
  Lead,
  NewLead,
  RequestClass,
  RequestOutcome,
  RequestRow,
  SignatureKind,
  SignatureRow,
  Signer,
  SignerRole,
} from './schema.js';
export {
  allSignatures,
  allSigners,
  countSignaturesByKey,
  findSigner,
  insertSignature,
  insertSigner,
  lockSigning,
  markSignerRevoked,
  type NewSignature,
  type NewSigner,
} from './signers.js';
