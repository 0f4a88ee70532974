/**
 * The partner client against REAL local servers (node:https with a throwaway CA on 127.0.0.1):
 * TLS floor and CA pinning, timeouts, size cap, status classification, token refresh, concurrency,
 * and the rate limit measured where it matters: at the server, on arrival.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo, Server } from 'node:net';
import { generate } from 'selfsigned';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Clock, ManualClock, systemClock } from '../../src/clock/index.js';
import {
  createPartnerClient,
  isOutboundError,
  type PartnerClient,
  type PartnerClientOptions,
  type PartnerLead,
} from '../../src/outbound/index.js';
import { type ProfileLead, parsePartnerProfile } from '../../src/partner/index.js';
import {
  type SandboxPartner,
  type SandboxPartnerOptions,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { tempDir } from '../support/tmp.js';
import { NOW } from '../support/world.js';

// The mutable CommonJS object (an ESM namespace is read-only): one test weakens its process-wide defaults.
const tls = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');

interface Pki {
  caPem: string;
  otherCaPem: string;
  key: string;
  cert: string;
}

let pki: Pki;

async function makeCa(name: string) {
  return generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
}

beforeAll(async () => {
  const ca = await makeCa('Valhalla test CA');
  const other = await makeCa('Some other CA');
  const leaf = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 7, ip: '127.0.0.1' },
          { type: 2, value: 'localhost' },
        ],
      },
    ],
  });
  pki = { caPem: ca.cert, otherCaPem: other.cert, key: leaf.private, cert: leaf.cert };
});

interface Seen {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** performance.now() when the request arrived (headers parsed). */
  at: number;
  protocol: string | null;
}

type Handler = (seen: Seen, res: ServerResponse) => void;

interface TestServer {
  base: string;
  port: number;
  seen: Seen[];
  maxInFlight: number;
  openConnections(): Promise<number>;
  handle(handler: Handler): void;
  close(): Promise<void>;
}

const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  // Clients first, then servers: every handle the test opened is released.
  for (const item of open.splice(0).reverse()) await item.close();
});

/** A real server on 127.0.0.1 with a default partner: token endpoint, health, leads. */
async function startServer(
  kind: 'https' | 'http' = 'https',
  tls: Record<string, unknown> = {},
): Promise<TestServer> {
  let handler: Handler = defaultPartner();
  const seen: Seen[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const at = performance.now();
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => {
      inFlight--;
    });
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const socket = req.socket as { getProtocol?: () => string | null };
      const entry: Seen = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at,
        protocol: socket.getProtocol?.() ?? null,
      };
      seen.push(entry);
      handler(entry, res);
    });
  };
  const server: Server =
    kind === 'https'
      ? createHttpsServer({ key: pki.key, cert: pki.cert, ...tls }, onRequest)
      : createHttpServer(onRequest);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const result: TestServer = {
    base: `${kind}://127.0.0.1:${port}`,
    port,
    seen,
    get maxInFlight() {
      return maxInFlight;
    },
    openConnections: () =>
      new Promise((resolve, reject) => server.getConnections((e, n) => (e ? reject(e) : resolve(n)))),
    handle(next) {
      handler = next;
    },
    close: async () => {
      (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  open.push(result);
  return result;
}

let tokenCounter = 0;

/** The partner contract: token, health, leads (accepts everything). */
function defaultPartner(overrides: Partial<Record<'token' | 'health' | 'leads', Handler>> = {}): Handler {
  return (seen, res) => {
    if (seen.path === '/oauth/token') {
      if (overrides.token) return overrides.token(seen, res);
      tokenCounter++;
      return json(res, 200, {
        access_token: `token-${tokenCounter}`,
        token_type: 'Bearer',
        expires_in: 3600,
      });
    }
    if (seen.path === '/health')
      return overrides.health ? overrides.health(seen, res) : json(res, 200, { ok: true });
    if (seen.path === '/api/leads') {
      if (overrides.leads) return overrides.leads(seen, res);
      const leads = (JSON.parse(seen.body) as { leads: PartnerLead[] }).leads;
      return json(res, 200, {
        accepted: leads.length,
        duplicates: 0,
        replayed: false,
        results: leads.map((l) => ({ idempotency_key: l.idempotency_key, status: 'accepted' })),
      });
    }
    json(res, 404, { error: 'not_found' });
  };
}

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function client(server: { base: string }, overrides: Partial<PartnerClientOptions> = {}): PartnerClient {
  const created = createPartnerClient({
    baseUrl: server.base,
    tokenUrl: `${server.base}/oauth/token`,
    clientId: 'valhalla-test',
    clientSecret: 's3cret-value',
    caPem: pki.caPem,
    allowPlainHttpLoopback: false,
    // 1 start per 200 ms (+10 ms margin): at most 5 in any second, and quick tests.
    rateLimitPerSecond: 1,
    rateWindowMs: 200,
    maxConcurrent: 5,
    timeoutMs: 2000,
    clock: new ManualClock(NOW) as Clock,
    tokenRefreshMarginMs: 0,
    ...overrides,
  });
  open.push(created);
  return created;
}

const PII = { name: 'Ada Lovelace', email: 'ada.lovelace@example.com', phone: '4915112345678' };

function lead(n: number): ProfileLead {
  return {
    lead_key: `lead-key-${n}`,
    external_id: `ext-${n}`,
    name: PII.name,
    email: PII.email,
    phone: PII.phone,
    company: 'Analytical Engines Ltd',
    score: 87,
    source_ts: Date.parse('2026-11-19T08:00:00.000Z'),
    value: 1200,
    attributes: {},
  };
}

const batch = (key = 'batch-1', n = 2) => ({
  batchKey: key,
  leads: Array.from({ length: n }, (_, i) => lead(i)),
});

function expectNoPii(text: string): void {
  for (const value of [...Object.values(PII), 'Lovelace', 'ada.']) expect(text).not.toContain(value);
}

/** The most arrivals in any half-open 1,000 ms window. */
function mostInAnySecond(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= 1000) lo++;
    most = Math.max(most, hi - lo + 1);
  }
  return most;
}

async function freePort(): Promise<number> {
  const server = createHttpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('partner client under a profile of the operator’s own', () => {
  /** A partner with its own paths, an API key in a header, records under `people`, answers per record. */
  const acme = parsePartnerProfile(
    JSON.stringify({
      name: 'acme',
      description: 'A partner with an API key, its own paths and per-record answers.',
      endpoints: {
        leads: { method: 'POST', path: '/v1/people/bulk' },
        health: { method: 'GET', path: '/v1/ping' },
      },
      auth: { kind: 'api_key', header: 'X-Api-Key' },
      idempotency: { header: 'X-Request-Id' },
      batch: { maxLeads: 10, envelope: 'people' },
      fields: [
        { to: 'ref', from: 'lead_key', type: 'string', required: true },
        { to: 'contact.mail', from: 'email', type: 'string', required: true },
        { to: 'contact.fullName', from: 'name', type: 'string', required: true },
        { to: 'rating', from: 'score', type: 'integer', required: true },
        { to: 'source', from: { const: 'valhalla' }, type: 'string' },
      ],
      answer: {
        httpStatuses: [200, 207],
        results: [
          {
            path: 'items',
            match: { by: 'field', path: 'ref', value: 'lead_key' },
            status: { path: 'result', accepted: ['created'], duplicate: ['exists'], refused: ['rejected'] },
            reason: 'message',
          },
        ],
        withoutResults: 'unknown',
      },
    }),
    'acme.json',
  );

  it('sends the API key in its header (no token request), to the profile’s paths, the body as mapped; reads each record’s answer', async () => {
    const server = await startServer();
    server.handle((seen, res) => {
      if (seen.headers['x-api-key'] !== 'acme-key-0123456789') return json(res, 401, { error: 'bad key' });
      if (seen.path === '/v1/ping') return json(res, 200, { ok: true });
      if (seen.path !== '/v1/people/bulk') return json(res, 404, { error: 'not_found' });
      const people = (JSON.parse(seen.body) as { people: { ref: string }[] }).people;
      json(res, 207, {
        items: people.map((p, i) =>
          i === 0
            ? { ref: p.ref, result: 'created' }
            : i === 1
              ? { ref: p.ref, result: 'exists', message: 'already known' }
              : { ref: p.ref, result: 'rejected', message: 'rating out of range' },
        ),
      });
    });
    const partner = client(server, {
      profile: acme,
      tokenUrl: null,
      clientId: null,
      clientSecret: null,
      apiKey: 'acme-key-0123456789',
    });
    expect(await partner.ensureToken(60_000)).toMatchObject({ kind: 'ok', refreshed: false });
    expect(await partner.health()).toMatchObject({ ok: true, status: 200 });
    const outcome = await partner.sendBatch(batch('acme-batch-1', 3));
    expect(outcome).toMatchObject({
      kind: 'accepted',
      status: 207,
      leads: [
        { leadKey: 'lead-key-0', outcome: 'accepted', reason: null },
        { leadKey: 'lead-key-1', outcome: 'duplicate', reason: 'already known' },
        { leadKey: 'lead-key-2', outcome: 'refused', reason: 'rating out of range' },
      ],
      answerProblems: [],
    });
    expect(server.seen.map((s) => `${s.method} ${s.path}`)).toEqual(['GET /v1/ping', 'POST /v1/people/bulk']);
    const post = server.seen[1]!;
    expect(post.headers['x-request-id']).toBe('acme-batch-1');
    expect(post.headers.authorization).toBeUndefined();
    expect(JSON.parse(post.body).people[0]).toEqual({
      ref: 'lead-key-0',
      contact: { mail: PII.email, fullName: PII.name },
      rating: 87,
      source: 'valhalla',
    });
  });

  it('a refused API key is an auth outcome that says a resend uses the same key; missing credentials are refused at creation', async () => {
    const server = await startServer();
    server.handle((_seen, res) => json(res, 401, { error: 'bad key' }));
    const partner = client(server, { profile: acme, tokenUrl: null, apiKey: 'wrong-key-0000' });
    expect(await partner.sendBatch(batch('acme-batch-2', 1))).toMatchObject({
      kind: 'auth',
      status: 401,
      message: expect.stringContaining('partner refused the API key (HTTP 401); a resend uses the same one'),
    });
    expect(() => client(server, { profile: acme, tokenUrl: null })).toThrow(
      "apiKey is required (the profile's auth is api_key)",
    );
    expect(() => client(server, { profile: acme, apiKey: 'two words' })).toThrow(
      'apiKey must be 1 to 4,096 printable ASCII characters without spaces',
    );
  });
});

describe('partner client over TLS', () => {
  it('sends a batch over TLS ≥ 1.2 with the pinned CA: token, bearer, idempotency key, parsed result', async () => {
    const server = await startServer();
    const createdAt = performance.now();
    const partner = client(server);
    const health = await partner.health();
    expect(health).toMatchObject({ ok: true, status: 200 });
    const outcome = await partner.sendBatch(batch('batch-abc', 2));
    expect(outcome).toMatchObject({
      kind: 'accepted',
      status: 200,
      bodyIssue: null,
      body: {
        accepted: 2,
        duplicates: 0,
        replayed: false,
        results: [
          { idempotency_key: 'lead-key-0', status: 'accepted' },
          { idempotency_key: 'lead-key-1', status: 'accepted' },
        ],
      },
    });
    expect(server.seen.map((s) => `${s.method} ${s.path}`)).toEqual([
      'GET /health',
      'POST /oauth/token',
      'POST /api/leads',
    ]);
    const [, token, leads] = server.seen;
    expect(new URLSearchParams(token!.body).get('grant_type')).toBe('client_credentials');
    expect(new URLSearchParams(token!.body).get('client_id')).toBe('valhalla-test');
    expect(new URLSearchParams(token!.body).get('client_secret')).toBe('s3cret-value');
    expect(leads!.headers.authorization).toMatch(/^Bearer token-\d+$/);
    expect(leads!.headers['idempotency-key']).toBe('batch-abc');
    // The body as the product's contract has always written it (the shipped default profile), key order included.
    const wire = (n: number) => ({
      idempotency_key: `lead-key-${n}`,
      external_id: `ext-${n}`,
      name: PII.name,
      email: PII.email,
      phone: PII.phone,
      company: 'Analytical Engines Ltd',
      score: 87,
      source_timestamp: '2026-11-19T08:00:00.000Z',
      value: 1200,
    });
    expect(leads!.body).toBe(JSON.stringify({ leads: [wire(0), wire(1)] }));
    for (const s of server.seen) expect(['TLSv1.2', 'TLSv1.3']).toContain(s.protocol);
    // No state survives a restart: nothing starts within a window (200 ms) of the client's creation.
    expect(server.seen[0]!.at - createdAt).toBeGreaterThanOrEqual(200);
  });

  it('refuses a server that speaks only TLS 1.1, even with the process-wide TLS defaults weakened', async () => {
    const server = await startServer('https', {
      minVersion: 'TLSv1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT:@SECLEVEL=0',
    });
    // Node's defaults already refuse TLS 1.1; weaken them (as `--tls-min-v1.0` and a SECLEVEL=0
    // cipher list would) so that only the floor pinned in the client's own code stands in the way.
    const saved = { min: tls.DEFAULT_MIN_VERSION, ciphers: tls.DEFAULT_CIPHERS };
    tls.DEFAULT_MIN_VERSION = 'TLSv1';
    tls.DEFAULT_CIPHERS = 'DEFAULT:@SECLEVEL=0';
    try {
      // Control: a client with no floor of its own now gets through, over TLS 1.1.
      const legacyProtocol = await new Promise<string | null>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: server.port, ca: pki.caPem });
        socket.once('secureConnect', () => {
          resolve(socket.getProtocol());
          socket.destroy();
        });
        socket.once('error', reject);
      });
      expect(legacyProtocol).toBe('TLSv1.1');

      const partner = client(server);
      const health = await partner.health();
      expect(health).toMatchObject({
        ok: false,
        code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
        tlsVersionRefused: true,
        error: `the partner at 127.0.0.1:${server.port} does not offer TLS 1.2 or newer (ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION): refused; nothing was sent`,
      });
      const outcome = await partner.sendBatch(batch());
      expect(outcome).toMatchObject({
        kind: 'permanent',
        stage: 'token',
        code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
        tlsVersionRefused: true,
      });
      expect(server.seen).toHaveLength(0);
    } finally {
      tls.DEFAULT_MIN_VERSION = saved.min;
      tls.DEFAULT_CIPHERS = saved.ciphers;
    }
  });

  it('refuses the server without the CA, and with a different CA pinned', async () => {
    const server = await startServer();
    for (const caPem of [undefined, pki.otherCaPem]) {
      const partner = client(server, { caPem });
      const health = await partner.health();
      expect(health.ok).toBe(false);
      expect(health.error).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
      const outcome = await partner.sendBatch(batch());
      expect(outcome).toMatchObject({
        kind: 'permanent',
        stage: 'token',
        message: expect.stringContaining('TLS'),
      });
      await partner.close();
    }
    expect(server.seen).toHaveLength(0);
  });

  it('refuses http:// to a host that is not loopback at creation; allows loopback http only when told', async () => {
    const plain = await startServer('http');
    let caught: unknown;
    try {
      client({ base: 'http://192.0.2.10:8080' }, { allowPlainHttpLoopback: true });
    } catch (error) {
      caught = error;
    }
    expect(isOutboundError(caught, 'INSECURE_URL')).toBe(true);
    expect(() => client(plain, { allowPlainHttpLoopback: false })).toThrow(
      expect.objectContaining({ code: 'INSECURE_URL' }),
    );
    const partner = client(plain, { allowPlainHttpLoopback: true });
    expect(await partner.sendBatch(batch())).toMatchObject({ kind: 'accepted', status: 200 });
    expect(plain.seen.map((s) => s.protocol)).toEqual([null, null]);
  });
});

describe('failures come back as data', () => {
  it('aborts a request to a hanging server at timeoutMs (before headers, and mid-body)', async () => {
    const server = await startServer();
    let mode: 'silent' | 'stall-body' = 'silent';
    server.handle(
      defaultPartner({
        leads: (_seen, res) => {
          if (mode === 'stall-body') {
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
            res.write('{"accepted":');
          }
          // …and never finish.
        },
      }),
    );
    const partner = client(server, { timeoutMs: 300 });
    await partner.ensureToken(0);
    for (const next of ['silent', 'stall-body'] as const) {
      mode = next;
      const started = performance.now();
      const outcome = await partner.sendBatch(batch(`hang-${next}`));
      const elapsed = performance.now() - started;
      expect(outcome).toMatchObject({
        kind: 'retryable',
        code: 'UND_ERR_ABORTED',
        retryAfterMs: null,
        stage: 'batch',
        message: expect.stringContaining('no complete answer within 300 ms'),
      });
      expect(outcome.kind === 'retryable' && outcome.ms).toBeGreaterThanOrEqual(295);
      expect(outcome.kind === 'retryable' && outcome.ms).toBeLessThan(1000);
      // The wait for a rate permit (≤ 210 ms) comes before the deadline starts.
      expect(elapsed).toBeLessThan(1500);
    }
  });

  it('caps the response size: a bigger body is discarded and reported, never parsed', async () => {
    const server = await startServer();
    let mode: 'declared' | 'chunked' | 'exact' | 'token-huge' = 'declared';
    const big = JSON.stringify({ accepted: 1, padding: 'x'.repeat(2 * 1024 * 1024) });
    const exact = JSON.stringify({ accepted: 1, padding: 'y'.repeat(1000 - 30) });
    server.handle(
      defaultPartner({
        leads: (_seen, res) => {
          if (mode === 'declared') return json(res, 200, JSON.parse(big));
          if (mode === 'exact') {
            res.writeHead(200, { 'content-type': 'application/json' });
            return res.end(exact);
          }
          res.writeHead(200, { 'content-type': 'application/json' }); // chunked: no length up front
          res.write(big.slice(0, 600_000));
          res.end(big.slice(600_000));
        },
        health: (_seen, res) => json(res, 200, { padding: 'z'.repeat(3 * 1024 * 1024) }),
        token: (_seen, res) =>
          mode === 'token-huge'
            ? json(res, 200, {
                access_token: 'a'.repeat(2 * 1024 * 1024),
                token_type: 'Bearer',
                expires_in: 60,
              })
            : json(res, 200, { access_token: 'fine', token_type: 'Bearer', expires_in: 3600 }),
      }),
    );
    const partner = client(server);
    for (const next of ['declared', 'chunked'] as const) {
      mode = next;
      expect(await partner.sendBatch(batch(next))).toMatchObject({
        kind: 'accepted',
        status: 200,
        body: null,
        bodyIssue: expect.stringContaining('size cap'),
      });
    }
    // The health check never reads its body: a huge one does not matter.
    expect(await partner.health()).toMatchObject({ ok: true, status: 200 });

    const small = client(server, { maxResponseBytes: exact.length });
    mode = 'exact';
    expect(await small.sendBatch(batch('exact'))).toMatchObject({ kind: 'accepted', body: { accepted: 1 } });
    const smaller = client(server, { maxResponseBytes: exact.length - 1 });
    expect(await smaller.sendBatch(batch('exact'))).toMatchObject({ kind: 'accepted', body: null });

    mode = 'token-huge';
    const fresh = client(server);
    expect(await fresh.sendBatch(batch())).toMatchObject({
      kind: 'permanent',
      stage: 'token',
      status: 200,
      message: expect.stringContaining('size cap'),
    });
  });

  it('classifies 503, 429 with Retry-After (seconds and date), 401, 422 and a malformed 2xx', async () => {
    const server = await startServer();
    const script: ((res: ServerResponse) => void)[] = [
      (res) => json(res, 503, { error: 'maintenance' }),
      (res) => json(res, 429, { error: 'slow down' }, { 'retry-after': '7' }),
      (res) => json(res, 429, {}, { 'retry-after': new Date(NOW + 30_000).toUTCString() }),
      (res) => json(res, 503, {}, { 'retry-after': 'whenever' }),
      (res) => json(res, 401, { error: 'invalid_token' }),
      (res) => json(res, 200, { accepted: 2 }),
      // The partner echoes the lead back: none of it may reach a message.
      (res) => json(res, 422, { error: `invalid lead ${PII.email} (${PII.name}, ${PII.phone})` }),
      (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('not json');
      },
      (res) => json(res, 202, { accepted: 'two' }),
    ];
    let call = 0;
    server.handle(defaultPartner({ leads: (_seen, res) => script[call++]!(res) }));
    const partner = client(server);
    const outcomes = [];
    for (let i = 0; i < script.length; i++) outcomes.push(await partner.sendBatch(batch(`b-${i}`)));
    expect(outcomes).toMatchObject([
      { kind: 'retryable', status: 503, retryAfterMs: null, stage: 'batch' },
      { kind: 'retryable', status: 429, retryAfterMs: 7000 },
      { kind: 'retryable', status: 429, retryAfterMs: 30_000 },
      { kind: 'retryable', status: 503, retryAfterMs: null },
      { kind: 'auth', status: 401 },
      { kind: 'accepted', status: 200, body: { accepted: 2 } },
      { kind: 'permanent', status: 422, stage: 'batch' },
      { kind: 'accepted', status: 200, body: null, bodyIssue: 'response body is not JSON' },
      { kind: 'accepted', status: 202, body: null, bodyIssue: 'response body is not the contract shape' },
    ]);
    for (const outcome of outcomes) {
      if ('message' in outcome) expectNoPii(outcome.message);
    }
    // The 401 invalidated the token: the next batch fetched a fresh one and used it.
    const tokens = server.seen.filter((s) => s.path === '/oauth/token');
    expect(tokens).toHaveLength(2);
    const auths = server.seen.filter((s) => s.path === '/api/leads').map((s) => s.headers.authorization);
    expect(auths[4]).not.toBe(auths[5]);
    expect(new Set(auths.slice(0, 5)).size).toBe(1);
    expect(new Set(auths.slice(5)).size).toBe(1);
  });

  it('connection refused is retryable, for the token and the batch alike; the health check says why', async () => {
    const port = await freePort();
    const partner = client({ base: `https://127.0.0.1:${port}` });
    const outcome = await partner.sendBatch(batch());
    expect(outcome).toMatchObject({
      kind: 'retryable',
      code: 'ECONNREFUSED',
      stage: 'token',
      retryAfterMs: null,
    });
    const health = await partner.health();
    expect(health).toMatchObject({ ok: false, error: expect.stringContaining('ECONNREFUSED') });
    expect(health.status).toBeUndefined();
    // A separate token server that works, and a partner that is down: the batch stage fails.
    const auth = await startServer();
    const split = client({ base: `https://127.0.0.1:${port}` }, { tokenUrl: `${auth.base}/oauth/token` });
    expect(await split.sendBatch(batch())).toMatchObject({
      kind: 'retryable',
      code: 'ECONNREFUSED',
      stage: 'batch',
    });
  });

  it('a refused client credential is permanent, and the secret is never in the message', async () => {
    const server = await startServer();
    server.handle(defaultPartner({ token: (_seen, res) => json(res, 401, { error: 'invalid_client' }) }));
    const partner = client(server);
    const outcome = await partner.ensureToken(60_000);
    expect(outcome).toMatchObject({ kind: 'permanent', status: 401, stage: 'token' });
    expect(outcome.kind === 'permanent' && outcome.message).not.toContain('s3cret');
    expect(server.seen.filter((s) => s.path === '/api/leads')).toHaveLength(0);
  });
});

describe('token refresh', () => {
  it('a short-lived token is used in the first half of its life, then refreshed (expires_in 2, 5 s timeout)', async () => {
    const server = await startServer();
    let issued = 0;
    server.handle(
      defaultPartner({
        token: (_seen, res) => {
          issued++;
          json(res, 200, { access_token: `short-${issued}`, token_type: 'bearer', expires_in: 2 });
        },
      }),
    );
    const clock = new ManualClock(NOW);
    // 2 s tokens cannot outlive a 5 s request: the first half of their life is what is used.
    const partner = client(server, { clock, timeoutMs: 5000 });
    expect(await partner.ensureToken(0)).toEqual({ kind: 'ok', expiresAtMs: NOW + 2000, refreshed: true });
    // Asked ahead for a cycle (as the engine does): no token lives that long; this one is in its first half.
    expect(await partner.ensureToken(70_000)).toEqual({
      kind: 'ok',
      expiresAtMs: NOW + 2000,
      refreshed: false,
    });
    clock.advance(1000); // half its life left: the batch uses it
    expect(await partner.sendBatch(batch('half'))).toMatchObject({ kind: 'accepted' });
    expect(issued).toBe(1);
    clock.advance(1); // past half its life: the next batch gets a fresh token first
    expect(await partner.sendBatch(batch('past-half'))).toMatchObject({ kind: 'accepted' });
    expect(issued).toBe(2);
    const leads = server.seen.filter((s) => s.path === '/api/leads');
    expect(leads.map((s) => s.headers.authorization)).toEqual(['Bearer short-1', 'Bearer short-2']);
  });

  it('a token that ages past the rule while the batch waits for a rate permit is not sent: one fresh token, then a retryable failure', async () => {
    const server = await startServer();
    let issued = 0;
    let expiresIn = 2;
    server.handle(
      defaultPartner({
        token: (_seen, res) => {
          issued++;
          json(res, 200, { access_token: `t-${issued}`, token_type: 'Bearer', expires_in: expiresIn });
        },
      }),
    );
    // One start per 1,000 ms window, waited on a virtual clock that is also the wall clock: the batch
    // waits 1,005 ms for its permit after the token's, and a token of 2 s then has 995 ms left.
    const clock = new ManualClock(NOW);
    const partner = client(server, {
      clock,
      monotonicNow: () => clock.now(),
      limiterSleep: clock.sleep,
      rateLimitPerSecond: 1,
      rateWindowMs: 1000,
      timeoutMs: 5000,
    });
    const outcome = await partner.sendBatch(batch('aged'));
    expect(outcome).toEqual({
      kind: 'retryable',
      retryAfterMs: null,
      stage: 'token',
      ms: 1005,
      message:
        'the token had 995 ms of its 2000 ms left once the batch could start (after waiting 1005 ms for a ' +
        'connection slot and a rate permit), under the 1000 ms it needs; a fresh token aged the same way: ' +
        'the batch was not sent',
    });
    // The first token, and one fresh one after the batch gave its turn back: no leads request.
    expect(server.seen.map((s) => s.path)).toEqual(['/oauth/token', '/oauth/token']);
    expect(issued).toBe(2);

    // 3 s tokens: after the same wait, 1,995 ms of 3,000 are left, over half: the batch goes out.
    expiresIn = 3;
    expect(await partner.sendBatch(batch('in-time'))).toMatchObject({ kind: 'accepted' });
    expect(server.seen.map((s) => s.path).slice(2)).toEqual(['/oauth/token', '/api/leads']);
    expect(server.seen.at(-1)!.headers.authorization).toBe('Bearer t-3');
  });
});

/** A sandbox partner (the real HTTPS partner of the product's tests), closed after the test. */
async function sandbox(options: SandboxPartnerOptions = {}): Promise<SandboxPartner> {
  const partner = await startSandboxPartner({
    clientId: 'valhalla-test',
    clientSecret: 's3cret-value',
    ...options,
  });
  open.push(partner);
  return partner;
}

function sandboxClient(
  partner: SandboxPartner,
  overrides: Partial<PartnerClientOptions> = {},
): PartnerClient {
  return client(
    { base: partner.url },
    {
      tokenUrl: partner.tokenUrl,
      caPem: partner.caPem,
      clock: systemClock,
      rateLimitPerSecond: 5,
      rateWindowMs: 1000,
      timeoutMs: 5000,
      tokenRefreshMarginMs: 10_000,
      ...overrides,
    },
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('short-lived tokens against the sandbox partner', () => {
  it('short tokens (8 s) from a slow token endpoint: at most one token call per batch, none sent past half its life', async () => {
    // The sandbox issues a token when asked and answers 1 s later: it comes with ≤ 7 s left. (8 s
    // rather than 2 s tokens: the same rule, with room for a loaded machine between the client's check
    // and the partner's.)
    const partner = await sandbox({ faults: { tokenTtlSeconds: 8, tokenLatencyMs: 1000 } });
    // A 5 s request plus the 10 s margin: no 8 s token can outlive it, so the first half of its life is used.
    const outbound = sandboxClient(partner);
    const tokenCallsPerBatch: number[] = [];
    let sent = 0;
    /** What the engine does for a batch: health check, a token asked ahead for the cycle, the batch. */
    const cycle = async () => {
      const before = partner.stats().tokens.issued;
      expect(await outbound.health()).toMatchObject({ ok: true, status: 200 });
      expect(await outbound.ensureToken(70_000)).toMatchObject({ kind: 'ok' });
      expect(await outbound.sendBatch(batch(`short-${sent++}`, 1))).toMatchObject({ kind: 'accepted' });
      tokenCallsPerBatch.push(partner.stats().tokens.issued - before);
    };
    // Two batches close together (the second reuses the token in its first half), then a pause that
    // takes the token past half its life (the next batch refreshes it, once).
    for (let pair = 0; pair < 3; pair++) {
      await cycle();
      await sleep(150);
      await cycle();
      await sleep(4_500);
    }
    expect(Math.max(...tokenCallsPerBatch)).toBe(1);
    let stats = partner.stats();
    expect(stats.tokens.issued).toBeLessThan(sent);
    // The partner's own check of every token presented: none expired or unknown, none past half its life.
    expect(stats.tokens.presented).toEqual({ valid: sent, expired: 0, unknown: 0 });
    expect(stats.tokens.leastLifeLeft?.lifetimeMs).toBe(8_000);
    // The client sends a token only with half its life left (4 s); the partner sees it a moment later.
    expect(stats.tokens.leastLifeLeft?.lifeLeftMs).toBeGreaterThanOrEqual(3_000);
    expect(stats.requests.byStatus['401']).toBeUndefined();
    expect(stats.batches.accepted).toBe(sent);

    // Slower still: the token comes with less than half its life left. Not used, said in numbers, and
    // not fetched again at once: one token call per attempt, and no batch reaches the partner.
    partner.setFaults({ tokenLatencyMs: 4_300 });
    const issuedBefore = stats.tokens.issued;
    expect(await outbound.health()).toMatchObject({ ok: true });
    const refusals = [await outbound.ensureToken(70_000), await outbound.sendBatch(batch('slow-token', 1))];
    for (const refusal of refusals) {
      expect(refusal).toMatchObject({ kind: 'retryable', stage: 'token', retryAfterMs: null });
      const words = refusal.kind === 'retryable' ? refusal.message : '';
      const numbers =
        /^the token endpoint took (\d+) ms for a token of 8000 ms: (\d+) ms of it was left, under half its life \(4000 ms\)/.exec(
          words,
        );
      expect(numbers, words).not.toBeNull();
      expect(Number(numbers![1])).toBeGreaterThanOrEqual(4_300);
      expect(Number(numbers![2])).toBeLessThan(4_000);
    }
    stats = partner.stats();
    expect(stats.tokens.issued).toBe(issuedBefore + 2);
    expect(stats.batches.received).toBe(sent);

    // The endpoint recovers: the next batch costs one token call again.
    partner.setFaults({ tokenLatencyMs: 1000 });
    await cycle();
    expect(tokenCallsPerBatch.at(-1)).toBe(1);
    expect(partner.stats().tokens.presented).toEqual({ valid: sent, expired: 0, unknown: 0 });
    expect(partner.stats().tokens.leastLifeLeft?.lifeLeftMs).toBeGreaterThanOrEqual(3_000);
  });
});

describe('a partner that cannot speak TLS 1.2 or newer (the sandbox, TLS 1.1 only)', () => {
  it('health, token and batch each come back refused as what it is, and nothing reaches the partner', async () => {
    // One certificate folder: both sandboxes serve the same certificate, so one CA trusts both.
    const certDir = tempDir('valhalla-outbound-cert-');
    const legacy = await sandbox({ certDir, tlsMaxVersion: 'TLSv1.1' });
    const modern = await sandbox({ certDir });
    const code = 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION';
    const host = new URL(legacy.url).host;
    const refused = `the partner at ${host} does not offer TLS 1.2 or newer (${code}): refused; nothing was sent`;

    const outbound = sandboxClient(legacy);
    expect(await outbound.health()).toEqual({
      ok: false,
      code,
      tlsVersionRefused: true,
      error: refused,
      ms: expect.any(Number),
    });
    const tokenRefusal = {
      kind: 'permanent',
      code,
      tlsVersionRefused: true,
      message: refused,
      stage: 'token',
      ms: expect.any(Number),
    };
    expect(await outbound.ensureToken(70_000)).toEqual(tokenRefusal);
    expect(await outbound.sendBatch(batch('legacy-1', 1))).toEqual(tokenRefusal);

    // The batch stage: a token from an endpoint that speaks TLS 1.3, the batch to the TLS 1.1 partner.
    const split = sandboxClient(legacy, { tokenUrl: modern.tokenUrl });
    expect(await split.sendBatch(batch('legacy-2', 1))).toEqual({
      kind: 'permanent',
      code,
      tlsVersionRefused: true,
      message: refused,
      stage: 'batch',
      ms: expect.any(Number),
    });
    expect(modern.stats().tokens.issued).toBe(1);
    // Refused in the handshake: the partner's application never saw a request.
    expect(legacy.stats().requests.total).toBe(0);
    expect(legacy.records()).toEqual({ batches: [], leadBatches: {} });
    // The host alone: never a path.
    expect(refused).not.toMatch(/\/api\/leads|\/oauth\/token|\/health/);
  });
});

describe('limits', () => {
  it('never has more than maxConcurrent requests in flight (counted at the server)', async () => {
    const server = await startServer();
    server.handle(
      defaultPartner({
        leads: (_seen, res) => {
          setTimeout(() => json(res, 200, { accepted: 1 }), 300);
        },
      }),
    );
    const partner = client(server, { maxConcurrent: 3, rateLimitPerSecond: 5, rateWindowMs: 1000 });
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, i) => partner.sendBatch(batch(`c-${i}`, 1))),
    );
    expect(outcomes.every((o) => o.kind === 'accepted')).toBe(true);
    expect(server.seen.filter((s) => s.path === '/api/leads')).toHaveLength(8);
    expect(server.maxInFlight).toBeLessThanOrEqual(3);
    expect(server.maxInFlight).toBe(3);
  });

  it('holds 5 starts in any 1 s window over ~3 s of saturation, health and token calls included', async () => {
    const server = await startServer();
    const createdAt = performance.now();
    const partner = client(server, {
      rateLimitPerSecond: 5,
      rateWindowMs: 1000,
      clock: systemClock,
      tokenRefreshMarginMs: 10_000,
    });
    const work = [
      partner.ensureToken(60_000),
      ...Array.from({ length: 12 }, (_, i) => partner.sendBatch(batch(`r-${i}`, 1))),
      partner.health(),
      partner.health(),
      partner.health(),
    ];
    const results = await Promise.all(work);
    expect(results.filter((r) => 'kind' in r && r.kind === 'accepted')).toHaveLength(12);
    const arrivals = server.seen.map((s) => s.at);
    expect(arrivals).toHaveLength(16);
    expect(mostInAnySecond(arrivals)).toBe(5);
    const sorted = [...arrivals].sort((a, b) => a - b);
    for (let i = 0; i + 5 < sorted.length; i++)
      expect(sorted[i + 5]! - sorted[i]!).toBeGreaterThanOrEqual(1000);
    // Nothing in the first second after creation, and no slower than the rule needs: 16 requests are
    // 4 bursts, each one window (+ 5 ms margin + a local round trip) after the previous: ~3 s in all.
    expect(sorted[0]! - createdAt).toBeGreaterThanOrEqual(1000);
    expect(sorted.at(-1)! - sorted[0]!).toBeLessThan(3 * 1005 + 250);
  });

  it('close() lets the request in flight finish, rejects the queued ones, and releases the sockets', async () => {
    const server = await startServer();
    server.handle(
      defaultPartner({
        leads: (_seen, res) => {
          setTimeout(() => json(res, 200, { accepted: 1 }), 200);
        },
      }),
    );
    const partner = client(server, { maxConcurrent: 1 });
    await partner.ensureToken(60_000);
    const first = partner.sendBatch(batch('first', 1));
    const queued = [partner.sendBatch(batch('second', 1)), partner.sendBatch(batch('third', 1))];
    // Wait until the first is at the server, then close.
    for (let i = 0; i < 100 && !server.seen.some((s) => s.path === '/api/leads'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const closing = partner.close();
    const settled = await Promise.allSettled(queued);
    for (const result of settled) {
      expect(result.status).toBe('rejected');
      expect(isOutboundError((result as PromiseRejectedResult).reason, 'CLIENT_CLOSED')).toBe(true);
    }
    expect(await first).toMatchObject({ kind: 'accepted' });
    await closing;
    await partner.close();
    let connections = await server.openConnections();
    for (let i = 0; i < 50 && connections > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      connections = await server.openConnections();
    }
    expect(connections).toBe(0);
    expect(
      server.seen.filter((s) => s.path === '/api/leads').map((s) => s.headers['idempotency-key']),
    ).toEqual(['first']);
  });
});
