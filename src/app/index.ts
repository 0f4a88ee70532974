// The app's front door: the wiring (open.ts), the installation (installation.ts) and what the
// commands, the server and the runner use of it. Use cases live in their own modules.

export type { LimitsReload } from '../control/index.js';
// The views the commands, the server and the tests read through an app.
export {
  type AuditEntryView,
  alertView,
  type CycleReview,
  confirmReviewedCycle,
  createDashboard,
  type Dashboard,
  type DashboardStatus,
  FLOW_OUTCOMES,
  type FlowOutcome,
  type LeadFlow,
  type MaskedLead,
  type PartnerPreview,
  PREVIEW_MAX_LEADS,
  previewPartnerRequest,
  type ReviewedBatch,
  type ReviewedLead,
  type RunState,
  reviewCycle,
  type ServiceLimits,
  type ServiceView,
  type StatusReport,
  type UploadResult,
} from '../views/index.js';
export {
  applyDatabaseGrants,
  type DatabaseAdminErrorCode,
  grantsScript,
  isDatabaseAdminError,
  migrateDatabase,
} from './database-admin.js';
export { AppError, type AppErrorCode, isAppError } from './errors.js';
export { configFromProcess, findInstallation, initialize } from './installation.js';
export {
  describeModeAck,
  MODE_ACK_WAIT_MS,
  type ModeAcknowledgement,
  type WorkerAck,
} from './mode-ack.js';
export { openApp } from './open.js';
export { createPartnerClientFromConfig, type PartnerClient } from './partner.js';
export {
  BIN,
  prepareSyntheticLeads,
  type RunResult,
  runSupervisor,
  runWorker,
  type SupervisorRunOptions,
  SYNTHETIC_LEADS,
  type WorkerRunOptions,
} from './run.js';
export type { App, OpenAppOptions } from './types.js';
