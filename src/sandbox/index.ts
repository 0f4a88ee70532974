/**
 * The sandbox partner: a real HTTPS server implementing the partner's API (OAuth2 client
 * credentials, `POST /api/leads` with batch and lead idempotency, `GET /health`), with faults on
 * demand and admin endpoints (`/stats`, `/records`, `/faults`, `/reset`). For tests, benchmarks,
 * simulations and operators; it uses no Valhalla module but the clock.
 */

export { CERT_FILE, KEY_FILE, type SandboxCertificate } from './certificate.js';
export { MAX_BATCH_LEADS, type PartnerLead } from './contract.js';
export { isSandboxError, SandboxError, type SandboxErrorCode } from './errors.js';
export {
  DEFAULT_TOKEN_TTL_SECONDS,
  type RateLimitFault,
  type SandboxFaults,
  type SandboxFaultsPatch,
  seededRandom,
} from './faults.js';
export type { BatchRecord, BatchResponse, SandboxRecords, SandboxStats } from './ledger.js';
export { type SandboxPartner, type SandboxPartnerOptions, startSandboxPartner } from './server.js';
