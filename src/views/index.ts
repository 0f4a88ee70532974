export {
  type CycleReview,
  type CycleReviewDeps,
  confirmReviewedCycle,
  type ReviewedBatch,
  type ReviewedLead,
  reviewCycle,
} from './cycle-review.js';
export {
  type AuditEntryView,
  alertView,
  createDashboard,
  type Dashboard,
  type DashboardSource,
  type DashboardStatus,
  FLOW_OUTCOMES,
  type FlowOutcome,
  type LeadFlow,
  type UploadResult,
} from './dashboard.js';
export { listMaskedLeads, type MaskedLead } from './leads.js';
export {
  type PartnerPreview,
  type PartnerPreviewDeps,
  type PartnerPreviewOptions,
  PREVIEW_BATCH_KEY,
  PREVIEW_MAX_LEADS,
  type PreviewHeader,
  type PreviewLead,
  type PreviewProblem,
  type PreviewRequest,
  previewPartnerRequest,
} from './partner-preview.js';
export { type RunState, readRunState } from './run-state.js';
export { readServiceView, type ServiceLimits, type ServiceView } from './service-view.js';
export { readStatus, type StatusReport } from './status.js';
