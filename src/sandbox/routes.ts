import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock, Sleep } from '../clock/index.js';
import { MAX_BODY_BYTES, parseBatch, readBatchKey } from './contract.js';
import { CRM_HEALTH_PATH, CRM_LEADS_PATH, crmError, crmRequestError, parseCrmBatch } from './crm.js';
import type { FaultAnswer, FaultState, SandboxFaults } from './faults.js';
import type { Ledger } from './ledger.js';
import type { StaticBearer, TokenIssuer } from './tokens.js';

/** The contract the sandbox plays: today's own, or a CRM's batch create of contacts. */
/** The contracts the sandbox can play. */
export const SANDBOX_PROFILES = ['valhalla', 'crm-batch-contacts'] as const;
export type SandboxProfile = (typeof SANDBOX_PROFILES)[number];

/** What the request handler needs from the sandbox that owns it. */
export interface RouteContext {
  clock: Clock;
  /** The latency fault's wait: a real timer, or a virtual sleep (a simulation) that moves `clock`. */
  sleep: Sleep | null;
  ledger: Ledger;
  /** The contract played, fixed at start. */
  profile: SandboxProfile;
  /** Today's contract: the OAuth2 token issuer. */
  tokens: TokenIssuer;
  /** CRM mode: the static token a batch must present. */
  bearer: StaticBearer;
  faults(): FaultState;
  setFaults(patch: unknown): SandboxFaults;
  reset(): void;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const ADMIN_PATHS = new Set(['/stats', '/records', '/leads', '/faults', '/reset']);
const MAX_ADMIN_BODY_BYTES = 64 * 1024;

/** The request handler: admin endpoints first (never faulted, never counted), then the partner API. */
export function createHandler(ctx: RouteContext): Handler {
  return (req, res) => {
    const path = pathOf(req.url);
    const work = ADMIN_PATHS.has(path)
      ? handleAdmin(ctx, path, req, res)
      : handlePartner(ctx, path, req, res);
    work.catch(() => {
      // A bug in the sandbox must not take the process down; the client sees a 500 or a reset.
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { error: 'internal_error' });
    });
  };
}

async function handlePartner(
  ctx: RouteContext,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { ledger, clock } = ctx;
  const arrivedAt = clock.now();
  ledger.requestArrived(path, arrivedAt);
  const counters = ledger.counters;
  const crm = ctx.profile === 'crm-batch-contacts';
  const leadsPath = crm ? CRM_LEADS_PATH : '/api/leads';
  const healthPath = crm ? CRM_HEALTH_PATH : '/health';
  const isLeads = path === leadsPath && req.method === 'POST';
  if (isLeads) counters.batches.received += 1;
  if (path === healthPath && req.method === 'GET') counters.health.checks += 1;

  const faults = ctx.faults().current;
  if (faults.down) {
    // A dead partner: no status, no body, the connection just ends.
    counters.requests.dropped += 1;
    if (isLeads) counters.batches.failedByFault += 1;
    req.socket.destroy();
    return;
  }
  if (faults.hang) {
    // Read and discard the body so the client's upload completes, then never answer. close()
    // destroys the socket; so does the client when its timeout fires.
    counters.requests.hung += 1;
    if (isLeads) counters.batches.failedByFault += 1;
    req.resume();
    return;
  }

  const body = await readBody(req, MAX_BODY_BYTES);
  if (body === 'aborted') return;
  if (body === 'too_large') {
    if (isLeads) counters.batches.refused += 1;
    return answer(ctx, res, 413, { error: 'payload_too_large' }, { connection: 'close' });
  }
  if (faults.latencyMs > 0) {
    if (ctx.sleep) await ctx.sleep(faults.latencyMs);
    else if (!(await pause(faults.latencyMs, res))) return;
  }

  if (crm) {
    if (path === CRM_HEALTH_PATH) {
      if (req.method !== 'GET') return methodNotAllowed(ctx, res, 'GET');
      return health(ctx, res);
    }
    if (path === CRM_LEADS_PATH) {
      if (req.method !== 'POST') return methodNotAllowed(ctx, res, 'POST');
      return crmLeads(ctx, req, res, body, arrivedAt);
    }
    return answer(ctx, res, 404, crmRequestError(404, 'no such endpoint'));
  }
  switch (path) {
    case '/health':
      if (req.method !== 'GET') return methodNotAllowed(ctx, res, 'GET');
      return health(ctx, res);
    case '/oauth/token':
      if (req.method !== 'POST') return methodNotAllowed(ctx, res, 'POST');
      return await token(ctx, req, res, body);
    case '/api/leads':
      if (req.method !== 'POST') return methodNotAllowed(ctx, res, 'POST');
      return leads(ctx, req, res, body, arrivedAt);
    default:
      return answer(ctx, res, 404, { error: 'not_found' });
  }
}

function health(ctx: RouteContext, res: ServerResponse) {
  const fault = ctx.faults().beforeHealth();
  if (fault.kind === 'status') return answerFault(ctx, res, fault);
  answer(ctx, res, 200, { status: 'ok' });
}

async function token(ctx: RouteContext, req: IncomingMessage, res: ServerResponse, body: Buffer) {
  const counters = ctx.ledger.counters.tokens;
  const check = ctx.tokens.check(req.headers, body);
  if (!check.ok) {
    counters.refused += 1;
    const challenge = check.status === 401 ? { 'www-authenticate': 'Basic realm="sandbox"' } : undefined;
    return answer(ctx, res, check.status, { error: check.error }, challenge);
  }
  counters.issued += 1;
  const { tokenTtlSeconds, tokenLatencyMs } = ctx.faults().current;
  // Issued first, answered late: the token's life runs while the slow endpoint keeps it.
  const issued = ctx.tokens.issue(tokenTtlSeconds);
  if (tokenLatencyMs > 0) {
    if (ctx.sleep) await ctx.sleep(tokenLatencyMs);
    else if (!(await pause(tokenLatencyMs, res))) return;
  }
  answer(ctx, res, 200, issued, { pragma: 'no-cache' });
}

/**
 * `POST /api/leads`. Injected faults come first (a struggling partner fails before it looks at
 * the request), then the token, the batch key, the body, a permanent refusal if one is set, and
 * finally idempotency: a known batch key replays its stored answer, a known lead key is a duplicate.
 */
function leads(
  ctx: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
  arrivedAt: number,
) {
  const { ledger } = ctx;
  const counters = ledger.counters.batches;
  if (answeredByFault(ctx, res)) return;
  const presented = ctx.tokens.verify(req.headers.authorization);
  ledger.tokenPresented(presented);
  if (!presented.ok) {
    counters.refused += 1;
    return answer(ctx, res, 401, { error: 'invalid_token' }, BEARER_CHALLENGE);
  }
  const batchKey = readBatchKey(req.headers['idempotency-key']);
  if (!batchKey.ok) {
    counters.refused += 1;
    return answer(ctx, res, 400, {
      error: 'missing_idempotency_key',
      message: 'the Idempotency-Key header must hold 1 to 200 printable characters',
    });
  }
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    counters.refused += 1;
    return answer(ctx, res, 400, {
      error: 'invalid_content_type',
      message: 'the body must be sent as application/json',
    });
  }
  const batch = parseBatch(body);
  if (!batch.ok) {
    counters.refused += 1;
    return answer(ctx, res, batch.status, { error: batch.error, message: batch.message });
  }
  const refusal = ctx.faults().permanentRefusal();
  if (refusal.kind === 'status') {
    counters.failedByFault += 1;
    return answerFault(ctx, res, refusal);
  }
  const replayed = ledger.replay(batchKey.key, batch.leadKeys);
  if (replayed !== undefined) return answer(ctx, res, 200, replayed);
  // Today's contract has no per-lead refusal: a chosen lead refuses its whole batch, as an invalid lead does.
  const faults = ctx.faults();
  const reasons = batch.leadKeys.map((k, i) => faults.refusesLead(k, batch.emails[i] ?? null));
  const first = reasons.findIndex((r) => r !== null);
  if (first >= 0) {
    counters.refused += 1;
    for (const [i, leadKey] of batch.leadKeys.entries()) ledger.refusedWithBatch(leadKey, reasons[i] ?? null);
    return answer(ctx, res, 422, { error: 'invalid_lead', message: `leads[${first}]: ${reasons[first]}` });
  }
  answer(ctx, res, 200, ledger.accept(batchKey.key, batch.leadKeys, arrivedAt));
}

const CRM_CHALLENGE = { 'www-authenticate': 'Bearer realm="crm"' };

/**
 * CRM mode: `POST /crm/v3/objects/contacts/batch/create`. Faults first, then the static token, the
 * body (what cannot be tied to one record refuses the batch with 400), a permanent refusal if one is
 * set, and then each record on its own: refused (`VALIDATION_ERROR`, a bad e-mail, an unknown
 * property, or the `refuseLeads` fault), a conflict (its lead key or e-mail held already: `CONFLICT`),
 * or created. 200 when every record was created, 207 otherwise. No batch key: a resend is a conflict.
 */
function crmLeads(
  ctx: RouteContext,
  req: IncomingMessage,
  res: ServerResponse,
  body: Buffer,
  arrivedAt: number,
) {
  const { ledger } = ctx;
  const counters = ledger.counters.batches;
  if (answeredByFault(ctx, res)) return;
  const valid = ctx.bearer.verify(req.headers.authorization);
  ledger.staticTokenPresented(valid);
  if (!valid) {
    counters.refused += 1;
    return answer(
      ctx,
      res,
      401,
      crmRequestError(401, 'Authentication credentials not found or not valid'),
      CRM_CHALLENGE,
    );
  }
  if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
    counters.refused += 1;
    return answer(ctx, res, 415, crmRequestError(400, 'the body must be sent as application/json'));
  }
  const batch = parseCrmBatch(body);
  if (!batch.ok) {
    counters.refused += 1;
    return answer(ctx, res, 400, crmRequestError(400, batch.message));
  }
  const refusal = ctx.faults().permanentRefusal();
  if (refusal.kind === 'status') {
    counters.failedByFault += 1;
    return answerFault(ctx, res, refusal);
  }
  const startedAt = new Date(arrivedAt).toISOString();
  const at = ctx.clock.now();
  const completedAt = new Date(at).toISOString();
  const results: unknown[] = [];
  const errors: unknown[] = [];
  const faults = ctx.faults();
  for (const input of batch.inputs) {
    const byFault = faults.refusesLead(input.leadKey, input.email);
    const reason = input.problem ?? byFault;
    const outcome = ledger.crmRecord(input.leadKey, input.email, reason, at);
    if (outcome.outcome === 'refused') errors.push(crmError('VALIDATION_ERROR', reason!, input.leadKey));
    else if (outcome.outcome === 'conflict') {
      const what = outcome.on === 'lead key' ? 'this valhalla_lead_key' : 'this e-mail';
      errors.push(
        crmError(
          'CONFLICT',
          `A contact with ${what} already exists. Existing ID: ${outcome.existingId}`,
          input.leadKey,
        ),
      );
    } else {
      results.push({
        id: outcome.id,
        properties: { valhalla_lead_key: input.leadKey },
        createdAt: completedAt,
        updatedAt: completedAt,
        archived: false,
      });
    }
  }
  ledger.crmBatchAnswered();
  const reply =
    errors.length === 0
      ? { status: 'COMPLETE', results, startedAt, completedAt }
      : { status: 'COMPLETE', results, numErrors: errors.length, errors, startedAt, completedAt };
  answer(ctx, res, errors.length === 0 ? 200 : 207, reply);
}

async function handleAdmin(
  ctx: RouteContext,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const route = `${req.method} ${path}`;
  if (route === 'GET /stats') return sendJson(res, 200, ctx.ledger.snapshot());
  if (route === 'GET /records') return sendJson(res, 200, ctx.ledger.records());
  if (route === 'GET /leads') return sendJson(res, 200, ctx.ledger.leads());
  if (route === 'GET /faults') return sendJson(res, 200, ctx.faults().current);
  if (route === 'POST /reset') {
    req.resume();
    ctx.reset();
    return sendJson(res, 200, { status: 'reset' });
  }
  if (route === 'POST /faults') {
    const body = await readBody(req, MAX_ADMIN_BODY_BYTES);
    if (body === 'aborted') return;
    if (body === 'too_large') return sendJson(res, 413, { error: 'payload_too_large' });
    let patch: unknown;
    try {
      patch = JSON.parse(body.toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'invalid_json' });
    }
    try {
      return sendJson(res, 200, ctx.setFaults(patch));
    } catch (error) {
      return sendJson(res, 400, { error: 'invalid_faults', message: (error as Error).message });
    }
  }
  req.resume();
  sendJson(res, 405, { error: 'method_not_allowed' }, { allow: path === '/faults' ? 'GET, POST' : 'GET' });
}

const BEARER_CHALLENGE = { 'www-authenticate': 'Bearer error="invalid_token"' };

/** A batch's injected fault answers before the partner looks at the request: true when one did. */
function answeredByFault(ctx: RouteContext, res: ServerResponse): boolean {
  const fault = ctx.faults().beforeLeads();
  if (fault.kind !== 'status') return false;
  ctx.ledger.counters.batches.failedByFault += 1;
  answerFault(ctx, res, fault);
  return true;
}

function answerFault(ctx: RouteContext, res: ServerResponse, fault: FaultAnswer & { kind: 'status' }): void {
  if (ctx.profile === 'crm-batch-contacts') {
    const headers = fault.status === 401 ? { ...CRM_CHALLENGE, ...fault.headers } : fault.headers;
    answer(ctx, res, fault.status, crmRequestError(fault.status, fault.reason), headers);
    return;
  }
  const headers = fault.status === 401 ? { ...BEARER_CHALLENGE, ...fault.headers } : fault.headers;
  answer(ctx, res, fault.status, { error: fault.reason }, headers);
}

function methodNotAllowed(ctx: RouteContext, res: ServerResponse, allow: string): void {
  answer(ctx, res, 405, { error: 'method_not_allowed' }, { allow });
}

/** A partner answer: counted by status. */
function answer(
  ctx: RouteContext,
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  ctx.ledger.answered(status);
  sendJson(res, status, body, headers);
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers?: Record<string, string>,
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  const path = query < 0 ? raw : raw.slice(0, query);
  // A trailing slash is tolerated (`/health/`), the root is kept as is.
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** The whole request body, or why there is none: the client went away, or it is over `limit`. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | 'aborted' | 'too_large'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | 'aborted' | 'too_large') => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.pause();
        finish('too_large');
      } else chunks.push(chunk);
    };
    const onEnd = () => finish(Buffer.concat(chunks));
    const onClose = () => finish('aborted');
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

/** Wait `ms`, unless the connection ends first (the client gave up, or the sandbox closed): false then. */
function pause(ms: number, res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      res.off('close', onClose);
      resolve(true);
    }, ms);
    res.once('close', onClose);
  });
}
