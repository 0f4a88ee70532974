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
  auditAfter,
  auditDetailsOf,
  auditEntriesBetween,
  auditEntriesNotAfter,
  auditHead,
  auditPage,
  countAuditActionBetween,
  countAuditEntries,
  insertAuditEntries,
  latestAuditEntryOf,
  latestAuditSeq,
  latestAuditSeqOf,
  lockAuditChain,
  recentAuditEntriesOf,
} from './audit-log.js';
export { type BackendRules, backendRules } from './backend.js';
export {
  deferCommitSync,
  foldLogLess,
  journalInMemory,
  syncCommits,
  widenPageCache,
} from './bulk-commits.js';
export { isConnectionLoss } from './connection-loss.js';
export { readConsistently } from './consistent-read.js';
export { confirmCycle, createCycle, finishCycle, lastLiveCycle, recentCycles } from './cycles.js';
export { dailyUsage, utcDay } from './daily-usage.js';
export type { Dialect } from './dialect.js';
export { type ErasedDataRemnants, flushErasedData } from './erased-pages.js';
export { isStoreError, StoreError, type StoreErrorCode } from './errors.js';
export type { Executor, Store, StoreDb, StoreTransaction } from './executor.js';
export {
  type AppliedGrants,
  applyGrants,
  type GrantOptions,
  GrantsError,
  type GrantsErrorCode,
  grantStatements,
  isGrantsError,
  quoteIdentifier,
  RESTRICTED_TABLES,
} from './grants.js';
export {
  fillIdentityKeysPage,
  finishIdentityKeysFill,
  IDENTITY_KEYS_FILL,
  type IdentityFillPage,
  type IdentityKeysOf,
  type SharedIdentity,
} from './identity-keys.js';
export {
  addIngestCounts,
  createIngestRun,
  finishIngestRun,
  getIngestRun,
  ingestTotals,
  type RowOutcomeRecord,
  recordRowOutcomes,
  rejectedRowsOf,
} from './ingest-runs.js';
export {
  claimInstallationId,
  INITIALIZED_KEY,
  INSTALLATION_ID_KEY,
  type InstallationProbe,
  probeInstallation,
  readInstallationId,
} from './installation.js';
export {
  ARCHIVABLE_STATES,
  type ArchivableState,
  archiveLeads,
  archiveSyntheticLeads,
  countArchivable,
  countIncompleteBefore,
  countLeadsByState,
  ERASED_MARKER,
  eraseFromBatchSummaries,
  eraseLeadData,
  exportedLeadsPerMinute,
  findLeadsByIdentityKeys,
  findLeadsForErasure,
  INCOMPLETE_STATES,
  type IncompleteState,
  type InsertedLead,
  insertLeadsSkippingDuplicates,
  insertNewLeadsInBulk,
  LEAD_PII_FIELDS,
  type LeadIdentity,
  type LeadPiiField,
  type LeadWithKeys,
  listLeads,
  liveBatchesOfLead,
  lockLeadsForWrite,
  nextArchivable,
  scanLeadsByState,
} from './leads.js';
export { migrateToLatest } from './migrate.js';
export { modeAcksFor, recordModeAck, runningWorkers, WORKER_STOPPED } from './mode-acks.js';
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
export { openStore, type StoreTarget } from './open.js';
export {
  batchLeadsPerMinute,
  ClaimConflict,
  createDelivery,
  deliveriesInState,
  deliveryLeads,
  dryRunScoresBetween,
  dueDeliveries,
  expireStalePending,
  leadsWithIds,
  listDeliveries,
  liveDeliveriesOfCycle,
  nextRetryAt,
  quarantinedLeads,
  releaseFromDeliveries,
  replayableDeliveries,
  selectEligible,
  setDeliveryState,
  setLeadsState,
  waitingLeadCount,
} from './outbox.js';
export { type LeadOutcome, leadOutcomes, liveDeliveryAttempts, recordedRequests } from './rehearsals.js';
export {
  databaseNow,
  grantStart,
  holds,
  LEADER_LEASE,
  type LeaseAttempt,
  type LeaseRow,
  type LeaseTake,
  lockLease,
  type RunnerIdentity,
  readLease,
  releaseLease,
  renewLease,
  type StartDecision,
  type StartLogShape,
  settleStart,
  startsBetween,
  tryTakeLease,
} from './runners.js';
export {
  getRuntimeValue,
  getRuntimeValues,
  insertRuntimeValueIfAbsent,
  lockRuntimeValue,
  setRuntimeValue,
} from './runtime-state.js';
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
  LeadAttributes,
  ModeAck,
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
export { isConcurrentInsert, isTransient } from './transient.js';
