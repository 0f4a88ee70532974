/**
 * Partner profiles: the shipped ones load, every refusal names the file, the path inside it and why,
 * and a batch is written as the profile says (the product's own profile exactly as today's payload).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { leadKey, toPartnerLead, toProfileLead } from '../../src/engine/index.js';
import {
  buildPartnerRequest,
  isPartnerProfileError,
  loadPartnerProfile,
  PartnerProfileError,
  type ProfileLead,
  parsePartnerProfile,
  profileSha256,
} from '../../src/partner/index.js';
import type { Lead } from '../../src/store/index.js';
import { tempDir } from '../support/tmp.js';

const PARTNERS = fileURLToPath(new URL('../../config/partners/', import.meta.url));
const VALHALLA = join(PARTNERS, 'valhalla.json');
const CRM = join(PARTNERS, 'crm-batch-contacts.json');
const SOURCE = 'config/partners/test.json';

function lead(id: number, overrides: Partial<Lead> = {}): Lead {
  return {
    id,
    dedup_key: `d${id}`.padEnd(32, '0'),
    external_id: `crm-${id}`,
    name: `Lead ${id}`,
    email: `lead${id}@example.test`,
    phone: '4930123456',
    company: 'Example GmbH',
    score: 60 + id,
    source_ts: Date.parse('2026-11-20T12:00:00Z') + id * 1_234,
    value: 1_500.5,
    state: 'in_flight',
    state_reason: null,
    ingested_at: 0,
    updated_at: 0,
    exported_at: null,
    run_id: 1,
    source_line: id,
    dry_run_at: null,
    erased_at: null,
    synthetic: 0,
    attributes: null,
    ...overrides,
  };
}

/** A stored lead as the engine hands it to a profile, with extra columns when a test gives them. */
function profileLead(l: Lead, attributes: ProfileLead['attributes'] = {}): ProfileLead {
  return { ...toProfileLead(l), attributes };
}

/** A profile's JSON as a test edits it: any member, any depth (the profile under test says what is valid). */
// biome-ignore lint/suspicious/noExplicitAny: the tests write invalid profiles on purpose.
type ProfileJson = Record<string, any>;

/** A shipped profile's JSON, changed by `edit`, as text. */
function edited(file: string, edit: (json: ProfileJson) => void): string {
  const json = loadJson(file);
  edit(json);
  return JSON.stringify(json, null, 2);
}

function loadJson(file: string): ProfileJson {
  return JSON.parse(JSON.stringify(loadPartnerProfile(file)));
}

/** The refusal `parsePartnerProfile` throws for `text`. */
function refusal(text: string): PartnerProfileError {
  try {
    parsePartnerProfile(text, SOURCE);
  } catch (error) {
    if (isPartnerProfileError(error)) return error;
    throw error;
  }
  throw new Error('the profile was accepted');
}

describe('the shipped partner profiles', () => {
  it('load, frozen, each with its name', () => {
    const valhalla = loadPartnerProfile(VALHALLA);
    const crm = loadPartnerProfile(CRM);
    expect(valhalla.name).toBe('valhalla');
    expect(crm.name).toBe('crm-batch-contacts');
    expect(Object.isFrozen(valhalla)).toBe(true);
    expect(Object.isFrozen(valhalla.fields[0])).toBe(true);
    expect(crm.fields[2]).toMatchObject({ to: 'phone', required: false, ifNull: 'omit' });
  });

  it('hash the same however the file is written, and differently when a value changes', () => {
    const valhalla = loadPartnerProfile(VALHALLA);
    const hash = profileSha256(valhalla);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    // Keys in another order, defaults written out: the same profile, the same hash.
    const json = loadJson(VALHALLA);
    const reordered = Object.fromEntries(Object.entries(json).reverse());
    reordered.fields[1] = {
      type: 'string',
      from: 'external_id',
      to: 'external_id',
      required: false,
      ifNull: 'null',
    };
    expect(profileSha256(parsePartnerProfile(JSON.stringify(reordered), SOURCE))).toBe(hash);
    json.batch.maxLeads = 50;
    expect(profileSha256(parsePartnerProfile(JSON.stringify(json), SOURCE))).not.toBe(hash);
  });
});

describe('a profile refused at load', () => {
  it('when the file cannot be read, naming the file', () => {
    const missing = join(tempDir(), 'nowhere.json');
    expect(() => loadPartnerProfile(missing)).toThrow(PartnerProfileError);
    try {
      loadPartnerProfile(missing);
    } catch (error) {
      expect(isPartnerProfileError(error, 'PROFILE_UNREADABLE')).toBe(true);
      expect((error as Error).message).toContain(`partner profile ${missing} refused`);
      expect((error as Error).message).toContain('cannot be read (ENOENT)');
    }
  });

  it('when it is not JSON, with the line and column', () => {
    const file = join(tempDir(), 'broken.json');
    writeFileSync(file, '{\n  "name": "x",\n}\n');
    try {
      loadPartnerProfile(file);
      expect.unreachable();
    } catch (error) {
      expect(isPartnerProfileError(error, 'PROFILE_NOT_JSON')).toBe(true);
      expect((error as Error).message).toContain(file);
      expect((error as Error).message).toMatch(/is not JSON: .* at line 3, column 1/);
    }
    expect(refusal('{"name": "x"').message).toMatch(/is not JSON: .* at line 1, column 13/);
  });

  it('on a key the schema does not know, and on a part that is missing', () => {
    const unknown = refusal(edited(VALHALLA, (j) => (j.fields[1].too = 'x')));
    expect(unknown.code).toBe('PROFILE_INVALID');
    expect(unknown.message).toContain(`partner profile ${SOURCE} refused`);
    expect(unknown.issues).toContainEqual({
      path: 'fields[1].too',
      problem: 'is not a key of a profile here (refused; check its spelling)',
    });
    const missing = refusal(
      edited(VALHALLA, (j) => {
        delete j.answer;
        delete j.endpoints.leads;
      }),
    );
    expect(missing.message).toContain('  - answer: is missing (required)');
    expect(missing.message).toContain('  - endpoints.leads: is missing (required)');
  });

  it('on a mapping from a lead field that does not exist, or from an undeclared attribute', () => {
    const field = refusal(edited(VALHALLA, (j) => (j.fields[4].from = 'phone_number')));
    expect(field.message).toMatch(
      / {2}- fields\[4\]\.from: "phone_number" is not a lead field: one of external_id, /,
    );
    const attribute = refusal(edited(CRM, (j) => j.attributes.splice(0, 1)));
    expect(attribute.issues).toEqual([
      { path: 'fields[6].from', problem: 'attribute "title" is not declared in attributes' },
    ]);
  });

  it("on an attribute named as a lead's own field (a copy of it, shown unmasked if declared not personal)", () => {
    for (const name of ['email', 'phone', 'source_timestamp', 'lead_key']) {
      const named = refusal(edited(CRM, (j) => j.attributes.push({ name, type: 'string', pii: false })));
      expect(named.issues, name).toEqual([
        { path: 'attributes[2].name', problem: `"${name}" is a lead's own field, not an extra column` },
      ]);
    }
  });

  it('on two mappings to the same place, or one inside another', () => {
    const twice = refusal(edited(VALHALLA, (j) => (j.fields[5].to = 'phone')));
    expect(twice.issues).toEqual([
      { path: 'fields[5].to', problem: '"phone" is already written by fields[4]' },
    ]);
    const nested = refusal(edited(VALHALLA, (j) => (j.fields[5].to = 'phone.company')));
    expect(nested.issues[0]?.path).toBe('fields[5].to');
    expect(nested.issues[0]?.problem).toContain('"phone" cannot be a value and hold "phone.company"');
  });

  it('on an OAuth2 profile without a token endpoint, and a token endpoint without OAuth2', () => {
    const noToken = refusal(edited(VALHALLA, (j) => delete j.endpoints.token));
    expect(noToken.issues).toEqual([
      {
        path: 'endpoints.token',
        problem: 'is missing: an oauth2_client_credentials profile needs its token endpoint ({ "path": … })',
      },
    ]);
    const stray = refusal(edited(CRM, (j) => (j.endpoints.token = { path: '/oauth/token' })));
    expect(stray.issues[0]?.path).toBe('endpoints.token');
    expect(stray.issues[0]?.problem).toContain('(auth.kind is bearer)');
  });

  it('on maxLeads above the hard cap of 100, never clamped', () => {
    const over = refusal(edited(VALHALLA, (j) => (j.batch.maxLeads = 101)));
    expect(over.issues).toEqual([
      {
        path: 'batch.maxLeads',
        problem: "above the product's hard cap of 100 leads per request (refused, not clamped)",
      },
    ]);
    expect(refusal(edited(VALHALLA, (j) => (j.batch.maxLeads = 0))).issues[0]?.path).toBe('batch.maxLeads');
  });

  it('on header names that are not RFC 7230 tokens or that the client owns', () => {
    const spaced = refusal(edited(VALHALLA, (j) => (j.idempotency.header = 'Idempotency Key')));
    expect(spaced.issues).toEqual([
      {
        path: 'idempotency.header',
        problem: 'is not a valid header name (RFC 7230 token characters only)',
      },
    ]);
    const owned = refusal(edited(CRM, (j) => (j.auth = { kind: 'api_key', header: 'Authorization' })));
    expect(owned.issues[0]).toEqual({
      path: 'auth.header',
      problem: 'is a header the HTTP client sets itself (refused)',
    });
    const unknownKind = refusal(edited(CRM, (j) => (j.auth = { kind: 'basic' })));
    expect(unknownKind.issues[0]?.path).toBe('auth.kind');
  });

  it('on a secret written into the profile, a type a source cannot fill, or a bad path', () => {
    const secret = refusal(
      edited(CRM, (j) => j.fields.push({ to: 'api_key', from: { const: 'sk_live_123' }, type: 'string' })),
    );
    expect(secret.issues[0]?.path).toBe('fields[9].from');
    expect(secret.issues[0]?.problem).toContain('secrets stay in the environment');
    const type = refusal(edited(VALHALLA, (j) => (j.fields[6].type = 'boolean')));
    expect(type.issues).toEqual([
      { path: 'fields[6].type', problem: 'score holds a whole number: it cannot be written as boolean' },
    ]);
    const timestamp = refusal(edited(VALHALLA, (j) => (j.fields[7].type = 'string')));
    expect(timestamp.issues[0]?.problem).toContain('(write it as iso-timestamp or epoch-ms)');
    const proto = refusal(edited(VALHALLA, (j) => (j.fields[0].to = '__proto__.polluted')));
    expect(proto.issues[0]?.path).toBe('fields[0].to');
    const path = refusal(edited(VALHALLA, (j) => (j.endpoints.leads.path = '/api/../admin')));
    expect(path.issues[0]?.path).toBe('endpoints.leads.path');
  });

  it('on an answer that cannot be tied back to what was sent, or reads one status two ways', () => {
    const notSent = refusal(
      edited(VALHALLA, (j) => {
        j.fields.splice(1, 1);
        j.answer.results[0].match.value = 'external_id';
      }),
    );
    expect(notSent.issues).toEqual([
      {
        path: 'answer.results[0].match.value',
        problem: 'no mapping sends external_id, so the partner cannot echo it back',
      },
    ]);
    const twoWays = refusal(edited(CRM, (j) => j.answer.results[1].status.refused.push('CONFLICT')));
    expect(twoWays.issues).toEqual([
      {
        path: 'answer.results[1].status.refused',
        problem: '"CONFLICT" is already listed under duplicate: a status value means one outcome',
      },
    ]);
    const byIndex = refusal(edited(CRM, (j) => (j.answer.results[0].match = { by: 'index' })));
    expect(byIndex.issues[0]?.path).toBe('answer.results[0].match');
    const auth = refusal(edited(CRM, (j) => j.answer.httpStatuses.push(429)));
    expect(auth.issues[0]?.path).toBe('answer.httpStatuses[3]');
    // A 4xx or 5xx is the whole batch's answer, read by the retry table: never per-lead results.
    const clientError = refusal(edited(CRM, (j) => j.answer.httpStatuses.push(400)));
    expect(clientError.issues[0]).toMatchObject({
      path: 'answer.httpStatuses[3]',
      problem: expect.stringContaining('must be a success status (200 to 299)'),
    });
    // No health endpoint: no cycle could ever pass its health check.
    const noHealth = refusal(edited(CRM, (j) => (j.endpoints.health = null)));
    expect(noHealth.issues[0]?.path).toBe('endpoints.health');
  });
});

describe('the request a batch becomes', () => {
  const leads = [
    lead(1),
    lead(2, { external_id: null, phone: null, company: null, value: null }),
    lead(3, { company: 'Ünïcode & Söhne', value: 0, score: 100 }),
    lead(4, { phone: null, value: 12 }),
  ];

  it("under the product's own profile: exactly today's payload, path and idempotency header", () => {
    const built = buildPartnerRequest(
      loadPartnerProfile(VALHALLA),
      leads.map((l) => profileLead(l)),
      'bk_1',
    );
    if (!built.ok) throw new Error(JSON.stringify(built.problems));
    const today = { leads: leads.map(toPartnerLead) };
    expect(built.request.body).toEqual(today);
    // Byte for byte, member order included: what is hashed and sent does not change.
    expect(JSON.stringify(built.request.body)).toBe(JSON.stringify(today));
    expect(built.request).toMatchObject({ method: 'POST', path: '/api/leads' });
    expect(built.request.headers).toEqual({ 'Idempotency-Key': 'bk_1' });
  });

  it('under the CRM profile: inputs of properties, nulls omitted, attributes written, no idempotency header', () => {
    const crm = loadPartnerProfile(CRM);
    const built = buildPartnerRequest(
      crm,
      [profileLead(leads[0]!, { title: 'Head of Sales', country: 'DE' }), profileLead(leads[1]!)],
      'bk_2',
    );
    if (!built.ok) throw new Error(JSON.stringify(built.problems));
    expect(built.request).toEqual({
      method: 'POST',
      path: '/crm/v3/objects/contacts/batch/create',
      headers: {},
      body: {
        inputs: [
          {
            properties: {
              email: 'lead1@example.test',
              full_name: 'Lead 1',
              phone: '4930123456',
              company: 'Example GmbH',
              lead_score: 61,
              external_id: 'crm-1',
              jobtitle: 'Head of Sales',
              country: 'DE',
              valhalla_lead_key: leadKey(leads[0]!),
            },
          },
          {
            properties: {
              email: 'lead2@example.test',
              full_name: 'Lead 2',
              lead_score: 62,
              valhalla_lead_key: leadKey(leads[1]!),
            },
          },
        ],
      },
    });
  });

  it('names each lead that cannot be written, and why, without its values; nothing is dropped silently', () => {
    const crm = loadPartnerProfile(CRM);
    const blank = { ...profileLead(leads[0]!), email: null as unknown as string };
    const wrongType = profileLead(leads[2]!, { title: 42, country: 'x'.repeat(65) });
    const built = buildPartnerRequest(crm, [blank, profileLead(leads[1]!), wrongType], 'bk_3');
    expect(built.ok).toBe(false);
    if (built.ok) return;
    expect(built.problems).toEqual([
      {
        leadKey: blank.lead_key,
        where: 'fields[0] → "email"',
        problem: 'email is required here and the lead has none',
      },
      {
        leadKey: wrongType.lead_key,
        where: 'fields[6] → "jobtitle"',
        problem: 'attributes.title holds a number, not the string the profile declares',
      },
      {
        leadKey: wrongType.lead_key,
        where: 'fields[7] → "country"',
        problem: 'attributes.country is longer than its 64 characters',
      },
    ]);
    expect(JSON.stringify(built.problems)).not.toContain('xxxxx');
  });

  it('refuses a batch over the profile maxLeads, an empty one, a lead twice and an unusable batch key', () => {
    const small = parsePartnerProfile(
      edited(VALHALLA, (j) => (j.batch.maxLeads = 2)),
      SOURCE,
    );
    const three = leads.slice(0, 3).map((l) => profileLead(l));
    const over = buildPartnerRequest(small, three, 'bk');
    expect(over).toEqual({
      ok: false,
      problems: [{ leadKey: null, where: 'batch', problem: "holds 3 leads, above the profile's maxLeads 2" }],
    });
    expect(buildPartnerRequest(small, [], 'bk')).toEqual({
      ok: false,
      problems: [{ leadKey: null, where: 'batch', problem: 'holds no lead' }],
    });
    const twice = buildPartnerRequest(small, [three[0]!, three[0]!], 'bad key');
    expect(twice.ok ? [] : twice.problems.map((p) => p.where)).toEqual(['batch key', 'batch']);
  });

  it('writes nested targets, a bare array when there is no envelope, constants and epoch milliseconds', () => {
    const profile = parsePartnerProfile(
      edited(CRM, (j) => {
        j.batch = { maxLeads: 10, envelope: null };
        j.fields = [
          { to: 'contact.email', from: 'email', type: 'string' },
          { to: 'contact.score', from: 'score', type: 'string' },
          { to: 'meta.source', from: { const: 'valhalla' }, type: 'string' },
          { to: 'meta.seen_ms', from: 'source_ts', type: 'epoch-ms' },
          { to: 'meta.key', from: 'lead_key', type: 'string' },
        ];
        j.answer.results[0].match.path = 'meta.key';
        j.answer.results[1].match.path = 'meta.key';
      }),
      SOURCE,
    );
    const built = buildPartnerRequest(profile, [profileLead(leads[0]!)], 'bk');
    if (!built.ok) throw new Error(JSON.stringify(built.problems));
    expect(built.request.body).toEqual([
      {
        contact: { email: 'lead1@example.test', score: '61' },
        meta: { source: 'valhalla', seen_ms: leads[0]!.source_ts, key: leadKey(leads[0]!) },
      },
    ]);
  });
});
