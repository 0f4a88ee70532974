import { describe, expect, it } from 'vitest';
import {
  type FieldProblem,
  FUTURE_SKEW_MS,
  type Validation,
  validateLead,
} from '../../src/ingest/lead-schema.js';
import { HOUR, NOW } from '../support/world.js';

const opts = { now: NOW, requireExternalId: false };

/** A valid CSV-style row (every value a string), with overrides. */
function row(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    external_id: 'EXT-1',
    name: 'Jane Doe',
    email: 'jane.doe@example.com',
    phone: '+1 (555) 123-4567',
    company: 'Acme Ltd',
    score: '85',
    source_timestamp: '2026-11-19T09:30:00Z',
    value: '1200.50',
    ...overrides,
  };
}

function problemsOf(result: Validation): FieldProblem[] {
  if (result.ok) throw new Error(`expected a rejection, got ${JSON.stringify(result.lead)}`);
  return result.problems;
}

/** The rejection of a row with one bad field: exactly one problem, on that field, never quoting the value. */
function rejectOne(field: string, value: unknown, options = opts): FieldProblem {
  const problems = problemsOf(validateLead(row({ [field]: value }), options));
  expect(problems).toHaveLength(1);
  const [problem] = problems;
  expect(problem!.field).toBe(field);
  if (typeof value === 'string' && value.trim() !== '') expect(problem!.message).not.toContain(value.trim());
  if (typeof value === 'number') expect(problem!.message).not.toContain(String(value));
  return problem!;
}

describe('validateLead: normalisation', () => {
  it('trims text, lower-cases the e-mail, keeps only the digits of the phone, parses numbers and the timestamp', () => {
    const result = validateLead(
      row({
        external_id: '  EXT-9 ',
        name: '  Jane Doe  ',
        email: '  Jane.DOE@Example.COM ',
        phone: ' +44 (20) 7946-0958 ',
        company: ' Acme Ltd ',
        score: ' 40 ',
        source_timestamp: ' 2026-11-19T09:30:00+01:00 ',
        value: ' 99.5 ',
      }),
      opts,
    );
    expect(result).toEqual({
      ok: true,
      lead: {
        externalId: 'EXT-9',
        name: 'Jane Doe',
        email: 'jane.doe@example.com',
        phone: '442079460958',
        company: 'Acme Ltd',
        score: 40,
        sourceTs: Date.parse('2026-11-19T08:30:00Z'),
        value: 99.5,
      },
    });
  });

  it('turns empty optional fields into null', () => {
    const result = validateLead(row({ external_id: '', phone: '  ', company: '', value: '' }), opts);
    expect(result.ok && result.lead).toMatchObject({
      externalId: null,
      phone: null,
      company: null,
      value: null,
    });
  });

  it('accepts JSON values: numbers for score, value and epoch-millisecond timestamps; absent optional fields', () => {
    const ts = NOW - HOUR;
    const result = validateLead(
      { name: 'Jo', email: 'jo@example.org', score: 0, source_timestamp: ts },
      opts,
    );
    expect(result).toEqual({
      ok: true,
      lead: {
        externalId: null,
        name: 'Jo',
        email: 'jo@example.org',
        phone: null,
        company: null,
        score: 0,
        sourceTs: ts,
        value: null,
      },
    });
    const full = validateLead(row({ score: 100, value: 0 }), opts);
    expect(full.ok && [full.lead.score, full.lead.value]).toEqual([100, 0]);
  });

  it('reads a date without a time as midnight UTC', () => {
    const result = validateLead(row({ source_timestamp: '2026-11-19' }), opts);
    expect(result.ok && result.lead.sourceTs).toBe(Date.parse('2026-11-19T00:00:00Z'));
  });

  it('accepts a timestamp up to the 60 s clock skew ahead of now, and no further', () => {
    expect(FUTURE_SKEW_MS).toBe(60_000);
    const atSkew = validateLead(
      row({ source_timestamp: new Date(NOW + FUTURE_SKEW_MS).toISOString() }),
      opts,
    );
    expect(atSkew.ok && atSkew.lead.sourceTs).toBe(NOW + FUTURE_SKEW_MS);
    const beyond = rejectOne('source_timestamp', new Date(NOW + FUTURE_SKEW_MS + 1_000).toISOString());
    expect(beyond.message).toBe('is in the future');
  });
});

describe('validateLead: rejections name the field and never the value', () => {
  it.each([
    'jane.doe',
    'jane@',
    '@example.com',
    'jane doe@example.com',
    'jane@example',
    'jane at example.com',
  ])('a bad e-mail address (%s)', (email) => {
    expect(rejectOne('email', email).message).toBe('is not a valid e-mail address');
  });

  it.each<[string, unknown]>([
    ['101', '101'],
    ['-1', '-1'],
    ['40.5', '40.5'],
    ['high', 'high'],
    ['empty', ''],
    ['1000', '1000'],
    ['JSON 101', 101],
    ['JSON -1', -1],
    ['JSON 40.5', 40.5],
    ['JSON true', true],
  ])('a score that is not a whole number 0–100 (%s)', (_label, score) => {
    expect(rejectOne('score', score).message).toBe('must be a whole number from 0 to 100');
  });

  it.each(['name', 'email', 'score', 'source_timestamp'])(
    'a missing required field (%s) "is required"',
    (field) => {
      const record = row();
      delete record[field];
      expect(problemsOf(validateLead(record, opts))).toEqual([{ field, message: 'is required' }]);
      // JSON null counts as missing too.
      expect(problemsOf(validateLead(row({ [field]: null }), opts))).toEqual([
        { field, message: 'is required' },
      ]);
    },
  );

  it('an empty or blank name', () => {
    expect(rejectOne('name', '').message).toBe('is empty');
    expect(rejectOne('name', '   ').message).toBe('is empty');
  });

  it.each<[string, string, string]>([
    ['no time zone', '2026-11-19T09:30:00', 'needs a time zone (Z or ±hh:mm)'],
    ['no time zone, space separator', '2026-11-19 09:30', 'needs a time zone (Z or ±hh:mm)'],
    ['garbage', 'last tuesday', 'must be an ISO 8601 date-time (e.g. 2026-11-20T09:30:00Z)'],
    ['US date', '11/19/2026', 'must be an ISO 8601 date-time (e.g. 2026-11-20T09:30:00Z)'],
    ['epoch as text', '1795167000000', 'must be an ISO 8601 date-time (e.g. 2026-11-20T09:30:00Z)'],
    ['empty', '', 'must be an ISO 8601 date-time (e.g. 2026-11-20T09:30:00Z)'],
    ['month 13', '2026-13-01T00:00:00Z', 'is not a real date'],
    ['30 February', '2026-02-30T00:00:00Z', 'is not a real date'],
    ['31 April, date only', '2026-04-31', 'is not a real date'],
    ['minute 60', '2026-11-19T09:60:00Z', 'is not a real date'],
    ['far in the future', '2027-01-01T00:00:00Z', 'is in the future'],
  ])('a bad source timestamp (%s)', (_label, value, message) => {
    expect(rejectOne('source_timestamp', value).message).toBe(message);
  });

  it('a bad epoch-millisecond timestamp (JSON)', () => {
    expect(rejectOne('source_timestamp', -5).message).toBe(
      'must be epoch milliseconds or an ISO 8601 date-time',
    );
    expect(rejectOne('source_timestamp', 1.5).message).toBe(
      'must be epoch milliseconds or an ISO 8601 date-time',
    );
    expect(rejectOne('source_timestamp', NOW + 10 * FUTURE_SKEW_MS).message).toBe('is in the future');
    expect(rejectOne('source_timestamp', true).message).toBe('must be an ISO 8601 date-time');
  });

  it.each<[string, string, string]>([
    ['letters', '555-CALL-NOW', 'may hold only digits, spaces and + ( ) - . /'],
    ['an extension', '555 123 4567 x12', 'may hold only digits, spaces and + ( ) - . /'],
    ['too few digits', '12-34-56', 'must have 7 to 15 digits'],
    ['too many digits', '1234567890123456', 'must have 7 to 15 digits'],
    ['over 40 characters', `+1 ${'5 '.repeat(20)}`, 'longer than 40 characters'],
  ])('a bad phone number (%s)', (_label, value, message) => {
    expect(rejectOne('phone', value).message).toBe(message);
  });

  it.each<[string, unknown, string]>([
    ['negative', '-5', 'must be a number of at least 0'],
    ['negative JSON', -0.01, 'must be a number of at least 0'],
    ['with a thousands separator', '1,000', 'must be a number of at least 0'],
    ['text', 'lots', 'must be a number of at least 0'],
    ['above the maximum', '1000000001', 'above 1000000000'],
  ])('a bad value (%s)', (_label, value, message) => {
    expect(rejectOne('value', value).message).toBe(message);
  });

  it.each<[string, string]>([
    ['name', 'Jane\u0000Doe'],
    ['name', 'Jane\tDoe'],
    ['name', 'Jane\nDoe'],
    ['company', 'Acme\u007fLtd'],
    ['company', 'Acme\u001bLtd'],
    ['external_id', 'EXT\r1'],
  ])('control characters inside a field (%s)', (field, value) => {
    expect(rejectOne(field, value).message).toBe('contains control characters');
  });

  it.each<[string, string, string]>([
    ['name', 'n'.repeat(201), 'longer than 200 characters'],
    ['company', 'c'.repeat(201), 'longer than 200 characters'],
    ['external_id', 'x'.repeat(129), 'longer than 128 characters'],
    ['email', `${'a'.repeat(60)}@${`${'b'.repeat(60)}.`.repeat(4)}com`, 'longer than 254 characters'],
  ])('an over-long field (%s)', (field, value, message) => {
    const problems = problemsOf(validateLead(row({ [field]: value }), opts));
    expect(problems.every((p) => p.field === field)).toBe(true);
    expect(problems.map((p) => p.message)).toContain(message);
    for (const p of problems) expect(p.message).not.toContain(value.slice(0, 20));
  });

  it('accepts fields exactly at their length limits', () => {
    const result = validateLead(
      row({ name: 'n'.repeat(200), company: 'c'.repeat(200), external_id: 'x'.repeat(128) }),
      opts,
    );
    expect(result.ok).toBe(true);
  });

  it('requires external_id when dedup is by external_id, and only then', () => {
    const strict = { now: NOW, requireExternalId: true };
    for (const missing of [undefined, null, '', '   ']) {
      const record = row({ external_id: missing });
      expect(problemsOf(validateLead(record, strict))).toEqual([
        { field: 'external_id', message: 'is required when VALHALLA_DEDUP_KEY=external_id' },
      ]);
      expect(validateLead(record, opts).ok).toBe(true);
    }
    expect(validateLead(row(), strict).ok).toBe(true);
  });

  it('reports every problem of a row, each with its field, none with a value', () => {
    const record = row({
      external_id: '',
      name: '',
      email: 'secret-person at example.com',
      phone: 'call 555-SECRET',
      score: 'high',
      source_timestamp: 'yesterday-ish',
      value: '-12345',
    });
    const problems = problemsOf(validateLead(record, { now: NOW, requireExternalId: true }));
    expect(problems.map((p) => p.field).sort()).toEqual([
      'email',
      'external_id',
      'name',
      'phone',
      'score',
      'source_timestamp',
      'value',
    ]);
    const text = JSON.stringify(problems);
    for (const secret of ['secret-person', 'SECRET', 'high', 'yesterday', '12345'])
      expect(text).not.toContain(secret);
  });

  it('reports a bad timestamp together with problems of other fields', () => {
    const problems = problemsOf(
      validateLead(row({ score: '500', source_timestamp: '2026-11-19T09:30:00' }), opts),
    );
    expect(problems).toEqual([
      { field: 'score', message: 'must be a whole number from 0 to 100' },
      { field: 'source_timestamp', message: 'needs a time zone (Z or ±hh:mm)' },
    ]);
  });

  it('rejects values of the wrong JSON type with a message, not a crash', () => {
    const problems = problemsOf(
      validateLead(row({ name: 42, email: ['a@b.co'], company: { x: 1 }, phone: 5551234567 }), opts),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        { field: 'name', message: 'must be text' },
        { field: 'company', message: 'must be text' },
        { field: 'phone', message: 'must be text' },
      ]),
    );
    expect(problems.some((p) => p.field === 'email')).toBe(true);
  });
});
