/**
 * What a duplicate matched and how its reason names it (src/ingest/duplicates.ts): by identity and
 * lead id, the rule's identity first, an erased lead's identity (its dedup key, filled after 0013)
 * counted, never a value.
 */
import { describe, expect, it } from 'vitest';
import { describeDuplicate, indexByKey, matchesOf } from '../../src/ingest/duplicates.js';
import type { LeadWithKeys } from '../../src/store/index.js';

const RUN = 9;
/** One identity a stored lead holds, as `findLeadsByIdentityKeys` returns it. */
const holding = (id: number, key: string, run = 1): LeadWithKeys => ({
  key,
  id,
  run_id: run,
  source_line: id + 1,
});

const ada = { email: holding(3, 'E-ada'), externalId: holding(3, 'X-1') };
const bo = { email: holding(7, 'E-bo', RUN), externalId: holding(7, 'X-2', RUN) };
/** Stored before 0013 and erased: its one identity is its dedup key (filled as its e-mail's). */
const legacy = holding(11, 'E-cy');
const holders = indexByKey([ada.email, ada.externalId, bo.email, bo.externalId, legacy]);

describe('matchesOf', () => {
  it('finds the stored lead by e-mail, by external id, or by both, the rule’s identity first', () => {
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-9' }, 'email', holders)).toEqual([
      { identity: 'email', lead: ada.email },
    ]);
    expect(matchesOf({ email_key: 'E-new', external_id_key: 'X-1' }, 'email', holders)).toEqual([
      { identity: 'external_id', lead: ada.externalId },
    ]);
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-2' }, 'email', holders)).toEqual([
      { identity: 'email', lead: ada.email },
      { identity: 'external_id', lead: bo.externalId },
    ]);
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-2' }, 'external_id', holders)).toEqual([
      { identity: 'external_id', lead: bo.externalId },
      { identity: 'email', lead: ada.email },
    ]);
  });

  it('a lead without an external id is matched by its e-mail only; an erased lead’s filled key counts', () => {
    expect(matchesOf({ email_key: 'E-cy', external_id_key: null }, 'email', holders)).toEqual([
      { identity: 'email', lead: legacy },
    ]);
    expect(matchesOf({ email_key: 'E-new', external_id_key: null }, 'email', holders)).toEqual([]);
  });
});

describe('describeDuplicate', () => {
  it('names the identity and the lead, and where it came from: this file or an earlier run', () => {
    expect(describeDuplicate(RUN, [{ identity: 'email', lead: ada.email }])).toEqual({
      reason: 'duplicate: e-mail matches lead 3, stored by ingest run 1',
      field: 'email',
      leadId: 3,
    });
    expect(describeDuplicate(RUN, [{ identity: 'external_id', lead: bo.externalId }])).toEqual({
      reason: 'duplicate: external id matches line 8 of this file (lead 7)',
      field: 'external_id',
      leadId: 7,
    });
  });

  it('both identities: said once for one lead, apart for two', () => {
    expect(
      describeDuplicate(RUN, [
        { identity: 'external_id', lead: ada.externalId },
        { identity: 'email', lead: ada.email },
      ]).reason,
    ).toBe('duplicate: external id and e-mail match lead 3, stored by ingest run 1');
    expect(
      describeDuplicate(RUN, [
        { identity: 'email', lead: ada.email },
        { identity: 'external_id', lead: bo.externalId },
      ]),
    ).toEqual({
      reason:
        'duplicate: e-mail matches lead 3, stored by ingest run 1; external id matches line 8 of this file (lead 7)',
      field: 'email',
      leadId: 3,
    });
  });

  it('none found: a duplicate of a stored lead, with no field or lead', () => {
    expect(describeDuplicate(RUN, [])).toEqual({
      reason: 'duplicate of a stored lead',
      field: null,
      leadId: null,
    });
  });
});
