/**
 * The admin API end to end: the real app on SQLite and PostgreSQL, the real Fastify server listening
 * on a loopback port, and real HTTP (undici) against it. Tokens are made as `valhalla tokens create`
 * makes them and configured through VALHALLA_API_TOKENS. The app's time is a ManualClock; only the
 * event stream's poll and the sign-in limiter run on real time, and every wait on them is bounded.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type App,
  type AuditEntryView,
  type DashboardStatus,
  type LeadFlow,
  type MaskedLead,
  openApp,
  type UploadResult,
} from '../../src/app/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { type ApiRole, loadConfig } from '../../src/config/index.js';
import { addSigner, createKeyPair, type GatesReport, signDocument } from '../../src/gates/index.js';
import { LEAD_FIELDS } from '../../src/ingest/index.js';
import { createMetrics } from '../../src/monitor/index.js';
import { maskCompany, maskEmail, maskName, maskPhone } from '../../src/pii/index.js';
import type { ModeChange } from '../../src/policy/index.js';
import {
  createApiToken,
  INGEST_BODY_LIMIT_BYTES,
  type RunningServer,
  SESSION_COOKIE,
  SIGN_IN_ATTEMPTS_PER_MINUTE,
  startServer,
} from '../../src/server/index.js';
import {
  claimInstallationId,
  createCycle,
  createDelivery,
  finishCycle,
  setDeliveryState,
  setLeadsState,
} from '../../src/store/index.js';
import {
  type ApiCall,
  type ApiErrorBody,
  type ApiResponse,
  apiClient,
  type CallOptions,
  type Method,
  openEventStream,
  type ServerEvent,
} from '../support/api.js';
import { type Backend, backends, dropTestSchemas, sqliteBackend } from '../support/backends.js';
import { testEnv } from '../support/cli.js';
import { TEST_INSTALLATION } from '../support/manifest.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, MINUTE, NOW, until } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
/** How long an event may take to reach the stream here: generous, the stream polls every 250 ms. */
const EVENT_WAIT_MS = 2_000;

const TOKENS = {
  viewer: createApiToken('vera', 'viewer'),
  operator: createApiToken('otto', 'operator'),
  admin: createApiToken('ada', 'admin'),
};
const AS = {
  viewer: { token: TOKENS.viewer.token },
  operator: { token: TOKENS.operator.token },
  admin: { token: TOKENS.admin.token },
} satisfies Record<ApiRole, CallOptions>;
const ROLES: ApiRole[] = ['viewer', 'operator', 'admin'];
const rank = (role: ApiRole) => ROLES.indexOf(role);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  // Servers first (they end the event streams), then the apps and their stores.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface World {
  app: App;
  server: RunningServer;
  clock: ManualClock;
  url: string;
  api: ApiCall;
  /** GET as a viewer. */
  get<T = ApiErrorBody>(path: string): Promise<ApiResponse<T>>;
  /** GET as a viewer, expecting 200: the body. */
  read<T>(path: string): Promise<T>;
  /** POST a JSON body, as an operator unless said otherwise. */
  post<T = ApiErrorBody>(path: string, json: unknown, as?: CallOptions): Promise<ApiResponse<T>>;
}

async function world(
  backend: Backend = sqliteBackend,
  options: { metrics?: boolean; webRoot?: string; manyFailures?: boolean } = {},
): Promise<World> {
  const dir = tempDir();
  const env = testEnv(join(dir, 'data'), {
    VALHALLA_DATABASE_URL: backend.databaseUrl(),
    VALHALLA_API_TOKENS: Object.values(TOKENS)
      .map((t) => t.entry)
      .join(','),
    VALHALLA_LOG_LEVEL: 'warn',
  });
  const clock = new ManualClock(NOW);
  const app = await openApp({ config: loadConfig({ cwd: dir, env }), clock });
  cleanups.push(() => app.close());
  const metrics = options.metrics ? createMetrics({ store: app.store, config: app.config, clock }) : null;
  const webRoot = options.webRoot ?? tempDir();
  const server = await startServer({
    app,
    port: 0,
    host: '127.0.0.1',
    webRoot,
    ...(metrics && { metrics }),
    // A test that tries every route with wrong tokens: far more failures than the limits allow.
    ...(options.manyFailures && {
      authFailureLimits: { perAddress: 10_000, global: 10_000, windowMs: 60_000 },
    }),
  });
  cleanups.push(() => server.close());
  const api = apiClient(server.url);
  const get = <T>(path: string) => api<T>('GET', path, AS.viewer);
  return {
    app,
    server,
    clock,
    url: server.url,
    api,
    get,
    async read<T>(path: string) {
      const response = await get<T>(path);
      expect(response.status, `GET ${path}: ${response.text}`).toBe(200);
      return response.body;
    },
    post: <T>(path: string, json: unknown, as: CallOptions = AS.operator) =>
      api<T>('POST', path, { ...as, json }),
  };
}

// ---------------------------------------------------------------------------------------------
// Leads, uploads and paged reads

type Person = { name: string; email: string; phone: string; company: string; score?: number | string };

const person = (i: number, score = 80): Person => ({
  name: `Person ${i}`,
  email: `person${i}@example.test`,
  phone: `+1 555 010 ${String(i).padStart(4, '0')}`,
  company: `Company ${i}`,
  score,
});

const leadObject = (p: Person, at: number): Record<string, string | number> => ({
  external_id: `EXT-${p.email}`,
  name: p.name,
  email: p.email,
  phone: p.phone,
  company: p.company,
  score: p.score ?? 80,
  source_timestamp: new Date(at - HOUR).toISOString(),
  value: 100,
});

const csvRow = (p: Person, at: number) => LEAD_FIELDS.map((f) => String(leadObject(p, at)[f])).join(',');
const csvOf = (people: Person[], at: number) =>
  `${[LEAD_FIELDS.join(','), ...people.map((p) => csvRow(p, at))].join('\n')}\n`;
const ndjsonOf = (people: Person[], at: number) =>
  people.map((p) => `${JSON.stringify(leadObject(p, at))}\n`).join('');

type UploadAnswer = UploadResult & Partial<ApiErrorBody>;
const upload = (w: World, body: string, type = 'text/csv') =>
  w.api<UploadAnswer>('POST', '/api/ingest', { ...AS.operator, body, type });

const status = (w: World) => w.read<DashboardStatus>('/api/status');

type LeadsPage = { leads: MaskedLead[]; nextBeforeId: number | null };
type AuditPage = { entries: AuditEntryView[]; nextBeforeSeq: number | null };

/** Every page of a paged read, following its cursor from the first; `path` has a query already. */
async function allPages<P>(w: World, path: string): Promise<P[]> {
  const [param, key] = path.startsWith('/api/audit?')
    ? (['beforeSeq', 'nextBeforeSeq'] as const)
    : (['beforeId', 'nextBeforeId'] as const);
  const pages: P[] = [];
  let before: unknown = null;
  do {
    const page = await w.read<P & Record<string, unknown>>(
      `${path}${before === null ? '' : `&${param}=${before}`}`,
    );
    pages.push(page);
    before = page[key];
    expect(pages.length).toBeLessThan(100);
  } while (before !== null);
  return pages;
}

/** The whole audit chain, newest first, as the API shows it. */
const auditAll = async (w: World) =>
  (await allPages<AuditPage>(w, '/api/audit?limit=1000')).flatMap((p) => p.entries);

const leadIds = async (w: World, query = '') =>
  (await w.read<LeadsPage>(`/api/leads?limit=1000${query}`)).leads.map((l) => l.id);

const isAction = (action: string) => (e: ServerEvent) =>
  e.event === 'audit' && (e.data as AuditEntryView).action === action;

function expectError(response: ApiResponse<unknown>, status: number, code: string): void {
  expect({ status: response.status, body: response.body }).toEqual({
    status,
    body: { error: { code, message: expect.any(String) } },
  });
}

// ---------------------------------------------------------------------------------------------
// Every route and who may call it

/**
 * [method, path, least role, a valid body (were a refusal skipped, it would have its effect), the
 * status a permitted caller gets with a harmless body (`{}`: nothing changes)].
 */
type Route = [Method, string, ApiRole, unknown, number];
const READ_PATHS =
  'status flow leads cycles cycles/review deliveries quarantine gates signers audit audit/verify alerts events session'
    .split(' ')
    .map((p) => `/api/${p}`);
const ROUTES: Route[] = [
  ...READ_PATHS.map((path): Route => ['GET', path, 'viewer', undefined, 200]),
  ['POST', '/api/mode/pause', 'operator', { reason: 'auth test' }, 400],
  ['POST', '/api/mode/resume', 'operator', { reason: 'auth test' }, 400],
  ['POST', '/api/mode/rollback', 'operator', { reason: 'auth test' }, 400],
  ['POST', '/api/quarantine/release', 'operator', { ids: [1], reason: 'auth test' }, 400],
  ['POST', '/api/quarantine/drop', 'operator', { ids: [1], reason: 'auth test' }, 400],
  ['POST', '/api/cycles/confirm', 'operator', { cycleId: 1 }, 400],
  ['POST', '/api/ingest', 'operator', [leadObject(person(1), NOW)], 400],
  ['POST', '/api/signoffs', 'admin', {}, 422],
  ['DELETE', '/api/session', 'viewer', undefined, 204],
];

describe.each(list)('admin API on $name', (backend) => {
  it('refuses every route without a valid token (401) and to a role too low (403); nothing happens', async () => {
    const w = await world(backend, { manyFailures: true });
    const wrong: [string, CallOptions][] = [
      ['no token', {}],
      ['an unknown token', { token: createApiToken('mallory', 'admin').token }],
      ['the configured hash as the token', { token: TOKENS.admin.entry.split(':')[2]! }],
      ['a non-bearer Authorization', { headers: { authorization: `Basic ${TOKENS.admin.token}` } }],
      ['an unknown session cookie', { cookie: `${SESSION_COOKIE}=forged` }],
    ];
    const failures: string[] = [];
    const check = (label: string, response: ApiResponse<unknown>, status: number, code: string) => {
      const body = JSON.stringify(response.body);
      const shaped = new RegExp(`^\\{"error":\\{"code":"${code}","message":"[^"]+"\\}\\}$`).test(body);
      if (response.status !== status || !shaped) failures.push(`${label}: ${response.status} ${body}`);
    };
    for (const [method, path, role, valid] of ROUTES) {
      const send = (as: CallOptions) =>
        w.api(method, path, { ...as, ...(valid === undefined ? {} : { json: valid }) });
      for (const [label, as] of wrong)
        check(`${method} ${path} with ${label}`, await send(as), 401, 'UNAUTHORIZED');
      for (const low of ROLES.filter((r) => rank(r) < rank(role))) {
        check(`${method} ${path} as ${low}`, await send(AS[low]), 403, 'FORBIDDEN');
      }
    }
    expect(failures).toEqual([]);
    // HEAD is answered by the GET routes: refused the same way.
    expect((await w.api('HEAD', '/api/leads')).status).toBe(401);
    expect((await w.api('HEAD', '/api/leads', AS.viewer)).status).toBe(200);

    expect(await status(w)).toMatchObject({ mode: 'live', leads: { total: 0 } });
    expect((await auditAll(w)).filter((e) => e.actor.startsWith('api:'))).toEqual([]);
  });

  it('shows which runner leads: none before any, then the holder with its lease held, then released', async () => {
    const w = await world(backend);
    expect((await status(w)).leader).toBeNull();
    // A runner leads only with its clock within 2 s of the database's (PostgreSQL): the test's
    // clock is set to now for it.
    w.clock.advance(Date.now() - w.clock.now());
    const leadership = w.app.leadership();
    const term = await leadership.acquire(AbortSignal.timeout(10_000));
    expect(term).not.toBeNull();
    expect((await status(w)).leader).toMatchObject({
      holder: leadership.me.holder,
      pid: process.pid,
      epoch: 1,
      lease: 'held',
    });
    await leadership.resign();
    expect((await status(w)).leader).toMatchObject({ holder: leadership.me.holder, lease: 'released' });
  });

  it('lets every role at or above a route’s through, and /healthz and /readyz need no token', async () => {
    const w = await world(backend);
    const failures: string[] = [];
    for (const [method, path, role, valid, passes] of ROUTES) {
      for (const allowed of ROLES.filter((r) => rank(r) >= rank(role))) {
        const response = await w.api(method, path, {
          ...AS[allowed],
          ...(valid === undefined ? {} : { json: {} }),
        });
        if (response.status !== passes) failures.push(`${method} ${path} as ${allowed}: ${response.status}`);
      }
    }
    expect(failures).toEqual([]);
    expect(await w.api('GET', '/healthz')).toMatchObject({ status: 200, body: { ok: true } });
    expect(await w.api('GET', '/readyz')).toMatchObject({
      status: 200,
      body: { ready: true, database: 'ok' },
    });
    expect((await status(w)).mode).toBe('live');
  });

  it('ingests CSV, NDJSON and a JSON array: rows all counted, rejects without values, audited as api:<name>', async () => {
    const w = await world(backend);
    const csv = csvOf(
      [person(1), person(2), person(3), { ...person(4), email: 'bad-SECRETVALUE' }, person(2)],
      NOW,
    );
    const first = await upload(w, csv);
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ read: 5, accepted: 3, duplicate: 1, rejected: 1, format: 'csv' });
    expect(first.body.states).toEqual({ pending: 3, below_threshold: 0, expired: 0 });
    expect(first.body.rejects).toEqual([{ line: 5, field: 'email', reason: expect.any(String) }]);
    expect(first.text).not.toContain('SECRETVALUE');

    const ndjson = ndjsonOf([person(5), person(6, 20), person(1), { ...person(7), score: 'lots' }], NOW);
    const second = await upload(w, ndjson, 'application/x-ndjson; charset=utf-8');
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({ read: 4, accepted: 2, duplicate: 1, rejected: 1, format: 'jsonl' });
    expect(second.body.states).toEqual({ pending: 1, below_threshold: 1, expired: 0 });
    expect(second.body.rejects).toEqual([{ line: 4, field: 'score', reason: expect.any(String) }]);
    expect(second.text).not.toContain('lots');

    const third = await w.post<UploadResult>(
      '/api/ingest',
      [person(8), person(9), person(5)].map((p) => leadObject(p, NOW)),
    );
    expect(third.status).toBe(200);
    expect(third.body).toMatchObject({ read: 3, accepted: 2, duplicate: 1, rejected: 0, rejects: [] });

    const again = await upload(w, csv, 'text/csv; charset=utf-8');
    expect(again.body).toMatchObject({ read: 5, accepted: 0, duplicate: 4, rejected: 1 });
    for (const { body } of [first, second, third, again]) {
      expect(body.read).toBe(body.accepted + body.duplicate + body.rejected);
    }
    expect((await status(w)).leads).toMatchObject({ total: 7, pending: 6, below_threshold: 1 });

    const started = (await auditAll(w)).filter((e) => e.action === 'ingest.started').reverse();
    expect(started.map((e) => [e.subject, (e.details as { operator: string }).operator])).toEqual(
      [first, second, third, again].map((run) => [`ingest-run:${run.body.runId}`, 'api:otto']),
    );
  });

  it('refuses an upload of another type (415), not an array (400), over 10 MB (413) or without its header (422)', async () => {
    const w = await world(backend);
    expect((await upload(w, csvOf([person(1)], NOW))).status).toBe(200);
    const auditBefore = (await auditAll(w)).length;

    expectError(await upload(w, csvOf([person(2)], NOW), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    const notArray = await w.post('/api/ingest', leadObject(person(3), NOW));
    expectError(notArray, 400, 'VALIDATION');
    expect(notArray.body.error.message).toMatch(/array/);

    // Valid rows, just too many of them: were the limit not applied, they would all be stored.
    const rows: string[] = [LEAD_FIELDS.join(',')];
    for (let bytes = 0; bytes <= INGEST_BODY_LIMIT_BYTES; bytes += rows[rows.length - 1]!.length + 1) {
      rows.push(csvRow(person(10_000 + rows.length), NOW));
    }
    const tooLarge = await upload(w, `${rows.join('\n')}\n`);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body.error?.code).toMatch(/^[A-Z_]+$/);

    const noHeader = await upload(
      w,
      csvOf([person(4), person(5)], NOW)
        .split('\n')
        .slice(1)
        .join('\n'),
    );
    expectError(noHeader, 422, 'MISSING_HEADER');
    expect(noHeader.text).not.toContain('person4@example.test');
    const missingColumns = await upload(w, 'name,phone\nSomeone,+1 555 010 0000\n');
    expectError(missingColumns, 422, 'MISSING_HEADER');
    expect(missingColumns.body.error?.message).toMatch(/email/);

    expect((await status(w)).leads.total).toBe(1);
    // Only the two header failures started a run (and failed it); the refused bodies never did.
    const added = (await auditAll(w)).slice(0, -auditBefore).map((e) => e.action);
    expect(added.filter((a) => a.startsWith('ingest.')).sort()).toEqual([
      'ingest.failed',
      'ingest.failed',
      'ingest.started',
      'ingest.started',
    ]);
  });

  it('stops an upload of bad rows at its first 1,000 (422 TOO_MANY_REJECTS, one ingest.failed entry, nothing stored), CSV or a JSON array', async () => {
    const w = await world(backend);
    const auditBefore = (await auditAll(w)).length;
    // 100,000 one-character rows: each rejected (one field where the header has four).
    const oneCharacterRows = await upload(w, `name,email,score,source_timestamp\n${'x\n'.repeat(100_000)}`);
    expectError(oneCharacterRows, 422, 'TOO_MANY_REJECTS');
    expect(oneCharacterRows.body.error?.message).toMatch(
      /stopped at line 1001: 1000 of the 1000 rows read were rejected .*line 2: expected 4 fields.*nothing was stored/,
    );
    const emptyObjects = await w.api<UploadAnswer>('POST', '/api/ingest', {
      ...AS.operator,
      body: `[${new Array(100_000).fill('{}').join(',')}]`,
      type: 'application/json',
    });
    expectError(emptyObjects, 422, 'TOO_MANY_REJECTS');
    const after = await auditAll(w);
    const added = after.slice(0, after.length - auditBefore).map((e) => e.action);
    expect(added.sort()).toEqual(['ingest.failed', 'ingest.failed', 'ingest.started', 'ingest.started']);
    expect((await status(w)).leads.total).toBe(0);

    // Good rows first, then bad ones: every good row is stored (and audited) until the rejected rows
    // pass 1,000 and are the majority of those read.
    const good = Array.from({ length: 1_500 }, (_, i) => csvRow(person(20_000 + i), NOW));
    const mixed = await upload(
      w,
      `${[LEAD_FIELDS.join(','), ...good, ...new Array(5_000).fill('x')].join('\n')}\n`,
    );
    expectError(mixed, 422, 'TOO_MANY_REJECTS');
    expect(mixed.body.error?.message).toMatch(/2500 of the 4000 rows read were rejected/);
    expect((await status(w)).leads.total).toBe(1_500);
    const rows = (await auditAll(w)).filter((e) => e.action === 'ingest.rows');
    // Every stored lead is named in an entry: its runs of (lead, line) and a state letter each.
    const named = rows.map(
      (e) => (e.details as { acceptedLeads: { runs: number[][]; states: string } }).acceptedLeads,
    );
    expect(named.reduce((n, a) => n + a.runs.reduce((m, [, , count]) => m + count!, 0), 0)).toBe(1_500);
    expect(named.reduce((n, a) => n + a.states.length, 0)).toBe(1_500);
  });

  it('answers /healthz and a pause while an upload is being stored, the upload streamed (not held whole) and finished after', async () => {
    const w = await world(backend);
    const people = Array.from({ length: 3_000 }, (_, i) => person(30_000 + i));
    const csv = Buffer.from(csvOf(people, NOW));
    const half = csv.indexOf('\n', csv.length / 2) + 1;
    const body = new PassThrough();
    const answer = request(`${w.url}/api/ingest`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${AS.operator.token}`,
        'content-type': 'text/csv',
        'content-length': String(csv.length),
      },
      body,
    });
    body.write(csv.subarray(0, half));
    // Rows of the first half are stored while the second half has not been sent: the upload is read as
    // it arrives, and the server's loop is free meanwhile.
    await until(async () => (await status(w)).leads.total >= 1_000, { what: 'the first half stored' });
    expect(await w.api('GET', '/healthz')).toMatchObject({ status: 200, body: { ok: true } });
    const paused = await w.post<ModeChange>('/api/mode/pause', { reason: 'pause during an upload' });
    expect(paused.body).toMatchObject({ kind: 'change', to: 'paused' });
    body.end(csv.subarray(half));
    const finished = await answer;
    expect(finished.statusCode).toBe(200);
    expect(await finished.body.json()).toMatchObject({ read: 3_000, accepted: 3_000, rejected: 0 });
    expect((await status(w)).mode).toBe('paused');
  });

  it('refuses an upload without a Content-Length (411) before reading it, and a deeply nested JSON element is a rejected row', async () => {
    const w = await world(backend);
    const chunked = await request(`${w.url}/api/ingest`, {
      method: 'POST',
      headers: { authorization: `Bearer ${AS.operator.token}`, 'content-type': 'text/csv' },
      body: Readable.from([Buffer.from(csvOf([person(1)], NOW))]),
    });
    expect(chunked.statusCode).toBe(411);
    expect(await chunked.body.json()).toMatchObject({ error: { code: 'LENGTH_REQUIRED' } });
    expect((await status(w)).leads.total).toBe(0);

    const nested = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
    const deep = await w.api<UploadAnswer>('POST', '/api/ingest', {
      ...AS.operator,
      body: `[${JSON.stringify(leadObject(person(2), NOW))},${nested},{"name":${nested}}]`,
      type: 'application/json',
    });
    expect(deep.status).toBe(200);
    expect(deep.body).toMatchObject({ read: 3, accepted: 1, rejected: 2 });
    expect(deep.body.rejects).toEqual([
      { line: 2, field: 'row', reason: 'nested deeper than 32 levels' },
      { line: 3, field: 'row', reason: 'nested deeper than 32 levels' },
    ]);
  });

  it('refuses a JSON body nested deeper than 32 levels with 400 naming the limit, never an internal message', async () => {
    const w = await world(backend);
    const deep = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
    for (const [path, as] of [
      ['/api/mode/pause', AS.operator],
      ['/api/signoffs', AS.admin],
      ['/api/quarantine/release', AS.operator],
    ] as const) {
      const response = await w.api('POST', path, {
        ...as,
        body: `{"reason":${deep}}`,
        type: 'application/json',
      });
      expectError(response, 400, 'VALIDATION');
      expect(response.body.error.message).toBe('the body is nested deeper than 32 levels');
      expect(response.text).not.toMatch(/stack|RangeError/i);
    }
    // Within the limit, the route's own validation answers as before.
    const shallow = await w.post('/api/mode/pause', { reason: [[['not text']]] });
    expectError(shallow, 400, 'VALIDATION');
    expect((await status(w)).mode).toBe('live');
  });

  it('pauses, resumes and rolls back; after a rollback pause and resume are refused; audited as api:<name>', async () => {
    const w = await world(backend);
    const mode = async (command: string, reason = `${command} from the test`) => {
      const response = await w.post<ModeChange>(`/api/mode/${command}`, { reason });
      expect(response.status).toBe(200);
      return response.body;
    };
    // No worker runs in this test: every change says so (acknowledgement no_worker).
    const noWorker = { acknowledgement: { kind: 'no_worker' } };
    expect(await mode('pause')).toMatchObject({ kind: 'change', from: 'live', to: 'paused', ...noWorker });
    expect((await status(w)).mode).toBe('paused');
    expect(await mode('pause')).toMatchObject({
      kind: 'unchanged',
      mode: 'paused',
      reason: 'already paused',
      ...noWorker,
    });
    expect(await mode('resume')).toMatchObject({ kind: 'change', from: 'paused', to: 'live' });
    expect((await status(w)).mode).toBe('live');
    const rolled = (await mode('rollback', 'partner errors')) as unknown as Record<string, unknown>;
    expect(rolled).toMatchObject({ kind: 'change', from: 'live', to: 'rolled_back', ...noWorker });
    expect(rolled.acknowledgementText).toContain(
      'NOT acknowledged: no worker of this installation is running',
    );
    expect((await status(w)).mode).toBe('rolled_back');
    expect(await mode('pause')).toMatchObject({ kind: 'refused', mode: 'rolled_back' });
    expect(await mode('resume')).toMatchObject({ kind: 'refused', mode: 'rolled_back' });
    expect(await mode('rollback')).toMatchObject({ kind: 'unchanged', mode: 'rolled_back' });
    expect((await status(w)).mode).toBe('rolled_back');

    const changes = (await auditAll(w)).filter((e) => e.action.startsWith('mode.')).reverse();
    expect(changes.map((e) => [e.action, e.actor, e.details])).toEqual([
      ['mode.pause', 'api:otto', { from: 'live', to: 'paused', reason: 'pause from the test' }],
      ['mode.resume', 'api:otto', { from: 'paused', to: 'live', reason: 'resume from the test' }],
      ['mode.rollback', 'api:otto', { from: 'live', to: 'rolled_back', reason: 'partner errors' }],
    ]);
    const { alerts } = await w.read<{ alerts: { event: string; message: string }[] }>('/api/alerts');
    expect(alerts[0]).toMatchObject({
      event: 'rollback',
      message: expect.stringMatching(/api:otto.*partner errors/),
    });
  });

  it('reviews, then confirms the named live cycle for ramp stage 1 (audited as api:<name>); nothing, a stale or a wrong number is a 409', async () => {
    const w = await world(backend);
    expect(await w.read<{ kind: string; waitingFor: string }>('/api/cycles/review')).toMatchObject({
      kind: 'nothing',
      waitingFor: expect.stringContaining('no live cycle yet'),
    });
    expect(await w.post('/api/cycles/confirm', { cycleId: 1 })).toMatchObject({
      status: 409,
      body: { error: { code: 'NOTHING_TO_CONFIRM' } },
    });
    const db = w.app.store.db;
    const id = await createCycle(db, {
      startedAt: NOW,
      phase: 4,
      kind: 'live',
      rampStage: 1,
      ceiling: 1,
      limitedBy: 'ramp stage 1',
    });
    await finishCycle(db, id, { finishedAt: NOW + 1_000, claimed: 1, actions: 1, summary: {} });
    expect(await w.post('/api/cycles/confirm', { cycleId: 'one' })).toMatchObject({
      status: 400,
      body: { error: { code: 'VALIDATION', message: 'body/cycleId must be integer' } },
    });
    expect(await w.post('/api/cycles/confirm', {})).toMatchObject({
      status: 400,
      body: { error: { code: 'VALIDATION' } },
    });
    expect(await w.read<{ kind: string; cycle: { id: number } }>('/api/cycles/review')).toMatchObject({
      kind: 'awaiting',
      cycle: { id },
    });
    expect(await w.post('/api/cycles/confirm', { cycleId: id }, AS.viewer)).toMatchObject({ status: 403 });
    expect(await w.post('/api/cycles/confirm', { cycleId: id + 1 })).toMatchObject({
      status: 409,
      body: {
        error: {
          message: `cycle ${id + 1} is not the cycle awaiting confirmation: cycle ${id} is (review it with \`valhalla cycle confirm\`)`,
        },
      },
    });
    expect(await w.post('/api/cycles/confirm', { cycleId: id })).toMatchObject({
      status: 200,
      body: { confirmed: id, review: { kind: 'awaiting', cycle: { id } } },
    });
    expect(await w.post('/api/cycles/confirm', { cycleId: id })).toMatchObject({
      status: 409,
      body: { error: { code: 'NOTHING_TO_CONFIRM' } },
    });
    const cycles = await w.read<{ cycles: { id: number; confirmed: boolean }[] }>('/api/cycles');
    expect(cycles.cycles.find((c) => c.id === id)?.confirmed).toBe(true);
    const confirmed = (await auditAll(w)).filter((e) => e.action === 'cycle.confirmed');
    expect(confirmed.map((e) => e.actor)).toEqual(['api:otto']);
  });

  it('shows the caps in use, exports and quarantines per minute as the store records them', async () => {
    const w = await world(backend);
    await upload(
      w,
      csvOf(
        [1, 2, 3, 4, 5].map((i) => person(i, 50 + i)),
        NOW,
      ),
    );
    const db = w.app.store.db;
    const cycleId = await createCycle(db, {
      startedAt: NOW,
      phase: 4,
      kind: 'live',
      rampStage: null,
      ceiling: 25,
      limitedBy: 'leads_per_cycle',
    });
    // Two live batches: leads 1-3 accepted (exported) now, leads 4-5 quarantined two minutes later.
    const batch = (ids: number[], key: string, at: number) =>
      db.transaction().execute((trx) =>
        createDelivery(
          trx,
          { batchKey: key, cycleId, kind: 'live', payloadSha256: 'x', now: at },
          ids.map((id) => ({ id, leadKey: `k${id}`, exposure: (50 + id) * 100 })),
        ),
      );
    await batch([1, 2, 3], 'b1', NOW);
    await setLeadsState(db, [1, 2, 3], { state: 'exported', reason: null, now: NOW, exported: true });
    w.clock.advance(2 * MINUTE);
    const quarantined = await batch([4, 5], 'b2', w.clock.now());
    await setDeliveryState(db, quarantined, {
      state: 'quarantined',
      now: w.clock.now(),
      nextAttemptAt: null,
    });
    await setLeadsState(db, [4, 5], { state: 'quarantined', reason: 'retries spent', now: w.clock.now() });

    const s = await status(w);
    expect(s.caps.daily).toEqual({ used: 5, limit: 10_000 });
    // Σ score × value of the five claimed leads: (51 + 52 + 53 + 54 + 55) × 100.
    expect(s.caps.budget).toEqual({ used: 26_500, limit: 50_000_000 });
    // Phase 3: the next cycle is a dry run, limited by leads per cycle only.
    expect(s.caps.cycle).toMatchObject({ ceiling: 25, limitedBy: 'leads_per_cycle', hardMax: 100 });
    expect(s.leads).toMatchObject({ exported: 3, quarantined: 2, total: 5 });

    const flow = await w.read<LeadFlow>('/api/flow?hours=1');
    const at = (minutesAgo: number) => 59 - minutesAgo;
    expect(flow.series.exported[at(2)]).toBe(3);
    expect(flow.series.quarantined[at(0)]).toBe(2);
    expect(flow.series.exported.reduce((a, b) => a + b, 0)).toBe(3);
    expect(flow.series.quarantined.reduce((a, b) => a + b, 0)).toBe(2);
    // A release puts the leads back in the queue; the minute they were quarantined stays in the chart.
    await w.post('/api/quarantine/release', { ids: [4, 5], reason: 'partner fixed' });
    expect((await w.read<LeadFlow>('/api/flow?hours=1')).series.quarantined[at(0)]).toBe(2);
  });

  it('lists, releases and drops quarantined leads, reporting the ids it skipped', async () => {
    const w = await world(backend);
    await upload(w, csvOf([person(1), person(2), person(3), person(4)], NOW));
    const [d, c, b, a] = (await leadIds(w)) as [number, number, number, number];
    const reason = 'partner refused the batch (test)';
    await setLeadsState(w.app.store.db, [a, b, c], { state: 'quarantined', reason, now: NOW });
    type Quarantine = { leads: { id: number; name: string; email: string; reason: string }[] };
    const listed = await w.read<Quarantine>('/api/quarantine');
    expect(listed.leads.map((l) => [l.id, l.name, l.email, l.reason])).toEqual(
      [c, b, a].map((id, i) => [id, maskName(person(3 - i).name), maskEmail(person(3 - i).email), reason]),
    );
    const act = (name: string, ids: number[]) =>
      w.post(`/api/quarantine/${name}`, { ids, reason: `${name} test` });
    expect((await act('release', [a, d, 999_999])).body).toEqual({ changed: [a], skipped: [d, 999_999] });
    expect((await act('drop', [b])).body).toEqual({ changed: [b], skipped: [] });
    expect((await act('drop', [b])).body).toEqual({ changed: [], skipped: [b] });
    // A reason holding a phone number is refused (422), never echoed, and nothing changes.
    const refused = await w.post(`/api/quarantine/drop`, { ids: [c], reason: 'customer on 415-555-0011' });
    expect(refused.status).toBe(422);
    expect(refused.body).toMatchObject({ error: { code: 'CONTACT_DATA_IN_REASON' } });
    expect(JSON.stringify(refused.body)).not.toContain('555');
    expect((await w.read<Quarantine>('/api/quarantine')).leads.map((l) => l.id)).toEqual([c]);
    expect(await leadIds(w, '&state=pending')).toEqual([d, a]);
    // A pause is made whatever its reason's wording; the reason is withheld, and the answer says so.
    const paused = await w.post<{ kind: string; reasonWithheld?: string }>('/api/mode/pause', {
      reason: 'tel 4155550011 asked',
    });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({
      kind: 'change',
      reasonWithheld: expect.stringContaining('phone number'),
    });
    const pauseEntry = (await auditAll(w)).find((e) => e.action === 'mode.pause')!;
    expect(JSON.stringify(pauseEntry)).not.toContain('4155550011');
    const archived = await w.read<LeadsPage>('/api/leads?state=archived');
    expect(archived.leads.map((l) => [l.id, l.reason])).toEqual([
      [b, 'dropped from quarantine by api:otto: drop test'],
    ]);
    const actions = (await auditAll(w)).filter((e) => e.action.startsWith('quarantine.')).reverse();
    expect(actions.map((e) => [e.action, e.actor])).toEqual([
      ['quarantine.released', 'api:otto'],
      ['quarantine.dropped', 'api:otto'],
    ]);
  });

  it('records a valid signed document (201), refuses a tampered one (422) and an operator (403)', async () => {
    const w = await world(backend);
    const key = createKeyPair();
    const deps = { db: w.app.store.db, dialect: w.app.store.dialect, audit: w.app.audit };
    const signer = { role: 'cfo' as const, name: 'Frida Finance', publicKeyPem: key.publicKeyPem };
    expect((await addSigner(deps, signer, { actor: 'test', now: NOW })).ok).toBe(true);
    const fields = { kind: 'signoff', role: 'cfo', name: 'Frida Finance', date: '2026-11-20' } as const;
    // An installation made by `valhalla init` has an id; this one is opened directly.
    await claimInstallationId(w.app.store.db, TEST_INSTALLATION, NOW);
    const manifest = (await w.app.releaseManifest())!;
    const unsigned = {
      ...fields,
      comments: 'approved',
      gate: null,
      item: null,
      policyHash: manifest.policyHash,
      manifest,
      keyId: key.keyId,
    };
    const document = signDocument(unsigned, key.privateKeyPem);
    expectError(await w.post('/api/signoffs', document, AS.operator), 403, 'FORBIDDEN');
    const tampered = await w.post('/api/signoffs', { ...document, comments: 'approved, and more' }, AS.admin);
    expectError(tampered, 422, 'SIGNATURE_REFUSED');
    expect(tampered.body.error.message).toMatch(/does not verify/);
    expectError(await w.post('/api/signoffs', { kind: 'x' }, AS.admin), 422, 'SIGNATURE_REFUSED');

    const recorded = await w.post('/api/signoffs', document, AS.admin);
    expect({ status: recorded.status, body: recorded.body }).toEqual({
      status: 201,
      body: { id: expect.any(Number) },
    });
    const { signers } = await w.read<{ signers: { role: string; keyId: string }[] }>('/api/signers');
    expect(signers).toEqual([expect.objectContaining({ role: 'cfo', keyId: key.keyId })]);
    // The malformed document is refused before it is read, unaudited, as `signoff submit` does.
    const audited = (await auditAll(w)).filter((e) => e.action.startsWith('signature.')).reverse();
    expect(audited.map((e) => [e.action, e.actor])).toEqual([
      ['signature.refused', 'api:ada'],
      ['signature.recorded', 'api:ada'],
    ]);
  });

  it('reads leads by page and state, cycles, deliveries, the flow per minute, gates and the audit chain', async () => {
    const w = await world(backend);
    await upload(w, csvOf([1, 2, 3, 4, 5, 6].map((i) => person(i)).concat(person(7, 20)), NOW));
    const pages = await allPages<LeadsPage>(w, '/api/leads?limit=3');
    expect(pages.map((p) => p.leads.length)).toEqual([3, 3, 1]);
    const ids = pages.flatMap((p) => p.leads.map((l) => l.id));
    expect(ids).toEqual([...ids].sort((x, y) => y - x));
    expect(new Set(ids).size).toBe(7);
    expect(pages.map((p) => p.nextBeforeId)).toEqual([ids[2], ids[5], null]);
    expect((await w.read<LeadsPage>('/api/leads?state=below_threshold')).leads).toEqual([
      expect.objectContaining({ id: ids[0], score: 20, state: 'below_threshold' }),
    ]);
    expect(await leadIds(w, '&state=pending')).toEqual(ids.slice(1));

    // Two dry-run cycles three minutes apart: six leads, then the two ingested in between.
    const engine = w.app.engine({ sleep: w.clock.sleep });
    expect((await engine.runCycle()).dryRunRecorded).toBe(6);
    w.clock.advance(3 * MINUTE);
    await upload(w, csvOf([person(8), person(9)], w.clock.now()));
    expect((await engine.runCycle()).dryRunRecorded).toBe(2);

    type Cycle = { id: number; kind: string; phase: number; startedAt: string };
    const { cycles } = await w.read<{ cycles: Cycle[] }>('/api/cycles');
    expect(cycles.map((c) => [c.kind, c.phase, c.startedAt])).toEqual([
      ['dry_run', 3, new Date(NOW + 3 * MINUTE).toISOString()],
      ['dry_run', 3, new Date(NOW).toISOString()],
    ]);
    type Delivery = { id: number; cycleId: number; kind: string; state: string; leadCount: number };
    type Deliveries = { deliveries: Delivery[]; nextBeforeId: number | null };
    const { deliveries } = await w.read<Deliveries>('/api/deliveries?state=dry_run');
    expect(deliveries.map((d) => [d.cycleId, d.kind, d.state, d.leadCount])).toEqual([
      [cycles[0]!.id, 'dry_run', 'dry_run', 2],
      [cycles[1]!.id, 'dry_run', 'dry_run', 6],
    ]);
    const byOne = await allPages<Deliveries>(w, '/api/deliveries?limit=1');
    expect(byOne.map((p) => p.deliveries.map((d) => d.id))).toEqual([
      [deliveries[0]!.id],
      [deliveries[1]!.id],
      [],
    ]);

    const flow = await w.read<LeadFlow>('/api/flow?hours=1');
    const lastMinute = Math.floor((NOW + 3 * MINUTE) / MINUTE);
    expect(flow).toMatchObject({ buckets: 60, bucketMs: MINUTE, fromMs: (lastMinute - 59) * MINUTE });
    expect(Object.keys(flow.series).sort()).toEqual(['dry_run', 'exported', 'quarantined']);
    expect(flow.series.dry_run).toEqual(
      Array.from({ length: 60 }, (_, i) => (i === 56 ? 6 : i === 59 ? 2 : 0)),
    );
    expect(flow.series.exported).toEqual(Array(60).fill(0));
    expect((await w.read<LeadFlow>('/api/flow')).series.dry_run).toHaveLength(24 * 60);

    expect(await status(w)).toMatchObject({
      phase: 3,
      mode: 'live',
      database: backend.name,
      policyHash: w.app.config.policyHash,
      leads: { pending: 8, below_threshold: 1, total: 9 },
      gates: { cleared: false, reason: expect.any(String) },
      lastCycles: [expect.objectContaining({ kind: 'dry_run', leads: 2 }), expect.anything()],
    });
    const gates = await w.read<GatesReport>('/api/gates');
    expect(gates.gates.map((g) => g.gate)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(gates).toMatchObject({ cleared: false, policyHash: w.app.config.policyHash });

    const auditPages = await allPages<AuditPage>(w, '/api/audit?limit=4');
    const seqs = auditPages.flatMap((p) => p.entries.map((e) => e.seq));
    expect(seqs.length).toBeGreaterThan(8);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs.length - i));
    expect(auditPages.slice(0, -1).every((p) => p.entries.length === 4)).toBe(true);
    const headHash = expect.stringMatching(/^[0-9a-f]{64}$/);
    expect(await w.read('/api/audit/verify')).toEqual({
      ok: true,
      entries: seqs.length,
      headHash,
      firstBreak: null,
    });
  });

  it('never shows a lead’s name, e-mail, phone or company unmasked, on any read or the event stream', async () => {
    const w = await world(backend);
    const people = [
      ['Zebulon Quixmoor', 'zebulon.quixmoor@fjordmail.test', '+44 20 7946 0813', 'Quixmoor Anvilworks', 80],
      ['Ottoline Vexbridge', 'o.vexbridge@fjordmail.test', '+1 415 555 0172', 'Vexbridge Larder', 80],
      [
        'Perpetua Wrenfield',
        'perpetua.wrenfield@fjordmail.test',
        '+33 1 85 14 92 37',
        'Wrenfield Cordage',
        80,
      ],
      ['Barnaby Skelmorlie', 'barnaby.s@fjordmail.test', '+49 30 901820 55', 'Skelmorlie Glassworks', 25],
      ['Ignatius Thornquist', 'ignatius.t@fjordmail.test', '+61 2 9374 4000', 'Thornquist Freight', 'high'],
    ].map(([name, email, phone, company, score]) => ({ name, email, phone, company, score }) as Person);
    // Open before anything happens: the stream carries the ingest, the quarantine and the dry run.
    const stream = await openEventStream(w.url, AS.viewer);
    try {
      expect((await upload(w, csvOf(people, NOW))).body).toMatchObject({ accepted: 4, rejected: 1 });
      await stream.waitFor(isAction('ingest.finished'), EVENT_WAIT_MS);
      const [, , second, first] = await leadIds(w);
      await setLeadsState(w.app.store.db, [first!, second!], {
        state: 'quarantined',
        reason: 'test',
        now: NOW,
      });
      expect((await w.app.engine({ sleep: w.clock.sleep }).runCycle()).dryRunRecorded).toBe(1);
      await stream.waitFor(isAction('batch.dry_run'), EVENT_WAIT_MS);
    } finally {
      await stream.close();
    }

    const bodies: string[] = [stream.raw];
    const others = READ_PATHS.filter((p) => !['/api/events', '/api/leads', '/api/audit'].includes(p));
    for (const path of [
      ...others,
      '/api/flow?hours=1',
      '/api/quarantine?limit=1',
      '/api/deliveries?state=dry_run',
    ]) {
      bodies.push(JSON.stringify(await w.read(path)));
    }
    const leadPages = await allPages(w, '/api/leads?limit=2');
    const auditPages = await allPages(w, '/api/audit?limit=3');
    bodies.push(...[...leadPages, ...auditPages].map((p) => JSON.stringify(p)));

    const everything = bodies.join('\n').toLowerCase();
    const secrets = people.flatMap((p) => [
      ...[p.name, ...p.name.split(' '), p.email, p.email.split('@')[0]!],
      ...[p.phone, p.phone.replace(/\D/g, '').slice(-8), p.company, ...p.company.split(' ')],
    ]);
    expect(secrets.filter((s) => everything.includes(s.toLowerCase()))).toEqual([]);
    const shown = JSON.stringify(leadPages);
    for (const p of people.slice(0, 4)) {
      for (const masked of [
        maskName(p.name),
        maskEmail(p.email),
        maskPhone(p.phone),
        maskCompany(p.company),
      ]) {
        expect(shown).toContain(masked);
      }
    }
    expect(stream.events.filter((e) => e.event === 'audit').length).toBeGreaterThan(3);
  });

  it('answers 500 with a generic body (no stack, no SQL) when the database is gone, and /readyz 503', async () => {
    const w = await world(backend);
    await w.app.store.close();
    for (const path of ['/api/status', '/api/leads', '/api/audit', '/api/flow']) {
      const response = await w.get(path);
      expect({ path, status: response.status, body: response.body }).toEqual({
        path,
        status: 500,
        body: { error: { code: 'INTERNAL', message: 'the request failed; see the log' } },
      });
    }
    expect(await w.api('GET', '/readyz')).toMatchObject({ status: 503, body: { ready: false } });
    expect((await w.api('GET', '/healthz')).status).toBe(200);
  });
});

// ---------------------------------------------------------------------------------------------
// What does not depend on the database: sessions, validation, the event stream, the rest

describe('admin API sessions, validation, events and assets (SQLite)', () => {
  const cookieOf = (response: ApiResponse<unknown>) => [response.headers['set-cookie'] ?? []].flat();

  it('signs in to an HttpOnly SameSite=Strict cookie whose changes need the CSRF token and this origin', async () => {
    const w = await world();
    const refused = await w.api('POST', '/api/session', { json: { token: 'vh_not-a-token' } });
    expectError(refused, 401, 'UNAUTHORIZED');
    expect(cookieOf(refused)).toEqual([]);

    type Session = { name: string; role: string; csrfToken: string };
    const signIn = await w.api<Session>('POST', '/api/session', { json: { token: TOKENS.operator.token } });
    expect(signIn.status).toBe(200);
    expect(signIn.body).toEqual({
      name: 'otto',
      role: 'operator',
      csrfToken: expect.stringMatching(/^\S{16,}$/),
    });
    const [setCookie, ...more] = cookieOf(signIn);
    expect(more).toEqual([]);
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE}=[^;]+;`));
    expect(setCookie).toMatch(/;\s*HttpOnly/i);
    expect(setCookie).toMatch(/;\s*SameSite=Strict/i);
    const cookie = setCookie!.split(';')[0]!;
    const csrf = signIn.body.csrfToken;

    expect(await w.api('GET', '/api/session', { cookie })).toMatchObject({ status: 200, body: signIn.body });
    const events = await w.api('GET', '/api/events', { cookie });
    expect([events.status, events.headers['content-type']]).toEqual([
      200,
      'text/event-stream; charset=utf-8',
    ]);

    const pause = (as: CallOptions) =>
      w.post<ModeChange>('/api/mode/pause', { reason: 'session' }, { cookie, ...as });
    expectError(await pause({}), 403, 'CSRF');
    expectError(await pause({ csrf: `${csrf.slice(0, -2)}xx` }), 403, 'CSRF');
    expectError(await pause({ csrf: TOKENS.operator.token }), 403, 'CSRF');
    expectError(await pause({ csrf, origin: 'https://evil.example' }), 403, 'CROSS_SITE');
    expectError(await pause({ csrf, origin: 'null' }), 403, 'CROSS_SITE');
    expect((await status(w)).mode).toBe('live');
    const paused = await pause({ csrf, origin: w.url });
    expect(paused).toMatchObject({ status: 200, body: { kind: 'change', from: 'live', to: 'paused' } });
    // A browser never sends a bearer token on its own: no CSRF header is needed with one.
    const resumed = await w.post('/api/mode/resume', { reason: 'bearer' });
    expect(resumed).toMatchObject({ status: 200, body: { kind: 'change', from: 'paused', to: 'live' } });

    expectError(await w.api('DELETE', '/api/session', { cookie }), 403, 'CSRF');
    const signOut = await w.api('DELETE', '/api/session', { cookie, csrf });
    expect(signOut.status).toBe(204);
    const cleared = new RegExp(`^${SESSION_COOKIE}=;.*(Max-Age=0|Expires=Thu, 01 Jan 1970)`, 'i');
    expect(cookieOf(signOut).join()).toMatch(cleared);
    expectError(await w.api('GET', '/api/session', { cookie }), 401, 'UNAUTHORIZED');
    expectError(await pause({ csrf, origin: w.url }), 401, 'UNAUTHORIZED');
  });

  it(`refuses more than ${SIGN_IN_ATTEMPTS_PER_MINUTE} sign-ins a minute (429, Retry-After), even with a good token`, async () => {
    const w = await world();
    for (let i = 0; i < SIGN_IN_ATTEMPTS_PER_MINUTE; i++) {
      expect((await w.api('POST', '/api/session', { json: { token: `vh_guess-${i}` } })).status).toBe(401);
    }
    const limited = await w.api('POST', '/api/session', { json: { token: TOKENS.admin.token } });
    expectError(limited, 429, 'TOO_MANY_REQUESTS');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(cookieOf(limited)).toEqual([]);
    // The API itself is not throttled by the sign-in limit.
    expect((await w.get('/api/status')).status).toBe(200);
  });

  it('refuses bad queries and bodies with 400 VALIDATION naming the field, and changes nothing', async () => {
    const w = await world();
    const queries: [string, string][] = [
      ['/api/leads?state=bogus', 'state'],
      ['/api/leads?limit=0', 'limit'],
      ['/api/leads?limit=100000', 'limit'],
      ['/api/leads?limit=ten', 'limit'],
      ['/api/leads?beforeId=-1', 'beforeId'],
      ['/api/leads?sort=name', 'sort'],
      ['/api/deliveries?state=sent', 'state'],
      ['/api/quarantine?beforeId=0', 'beforeId'],
      ['/api/audit?beforeSeq=-5', 'beforeSeq'],
      ['/api/flow?hours=0', 'hours'],
      ['/api/flow?hours=73', 'hours'],
      ['/api/alerts?limit=201', 'limit'],
    ];
    const bodies: [string, unknown, string][] = [
      ['/api/mode/pause', {}, 'reason'],
      ['/api/mode/pause', { reason: '' }, 'reason'],
      ['/api/mode/pause', { reason: 'x'.repeat(501) }, 'reason'],
      ['/api/mode/pause', { reason: 42 }, 'reason'],
      ['/api/mode/rollback', { reason: 'ok', force: true }, 'force'],
      ['/api/quarantine/release', { reason: 'r' }, 'ids'],
      ['/api/quarantine/release', { ids: [], reason: 'r' }, 'ids'],
      ['/api/quarantine/release', { ids: [1.5], reason: 'r' }, 'ids'],
      ['/api/quarantine/release', { ids: ['one'], reason: 'r' }, 'ids'],
      ['/api/quarantine/drop', { ids: [0], reason: 'r' }, 'ids'],
      ['/api/quarantine/drop', { ids: [1] }, 'reason'],
      ['/api/quarantine/drop', { ids: [1], reason: 'r', all: true }, 'all'],
    ];
    const failures: string[] = [];
    const check = (label: string, response: ApiResponse<ApiErrorBody | null>, field: string) => {
      const error = response.body?.error;
      if (response.status !== 400 || error?.code !== 'VALIDATION' || !error.message.includes(field)) {
        failures.push(`${label}: ${response.status} ${response.text}`);
      }
    };
    for (const [path, field] of queries) check(`GET ${path}`, await w.get(path), field);
    for (const [path, json, field] of bodies) {
      check(`POST ${path} ${JSON.stringify(json).slice(0, 40)}`, await w.post(path, json), field);
    }
    expect(failures).toEqual([]);
    expect((await status(w)).mode).toBe('live');
  });

  it('streams hello, then the audit entry and the new status of a pause, within 2 s', async () => {
    const w = await world();
    const latest = (await w.read<AuditPage>('/api/audit?limit=1')).entries[0]?.seq ?? 0;
    const stream = await openEventStream(w.url, AS.viewer);
    const mode = (m: string) => (e: ServerEvent) =>
      e.event === 'status' && (e.data as { mode: string }).mode === m;
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      expect(stream.headers['content-security-policy']).toContain("default-src 'self'");
      expect(await stream.waitFor(() => true, EVENT_WAIT_MS)).toEqual({
        event: 'hello',
        data: { lastSeq: latest },
      });
      await stream.waitFor(mode('live'), EVENT_WAIT_MS);

      expect((await w.post('/api/mode/pause', { reason: 'stream test' })).status).toBe(200);
      const audit = await stream.waitFor(isAction('mode.pause'), EVENT_WAIT_MS);
      expect(audit.data).toMatchObject({
        seq: latest + 1,
        actor: 'api:otto',
        details: { from: 'live', to: 'paused', reason: 'stream test' },
      });
      const changed = await stream.waitFor(mode('paused'), EVENT_WAIT_MS);
      expect(changed.data).toMatchObject({ mode: 'paused', leads: { total: 0 } });
    } finally {
      await stream.close();
    }
  });

  it('closes with streams still open (ending them), and ends a stream whose session signs out', async () => {
    const w = await world();
    const signIn = await w.api<{ csrfToken: string }>('POST', '/api/session', {
      json: { token: TOKENS.viewer.token },
    });
    const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
    const bySession = await openEventStream(w.url, { cookie });
    const byToken = await openEventStream(w.url, AS.viewer);
    try {
      await bySession.waitFor((e) => e.event === 'hello', EVENT_WAIT_MS);
      await byToken.waitFor((e) => e.event === 'hello', EVENT_WAIT_MS);
      const out = await w.api('DELETE', '/api/session', {
        cookie,
        headers: { 'x-csrf-token': signIn.body.csrfToken },
      });
      expect(out.status).toBe(204);
      // The signed-out stream ends at the next poll; the token's stream goes on.
      await bySession.ended(EVENT_WAIT_MS);
      expect((await w.post('/api/mode/pause', { reason: 'still streaming' })).status).toBe(200);
      await byToken.waitFor(isAction('mode.pause'), EVENT_WAIT_MS);
      expect(bySession.events.some(isAction('mode.pause'))).toBe(false);
      // Closing the server does not wait for the open stream: it is ended.
      const closed = await Promise.race([
        w.server.close().then(() => 'closed'),
        new Promise((resolve) => setTimeout(() => resolve('still open'), 5_000).unref()),
      ]);
      expect(closed).toBe('closed');
      await byToken.ended(EVENT_WAIT_MS);
    } finally {
      await bySession.close();
      await byToken.close();
    }
  });

  it('answers 503 to a stream opened while the database is down (the browser retries it)', async () => {
    const w = await world();
    await w.app.store.close();
    const down = await w.api('GET', '/api/events', { ...AS.viewer, timeoutMs: EVENT_WAIT_MS });
    expect(down).toMatchObject({ status: 503, body: { error: { code: 'UNAVAILABLE' } } });
  });

  it('starts a stream opened after an idle spell at the chain head: nothing from before is replayed', async () => {
    const w = await world();
    const first = await openEventStream(w.url, AS.viewer);
    await first.waitFor((e) => e.event === 'hello', EVENT_WAIT_MS);
    await first.close();
    // Written while nobody watches: the next stream's hello already counts it.
    await w.post('/api/mode/pause', { reason: 'while nobody watched' });
    const head = (await w.read<AuditPage>('/api/audit?limit=1')).entries[0]!.seq;
    const second = await openEventStream(w.url, AS.viewer);
    try {
      const hello = await second.waitFor((e) => e.event === 'hello', EVENT_WAIT_MS);
      expect(hello.data).toEqual({ lastSeq: head });
      await w.post('/api/mode/resume', { reason: 'watched' });
      await second.waitFor(isAction('mode.resume'), EVENT_WAIT_MS);
      const audited = second.events.filter((e) => e.event === 'audit');
      expect(audited.map((e) => (e.data as AuditEntryView).action)).toEqual(['mode.resume']);
    } finally {
      await second.close();
    }
  });

  it('answers HEAD /api/events with the stream’s headers instead of hanging', async () => {
    const w = await world();
    const head = await w.api('HEAD', '/api/events', { ...AS.viewer, timeoutMs: EVENT_WAIT_MS });
    expect([head.status, head.headers['content-type']]).toEqual([200, 'text/event-stream; charset=utf-8']);
  });

  it('describes every route in /api/openapi.json and serves /api/docs/', async () => {
    const w = await world();
    const spec = await w.api<{ openapi: string; paths: Record<string, Record<string, unknown>> }>(
      'GET',
      '/api/openapi.json',
    );
    expect(spec.status).toBe(200);
    expect(spec.body.openapi).toMatch(/^3\./);
    const routes = [
      ...ROUTES.map(([method, path]) => [method.toLowerCase(), path]),
      ...[['post', '/api/session'], ...['/healthz', '/readyz', '/metrics'].map((p) => ['get', p])],
    ] as [string, string][];
    expect(routes.filter(([method, path]) => spec.body.paths[path]?.[method] === undefined)).toEqual([]);
    const docs = await w.api('GET', '/api/docs/');
    expect([docs.status, docs.headers['content-type']]).toEqual([200, expect.stringMatching(/^text\/html/)]);
    expect(docs.text).toMatch(/swagger/i);
  });

  it('serves the dashboard with a CSP, or 503 naming npm run build when it is not built', async () => {
    const webRoot = tempDir();
    const page = '<!doctype html><title>Valhalla</title><script type="module" src="/app.js"></script>\n';
    writeFileSync(join(webRoot, 'index.html'), page);
    const served = await (await world(sqliteBackend, { webRoot })).api('GET', '/');
    expect([served.status, served.text]).toEqual([200, page]);
    expect(served.headers['content-type']).toMatch(/^text\/html/);
    expect(served.headers['content-security-policy']).toMatch(/default-src 'self'.*script-src 'self'/);
    expect(served.headers['x-frame-options']).toBe('DENY');

    const missing = await (await world()).api('GET', '/');
    expect(missing.status).toBe(503);
    expect(missing.headers['content-type']).toMatch(/^text\/plain/);
    expect(missing.text).toContain('npm run build');
  });

  it('serves /metrics only when given metrics, and 404 JSON for unknown routes', async () => {
    const scrape = await (await world(sqliteBackend, { metrics: true })).api('GET', '/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(scrape.text).toMatch(/^# HELP valhalla_/m);

    const w = await world();
    expectError(await w.api('GET', '/metrics'), 404, 'NOT_FOUND');
    expect(await w.api('GET', '/api/nope?x=1', AS.admin)).toMatchObject({
      status: 404,
      body: { error: { code: 'NOT_FOUND', message: 'no route GET /api/nope' } },
    });
    expectError(await w.api('POST', '/api/nope'), 404, 'NOT_FOUND');
  });
});
