/**
 * The delivery guarantee checked against the sandbox partner's per-lead ledger (`sandbox.leads()`),
 * which it keeps in either profile: the product's own contract (batch keys, replays) and the CRM's
 * batch create (no batch key; a record sent again is a `CONFLICT`). The batch-level check
 * (test/support/ledger-check.ts) reads the batch records only the product's own contract has; this
 * one holds in both:
 *
 * - nothing lost: the leads the database has exported are exactly the lead keys the partner holds;
 * - nothing accepted twice: a lead the partner received again after it held it (a resend whose first
 *   answer was lost) is exported once in the database, saying it was a duplicate at the partner;
 * - nothing sent that was never queued: every lead key the partner received is in a live delivery;
 * - refused leads quarantined with the partner's reason; every lead in one state, with a reason
 *   where it is not exported.
 */
import { expect } from 'vitest';
import type { LeadState } from '../../src/policy/index.js';
import type { SandboxLeadRecords } from '../../src/sandbox/index.js';
import type { LedgerFacts } from '../support/ledger-check.js';

export interface LeadLedgerExpectations {
  /** The lead states allowed at the end. Default: exported or quarantined. */
  finalStates?: readonly LeadState[];
  leadCount?: number;
  /** How many leads the partner refused one by one (quarantined with its reason). Default: not checked. */
  refused?: number;
}

export interface LeadLedgerSummary {
  exported: number;
  quarantined: number;
  /** Leads the partner refused (its ledger holds a reason). */
  refusedAtPartner: number;
  /** Leads the partner received again after it held them (a resend after a lost answer). */
  receivedAgain: number;
}

/** Check the database against the partner's per-lead ledger, with vitest's `expect`. */
export function expectLeadLedgerConsistent(
  facts: LedgerFacts,
  ledger: SandboxLeadRecords,
  expectations: LeadLedgerExpectations = {},
): LeadLedgerSummary {
  const finalStates = expectations.finalStates ?? ['exported', 'quarantined'];
  const { leads, links } = facts;
  if (expectations.leadCount !== undefined) expect(leads).toHaveLength(expectations.leadCount);
  const keyOf = new Map<number, string>();
  for (const link of links.filter((l) => l.released === 0)) {
    expect(keyOf.has(link.lead_id), `lead ${link.lead_id} is in more than one live delivery`).toBe(false);
    keyOf.set(link.lead_id, link.lead_key);
  }
  const queuedKeys = new Set(links.map((l) => l.lead_key));

  for (const lead of leads) {
    expect(finalStates, `lead ${lead.id} is ${lead.state}`).toContain(lead.state);
    if (lead.state !== 'exported' && lead.state !== 'pending' && lead.state !== 'in_flight') {
      expect(lead.state_reason, `lead ${lead.id} is ${lead.state} without a reason`).toBeTruthy();
    }
  }

  // Nothing sent that was never queued.
  for (const key of Object.keys(ledger)) {
    expect(queuedKeys.has(key), `${key} reached the partner but was never queued`).toBe(true);
  }

  // Nothing lost, nothing taken twice: exported in the database ⇔ held by the partner.
  const held = new Set(
    Object.entries(ledger)
      .filter(([, l]) => l.acceptedAt !== null)
      .map(([key]) => key),
  );
  const exported = leads.filter((l) => l.state === 'exported');
  const exportedKeys = exported.map((l) => {
    const key = keyOf.get(l.id);
    expect(key, `exported lead ${l.id} has no live delivery`).toBeDefined();
    return key!;
  });
  expect([...exportedKeys].sort(), 'exported in the database vs held by the partner').toEqual(
    [...held].sort(),
  );

  // A lead received again after the partner held it was not taken again: exported once, and the
  // database says the partner already had it (a duplicate at the partner), or the resend was a replay
  // the partner answered with its first answer (the product's contract).
  let receivedAgain = 0;
  for (const lead of exported) {
    const record = ledger[keyOf.get(lead.id)!]!;
    if (record.duplicates > 0) {
      receivedAgain += 1;
      expect(lead.state_reason, `lead ${lead.id} was received again without the database knowing`).toMatch(
        /duplicate at partner/,
      );
    }
  }

  // Refused by the partner ⇒ quarantined with its reason (never exported, never sent again).
  const refusedKeys = Object.entries(ledger)
    .filter(([, l]) => l.refusals.length > 0)
    .map(([key]) => key);
  const byKey = new Map([...keyOf].map(([id, key]) => [key, leads.find((l) => l.id === id)!]));
  for (const key of refusedKeys) {
    const lead = byKey.get(key);
    expect(lead, `refused lead key ${key} is not in the database`).toBeDefined();
    expect(lead!.state, `refused lead ${lead!.id}`).toBe('quarantined');
    expect(lead!.state_reason, `refused lead ${lead!.id}`).toMatch(/refused by the partner/);
    expect(ledger[key]!.acceptedAt, `refused lead ${lead!.id} was also taken`).toBeNull();
    // Refused once, never sent again (a replay of its batch key is the partner's first answer again).
    expect(ledger[key]!.received - ledger[key]!.replays, `refused lead ${lead!.id} was sent again`).toBe(1);
  }
  if (expectations.refused !== undefined) expect(refusedKeys).toHaveLength(expectations.refused);

  return {
    exported: exported.length,
    quarantined: leads.filter((l) => l.state === 'quarantined').length,
    refusedAtPartner: refusedKeys.length,
    receivedAgain,
  };
}
