/**
 * The sandbox partner: a real HTTPS server implementing the partner's API (OAuth2 client
 * credentials, `POST /api/leads` with batch and lead idempotency, `GET /health`), or, chosen at
 * start, a CRM's batch create of contacts (a static bearer token, per-record results and errors),
 * with faults on demand and admin endpoints (`/stats`, `/records`, `/leads`, `/faults`, `/reset`).
 * For tests, benchmarks, simulations and operators; it uses no Valhalla module but the clock.
 */

export { CERT_FILE, KEY_FILE, type SandboxCertificate } from './certificate.js';
export { MAX_BATCH_LEADS, type PartnerLead } from './contract.js';
export { CRM_HEALTH_PATH, CRM_LEADS_PATH, CRM_MAX_INPUTS } from './crm.js';
export { isSandboxError, SandboxError, type SandboxErrorCode } from './errors.js';
export {
  DEFAULT_TOKEN_TTL_SECONDS,
  type RateLimitFault,
  type RefuseLeadsFault,
  type SandboxFaults,
  type SandboxFaultsPatch,
  seededRandom,
} from './faults.js';
export type {
  BatchRecord,
  BatchResponse,
  SandboxLeadRecord,
  SandboxLeadRecords,
  SandboxRecords,
  SandboxStats,
} from './ledger.js';
export type { SandboxProfile } from './routes.js';
export {
  SANDBOX_PROFILES,
  type SandboxPartner,
  type SandboxPartnerOptions,
  startSandboxPartner,
} from './server.js';
