/**
 * A partner's reason as the engine stores it: the lead's own data taken out wherever it is echoed,
 * the whole text withheld when it still looks like contact data, cut to 200 characters only after.
 */
import { describe, expect, it } from 'vitest';
import { maskPartnerReason } from '../../src/engine/partner-answer.js';
import { MAX_REASON_CHARS, type ProfileLead } from '../../src/partner/index.js';

const lead: ProfileLead = {
  lead_key: 'lk_1',
  external_id: 'CRM-0042-7781',
  name: 'Jane Doe',
  email: 'jd1984.work@example.org',
  phone: '+44 20 7946 0958',
  company: 'Doe Holdings',
  score: 80,
  source_ts: 0,
  value: null,
  attributes: { title: 'Chief Data Officer', country: 'GB' },
};

describe('maskPartnerReason', () => {
  it("takes the lead's own values out, its phone in any spacing, its name and parts", () => {
    expect(maskPartnerReason('Contact jd1984.work@example.org (Jane Doe, Doe Holdings) exists', lead)).toBe(
      'Contact *** (***, ***) exists',
    );
    expect(maskPartnerReason('phone +44 (20) 7946-0958 is +442079460958', lead)).toBe('phone *** is ***');
    // Written in another form its digits do not match: it still looks like a phone number, so withheld.
    expect(maskPartnerReason('phone 020 7946 0958 is invalid', lead)).toMatch(
      /^\(the partner's text withheld/,
    );
    expect(maskPartnerReason('jane: title Chief Data Officer not allowed for CRM-0042-7781', lead)).toBe(
      '***: title *** not allowed for ***',
    );
  });

  it("withholds the whole text when it still looks like contact data (another person's)", () => {
    expect(maskPartnerReason('duplicate of someone.else@example.org', lead)).toMatch(
      /^\(the partner's text withheld/,
    );
    expect(maskPartnerReason('call +1 415 555 0011 instead', lead)).toMatch(/^\(the partner's text withheld/);
  });

  it('masks what is echoed near the cut before cutting: nothing of it is kept', () => {
    for (const at of [180, 190, 195, 199]) {
      const reason = `${'x'.repeat(at)} ${lead.email} and ${lead.phone}`;
      const stored = maskPartnerReason(reason, lead);
      expect(Array.from(stored).length).toBeLessThanOrEqual(MAX_REASON_CHARS);
      expect(stored).not.toMatch(/jd1|@example|7946|\+44 2/);
    }
  });
});
