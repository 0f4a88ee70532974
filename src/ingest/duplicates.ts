import type { DedupKeyKind } from '../config/index.js';
import type { LeadIdentity, LeadWithKeys, NewLead } from '../store/index.js';

/**
 * What a duplicate matched, and how its outcome says so. A lead is the same lead when its normalised
 * e-mail OR its external id matches a stored lead, whatever the dedup rule; the
 * database decides (unique keys), these only name what it found, by identity and lead id, never by value.
 */

/** A stored lead one identity of a duplicate matched. */
export interface IdentityMatch {
  identity: LeadIdentity;
  lead: LeadWithKeys;
}

const IDENTITY_WORDS: Readonly<Record<LeadIdentity, string>> = {
  email: 'e-mail',
  external_id: 'external id',
};

/** A new lead's identity keys: its e-mail's, and its external id's when it has one. */
export function identityKeysOf(
  lead: Pick<NewLead, 'email_key' | 'external_id_key'>,
): { identity: LeadIdentity; key: string }[] {
  return [
    ...(lead.email_key ? [{ identity: 'email' as const, key: lead.email_key }] : []),
    ...(lead.external_id_key ? [{ identity: 'external_id' as const, key: lead.external_id_key }] : []),
  ];
}

/** Stored leads by each identity key they hold. */
export type KeyHolders = Map<string, LeadWithKeys>;

export function indexByKey(leads: readonly LeadWithKeys[]): KeyHolders {
  return new Map(leads.map((lead) => [lead.key, lead]));
}

/**
 * The stored leads a duplicate's identities matched, the rule's identity first. The keys are
 * domain-separated hashes, so an e-mail key only ever matches an e-mail key, and an external id key
 * an external id key.
 */
export function matchesOf(
  lead: Pick<NewLead, 'email_key' | 'external_id_key'>,
  rule: DedupKeyKind,
  holders: KeyHolders,
): IdentityMatch[] {
  const ordered = identityKeysOf(lead).sort((a, b) =>
    a.identity === rule ? -1 : b.identity === rule ? 1 : 0,
  );
  return ordered.flatMap(({ identity, key }) => {
    const holder = holders.get(key);
    return holder === undefined ? [] : [{ identity, lead: holder }];
  });
}

/**
 * A duplicate's reason, field (the first identity that matched) and lead (the one it matched):
 * `duplicate: e-mail matches line 2 of this file (lead 7)`, `duplicate: external id matches lead 3,
 * stored by ingest run 1`, `duplicate: e-mail and external id match lead 3, …`; two leads are named
 * apart, `;`-separated. The values themselves are never in it.
 */
export function describeDuplicate(
  runId: number,
  matches: readonly IdentityMatch[],
): { reason: string; field: LeadIdentity | null; leadId: number | null } {
  const groups: { identities: LeadIdentity[]; lead: LeadWithKeys }[] = [];
  for (const m of matches) {
    const group = groups.find((g) => g.lead.id === m.lead.id);
    if (group) group.identities.push(m.identity);
    else groups.push({ identities: [m.identity], lead: m.lead });
  }
  const where = (lead: LeadWithKeys) =>
    lead.run_id === runId
      ? `line ${lead.source_line} of this file (lead ${lead.id})`
      : `lead ${lead.id}, stored by ingest run ${lead.run_id}`;
  const named = groups.map(
    (g) =>
      `${g.identities.map((i) => IDENTITY_WORDS[i]).join(' and ')} ${g.identities.length > 1 ? 'match' : 'matches'} ${where(g.lead)}`,
  );
  const first = matches[0];
  return {
    // None found: the database refused the row on a key no stored lead shows (not expected).
    reason: named.length === 0 ? 'duplicate of a stored lead' : `duplicate: ${named.join('; ')}`,
    field: first?.identity ?? null,
    leadId: first?.lead.id ?? null,
  };
}
