export {
  type AuditEntry,
  type ChainBreak,
  ChainVerifier,
  describeBreak,
  entryHash,
  GENESIS_HASH,
} from './chain.js';
export { type AuditInput, type AuditLog, type AuditVerification, createAuditLog } from './log.js';
