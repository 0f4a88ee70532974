// The audit chain's vocabulary is the policy's (src/policy/audit-actions.ts): re-exported here for its writers.
export {
  AUDIT_ACTIONS,
  type AuditAction,
  type GuardVerdict,
  guardAction,
  isAuditAction,
  modeAction,
} from '../policy/index.js';
export {
  type AuditEntry,
  type ChainBreak,
  ChainVerifier,
  describeBreak,
  entryHash,
  GENESIS_HASH,
} from './chain.js';
export { type AuditInput, type AuditLog, type AuditVerification, createAuditLog } from './log.js';
