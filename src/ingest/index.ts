export { IngestFileError, type IngestFileErrorCode, isIngestFileError } from './errors.js';
export {
  describeProblems,
  type IngestDeps,
  type IngestOptions,
  type IngestSummary,
  ingestFile,
  type RejectBound,
  UPLOAD_REJECT_BOUND,
} from './ingest.js';
export { LEAD_FIELDS, type NormalisedLead, validateLead } from './lead-schema.js';
export { openSource, type SourceFormat } from './source.js';
export type { SourceRow } from './source-row.js';
