export { IngestFileError, type IngestFileErrorCode, isIngestFileError } from './errors.js';
export { INGEST_LOG_FOLD_PAGES, INGEST_PAGE_CACHE_MIB, type IngestOptions, ingestFile } from './ingest.js';
export { LEAD_FIELDS, type NormalisedLead, validateLead } from './lead-schema.js';
export { describeProblems } from './prepare.js';
export { type RejectBound, UPLOAD_REJECT_BOUND } from './reject-bound.js';
export type { IngestDeps, IngestSummary } from './run.js';
export { openSource, type SourceFormat } from './source.js';
export type { SourceRow } from './source-row.js';
