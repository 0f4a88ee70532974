import type { AttributeValue, ProfileAttribute } from '../partner/index.js';
import {
  maskAttributes,
  maskCompany,
  maskEmail,
  maskName,
  maskPhone,
  type Pseudonymizer,
} from '../pii/index.js';
import type { LeadState } from '../policy/index.js';
import { ERASED_MARKER, listLeads, type Store } from '../store/index.js';

/** A lead as anyone but the partner may see it: masked. */
export interface MaskedLead {
  id: number;
  pseudonym: string;
  name: string;
  email: string;
  phone: string;
  company: string;
  score: number;
  sourceTimestamp: string;
  value: number | null;
  state: LeadState;
  reason: string | null;
  /**
   * The lead's attributes: as they are when the profile declares them not personal, masked otherwise
   * (personal, or no longer declared); none when the lead has none or was erased.
   */
  attributes: Record<string, AttributeValue>;
  /** The person's data was erased (`leads erase`, `archive`): name and e-mail read `(erased)`. */
  erased: boolean;
  erasedAt: string | null;
}

/** A page of leads, newest first, masked; erased ones read `(erased)`. */
export async function listMaskedLeads(
  deps: {
    store: Store;
    pseudonymizer: Pseudonymizer;
    /** The attributes the partner profile declares: which are not personal data, and show as they are. */
    attributes: readonly ProfileAttribute[];
  },
  options: { state?: LeadState; limit: number; beforeId?: number },
): Promise<MaskedLead[]> {
  const { store, pseudonymizer, attributes } = deps;
  const rows = await listLeads(store.db, options);
  return rows.map((lead) => ({
    id: lead.id,
    pseudonym: pseudonymizer.pseudonym(lead.dedup_key),
    ...(lead.erased_at === null
      ? {
          name: maskName(lead.name),
          email: maskEmail(lead.email),
          phone: maskPhone(lead.phone),
          company: maskCompany(lead.company),
        }
      : { name: ERASED_MARKER, email: ERASED_MARKER, phone: '', company: '' }),
    score: lead.score,
    sourceTimestamp: new Date(lead.source_ts).toISOString(),
    value: lead.value,
    state: lead.state,
    reason: lead.state_reason,
    attributes: lead.erased_at === null ? maskAttributes(lead.attributes, attributes) : {},
    erased: lead.erased_at !== null,
    erasedAt: lead.erased_at === null ? null : new Date(lead.erased_at).toISOString(),
  }));
}
