/**
 * A partner API written for the tests from the partner contract alone (as docs/manifest.md states
 * it, "What the configured partner must answer"), sharing no code with the built-in sandbox: plain `node:https`, its own certificate and CA, its own
 * paths (`/partner/v2/api/leads`, `/partner/v2/health`, a token endpoint at `/oauth2/token`), its
 * own tokens and its own idempotency records. What a partner's own sandbox would be to an operator:
 * a Phase 4 installation goes live against it, and its records say what it received.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import type { PartnerEndpoint } from './cli.js';
import { DAY } from './world.js';

const BASE_PATH = '/partner/v2/';
const TOKEN_PATH = '/oauth2/token';
const TOKEN_LIFE_S = 3_600;
const MAX_BATCH = 100;
const MAX_BODY = 1024 * 1024;

/** One lead as the partner stored it: its key, and the identities it arrived with. */
export interface ForeignLead {
  key: string;
  batchKey: string;
  email: string;
  externalId: string | null;
  at: number;
}

export interface ForeignPartner extends PartnerEndpoint {
  /** `https://<host>:<port>`: the origin the partner listens on. */
  origin: string;
  /** Every request it received, in order: method, path, answer, and the batch key for lead posts. */
  requests: { at: number; method: string; path: string; status: number; batchKey: string | null }[];
  /** Every lead it accepted, once each (a replayed batch adds none). */
  leads: ForeignLead[];
  /** Lead posts answered as replays of a batch key already seen. */
  replays: number;
  close(): Promise<void>;
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Start the partner on 127.0.0.1 (any free port). `host` is the name the installation uses for it
 * (`127.0.0.1` or `localhost`, both in its certificate); `dir` receives its CA file.
 */
export async function startForeignPartner(options: {
  dir: string;
  name: string;
  host: '127.0.0.1' | 'localhost';
  clientId: string;
  clientSecret: string;
}): Promise<ForeignPartner> {
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: `${options.name}.partner.test` }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now - DAY),
    notAfterDate: new Date(now + 30 * DAY),
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  } as unknown as Parameters<typeof generate>[1]);
  const caFile = join(options.dir, `${options.name}-ca.pem`);
  writeFileSync(caFile, pems.cert);

  const tokens = new Map<string, number>();
  const batches = new Map<string, { digest: string; answer: Answer }>();
  const byKey = new Set<string>();
  const partner: ForeignPartner = {
    url: '',
    tokenUrl: '',
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    caFile,
    origin: '',
    requests: [],
    leads: [],
    replays: 0,
    close: async () => undefined,
  };

  const tokenAnswer = (body: string): Answer => {
    const form = new URLSearchParams(body);
    if (form.get('grant_type') !== 'client_credentials')
      return { status: 400, body: { error: 'unsupported_grant_type' } };
    if (form.get('client_id') !== options.clientId || form.get('client_secret') !== options.clientSecret)
      return { status: 401, body: { error: 'invalid_client' } };
    const token = randomBytes(24).toString('base64url');
    tokens.set(token, Date.now() + TOKEN_LIFE_S * 1000);
    return { status: 200, body: { access_token: token, token_type: 'Bearer', expires_in: TOKEN_LIFE_S } };
  };

  const leadsAnswer = (request: IncomingMessage, body: string, at: number): Answer => {
    const auth = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
    const expires = auth ? tokens.get(auth[1]!) : undefined;
    if (expires === undefined || expires < Date.now())
      return { status: 401, body: { error: 'invalid_token' } };
    const batchKey = request.headers['idempotency-key'];
    if (typeof batchKey !== 'string' || batchKey === '')
      return { status: 400, body: { error: 'missing Idempotency-Key' } };
    const seen = batches.get(batchKey);
    if (seen) {
      if (seen.digest !== body) return { status: 409, body: { error: 'key reused for another batch' } };
      partner.replays += 1;
      return { status: seen.answer.status, body: { ...seen.answer.body, replayed: true } };
    }
    let leads: unknown;
    try {
      leads = (JSON.parse(body) as { leads?: unknown }).leads;
    } catch {
      return { status: 400, body: { error: 'body is not JSON' } };
    }
    if (!Array.isArray(leads) || leads.length === 0 || leads.length > MAX_BATCH)
      return { status: 422, body: { error: `1 to ${MAX_BATCH} leads per batch` } };
    for (const [i, lead] of leads.entries()) {
      const l = lead as Record<string, unknown>;
      const problem =
        typeof l.idempotency_key !== 'string' || l.idempotency_key === ''
          ? 'idempotency_key'
          : typeof l.email !== 'string' || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(l.email)
            ? 'email'
            : typeof l.score !== 'number' || l.score < 0 || l.score > 100
              ? 'score'
              : typeof l.name !== 'string' || l.name === ''
                ? 'name'
                : null;
      if (problem !== null) return { status: 422, body: { error: `leads[${i}].${problem} is invalid` } };
    }
    let accepted = 0;
    let duplicates = 0;
    for (const lead of leads as { idempotency_key: string; email: string; external_id?: string | null }[]) {
      if (byKey.has(lead.idempotency_key)) {
        duplicates += 1;
        continue;
      }
      byKey.add(lead.idempotency_key);
      partner.leads.push({
        key: lead.idempotency_key,
        batchKey,
        email: lead.email,
        externalId: lead.external_id ?? null,
        at,
      });
      accepted += 1;
    }
    const answer = { status: 201, body: { accepted, duplicates } };
    batches.set(batchKey, { digest: body, answer });
    return answer;
  };

  const handle = (request: IncomingMessage, response: ServerResponse) => {
    const at = Date.now();
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) chunks.push(chunk);
    });
    request.on('end', () => {
      const path = new URL(request.url ?? '/', partner.origin).pathname;
      const body = Buffer.concat(chunks).toString('utf8');
      let answer: Answer;
      if (size > MAX_BODY) answer = { status: 413, body: { error: 'too large' } };
      else if (request.method === 'POST' && path === TOKEN_PATH) answer = tokenAnswer(body);
      else if (request.method === 'GET' && path === `${BASE_PATH}health`)
        answer = { status: 200, body: { status: 'up' } };
      else if (request.method === 'POST' && path === `${BASE_PATH}api/leads`)
        answer = leadsAnswer(request, body, at);
      else answer = { status: 404, body: { error: 'not found' } };
      const batchKey = request.headers['idempotency-key'];
      partner.requests.push({
        at,
        method: request.method ?? '',
        path,
        status: answer.status,
        batchKey: typeof batchKey === 'string' ? batchKey : null,
      });
      response.writeHead(answer.status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(answer.body));
    });
  };

  const server: Server = createServer({ key: pems.private, cert: pems.cert, minVersion: 'TLSv1.2' }, handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  partner.origin = `https://${options.host}:${port}`;
  // As an operator writes it (the configuration would drop a trailing slash anyway).
  partner.url = `${partner.origin}${BASE_PATH.slice(0, -1)}`;
  partner.tokenUrl = `${partner.origin}${TOKEN_PATH}`;
  partner.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return partner;
}
