import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import {
  CERT_FILE,
  isSandboxError,
  KEY_FILE,
  type SandboxPartner,
  type SandboxPartnerOptions,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { runBinary } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';

// Not from ../support/cli.js: that imports the whole CLI in-process, and this file needs the sandbox only.
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(REPO_ROOT, 'bin', 'valhalla.js');

// One certificate folder for the file: the first start makes the certificate, the others reuse it.
const certDir = tempDir('valhalla-sandbox-cert-');
const CLIENT = { clientId: 'test-client', clientSecret: 'test-secret-1234' };

const started: SandboxPartner[] = [];
const agents: https.Agent[] = [];
afterEach(async () => {
  for (const agent of agents.splice(0)) agent.destroy();
  await Promise.all(started.splice(0).map((p) => p.close()));
});

async function start(options: SandboxPartnerOptions = {}): Promise<SandboxPartner> {
  const partner = await startSandboxPartner({ certDir, ...CLIENT, ...options });
  started.push(partner);
  return partner;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: unknown;
}

interface RequestOptions {
  headers?: Record<string, string>;
  body?: string | object;
  ca?: string | null;
  signal?: AbortSignal;
  agent?: https.Agent;
}

/** One request with node:https (or node:http for a plain-HTTP sandbox), bounded by a 5 s timeout. */
function request(
  partner: SandboxPartner,
  method: string,
  path: string,
  o: RequestOptions = {},
): Promise<Reply> {
  const body =
    o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body);
  const url = new URL(path, partner.url);
  const signal = o.signal ?? AbortSignal.timeout(5_000);
  return new Promise((resolve, reject) => {
    const options: https.RequestOptions = {
      method,
      headers: {
        ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}),
        ...o.headers,
      },
      signal,
      agent: o.agent ?? false,
    };
    if (o.agent === undefined && o.ca !== null) options.ca = o.ca ?? partner.caPem ?? undefined;
    const req = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = JSON.parse(text);
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** A keep-alive agent trusting the sandbox, for tests that send many requests. */
function keepAlive(partner: SandboxPartner): https.Agent {
  const agent = new https.Agent({ keepAlive: true, ca: partner.caPem ?? undefined });
  agents.push(agent);
  return agent;
}

async function getToken(partner: SandboxPartner): Promise<string> {
  const reply = await request(partner, 'POST', '/oauth/token', {
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: partner.clientId,
      client_secret: partner.clientSecret,
    }).toString(),
  });
  expect(reply.status).toBe(200);
  return (reply.body as { access_token: string }).access_token;
}

function lead(key: string) {
  return {
    idempotency_key: key,
    external_id: `ext-${key}`,
    name: 'Ada Example',
    email: 'ada@example.test',
    phone: '+44 20 7946 0000',
    company: 'Example Ltd',
    score: 72,
    source_timestamp: '2026-11-20T10:00:00Z',
    value: 1200,
  };
}

function postBatch(
  partner: SandboxPartner,
  token: string,
  batchKey: string | null,
  leadsOrBody: ReturnType<typeof lead>[] | string | object,
  agent?: https.Agent,
): Promise<Reply> {
  return request(partner, 'POST', '/api/leads', {
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      ...(batchKey === null ? {} : { 'idempotency-key': batchKey }),
    },
    body: Array.isArray(leadsOrBody) ? { leads: leadsOrBody } : leadsOrBody,
    ...(agent ? { agent } : {}),
  });
}

describe('sandbox partner: OAuth2 client credentials', () => {
  it('issues a bearer token for good credentials, in the form body or by HTTP Basic', async () => {
    const partner = await start({ faults: { tokenTtlSeconds: 120 } });
    expect(partner.tokenUrl).toBe(`${partner.url}/oauth/token`);
    const form = await request(partner, 'POST', '/oauth/token', {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&client_id=${CLIENT.clientId}&client_secret=${CLIENT.clientSecret}`,
    });
    expect(form.status).toBe(200);
    expect(form.body).toMatchObject({ token_type: 'Bearer', expires_in: 120 });
    expect((form.body as { access_token: string }).access_token).toMatch(/^[\w-]{20,}$/);
    expect(form.headers['cache-control']).toBe('no-store');

    const basic = await request(partner, 'POST', '/oauth/token', {
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    });
    expect(basic.status).toBe(200);
    expect(partner.stats().tokens.issued).toBe(2);
  });

  it('refuses wrong credentials with 401 invalid_client and a wrong grant with 400', async () => {
    const partner = await start();
    const ask = (body: string, authorization?: string) =>
      request(partner, 'POST', '/oauth/token', {
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          ...(authorization ? { authorization } : {}),
        },
        body,
      });
    const wrongSecret = await ask(
      `grant_type=client_credentials&client_id=${CLIENT.clientId}&client_secret=nope`,
    );
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body).toEqual({ error: 'invalid_client' });
    const wrongId = await ask(
      `grant_type=client_credentials&client_id=other&client_secret=${CLIENT.clientSecret}`,
    );
    expect(wrongId.status).toBe(401);
    const wrongBasic = await ask(
      'grant_type=client_credentials',
      `Basic ${Buffer.from(`${CLIENT.clientId}:bad`).toString('base64')}`,
    );
    expect(wrongBasic.status).toBe(401);
    expect(wrongBasic.headers['www-authenticate']).toMatch(/^Basic/);
    const noClient = await ask('grant_type=client_credentials');
    expect(noClient.status).toBe(401);
    const wrongGrant = await ask(
      `grant_type=password&client_id=${CLIENT.clientId}&client_secret=${CLIENT.clientSecret}`,
    );
    expect(wrongGrant.status).toBe(400);
    expect(wrongGrant.body).toEqual({ error: 'unsupported_grant_type' });
    expect(partner.stats().tokens).toEqual({
      issued: 0,
      refused: 5,
      presented: { valid: 0, expired: 0, unknown: 0 },
      leastLifeLeft: null,
    });
  });

  it('expires tokens after the TTL by the injected clock', async () => {
    const clock = new ManualClock('2026-11-26T12:00:00Z');
    const partner = await start({ clock, faults: { tokenTtlSeconds: 60 } });
    const token = await getToken(partner);
    expect((await postBatch(partner, token, 'b-1', [lead('l-1')])).status).toBe(200);
    clock.advance(59_999);
    expect((await postBatch(partner, token, 'b-2', [lead('l-2')])).status).toBe(200);
    clock.advance(1);
    const expired = await postBatch(partner, token, 'b-3', [lead('l-3')]);
    expect(expired.status).toBe(401);
    expect(expired.body).toEqual({ error: 'invalid_token' });
    expect(expired.headers['www-authenticate']).toContain('invalid_token');
    // A new token works again.
    expect((await postBatch(partner, await getToken(partner), 'b-3', [lead('l-3')])).status).toBe(200);
    expect((await postBatch(partner, 'never-issued', 'b-4', [lead('l-4')])).status).toBe(401);
    // The partner's own check of every token presented with a batch, and the least life it saw left.
    expect(partner.stats().tokens).toMatchObject({
      issued: 2,
      presented: { valid: 3, expired: 1, unknown: 1 },
      leastLifeLeft: { lifeLeftMs: 1, lifetimeMs: 60_000 },
    });
  });
});

describe('sandbox partner: POST /api/leads', () => {
  it('accepts a batch and answers per lead', async () => {
    const partner = await start();
    const token = await getToken(partner);
    const reply = await postBatch(partner, token, 'batch-1', [lead('a'), lead('b'), lead('c')]);
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({
      batch: 'batch-1',
      accepted: 3,
      duplicates: 0,
      replayed: false,
      results: [
        { idempotency_key: 'a', status: 'accepted' },
        { idempotency_key: 'b', status: 'accepted' },
        { idempotency_key: 'c', status: 'accepted' },
      ],
    });
    const stats = partner.stats();
    expect(stats.batches).toMatchObject({ received: 1, accepted: 1, replayed: 0, failedByFault: 0 });
    expect(stats.leads).toEqual({ accepted: 3, duplicates: 0 });
  });

  it('replays a known batch key: the same answer, replayed:true, nothing counted twice', async () => {
    const partner = await start();
    const token = await getToken(partner);
    const first = await postBatch(partner, token, 'batch-r', [lead('a'), lead('b')]);
    const again = await postBatch(partner, token, 'batch-r', [lead('a'), lead('b')]);
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ ...(first.body as object), replayed: true });
    const stats = partner.stats();
    expect(stats.batches).toMatchObject({ received: 2, accepted: 1, replayed: 1, replayMismatches: 0 });
    expect(stats.leads).toEqual({ accepted: 2, duplicates: 0 });
    expect(partner.records().batches).toHaveLength(1);
    // A replay that carries other leads is still a replay, and is counted as a client mistake.
    await postBatch(partner, token, 'batch-r', [lead('z')]);
    expect(partner.stats().batches.replayMismatches).toBe(1);
    expect(partner.records().leadBatches.z).toBeUndefined();
  });

  it('reports a lead already accepted under another batch key as a duplicate', async () => {
    const partner = await start();
    const token = await getToken(partner);
    await postBatch(partner, token, 'batch-1', [lead('a'), lead('b')]);
    const second = await postBatch(partner, token, 'batch-2', [lead('b'), lead('c')]);
    expect(second.body).toMatchObject({
      accepted: 1,
      duplicates: 1,
      results: [
        { idempotency_key: 'b', status: 'duplicate' },
        { idempotency_key: 'c', status: 'accepted' },
      ],
    });
    expect(partner.stats().leads).toEqual({ accepted: 3, duplicates: 1 });
    const records = partner.records();
    expect(records.leadBatches).toEqual({ a: ['batch-1'], b: ['batch-1', 'batch-2'], c: ['batch-2'] });
    expect(records.batches.map((b) => [b.batchKey, b.leads, b.duplicates])).toEqual([
      ['batch-1', ['a', 'b'], []],
      ['batch-2', ['b', 'c'], ['b']],
    ]);
  });

  it('answers 401 without a valid token, 400 for a bad request, 422 for an empty or over-size batch', async () => {
    const partner = await start();
    const token = await getToken(partner);
    const noAuth = await request(partner, 'POST', '/api/leads', {
      headers: { 'content-type': 'application/json', 'idempotency-key': 'k' },
      body: { leads: [lead('a')] },
    });
    expect(noAuth.status).toBe(401);
    expect((await postBatch(partner, 'forged-token', 'k', [lead('a')])).status).toBe(401);

    const noKey = await postBatch(partner, token, null, [lead('a')]);
    expect(noKey.status).toBe(400);
    expect(noKey.body).toMatchObject({ error: 'missing_idempotency_key' });
    const badJson = await postBatch(partner, token, 'k', '{"leads": [');
    expect(badJson).toMatchObject({ status: 400, body: { error: 'invalid_json' } });
    const noLeads = await postBatch(partner, token, 'k', { items: [] });
    expect(noLeads).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    const badLead = await postBatch(partner, token, 'k', [
      lead('a'),
      { ...lead('b'), score: 'high' },
    ] as never);
    expect(badLead).toMatchObject({ status: 400, body: { error: 'invalid_lead' } });
    expect((badLead.body as { message: string }).message).toMatch(/^leads\[1\]\.score: /);
    expect((badLead.body as { message: string }).message).not.toContain('high');

    const empty = await postBatch(partner, token, 'k', []);
    expect(empty).toMatchObject({ status: 422, body: { error: 'invalid_batch_size' } });
    const tooMany = Array.from({ length: 101 }, (_, i) => lead(`l-${i}`));
    expect((await postBatch(partner, token, 'k', tooMany)).status).toBe(422);
    expect((await postBatch(partner, token, 'k', tooMany.slice(0, 100))).status).toBe(200);

    const stats = partner.stats();
    expect(stats.batches).toMatchObject({ received: 9, accepted: 1, refused: 8 });
    expect(stats.requests.byStatus).toEqual({ '200': 2, '400': 4, '401': 2, '422': 2 });
  });
});

describe('sandbox partner: faults', () => {
  async function statuses(partner: SandboxPartner, n: number): Promise<number[]> {
    const token = await getToken(partner);
    const agent = keepAlive(partner);
    const out: number[] = [];
    for (let i = 0; i < n; i++)
      out.push((await postBatch(partner, token, `b-${i}`, [lead(`l-${i}`)], agent)).status);
    return out;
  }

  it('errorRate with a seed fails the same requests every run, at about that rate', async () => {
    const n = 80;
    const first = await start({ faults: { errorRate: 0.25, seed: 42 } });
    const a = await statuses(first, n);
    const b = await statuses(await start({ faults: { errorRate: 0.25, seed: 42 } }), n);
    const other = await statuses(await start({ faults: { errorRate: 0.25, seed: 7, errorStatus: 502 } }), n);
    expect(a).toEqual(b);
    const failures = a.filter((s) => s === 503).length;
    expect(failures).toBe(first.stats().batches.failedByFault);
    // Binomial(80, 0.25): mean 20, sd 3.9; the fixed seed makes this exact, the bound says "about".
    expect(failures).toBeGreaterThanOrEqual(10);
    expect(failures).toBeLessThanOrEqual(30);
    expect(a.filter((s) => s !== 503 && s !== 200)).toEqual([]);
    expect(other).not.toEqual(a.map((s) => (s === 503 ? 502 : s)));
    expect(other.filter((s) => s === 502).length).toBeGreaterThan(0);
    expect(await statuses(await start({ faults: { errorRate: 1 } }), 5)).toEqual([503, 503, 503, 503, 503]);
  });

  it('latencyMs delays every partner answer', async () => {
    const partner = await start({ faults: { latencyMs: 250 } });
    let t0 = performance.now();
    expect((await request(partner, 'GET', '/health')).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(245);
    partner.setFaults({ latencyMs: 0 });
    t0 = performance.now();
    expect((await request(partner, 'GET', '/health')).status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(200);
  });

  it('tokenLatencyMs answers the token endpoint late, the token already issued: its life runs meanwhile', async () => {
    const clock = new ManualClock('2026-11-26T12:00:00Z');
    // The virtual sleep moves the sandbox's clock: 1,500 ms pass between issuing and answering.
    const partner = await start({
      clock,
      sleep: clock.sleep,
      faults: { tokenTtlSeconds: 2, tokenLatencyMs: 1500 },
    });
    const before = clock.now();
    const token = await getToken(partner);
    expect(clock.now() - before).toBe(1500);
    expect((await postBatch(partner, token, 'b-1', [lead('l-1')])).status).toBe(200);
    expect(partner.stats().tokens.leastLifeLeft).toEqual({ lifeLeftMs: 500, lifetimeMs: 2000 });
    // Only the token endpoint is slow.
    expect((await request(partner, 'GET', '/health')).status).toBe(200);
    expect(clock.now() - before).toBe(1500);

    // In real time too, and the rest of the partner answers at once.
    const real = await start({ faults: { tokenLatencyMs: 250 } });
    let t0 = performance.now();
    await getToken(real);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(245);
    t0 = performance.now();
    expect((await request(real, 'GET', '/health')).status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(245);
    expect(() => real.setFaults({ tokenLatencyMs: -1 })).toThrow(/tokenLatencyMs/);
  });

  it('hang never answers: the client timeout fires, and close() ends hanging sockets', async () => {
    const partner = await start({ faults: { hang: true } });
    const t0 = performance.now();
    const timedOut = request(partner, 'GET', '/health', { signal: AbortSignal.timeout(300) });
    await expect(timedOut).rejects.toMatchObject({ name: 'AbortError' });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);

    const hanging = request(partner, 'GET', '/health', { signal: AbortSignal.timeout(10_000) });
    const outcome = hanging.then(
      () => 'answered',
      (error: NodeJS.ErrnoException) => error.code,
    );
    // Wait (bounded) until the sandbox holds the request, then close it.
    for (let i = 0; i < 100 && partner.stats().requests.hung < 2; i++) await sleep(10);
    expect(partner.stats().requests.hung).toBe(2);
    const closedAt = performance.now();
    await partner.close();
    expect(await outcome).toBe('ECONNRESET');
    expect(performance.now() - closedAt).toBeLessThan(2_000);
    await partner.close(); // safe twice
  });

  it('rateLimit answers every Nth request 429 with Retry-After in seconds or as an HTTP date', async () => {
    const partner = await start({ faults: { rateLimit: { retryAfter: 7, every: 2 } } });
    const token = await getToken(partner);
    const replies = [];
    for (let i = 0; i < 4; i++) replies.push(await postBatch(partner, token, `b-${i}`, [lead(`l-${i}`)]));
    expect(replies.map((r) => r.status)).toEqual([200, 429, 200, 429]);
    expect(replies[1]?.headers['retry-after']).toBe('7');
    expect(replies[0]?.headers['retry-after']).toBeUndefined();

    const date = new Date(Date.now() + 30_000).toUTCString();
    partner.setFaults({ rateLimit: { retryAfter: date, every: 1 } });
    const limited = await postBatch(partner, token, 'b-x', [lead('l-x')]);
    expect(limited.status).toBe(429);
    expect(limited.headers['retry-after']).toBe(date);
    expect(partner.stats().batches).toMatchObject({ accepted: 2, failedByFault: 3 });
  });

  it('reject401 answers every batch 401, even with a valid token', async () => {
    const partner = await start({ faults: { reject401: true } });
    const token = await getToken(partner);
    const reply = await postBatch(partner, token, 'b', [lead('a')]);
    expect(reply.status).toBe(401);
    expect(reply.headers['www-authenticate']).toContain('Bearer');
    partner.setFaults({ reject401: false });
    expect((await postBatch(partner, token, 'b', [lead('a')])).status).toBe(200);
  });

  it('down destroys every partner connection (health too) until it is lifted', async () => {
    const partner = await start({ faults: { down: true } });
    const failure = (path: string) =>
      request(partner, 'GET', path).then(
        (r) => `answered ${r.status}`,
        (error: NodeJS.ErrnoException) => error.code,
      );
    expect(await failure('/health')).toBe('ECONNRESET');
    expect(
      await request(partner, 'POST', '/oauth/token', { body: 'grant_type=client_credentials' }).then(
        () => 'answered',
        (error: NodeJS.ErrnoException) => error.code,
      ),
    ).toBe('ECONNRESET');
    expect(partner.stats().requests.dropped).toBe(2);
    // The admin endpoints still answer, so an operator can lift the fault over HTTP.
    const lifted = await request(partner, 'POST', '/faults', { body: { down: false } });
    expect(lifted.body).toMatchObject({ down: false });
    expect(await failure('/health')).toBe('answered 200');
  });

  it('failNext fails the next N batches with 503, then recovers', async () => {
    const partner = await start({ faults: { failNext: 2 } });
    const token = await getToken(partner);
    const got = [];
    for (let i = 0; i < 4; i++) got.push((await postBatch(partner, token, 'same-key', [lead('a')])).status);
    expect(got).toEqual([503, 503, 200, 200]);
    expect(partner.faults().failNext).toBe(0);
    expect(partner.stats().batches).toMatchObject({ accepted: 1, replayed: 1, failedByFault: 2 });
  });

  it('permanentStatus refuses every well-formed batch with that status', async () => {
    const partner = await start({ faults: { permanentStatus: 422 } });
    const token = await getToken(partner);
    for (const key of ['b-1', 'b-2']) {
      const reply = await postBatch(partner, token, key, [lead(key)]);
      expect(reply).toMatchObject({ status: 422, body: { error: 'rejected' } });
    }
    expect(partner.stats().leads.accepted).toBe(0);
    expect(partner.records().batches).toEqual([]);
  });

  it('refuses an invalid fault and changes nothing', async () => {
    const partner = await start();
    expect(() => partner.setFaults({ errorRate: 1.5 })).toThrow(/errorRate/);
    try {
      partner.setFaults({ latencyMs: -1 });
      expect.unreachable();
    } catch (error) {
      expect(isSandboxError(error) && error.code).toBe('INVALID_FAULTS');
    }
    const overHttp = await request(partner, 'POST', '/faults', { body: { bogus: true } });
    expect(overHttp.status).toBe(400);
    expect(partner.faults()).toMatchObject({ errorRate: 0, latencyMs: 0 });
  });
});

describe('sandbox partner: admin endpoints', () => {
  it('GET /stats, GET /records, POST /faults and POST /reset', async () => {
    const partner = await start();
    const token = await getToken(partner);
    expect((await request(partner, 'GET', '/health')).body).toEqual({ status: 'ok' });
    const before = Date.now();
    await postBatch(partner, token, 'batch-1', [lead('a')]);

    const stats = (await request(partner, 'GET', '/stats')).body as ReturnType<SandboxPartner['stats']>;
    expect(stats.requests).toMatchObject({
      total: 3,
      byPath: { '/oauth/token': 1, '/health': 1, '/api/leads': 1 },
      byStatus: { '200': 3 },
    });
    expect(stats.tokens.issued).toBe(1);
    expect(stats.health.checks).toBe(1);
    expect(stats.batches).toMatchObject({ received: 1, accepted: 1, replayed: 0, failedByFault: 0 });
    expect(stats.requestStarts).toHaveLength(3);
    expect(stats.requestStarts[2]).toBeGreaterThanOrEqual(before);
    expect(stats).toEqual(partner.stats()); // admin requests are not counted

    const records = (await request(partner, 'GET', '/records')).body;
    expect(records).toEqual({
      batches: [{ batchKey: 'batch-1', receivedAt: stats.requestStarts[2], leads: ['a'], duplicates: [] }],
      leadBatches: { a: ['batch-1'] },
    });

    const faults = await request(partner, 'POST', '/faults', { body: { errorRate: 1, errorStatus: 500 } });
    expect(faults.body).toMatchObject({ errorRate: 1, errorStatus: 500 });
    expect((await postBatch(partner, token, 'batch-2', [lead('b')])).status).toBe(500);

    expect((await request(partner, 'POST', '/reset')).body).toEqual({ status: 'reset' });
    expect(partner.faults().errorRate).toBe(0);
    expect(partner.stats().requests.total).toBe(0);
    expect(partner.records()).toEqual({ batches: [], leadBatches: {} });
    // After a reset the batch key is new again and the token still works.
    expect(
      ((await postBatch(partner, token, 'batch-1', [lead('a')])).body as { replayed: boolean }).replayed,
    ).toBe(false);
  });
});

describe('sandbox partner: TLS', () => {
  it('caches its self-signed certificate (key 0600) so restarts keep the same CA', async () => {
    const first = await start();
    const second = await start();
    expect(second.caPem).toBe(first.caPem);
    expect(first.caFile).toBe(join(certDir, CERT_FILE));
    expect(readFileSync(join(certDir, CERT_FILE), 'utf8')).toBe(first.caPem);
    expect(statSync(join(certDir, KEY_FILE)).mode & 0o777).toBe(0o600);
    expect(first.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    // The certificate names localhost too.
    const byName = await request(
      { ...first, url: first.url.replace('127.0.0.1', 'localhost') },
      'GET',
      '/health',
    );
    expect(byName.status).toBe(200);
  });

  it('refuses a damaged cached certificate instead of silently replacing the CA', async () => {
    const dir = tempDir('valhalla-sandbox-cert-');
    await (await start({ certDir: dir })).close();
    writeFileSync(join(dir, KEY_FILE), 'not a key');
    await expect(startSandboxPartner({ certDir: dir })).rejects.toMatchObject({
      code: 'CERTIFICATE_INVALID',
    });
  });

  it('is refused by a client that does not trust its certificate', async () => {
    const partner = await start();
    const refused = request(partner, 'GET', '/health', { ca: null });
    await expect(refused).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    expect((await request(partner, 'GET', '/health')).status).toBe(200);
  });

  it('a TLS-1.1-only sandbox fails the handshake of a minVersion TLSv1.2 client, and serves a TLS 1.1 one', async () => {
    const partner = await start({ tlsMaxVersion: 'TLSv1.1' });
    const connect = (options: tls.ConnectionOptions) =>
      new Promise<string>((resolve) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: partner.port,
          ca: partner.caPem ?? '',
          ...options,
        });
        socket.setTimeout(5_000, () => socket.destroy(new Error('timeout')));
        socket.once('secureConnect', () => {
          resolve(`connected ${socket.getProtocol()}`);
          socket.destroy();
        });
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      });
    expect(await connect({ minVersion: 'TLSv1.2' })).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    expect(
      await connect({ minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
    ).toBe('connected TLSv1.1');
  });

  it('serves plain HTTP on loopback only, when asked', async () => {
    const partner = await start({ plainHttp: true });
    expect(partner.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(partner.caPem).toBeNull();
    expect((await request(partner, 'GET', '/health')).body).toEqual({ status: 'ok' });
    await expect(startSandboxPartner({ plainHttp: true, host: '0.0.0.0' })).rejects.toMatchObject({
      code: 'INVALID_OPTIONS',
    });
  });
});

describe('valhalla sandbox-partner', () => {
  beforeAll(() => {
    if (!existsSync(join(REPO_ROOT, 'dist', 'src', 'cli', 'commands', 'sandbox.js'))) {
      throw new Error('dist/ has no sandbox command: run `npm run build` first (`npm test` does)');
    }
  });

  it('where no installation is, refuses to make a folder for its certificate, naming the options', async () => {
    const cwd = tempDir();
    const dataDir = join(cwd, 'data');
    const result = await runBinary(['sandbox-partner', '--port', '0'], {
      cwd,
      env: { VALHALLA_DATA_DIR: dataDir },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no installation at ${dataDir}`);
    expect(result.stderr).toContain('--cert-dir DIR');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('prints its URLs, CA file and credentials, serves, and stops cleanly on SIGTERM', async () => {
    const cwd = tempDir();
    const dataDir = join(cwd, 'data');
    // The installation's data folder (as `valhalla init` leaves it): the certificate is kept under it.
    mkdirSync(dataDir, { mode: 0o700 });
    const child = spawn(
      process.execPath,
      [BIN, 'sandbox-partner', '--port', '0', '--json', '--client-id', 'cli-client', '--token-ttl', '90'],
      { cwd, env: { PATH: process.env.PATH, VALHALLA_DATA_DIR: dataDir }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    try {
      const listening = JSON.parse(await firstLine(child)) as Record<string, string>;
      expect(listening).toMatchObject({ event: 'listening', clientId: 'cli-client' });
      expect(listening.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(listening.tokenUrl).toBe(`${listening.url}/oauth/token`);
      expect(listening.caFile).toBe(join(dataDir, 'sandbox', CERT_FILE));
      expect(listening.clientSecret).toMatch(/^\S{16,}$/);

      const ca = readFileSync(listening.caFile as string, 'utf8');
      const view = { url: listening.url, caPem: ca } as SandboxPartner;
      expect((await request(view, 'GET', '/health')).status).toBe(200);
      const token = await request(view, 'POST', '/oauth/token', {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=client_credentials&client_id=cli-client&client_secret=${listening.clientSecret}`,
      });
      expect(token.body).toMatchObject({ expires_in: 90 });

      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      const lines = (await collected(child)).trim().split('\n');
      expect(JSON.parse(lines.at(-1) ?? '')).toMatchObject({
        event: 'stopped',
        signal: 'SIGTERM',
        requests: 2,
      });
    } finally {
      clearTimeout(killer);
      child.kill('SIGKILL');
    }
  });
});

const output = new WeakMap<ChildProcess, { text: string; done: Promise<void> }>();

function capture(child: ChildProcess): { text: string; done: Promise<void> } {
  let entry = output.get(child);
  if (entry === undefined) {
    const state = { text: '', done: Promise.resolve() };
    state.done = new Promise((resolve) => child.stdout?.on('end', () => resolve()));
    child.stdout?.on('data', (chunk: Buffer) => {
      state.text += chunk.toString('utf8');
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.once('exit', (code) => {
      if (code !== 0 && stderr !== '') console.error(`sandbox-partner stderr: ${stderr}`);
    });
    entry = state;
    output.set(child, entry);
  }
  return entry;
}

/** The child's first line of output (bounded: the child is killed by the test's timer). */
async function firstLine(child: ChildProcess): Promise<string> {
  const state = capture(child);
  for (let i = 0; i < 1_000; i++) {
    const newline = state.text.indexOf('\n');
    if (newline >= 0) return state.text.slice(0, newline);
    if (child.exitCode !== null) break;
    await sleep(10);
  }
  throw new Error(`sandbox-partner printed no line (exit ${child.exitCode}): ${state.text}`);
}

async function collected(child: ChildProcess): Promise<string> {
  const state = capture(child);
  await state.done;
  return state.text;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
