/**
 * A partner's reply read as its profile says: every sent lead gets exactly one outcome, a lead the
 * reply does not clearly answer is unknown (never accepted by default), and what cannot be tied to a
 * lead is reported.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  loadPartnerProfile,
  MAX_ANSWER_REASON_CHARS,
  MAX_REASON_CHARS,
  oneLine,
  type PartnerAnswer,
  type ProfileLead,
  parsePartnerProfile,
  readPartnerAnswer,
} from '../../src/partner/index.js';

const PARTNERS = fileURLToPath(new URL('../../config/partners/', import.meta.url));
const valhalla = loadPartnerProfile(join(PARTNERS, 'valhalla.json'));
const crm = loadPartnerProfile(join(PARTNERS, 'crm-batch-contacts.json'));
/** The product's contract read strictly: a lead the reply leaves unclear is unknown, not the status's. */
const strict = parsePartnerProfile(
  JSON.stringify({ ...valhalla, answer: { ...valhalla.answer, withoutResults: 'unknown' } }),
  'valhalla-strict.json',
);

function sent(n: number, overrides: Partial<ProfileLead> = {}): ProfileLead[] {
  return Array.from({ length: n }, (_, i) => ({
    lead_key: `lk_${i}`,
    external_id: `crm-${i}`,
    name: `Lead ${i}`,
    email: `lead${i}@example.test`,
    phone: null,
    company: null,
    score: 70,
    source_ts: 1_700_000_000_000,
    value: null,
    attributes: {},
    ...overrides,
  }));
}

const json = (value: unknown) => JSON.stringify(value);

function perLead(answer: PartnerAnswer) {
  if (answer.kind !== 'per-lead') throw new Error(`expected per-lead answers, got ${answer.kind}`);
  return answer;
}

/** A CRM success: the record as created, its properties echoed. */
const created = (key: string, id: number) => ({
  id: `${id}`,
  properties: { valhalla_lead_key: key, email: `x${id}@example.test` },
  createdAt: '2026-12-06T10:00:00Z',
});

/** A CRM error for the inputs holding these keys. */
const crmError = (category: string, message: string, ...keys: string[]) => ({
  status: 'error',
  category,
  message,
  context: { idempotency_key: keys },
});

describe("the product's own contract", () => {
  const leads = sent(3);

  it('reads per-lead results by idempotency key: accepted and duplicate', () => {
    const body = json({
      accepted: 2,
      duplicates: 1,
      results: [
        { idempotency_key: 'lk_2', status: 'accepted' },
        { idempotency_key: 'lk_0', status: 'accepted' },
        { idempotency_key: 'lk_1', status: 'duplicate' },
      ],
    });
    expect(readPartnerAnswer(valhalla, 200, body, leads)).toEqual({
      kind: 'per-lead',
      results: [
        { leadKey: 'lk_0', outcome: 'accepted', reason: null },
        { leadKey: 'lk_1', outcome: 'duplicate', reason: null },
        { leadKey: 'lk_2', outcome: 'accepted', reason: null },
      ],
      unmatched: [],
      problems: [],
    });
  });

  it('takes a 200 without results (optional in the contract), a status it does not list and no body as the batch answer', () => {
    expect(readPartnerAnswer(valhalla, 200, json({ accepted: 3 }), leads)).toEqual({ kind: 'batch' });
    expect(readPartnerAnswer(valhalla, 200, null, leads)).toEqual({ kind: 'batch' });
    expect(readPartnerAnswer(valhalla, 503, json({ results: [] }), leads)).toEqual({ kind: 'batch' });
    expect(readPartnerAnswer(valhalla, 202, json({ results: [] }), leads)).toEqual({ kind: 'batch' });
  });

  it("the shipped profile reads as it always did: the 200 answers for a lead its results leave unclear (problems still reported), a body that is not JSON or not an object is the whole batch's", () => {
    const body = json({
      results: [
        { idempotency_key: 'lk_0', status: 'duplicate' },
        { idempotency_key: 'lk_1', status: 'queued' },
        { idempotency_key: 'lk_9', status: 'accepted' },
      ],
    });
    const answer = perLead(readPartnerAnswer(valhalla, 200, body, leads));
    expect(answer.results).toEqual([
      { leadKey: 'lk_0', outcome: 'duplicate', reason: null },
      { leadKey: 'lk_1', outcome: 'accepted', reason: null },
      { leadKey: 'lk_2', outcome: 'accepted', reason: null },
    ]);
    expect(answer.problems.map((p) => p.where)).toEqual(['results[1].status']);
    expect(answer.unmatched.map((p) => p.where)).toEqual(['results[2]']);
    for (const text of ['OK', '[1, 2]', '{"results": 3}', '']) {
      expect(readPartnerAnswer(valhalla, 200, text, leads), text).toEqual({ kind: 'batch' });
    }
  });

  it('never accepts a lead the results leave out, and reports a result for a lead not sent', () => {
    const body = json({
      results: [
        { idempotency_key: 'lk_0', status: 'accepted' },
        { idempotency_key: 'lk_9', status: 'accepted' },
        { status: 'accepted' },
      ],
    });
    const answer = perLead(readPartnerAnswer(strict, 200, body, leads));
    expect(answer.results.map((r) => r.outcome)).toEqual(['accepted', 'unknown', 'unknown']);
    expect(answer.results[1]?.reason).toBe('the reply does not mention this lead');
    expect(answer.unmatched).toEqual([
      { where: 'results[1]', problem: 'its "idempotency_key" matches no lead sent in this batch' },
      { where: 'results[2]', problem: 'holds no lead_key at "idempotency_key" to tie it to a lead' },
    ]);
  });

  it('makes a lead answered twice unknown, and a status value it does not know unknown, each reported', () => {
    const body = json({
      results: [
        { idempotency_key: 'lk_0', status: 'accepted' },
        { idempotency_key: 'lk_0', status: 'duplicate' },
        { idempotency_key: 'lk_1', status: 'queued' },
        { idempotency_key: 'lk_2', status: 'accepted' },
      ],
    });
    const answer = perLead(readPartnerAnswer(strict, 200, body, leads));
    expect(answer.results).toEqual([
      {
        leadKey: 'lk_0',
        outcome: 'unknown',
        reason: 'the reply answers this lead 2 times (results[0], results[1])',
      },
      {
        leadKey: 'lk_1',
        outcome: 'unknown',
        reason: 'the reply gives the status "queued", which the profile does not know',
      },
      { leadKey: 'lk_2', outcome: 'accepted', reason: null },
    ]);
    expect(answer.problems).toEqual([
      { where: 'results[2].status', problem: 'the status "queued": not a value the profile knows' },
      { where: 'results[0], results[1]', problem: '2 results answer the same lead (lk_0)' },
    ]);
  });
});

describe('the CRM batch create', () => {
  const leads = sent(4);

  it('201, all created: every lead accepted', () => {
    const body = json({ status: 'COMPLETE', results: leads.map((l, i) => created(l.lead_key, 100 + i)) });
    const answer = perLead(readPartnerAnswer(crm, 201, body, leads));
    expect(answer.results.every((r) => r.outcome === 'accepted' && r.reason === null)).toBe(true);
    expect(answer.unmatched).toEqual([]);
    expect(answer.problems).toEqual([]);
  });

  it('207: created, refused with reasons, and duplicates (CONFLICT) told apart', () => {
    const body = json({
      status: 'COMPLETE',
      results: [created('lk_0', 100)],
      errors: [
        crmError('VALIDATION_ERROR', 'Property values were not valid: phone', 'lk_1'),
        crmError('CONFLICT', 'Contact already exists. Existing ID: 555', 'lk_2', 'lk_3'),
      ],
      numErrors: 2,
    });
    expect(readPartnerAnswer(crm, 207, body, leads)).toEqual({
      kind: 'per-lead',
      results: [
        { leadKey: 'lk_0', outcome: 'accepted', reason: null },
        { leadKey: 'lk_1', outcome: 'refused', reason: 'Property values were not valid: phone' },
        { leadKey: 'lk_2', outcome: 'duplicate', reason: 'Contact already exists. Existing ID: 555' },
        { leadKey: 'lk_3', outcome: 'duplicate', reason: 'Contact already exists. Existing ID: 555' },
      ],
      unmatched: [],
      problems: [],
    });
  });

  it('a lead missing from both lists is unknown; an error for a lead not sent is unmatched; an unknown category is reported', () => {
    const body = json({
      results: [created('lk_0', 100)],
      errors: [
        crmError('VALIDATION_ERROR', 'bad', 'lk_77'),
        crmError('RATE_LIMITS', 'slow down', 'lk_2'),
        { status: 'error', category: 'CONFLICT', message: 'no context' },
      ],
    });
    const answer = perLead(readPartnerAnswer(crm, 207, body, leads));
    expect(answer.results.map((r) => [r.leadKey, r.outcome])).toEqual([
      ['lk_0', 'accepted'],
      ['lk_1', 'unknown'],
      ['lk_2', 'unknown'],
      ['lk_3', 'unknown'],
    ]);
    expect(answer.unmatched).toEqual([
      { where: 'errors[0]', problem: 'its "context.idempotency_key" matches no lead sent in this batch' },
      { where: 'errors[2]', problem: 'holds no lead_key at "context.idempotency_key" to tie it to a lead' },
    ]);
    expect(answer.problems).toEqual([
      { where: 'errors[1].category', problem: 'the status "RATE_LIMITS": not a value the profile knows' },
    ]);
  });

  it('a malformed body leaves every lead unknown, and says why', () => {
    for (const [body, why] of [
      ['{"results": [', 'the reply is not JSON'],
      ['[1, 2]', 'the reply is not a JSON object'],
      [json({ results: 'all fine' }), '"results" is not a list'],
      [json({ status: 'COMPLETE' }), 'the reply holds none of its result lists (results, errors)'],
      ['', 'the reply has no body'],
    ] as const) {
      const answer = perLead(readPartnerAnswer(crm, 200, body, leads));
      expect(answer.results).toEqual(
        leads.map((l) => ({ leadKey: l.lead_key, outcome: 'unknown', reason: why })),
      );
      expect(answer.problems).toHaveLength(1);
      expect(answer.problems[0]?.problem).toBe(why);
    }
  });

  it('reads a body given as bytes, and cuts a long or multi-line reason', () => {
    const long = `line one\nline\ttwo ${'x'.repeat(500)}`;
    const body = new TextEncoder().encode(json({ errors: [crmError('VALIDATION_ERROR', long, 'lk_0')] }));
    const reason = perLead(readPartnerAnswer(crm, 207, body, leads.slice(0, 1))).results[0]?.reason ?? '';
    // Read whole (to be masked), on one line; cut to MAX_REASON_CHARS only after masking.
    expect(reason).toBe(`line one line two ${'x'.repeat(500)}`);
    const huge = json({ errors: [crmError('VALIDATION_ERROR', 'y'.repeat(5_000), 'lk_0')] });
    const kept = perLead(readPartnerAnswer(crm, 207, huge, leads.slice(0, 1))).results[0]?.reason ?? '';
    expect(Array.from(kept)).toHaveLength(MAX_ANSWER_REASON_CHARS);
    expect(kept.endsWith('…')).toBe(true);
    expect(Array.from(oneLine(reason))).toHaveLength(MAX_REASON_CHARS);
  });
});

describe('results matched by position, or by a value a lead may lack', () => {
  const byIndex = parsePartnerProfile(
    JSON.stringify({
      ...JSON.parse(JSON.stringify(valhalla)),
      answer: {
        httpStatuses: [200],
        results: [
          {
            path: 'data.items',
            match: { by: 'index' },
            status: { path: 'ok', accepted: [true], duplicate: ['exists'], refused: [false] },
            reason: 'error.text',
          },
        ],
        withoutResults: 'unknown',
      },
    }),
    'by-index.json',
  );

  it('ties results to leads in request order, and reports results past the last lead sent', () => {
    const body = json({
      data: { items: [{ ok: true }, { ok: false, error: { text: 'no' } }, { ok: 'exists' }, { ok: true }] },
    });
    const answer = perLead(readPartnerAnswer(byIndex, 200, body, sent(3)));
    expect(answer.results).toEqual([
      { leadKey: 'lk_0', outcome: 'accepted', reason: null },
      { leadKey: 'lk_1', outcome: 'refused', reason: 'no' },
      { leadKey: 'lk_2', outcome: 'duplicate', reason: null },
    ]);
    expect(answer.unmatched).toEqual([
      { where: 'data.items[3]', problem: 'no lead was sent at position 3 (3 sent)' },
    ]);
    const short = perLead(
      readPartnerAnswer(byIndex, 200, json({ data: { items: [{ ok: true }] } }), sent(2)),
    );
    expect(short.results[1]).toEqual({
      leadKey: 'lk_1',
      outcome: 'unknown',
      reason: 'the reply does not mention this lead',
    });
  });

  it('a lead without the matched value, or sharing it, is unknown with the reason', () => {
    const byExternalId = parsePartnerProfile(
      JSON.stringify({
        ...JSON.parse(JSON.stringify(strict)),
        answer: {
          ...JSON.parse(JSON.stringify(strict.answer)),
          results: [
            {
              ...JSON.parse(JSON.stringify(valhalla.answer.results![0])),
              match: { by: 'field', path: 'id', value: 'external_id' },
            },
          ],
        },
      }),
      'by-external-id.json',
    );
    const leads = [
      ...sent(1),
      ...sent(1, { lead_key: 'lk_b', external_id: null }),
      ...sent(2, { external_id: 'same' }).map((l, i) => ({ ...l, lead_key: `lk_s${i}` })),
    ];
    const body = json({
      results: [
        { id: 'crm-0', status: 'accepted' },
        { id: 'same', status: 'accepted' },
      ],
    });
    const answer = perLead(readPartnerAnswer(byExternalId, 200, body, leads));
    expect(answer.results).toEqual([
      { leadKey: 'lk_0', outcome: 'accepted', reason: null },
      {
        leadKey: 'lk_b',
        outcome: 'unknown',
        reason: 'has no external_id, which the reply matches results by',
      },
      {
        leadKey: 'lk_s0',
        outcome: 'unknown',
        reason: 'shares its external_id with another lead sent: no result can name it alone',
      },
      {
        leadKey: 'lk_s1',
        outcome: 'unknown',
        reason: 'shares its external_id with another lead sent: no result can name it alone',
      },
    ]);
    expect(answer.unmatched).toEqual([
      { where: 'results[1]', problem: 'its "id" matches 2 leads sent in this batch' },
    ]);
  });
});
