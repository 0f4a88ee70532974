import { createHash } from 'node:crypto';
import type { ProfileLead } from '../partner/index.js';
import { canonicalJson } from '../policy/index.js';
import type { Lead } from '../store/index.js';
import type { PartnerLead } from './partner-port.js';

export { MAX_LEADS_PER_REQUEST } from '../policy/index.js';

/** A lead's own idempotency key: derived from its dedup key, so it can never change or be minted twice. */
export function leadKey(lead: Pick<Lead, 'dedup_key'>): string {
  return `lk_${lead.dedup_key.slice(0, 32)}`;
}

export function toPartnerLead(lead: Lead): PartnerLead {
  return {
    idempotency_key: leadKey(lead),
    external_id: lead.external_id,
    name: lead.name,
    email: lead.email,
    phone: lead.phone,
    company: lead.company,
    score: lead.score,
    source_timestamp: new Date(lead.source_ts).toISOString(),
    value: lead.value,
  };
}

/** A lead as a partner profile maps it (src/partner): its fields, its lead key, its extra columns. */
export function toProfileLead(lead: Lead): ProfileLead {
  return {
    lead_key: leadKey(lead),
    external_id: lead.external_id,
    name: lead.name,
    email: lead.email,
    phone: lead.phone,
    company: lead.company,
    score: lead.score,
    source_ts: lead.source_ts,
    value: lead.value,
    // The extra columns kept at ingest; a lead with none reads null for every attribute declared.
    attributes: lead.attributes ?? {},
  };
}

/**
 * The hash of what a batch key stands for: its leads as sent, in id order (the order they are sent in),
 * their attributes with them when they have any (a lead without keeps the hash it always had).
 */
export function payloadSha256(batchKey: string, leads: Lead[]): string {
  const inSendOrder = [...leads].sort((a, b) => a.id - b.id);
  const hashed = inSendOrder.map((lead) =>
    lead.attributes && Object.keys(lead.attributes).length > 0
      ? { ...toPartnerLead(lead), attributes: lead.attributes }
      : toPartnerLead(lead),
  );
  return createHash('sha256')
    .update(canonicalJson({ batch: batchKey, leads: hashed }))
    .digest('hex');
}
