// The partner profile on the engine's side: how many leads a request may hold, which leads the
// profile cannot write (set aside before a batch key is minted), and a per-lead answer turned into
// each lead's outcome, the partner's reasons masked.
import type { AcceptedOutcome } from '../outbound/index.js';
import {
  buildPartnerRequest,
  MAX_REASON_CHARS,
  oneLine,
  type PartnerProfile,
  type ProfileLead,
} from '../partner/index.js';
import { findContactData } from '../pii/index.js';
import { MAX_LEADS_PER_REQUEST } from '../policy/index.js';
import type { Lead } from '../store/index.js';
import { toProfileLead } from './payload.js';

/** Leads in one request: the profile's own limit, never above the product's. */
export function leadsPerRequest(profile: PartnerProfile): number {
  return Math.min(profile.batch.maxLeads, MAX_LEADS_PER_REQUEST);
}

/** A lead the profile cannot write, and why (the mapping and the problem; never a value). */
export interface UnwritableLead {
  lead: Lead;
  reason: string;
}

/**
 * Split `leads` into those the profile can write and those it cannot (a required field the lead
 * lacks, an attribute of the wrong type). A batch key stands for exactly its leads, so a lead that
 * cannot be written is set aside before its batch is made, never dropped from a request later.
 */
export function writableLeads(
  profile: PartnerProfile,
  leads: readonly Lead[],
): { writable: Lead[]; unwritable: UnwritableLead[] } {
  const writable: Lead[] = [];
  const unwritable: UnwritableLead[] = [];
  for (const lead of leads) {
    const built = buildPartnerRequest(profile, [toProfileLead(lead)], 'set-aside-check');
    if (built.ok) {
      writable.push(lead);
      continue;
    }
    const why = built.problems.map((p) => `${p.where}: ${p.problem}`).join('; ');
    unwritable.push({ lead, reason: `profile ${profile.name} cannot write this lead (${why})` });
  }
  return { writable, unwritable };
}

/**
 * Why the profile cannot write this batch as it stands (more leads than its `maxLeads`, a lead it
 * cannot write), or null. The leads as the send gives them to the client (`deliveryLeads`: by id).
 */
export function batchUnwritable(
  profile: PartnerProfile,
  batchKey: string,
  leads: readonly Lead[],
): string | null {
  const built = buildPartnerRequest(profile, leads.map(toProfileLead), batchKey);
  if (built.ok) return null;
  const shown = built.problems.slice(0, 3).map((p) => `${p.where}: ${p.problem}`);
  const more = built.problems.length > 3 ? `; and ${built.problems.length - 3} more` : '';
  return `profile ${profile.name} cannot write this batch (${shown.join('; ')}${more})`;
}

/** What one lead of an answered batch came to. */
export interface LeadVerdict {
  lead: Lead;
  outcome: 'accepted' | 'duplicate' | 'refused' | 'unknown';
  /** The partner's reason (masked), or why the outcome is unknown; null when it gave none. */
  reason: string | null;
}

/**
 * Each sent lead's outcome under an accepted answer: the partner's per-lead results when the profile
 * reads them, else every lead accepted (the answer is the whole batch's). `leads` is the batch in the
 * order sent.
 */
export function leadVerdicts(leads: readonly Lead[], outcome: AcceptedOutcome): LeadVerdict[] {
  if (outcome.leads === null || outcome.leads === undefined)
    return leads.map((lead) => ({ lead, outcome: 'accepted', reason: null }));
  return leads.map((lead, i) => {
    const said = outcome.leads?.[i];
    const sent = toProfileLead(lead);
    // The client answers one entry per lead sent, in order; anything else is not trusted.
    if (said === undefined || said.leadKey !== sent.lead_key) {
      return { lead, outcome: 'unknown', reason: 'the answer does not line up with the leads sent' };
    }
    return {
      lead,
      outcome: said.outcome,
      reason: said.reason === null ? null : maskPartnerReason(said.reason, sent),
    };
  });
}

const MASK = '***';
const WITHHELD = "(the partner's text withheld: it looked like it held an e-mail address or a phone number)";

/**
 * A partner's reason made safe to store and show: the lead's own values taken out wherever the
 * partner echoed them (its e-mail, phone, name, company, external id, attributes), and the whole text
 * withheld when it still holds what looks like contact data (another lead's, a changed spelling).
 */
export function maskPartnerReason(reason: string, lead: ProfileLead): string {
  // The lead's own contact data first: what is left that still looks like contact data is someone
  // else's (or the same written otherwise), and withholds the text.
  let text = reason;
  for (const value of [lead.email, lead.phone]) {
    if (typeof value === 'string' && value.trim().length >= 2)
      text = replaceAllInsensitive(text, value.trim(), MASK);
  }
  // A phone may come back in another format: its digits alone.
  const digits = lead.phone?.replace(/\D/g, '') ?? '';
  if (digits.length >= 7) text = text.replace(digitRun(digits), MASK);
  if (findContactData(text) !== null) return WITHHELD;
  const values = [
    lead.company,
    lead.external_id,
    lead.name,
    ...lead.name.split(/\s+/),
    ...Object.values(lead.attributes).filter((v): v is string => typeof v === 'string'),
  ]
    .filter((v): v is string => typeof v === 'string' && v.trim().length >= 2)
    // Longest first: a whole name before its parts.
    .sort((a, b) => b.length - a.length);
  for (const value of values) text = replaceAllInsensitive(text, value.trim(), MASK);
  // Cut only now: what it echoed was whole when it was masked.
  return oneLine(text, MAX_REASON_CHARS);
}

function replaceAllInsensitive(text: string, value: string, by: string): string {
  const escaped = value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return text.replace(new RegExp(escaped, 'giu'), by);
}

/** The digits of a phone number with any separators between them. */
function digitRun(digits: string): RegExp {
  return new RegExp(`\\+?${digits.split('').join('[\\s().\\-/]*')}`, 'g');
}
