export {
  EVIDENCE_ACTIONS,
  type EvidenceCheck,
  findItem,
  GATES,
  type Gate,
  type GateItem,
  type ItemCheck,
  ROLE_TITLES,
  SIGNOFF_ROLES,
} from './catalogue.js';
export { createGateClearance } from './clearance.js';
export {
  documentBytes,
  fieldsRefusal,
  LEGACY_SIGNATURE_FORMAT,
  parseSignedDocument,
  SIGNATURE_FORMAT,
  type SignedDocument,
  type SignedFields,
  signDocument,
  verifyDocument,
} from './document.js';
export {
  EVIDENCE_MAX_AGE_DAYS,
  evaluateGates,
  GATE_ACTIONS,
  type GatesDeps,
  LIVE_FLOW_MAX_MS,
} from './evaluate.js';
export {
  createKeyPair,
  isSigningError,
  keyIdOf,
  normalizePublicKey,
  publicKeyOf,
  SigningError,
  type SigningErrorCode,
} from './keys.js';
export {
  buildManifest,
  caFingerprints,
  describeDifference,
  describeLimits,
  limitsAbove,
  lowerLimits,
  MANIFEST_FORMAT,
  type ManifestDifference,
  type ManifestLimits,
  manifestDifferences,
  manifestEndpoint,
  manifestHash,
  monitoringRefusals,
  phase4Limits,
  type ReleaseManifest,
} from './manifest.js';
export { amendedManifest, readManifestText, signFields } from './offline-signing.js';
export { buildGatesBundle, type GatesBundle } from './report.js';
export { approvedLimits, recordSignature, validSignatures } from './signatures.js';
export {
  addSigner,
  listSigners,
  revokeSigner,
  type SigningDeps,
  type SigningOutcome,
} from './signers.js';
export {
  recordStability,
  STABILITY_VERIFIED,
  type StabilityBin,
  type StabilityCheck,
  type StabilityCheckName,
  type StabilityDeps,
  type StabilityResult,
  verifyStability,
} from './stability.js';
export type { GateStatus, GatesReport, ItemState, ItemStatus, ManifestStatus } from './status.js';
