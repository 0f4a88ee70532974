// Privacy: a person's erasure (`leads erase`) and the retention of completed leads (`archive`).
export type { PrivacyDeps } from './deps.js';
export {
  type ErasedLead,
  type ErasureRequest,
  type ErasureResult,
  eraseLead,
  type LeadIdentifier,
  normaliseEmail,
  type PartnerNotice,
  type PartnerNoticeLevel,
  parseLeadIdentifier,
} from './erasure.js';
export {
  type ArchiveOptions,
  type ArchiveReport,
  type ArchiveResult,
  archiveCompleted,
  DEFAULT_ARCHIVE_CHUNK,
  retentionCutoff,
} from './retention.js';
