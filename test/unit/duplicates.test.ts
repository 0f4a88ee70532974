/**
 * What a duplicate matched and how its reason names it (src/ingest/duplicates.ts): by identity and
 * lead id, the rule's identity first, a stored lead's bare dedup key counted, never a value.
 */
import { describe, expect, it } from 'vitest';
import { describeDuplicate, indexByKey, matchesOf } from '../../src/ingest/duplicates.js';
import type { LeadWithKeys } from '../../src/store/index.js';

const RUN = 9;
const stored = (id: number, keys: Partial<LeadWithKeys>, run = 1): LeadWithKeys => ({
  id,
  run_id: run,
  source_line: id + 1,
  dedup_key: `dk-${id}`,
  email_key: null,
  external_id_key: null,
  ...keys,
});

const ada = stored(3, { dedup_key: 'E-ada', email_key: 'E-ada', external_id_key: 'X-1' });
const bo = stored(7, { dedup_key: 'X-2', email_key: 'E-bo', external_id_key: 'X-2' }, RUN);
/** Stored before 0013 and erased, or sharing its e-mail with an earlier lead: its key is its dedup key only. */
const legacy = stored(11, { dedup_key: 'E-cy' });
const holders = indexByKey([ada, bo, legacy]);

describe('matchesOf', () => {
  it('finds the stored lead by e-mail, by external id, or by both, the rule’s identity first', () => {
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-9' }, 'email', holders)).toEqual([
      { identity: 'email', lead: ada },
    ]);
    expect(matchesOf({ email_key: 'E-new', external_id_key: 'X-1' }, 'email', holders)).toEqual([
      { identity: 'external_id', lead: ada },
    ]);
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-2' }, 'email', holders)).toEqual([
      { identity: 'email', lead: ada },
      { identity: 'external_id', lead: bo },
    ]);
    expect(matchesOf({ email_key: 'E-ada', external_id_key: 'X-2' }, 'external_id', holders)).toEqual([
      { identity: 'external_id', lead: bo },
      { identity: 'email', lead: ada },
    ]);
  });

  it('a lead without an external id is matched by its e-mail only; a bare dedup key counts', () => {
    expect(matchesOf({ email_key: 'E-cy', external_id_key: null }, 'email', holders)).toEqual([
      { identity: 'email', lead: legacy },
    ]);
    expect(matchesOf({ email_key: 'E-new', external_id_key: null }, 'email', holders)).toEqual([]);
  });
});

describe('describeDuplicate', () => {
  it('names the identity and the lead, and where it came from: this file or an earlier run', () => {
    expect(describeDuplicate(RUN, [{ identity: 'email', lead: ada }])).toEqual({
      reason: 'duplicate: e-mail matches lead 3, stored by ingest run 1',
      field: 'email',
      leadId: 3,
    });
    expect(describeDuplicate(RUN, [{ identity: 'external_id', lead: bo }])).toEqual({
      reason: 'duplicate: external id matches line 8 of this file (lead 7)',
      field: 'external_id',
      leadId: 7,
    });
  });

  it('both identities: said once for one lead, apart for two', () => {
    expect(
      describeDuplicate(RUN, [
        { identity: 'external_id', lead: ada },
        { identity: 'email', lead: ada },
      ]).reason,
    ).toBe('duplicate: external id and e-mail match lead 3, stored by ingest run 1');
    expect(
      describeDuplicate(RUN, [
        { identity: 'email', lead: ada },
        { identity: 'external_id', lead: bo },
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
