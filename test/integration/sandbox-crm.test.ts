/**
 * The sandbox partner playing the CRM batch-contacts profile, over real HTTPS on 127.0.0.1: batches
 * written by `buildPartnerRequest` with the shipped CRM profile, sent with undici, answered per record
 * (200 all created, 207 with CONFLICT and VALIDATION_ERROR errors), read back by `readPartnerAnswer`
 * into the outcomes meant, and reconciled against the sandbox's own per-lead ledger.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  buildPartnerRequest,
  type LeadAnswerOutcome,
  loadPartnerProfile,
  type PartnerAnswer,
  type ProfileLead,
  readPartnerAnswer,
} from '../../src/partner/index.js';
import {
  CRM_LEADS_PATH,
  isSandboxError,
  type SandboxPartner,
  type SandboxPartnerOptions,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { BIN, runInProcess } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

const PARTNERS = fileURLToPath(new URL('../../config/partners/', import.meta.url));
const crm = loadPartnerProfile(join(PARTNERS, 'crm-batch-contacts.json'));
const valhalla = loadPartnerProfile(join(PARTNERS, 'valhalla.json'));

const TOKEN = 'crm-private-app-token-0123456789';
const certDir = tempDir('valhalla-sandbox-crm-cert-');

const started: SandboxPartner[] = [];
const agents: Agent[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

async function start(options: SandboxPartnerOptions = {}): Promise<SandboxPartner> {
  const partner = await startSandboxPartner({
    certDir,
    profile: 'crm-batch-contacts',
    bearerToken: TOKEN,
    ...options,
  });
  started.push(partner);
  return partner;
}

/** An undici agent that trusts the sandbox's self-signed certificate (it is its own CA). */
function agentFor(partner: SandboxPartner): Agent {
  const agent = new Agent({ connect: { ca: partner.caPem ?? undefined } });
  agents.push(agent);
  return agent;
}

function leads(prefix: string, n: number, overrides: (i: number) => Partial<ProfileLead> = () => ({})) {
  return Array.from(
    { length: n },
    (_, i): ProfileLead => ({
      lead_key: `lk_${prefix}_${i}`,
      external_id: `ext-${prefix}-${i}`,
      name: `Lead ${prefix} ${i}`,
      email: `${prefix}.${i}@example.test`,
      phone: i % 2 === 0 ? '+44 20 7946 0000' : null,
      company: 'Example Ltd',
      score: 50 + i,
      source_ts: 1_796_000_000_000,
      value: null,
      attributes: { title: 'Buyer', country: 'DE' },
      ...overrides(i),
    }),
  );
}

interface Sent {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: Record<string, unknown>;
  answer: PartnerAnswer;
}

/** Write `batch` with the CRM profile and send it, with the static token unless told otherwise. */
async function send(
  partner: SandboxPartner,
  batch: readonly ProfileLead[],
  options: { token?: string | null; body?: unknown } = {},
): Promise<Sent> {
  const built = buildPartnerRequest(crm, batch, 'unused: the CRM has no batch key');
  if (!built.ok && options.body === undefined) throw new Error(JSON.stringify(built.problems));
  const body = options.body ?? (built.ok ? built.request.body : null);
  const path = built.ok ? built.request.path : CRM_LEADS_PATH;
  const token = options.token === undefined ? TOKEN : options.token;
  const reply = await request(new URL(path, partner.url), {
    method: 'POST',
    dispatcher: agentFor(partner),
    headers: {
      'content-type': 'application/json',
      ...(built.ok ? built.request.headers : {}),
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await reply.body.text();
  return {
    status: reply.statusCode,
    headers: reply.headers,
    text,
    body: JSON.parse(text) as Record<string, unknown>,
    answer: readPartnerAnswer(crm, reply.statusCode, text, batch),
  };
}

async function get(partner: SandboxPartner, path: string) {
  const reply = await request(new URL(path, partner.url), {
    dispatcher: agentFor(partner),
    signal: AbortSignal.timeout(5_000),
  });
  return { status: reply.statusCode, body: (await reply.body.json()) as Record<string, unknown> };
}

/** Each lead key's outcome (and reason) as the profile reads the answer. */
function outcomes(answer: PartnerAnswer): Record<string, LeadAnswerOutcome> {
  if (answer.kind !== 'per-lead') throw new Error(`expected per-lead answers, got ${answer.kind}`);
  expect(answer.unmatched).toEqual([]);
  expect(answer.problems).toEqual([]);
  return Object.fromEntries(answer.results.map((r) => [r.leadKey, r.outcome]));
}

function reasons(answer: PartnerAnswer): Record<string, string | null> {
  if (answer.kind !== 'per-lead') throw new Error(`expected per-lead answers, got ${answer.kind}`);
  return Object.fromEntries(answer.results.map((r) => [r.leadKey, r.reason]));
}

const all = (batch: readonly ProfileLead[], outcome: LeadAnswerOutcome) =>
  Object.fromEntries(batch.map((l) => [l.lead_key, outcome]));

describe('the sandbox plays the CRM batch-contacts profile', () => {
  it('starts in CRM mode only when asked; today’s contract stays the default', async () => {
    const today = await startSandboxPartner({ certDir });
    started.push(today);
    expect(today.profile).toBe('valhalla');
    expect(today.bearerToken).toBeNull();
    expect(today.leadsUrl).toBe(`${today.url}/api/leads`);

    const partner = await start();
    expect(partner.profile).toBe('crm-batch-contacts');
    expect(partner.bearerToken).toBe(TOKEN);
    expect(partner.leadsUrl).toBe(`${partner.url}/crm/v3/objects/contacts/batch/create`);
    expect(partner.healthUrl).toBe(`${partner.url}/crm/v3/health`);

    const random = await start({ bearerToken: undefined });
    expect(random.bearerToken).toMatch(/^[\w-]{32}$/);
  });

  it('refuses contradictory options: a bearer token for today’s contract, an unknown profile, a short token', async () => {
    for (const options of [
      { bearerToken: TOKEN },
      { profile: 'hubspot' as never },
      { profile: 'crm-batch-contacts' as const, bearerToken: 'short' },
    ]) {
      const error = await startSandboxPartner({ certDir, ...options }).catch((e: unknown) => e);
      expect(isSandboxError(error) && error.code).toBe('INVALID_OPTIONS');
    }
  });

  it('answers its health check, and has neither the OAuth endpoint nor today’s leads path', async () => {
    const partner = await start();
    expect(await get(partner, '/crm/v3/health')).toEqual({ status: 200, body: { status: 'ok' } });
    expect((await get(partner, '/health')).status).toBe(404);
    const token = await request(new URL('/oauth/token', partner.url), {
      method: 'POST',
      dispatcher: agentFor(partner),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=x&client_secret=y',
    });
    expect(token.statusCode).toBe(404);
    await token.body.dump();
    expect(partner.stats().health.checks).toBe(1);
  });

  it('creates every record of a good batch: 200, each echoing its lead key with an id, all read as accepted', async () => {
    const partner = await start();
    const batch = leads('a', 5);
    const sent = await send(partner, batch);
    expect(sent.status).toBe(200);
    expect(sent.body.status).toBe('COMPLETE');
    expect(sent.body.errors).toBeUndefined();
    const results = sent.body.results as { id: string; properties: Record<string, string> }[];
    expect(results.map((r) => r.properties.valhalla_lead_key)).toEqual(batch.map((l) => l.lead_key));
    expect(new Set(results.map((r) => r.id)).size).toBe(5);
    // The answer carries no lead data but the lead's key: no e-mail, no name.
    expect(sent.text).not.toContain('@example.test');
    expect(sent.text).not.toContain('Lead a');
    expect(outcomes(sent.answer)).toEqual(all(batch, 'accepted'));

    const ledger = partner.leads();
    expect(Object.keys(ledger)).toEqual(batch.map((l) => l.lead_key));
    for (const [i, l] of batch.entries()) {
      expect(ledger[l.lead_key]).toMatchObject({
        received: 1,
        id: results[i]?.id,
        duplicates: 0,
        replays: 0,
        refusals: [],
      });
      expect(ledger[l.lead_key]?.acceptedAt).toEqual(expect.any(Number));
    }
    const stats = partner.stats();
    expect(stats.leads).toEqual({ accepted: 5, duplicates: 0 });
    expect(stats.batches).toMatchObject({ received: 1, accepted: 1, refused: 0 });
    expect(stats.tokens.presented).toEqual({ valid: 1, expired: 0, unknown: 0 });
    expect(stats.requests.byPath).toEqual({ '/crm/v3/objects/contacts/batch/create': 1 });
  });

  it('answers a mixed batch 207: created, CONFLICT (lead key or e-mail held), VALIDATION_ERROR (bad e-mail, or chosen by the fault)', async () => {
    const partner = await start({ faults: { refuseLeads: { emailContains: 'REFUSE.ME' } } });
    const first = leads('m', 1);
    expect((await send(partner, first)).status).toBe(200);

    const fresh = leads('n', 5, (i) =>
      i === 1
        ? { email: 'please.refuse.me@example.test' }
        : i === 2
          ? { email: 'not-an-e-mail' }
          : i === 4
            ? { email: 'N.3@Example.Test' } // the e-mail of lead n_3, written otherwise
            : {},
    );
    const batch = [first[0]!, ...fresh];
    const sent = await send(partner, batch);
    expect(sent.status).toBe(207);
    expect(sent.body.numErrors).toBe(4);
    expect(sent.text).not.toContain('example.test');
    expect(sent.text).not.toContain('not-an-e-mail');
    expect(sent.body.errors).toContainEqual({
      status: 'error',
      category: 'CONFLICT',
      message: expect.stringContaining('already exists'),
      context: { idempotency_key: ['lk_m_0'] },
    });
    expect(outcomes(sent.answer)).toEqual({
      lk_m_0: 'duplicate',
      lk_n_0: 'accepted',
      lk_n_1: 'refused',
      lk_n_2: 'refused',
      lk_n_3: 'accepted',
      lk_n_4: 'duplicate',
    });
    const why = reasons(sent.answer);
    expect(why.lk_n_1).toBe('refused by the sandbox (fault)');
    expect(why.lk_n_2).toBe('Property values were not valid: email is not a valid e-mail address');
    expect(why.lk_m_0).toMatch(/valhalla_lead_key already exists\. Existing ID: 1$/);
    expect(why.lk_n_4).toMatch(/e-mail already exists\. Existing ID: \d+$/);

    const ledger = partner.leads();
    expect(ledger.lk_m_0).toMatchObject({ received: 2, id: '1', duplicates: 1, refusals: [] });
    expect(ledger.lk_n_1).toMatchObject({
      received: 1,
      acceptedAt: null,
      id: null,
      refusals: ['refused by the sandbox (fault)'],
    });
    expect(ledger.lk_n_2?.refusals).toEqual([
      'Property values were not valid: email is not a valid e-mail address',
    ]);
    expect(ledger.lk_n_4).toMatchObject({ received: 1, acceptedAt: null, duplicates: 1 });
    expect(partner.stats().leads).toEqual({ accepted: 3, duplicates: 2 });
  });

  it('refuses a record without an e-mail, or with a property the CRM does not have, alone', async () => {
    const partner = await start();
    const batch = leads('v', 3);
    const built = buildPartnerRequest(crm, batch, 'k');
    if (!built.ok) throw new Error('unbuilt');
    const inputs = structuredClone(
      (built.request.body as { inputs: { properties: Record<string, unknown> }[] }).inputs,
    );
    delete inputs[0]!.properties.email;
    inputs[1]!.properties.favourite_colour = 'green';
    const sent = await send(partner, batch, { body: { inputs } });
    expect(sent.status).toBe(207);
    expect(outcomes(sent.answer)).toEqual({ lk_v_0: 'refused', lk_v_1: 'refused', lk_v_2: 'accepted' });
    expect(reasons(sent.answer)).toMatchObject({
      lk_v_0: 'Property values were not valid: email is required',
      lk_v_1: 'Property "favourite_colour" does not exist',
    });
  });

  it('answers a resend of the same leads (an answer lost, say) with CONFLICT for each: nothing created twice', async () => {
    const partner = await start();
    const batch = leads('r', 4);
    expect(outcomes((await send(partner, batch)).answer)).toEqual(all(batch, 'accepted'));
    const again = await send(partner, batch);
    expect(again.status).toBe(207);
    expect(again.body.results).toEqual([]);
    expect((again.body.errors as { category: string }[]).map((e) => e.category)).toEqual(
      Array(4).fill('CONFLICT'),
    );
    expect(outcomes(again.answer)).toEqual(all(batch, 'duplicate'));
    for (const l of batch) {
      expect(partner.leads()[l.lead_key]).toMatchObject({ received: 2, duplicates: 1, refusals: [] });
    }
    expect(partner.stats().leads).toEqual({ accepted: 4, duplicates: 4 });
  });

  it('refuses a wrong or missing token with 401 (a bearer challenge), and records nothing of the leads', async () => {
    const partner = await start();
    const batch = leads('t', 2);
    for (const token of ['not-the-token', null, `${TOKEN}x`]) {
      const sent = await send(partner, batch, { token });
      expect(sent.status).toBe(401);
      expect(sent.headers['www-authenticate']).toMatch(/^Bearer/);
      expect(sent.body).toMatchObject({ status: 'error', category: 'INVALID_AUTHENTICATION' });
      expect(sent.answer).toEqual({ kind: 'batch' });
    }
    expect(partner.leads()).toEqual({});
    expect(partner.stats().tokens.presented).toEqual({ valid: 0, expired: 0, unknown: 3 });
    expect(partner.stats().batches).toMatchObject({ received: 3, refused: 3, accepted: 0 });
  });

  it('refuses a batch over 100 inputs, or one it cannot tie to records, with 400 for the whole batch', async () => {
    const partner = await start();
    const hundred = leads('b', 100);
    const built = buildPartnerRequest(crm, hundred, 'k');
    if (!built.ok) throw new Error('unbuilt');
    const { inputs } = built.request.body as { inputs: unknown[] };
    const over = [...hundred, ...leads('c', 1)];
    const extra = buildPartnerRequest(crm, leads('c', 1), 'k');
    if (!extra.ok) throw new Error('unbuilt');
    const tooMany = await send(partner, over, {
      body: { inputs: [...inputs, ...(extra.request.body as { inputs: unknown[] }).inputs] },
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body).toMatchObject({
      status: 'error',
      category: 'VALIDATION_ERROR',
      message: expect.stringContaining('1 to 100 inputs; this one has 101'),
    });
    expect(tooMany.answer).toEqual({ kind: 'batch' });

    const noKey = structuredClone(inputs.slice(0, 2)) as { properties: Record<string, unknown> }[];
    delete noKey[1]!.properties.valhalla_lead_key;
    for (const body of [{ inputs: [] }, { leads: inputs }, { inputs: noKey }, { inputs: [{}] }]) {
      expect((await send(partner, hundred.slice(0, 2), { body })).status).toBe(400);
    }
    expect(partner.leads()).toEqual({});
    expect(partner.stats().batches).toMatchObject({ received: 5, refused: 5, accepted: 0 });

    // The full hundred is fine.
    expect((await send(partner, hundred)).status).toBe(200);
  });

  it('refuses every Nth lead received when told to, over batches, deterministically', async () => {
    const partner = await start();
    partner.setFaults({ refuseLeads: { every: 3, reason: 'third time unlucky' } });
    const one = leads('e', 4);
    const two = leads('f', 4);
    const a = await send(partner, one);
    const b = await send(partner, two);
    expect([a.status, b.status]).toEqual([207, 207]);
    const refused = [...one, ...two].filter(
      (l) => ({ ...outcomes(a.answer), ...outcomes(b.answer) })[l.lead_key] === 'refused',
    );
    expect(refused.map((l) => l.lead_key)).toEqual(['lk_e_2', 'lk_f_1']);
    expect(reasons(b.answer).lk_f_1).toBe('third time unlucky');
    partner.setFaults({ refuseLeads: null });
    expect((await send(partner, [one[2]!, two[1]!])).status).toBe(200);
    expect(partner.leads().lk_e_2).toMatchObject({
      received: 2,
      duplicates: 0,
      refusals: ['third time unlucky'],
    });
    expect(partner.leads().lk_e_2?.acceptedAt).toEqual(expect.any(Number));
  });

  it('keeps its faults: 5xx, 429 with Retry-After, slow answers, a cut connection, then recovers', async () => {
    const partner = await start();
    const batch = leads('x', 2);

    partner.setFaults({ failNext: 1 });
    const unavailable = await send(partner, batch);
    expect(unavailable.status).toBe(503);
    expect(unavailable.answer).toEqual({ kind: 'batch' });

    partner.setFaults({ rateLimit: { retryAfter: 7 } });
    const limited = await send(partner, batch);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe('7');
    expect(limited.body).toMatchObject({ category: 'RATE_LIMITS' });
    partner.setFaults({ rateLimit: null });

    partner.setFaults({ down: true });
    await expect(send(partner, batch)).rejects.toThrow();
    partner.setFaults({ down: false, latencyMs: 150 });
    const began = performance.now();
    const slow = await send(partner, batch);
    expect(performance.now() - began).toBeGreaterThanOrEqual(140);
    expect(slow.status).toBe(200);

    partner.setFaults({ latencyMs: 0, permanentStatus: 422 });
    expect((await send(partner, batch)).status).toBe(422);
    partner.setFaults({ permanentStatus: null, reject401: true });
    expect((await send(partner, batch)).status).toBe(401);
    partner.setFaults({ reject401: false });

    // The leads were created once, by the slow answer; the faults touched none of them.
    expect(outcomes((await send(partner, batch)).answer)).toEqual(all(batch, 'duplicate'));
    expect(partner.stats().batches).toMatchObject({ received: 7, failedByFault: 5, accepted: 2 });
    for (const l of batch) {
      expect(partner.leads()[l.lead_key]).toMatchObject({ received: 2, duplicates: 1, refusals: [] });
    }
  });

  it('reconciles against its own ledger: nothing lost, nothing created twice, refused leads known', async () => {
    const partner = await start({ faults: { refuseLeads: { emailContains: 'bounce' } } });
    const everyone = leads('z', 230, (i) => (i % 17 === 0 ? { email: `bounce.${i}@example.test` } : {}));
    const outcome = new Map<string, LeadAnswerOutcome>();
    for (let at = 0; at < everyone.length; at += 100) {
      const batch = everyone.slice(at, at + 100);
      const sent = await send(partner, batch);
      for (const [key, value] of Object.entries(outcomes(sent.answer))) {
        // A lead already accepted and answered again (a resend) is a duplicate, never a second record.
        if (outcome.get(key) !== 'accepted') outcome.set(key, value);
      }
      // The second batch's answer is "lost": the sender resends it.
      if (at === 100) {
        const resent = await send(partner, batch);
        for (const [key, value] of Object.entries(outcomes(resent.answer))) {
          expect(value).toBe(outcome.get(key) === 'accepted' ? 'duplicate' : 'refused');
        }
      }
    }
    const ledger = partner.leads();
    const bounced = everyone.filter((_, i) => i % 17 === 0).map((l) => l.lead_key);
    expect(Object.keys(ledger).sort()).toEqual(everyone.map((l) => l.lead_key).sort());
    for (const l of everyone) {
      const held = ledger[l.lead_key]!;
      if (bounced.includes(l.lead_key)) {
        expect(outcome.get(l.lead_key)).toBe('refused');
        expect(held.acceptedAt).toBeNull();
        expect(held.refusals.length).toBeGreaterThanOrEqual(1);
      } else {
        expect(outcome.get(l.lead_key)).toBe('accepted');
        expect(held.acceptedAt).not.toBeNull();
      }
    }
    const ids = Object.values(ledger).flatMap((r) => (r.id === null ? [] : [r.id]));
    expect(new Set(ids).size).toBe(everyone.length - bounced.length);
    expect(partner.stats().leads).toEqual({ accepted: 230 - bounced.length, duplicates: 100 - 6 });
  });

  it('lists its per-lead ledger at GET /leads, and forgets it on reset', async () => {
    const partner = await start();
    await send(partner, leads('g', 2));
    expect(Object.keys((await get(partner, '/leads')).body)).toEqual(['lk_g_0', 'lk_g_1']);
    partner.reset();
    expect((await get(partner, '/leads')).body).toEqual({});
    // After a reset the CRM holds nothing: the same leads are created again.
    expect((await send(partner, leads('g', 2))).status).toBe(200);
  });
});

describe('the refuseLeads fault under today’s contract', () => {
  it('refuses the whole batch holding a chosen lead with 422 invalid_lead, and records why per lead', async () => {
    const partner = await startSandboxPartner({ certDir, clientId: 'c', clientSecret: 'secret-secret' });
    started.push(partner);
    const dispatcher = agentFor(partner);
    const tokenReply = await request(new URL('/oauth/token', partner.url), {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=c&client_secret=secret-secret',
    });
    const { access_token } = (await tokenReply.body.json()) as { access_token: string };
    const post = async (batch: ProfileLead[], key: string) => {
      const built = buildPartnerRequest(valhalla, batch, key);
      if (!built.ok) throw new Error('unbuilt');
      const reply = await request(new URL(built.request.path, partner.url), {
        method: 'POST',
        dispatcher,
        headers: {
          ...built.request.headers,
          'content-type': 'application/json',
          authorization: `Bearer ${access_token}`,
        },
        body: JSON.stringify(built.request.body),
      });
      const text = await reply.body.text();
      return {
        status: reply.statusCode,
        text,
        answer: readPartnerAnswer(valhalla, reply.statusCode, text, batch),
      };
    };

    partner.setFaults({ refuseLeads: { leadKeys: ['lk_h_1'] } });
    const batch = leads('h', 3);
    const refused = await post(batch, 'batch-1');
    expect(refused.status).toBe(422);
    expect(JSON.parse(refused.text)).toEqual({
      error: 'invalid_lead',
      message: 'leads[1]: refused by the sandbox (fault)',
    });
    expect(refused.answer).toEqual({ kind: 'batch' });
    expect(partner.records().batches).toEqual([]);
    expect(partner.leads()).toEqual({
      lk_h_0: { received: 1, acceptedAt: null, id: null, duplicates: 0, replays: 0, refusals: [] },
      lk_h_1: {
        received: 1,
        acceptedAt: null,
        id: null,
        duplicates: 0,
        replays: 0,
        refusals: ['refused by the sandbox (fault)'],
      },
      lk_h_2: { received: 1, acceptedAt: null, id: null, duplicates: 0, replays: 0, refusals: [] },
    });

    // Without the chosen lead the batch goes through; a replay of its key is recorded as one.
    const rest = [batch[0]!, batch[2]!];
    expect((await post(rest, 'batch-2')).status).toBe(200);
    expect((await post(rest, 'batch-2')).status).toBe(200);
    expect(partner.leads().lk_h_0).toMatchObject({ received: 3, replays: 1, duplicates: 0 });
    expect(partner.leads().lk_h_0?.acceptedAt).toEqual(expect.any(Number));
    expect(partner.records().leadBatches).toEqual({ lk_h_0: ['batch-2'], lk_h_2: ['batch-2'] });
  });

  it('is refused when it names no lead', async () => {
    const partner = await startSandboxPartner({ certDir });
    started.push(partner);
    expect(() => partner.setFaults({ refuseLeads: {} })).toThrow(/names no lead/);
    expect(partner.faults().refuseLeads).toBeNull();
  });
});

describe('valhalla sandbox-partner --profile', () => {
  it('refuses a bearer token without the CRM profile, and an unknown profile', async () => {
    const cwd = tempDir('valhalla-sandbox-crm-cli-');
    const env = { PATH: process.env.PATH, VALHALLA_DATA_DIR: join(cwd, 'data') };
    const token = await runInProcess(['sandbox-partner', '--plain-http', '--bearer-token', TOKEN], {
      env,
      cwd,
    });
    expect(token.code).toBe(2);
    expect(token.stderr).toContain('--bearer-token is for --profile crm-batch-contacts only');
    const unknown = await runInProcess(['sandbox-partner', '--profile', 'hubspot'], { env, cwd });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('not valhalla or crm-batch-contacts: hubspot');
  });

  // The built binary (npm test builds it first; run alone, `npm run build` before).
  it('plays the CRM from the built CLI: prints its leads URL and token, creates contacts, stops on SIGTERM', async () => {
    const cwd = tempDir('valhalla-sandbox-crm-bin-');
    const child = spawn(
      process.execPath,
      [
        BIN,
        'sandbox-partner',
        '--profile',
        'crm-batch-contacts',
        '--bearer-token',
        TOKEN,
        '--port',
        '0',
      ].concat(['--cert-dir', join(cwd, 'cert'), '--json']),
      { cwd, env: { PATH: process.env.PATH }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 20));
      const listening = JSON.parse(out.split('\n')[0]!) as Record<string, string>;
      expect(listening).toMatchObject({
        event: 'listening',
        profile: 'crm-batch-contacts',
        bearerToken: TOKEN,
        leadsUrl: `${listening.url}/crm/v3/objects/contacts/batch/create`,
        healthUrl: `${listening.url}/crm/v3/health`,
      });
      expect(listening).not.toHaveProperty('clientSecret');
      const view = { url: listening.url, caPem: readFileSync(listening.caFile!, 'utf8') } as SandboxPartner;
      const batch = leads('cli', 2);
      expect(outcomes((await send(view, batch)).answer)).toEqual(all(batch, 'accepted'));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(JSON.parse(out.trim().split('\n').at(-1)!)).toMatchObject({
        event: 'stopped',
        leadsAccepted: 2,
      });
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
  });
});
