// A batch checked before it is sent: its idempotency key fit for a header, and between one lead and
// as many as a cycle may hold. A batch refused here is never sent.
import { HARD_CAPS } from '../policy/index.js';
import { OutboundError } from './errors.js';
import type { PartnerBatch } from './types.js';

/** Leads in one batch: a batch never holds more than a cycle may (policy §4, hard max 100). */
const MAX_LEADS_PER_BATCH = HARD_CAPS.leadsPerCycle;

const HEADER_SAFE = /^[\x21-\x7e]{1,255}$/;

export function checkBatch(batch: PartnerBatch): void {
  if (typeof batch.batchKey !== 'string' || !HEADER_SAFE.test(batch.batchKey)) {
    throw new OutboundError(
      'INVALID_BATCH',
      'batchKey must be 1–255 visible ASCII characters; nothing was sent',
    );
  }
  if (!Array.isArray(batch.leads) || batch.leads.length === 0) {
    throw new OutboundError('INVALID_BATCH', 'a batch needs at least one lead; nothing was sent');
  }
  if (batch.leads.length > MAX_LEADS_PER_BATCH) {
    throw new OutboundError(
      'INVALID_BATCH',
      `a batch holds at most ${MAX_LEADS_PER_BATCH} leads, got ${batch.leads.length}; nothing was sent`,
    );
  }
}
