import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { App } from '../../app/index.js';
import { DELIVERY_STATES, LEAD_STATES, type LeadState } from '../../policy/index.js';
import type { DeliveryState } from '../../store/index.js';
import { alertView, type Dashboard } from '../../views/index.js';
import type { createEventHub } from '../events.js';
import { ApiError, anyObject, cursorParam, limitParam } from '../http.js';

const viewer = { role: 'viewer' } as const;
const query = (properties: Record<string, unknown>) =>
  ({ type: 'object', additionalProperties: false, properties }) as const;

/** The next page's cursor: the last row's key when the page is full, else null (no more). */
function nextCursor<T>(rows: readonly T[], limit: number, key: (row: T) => number): number | null {
  return rows.length === limit && rows.length > 0 ? key(rows[rows.length - 1]!) : null;
}

/** Everything a viewer may read. Leads are masked; the chain holds pseudonyms only. */
export function registerReadRoutes(
  server: FastifyInstance,
  deps: {
    app: App;
    dashboard: Dashboard;
    events: ReturnType<typeof createEventHub>;
    /** Whether the request's sign-in still holds (a session may end while its stream is open). */
    stillSignedIn: (request: FastifyRequest) => () => boolean;
  },
): void {
  const { app, dashboard } = deps;

  server.get(
    '/api/status',
    {
      config: viewer,
      schema: {
        tags: ['status'],
        summary: 'phase, mode, ramp stage, lead counts, caps in use, error rate, heartbeat, gates',
        response: { 200: anyObject('the status') },
      },
    },
    () => dashboard.status(),
  );

  server.get(
    '/api/flow',
    {
      config: viewer,
      schema: {
        tags: ['status'],
        summary: 'leads per minute by outcome (dry run, exported, quarantined), oldest minute first',
        querystring: query({ hours: { type: 'integer', minimum: 1, maximum: 72, default: 24 } }),
        response: { 200: anyObject('one number per minute and outcome') },
      },
    },
    (request) => dashboard.flow((request.query as { hours: number }).hours),
  );

  server.get(
    '/api/leads',
    {
      config: viewer,
      schema: {
        tags: ['leads'],
        summary: 'leads, masked, newest first',
        querystring: query({
          state: { type: 'string', enum: [...LEAD_STATES] },
          limit: limitParam(1000, 50),
          beforeId: cursorParam,
        }),
        response: { 200: anyObject('a page of masked leads and the next cursor') },
      },
    },
    async (request) => {
      const q = request.query as { state?: LeadState; limit: number; beforeId?: number };
      const leads = await app.listLeads(q);
      return { leads, nextBeforeId: nextCursor(leads, q.limit, (l) => l.id) };
    },
  );

  server.get(
    '/api/cycles',
    {
      config: viewer,
      schema: {
        tags: ['engine'],
        summary: 'the latest cycles',
        querystring: query({ limit: limitParam(500, 20) }),
        response: { 200: anyObject('cycles, newest first') },
      },
    },
    async (request) => ({ cycles: await dashboard.cycles((request.query as { limit: number }).limit) }),
  );

  server.get(
    '/api/deliveries',
    {
      config: viewer,
      schema: {
        tags: ['engine'],
        summary: 'deliveries (batches), newest first',
        querystring: query({
          state: { type: 'string', enum: [...DELIVERY_STATES] },
          limit: limitParam(500, 50),
          beforeId: cursorParam,
        }),
        response: { 200: anyObject('a page of deliveries and the next cursor') },
      },
    },
    async (request) => {
      const q = request.query as { state?: DeliveryState; limit: number; beforeId?: number };
      const deliveries = await dashboard.deliveries(q);
      return { deliveries, nextBeforeId: nextCursor(deliveries, q.limit, (d) => d.id) };
    },
  );

  server.get(
    '/api/quarantine',
    {
      config: viewer,
      schema: {
        tags: ['quarantine'],
        summary: 'quarantined leads, masked, with their reasons',
        querystring: query({ limit: limitParam(1000, 50), beforeId: cursorParam }),
        response: { 200: anyObject('a page of quarantined leads and the next cursor') },
      },
    },
    async (request) => {
      const q = request.query as { limit: number; beforeId?: number };
      const leads = await app.operatorActions().quarantined(q.limit, q.beforeId);
      return { leads, nextBeforeId: nextCursor(leads, q.limit, (l) => l.id) };
    },
  );

  server.get(
    '/api/gates',
    {
      config: viewer,
      schema: {
        tags: ['gates'],
        summary: 'the nine gates item by item, with evidence and signers, and the activation',
        response: { 200: anyObject('the gates report (valhalla gates status --json)') },
      },
    },
    // The clearance's report: evaluated at most every 30 s and at once after any signature or
    // evidence, not by walking the whole chain on every read (`valhalla gates status` does that).
    () => app.gates.report(),
  );

  server.get(
    '/api/signers',
    {
      config: viewer,
      schema: {
        tags: ['gates'],
        summary: 'registered signers and their keys',
        response: { 200: anyObject('signers') },
      },
    },
    async () => ({ signers: await dashboard.signers() }),
  );

  server.get(
    '/api/audit',
    {
      config: viewer,
      schema: {
        tags: ['audit'],
        summary: 'audit chain entries, newest first (pseudonyms, never PII)',
        querystring: query({ limit: limitParam(1000, 50), beforeSeq: cursorParam }),
        response: { 200: anyObject('a page of entries and the next cursor') },
      },
    },
    async (request) => {
      const q = request.query as { limit: number; beforeSeq?: number };
      const entries = await dashboard.auditPage(q.limit, q.beforeSeq);
      return { entries, nextBeforeSeq: nextCursor(entries, q.limit, (e) => e.seq) };
    },
  );

  server.get(
    '/api/audit/verify',
    {
      config: viewer,
      schema: {
        tags: ['audit'],
        summary: 'walk the whole chain and check every hash (valhalla audit verify)',
        response: { 200: anyObject('the verification') },
      },
    },
    async () => {
      const result = await dashboard.verifyAudit();
      return {
        ok: result.ok,
        entries: result.entries,
        headHash: result.headHash,
        firstBreak: result.firstBreak,
      };
    },
  );

  server.get(
    '/api/alerts',
    {
      config: viewer,
      schema: {
        tags: ['alerts'],
        summary: 'recent alerts and their deliveries per channel',
        querystring: query({ limit: limitParam(200, 20) }),
        response: { 200: anyObject('alerts, newest first') },
      },
    },
    async (request) => {
      const alerts = await app.recentAlerts((request.query as { limit: number }).limit);
      return { alerts: alerts.map(alertView) };
    },
  );

  server.get(
    '/api/events',
    {
      config: viewer,
      schema: {
        tags: ['status'],
        summary:
          'live events (text/event-stream): `hello`, `audit` (every new chain entry) and `status` (mode and lead counts when they change)',
      },
    },
    async (request, reply) => {
      // HEAD: the stream's headers, no stream (one would never send them: no body is written).
      if (request.method === 'HEAD') {
        return reply.type('text/event-stream; charset=utf-8').header('Cache-Control', 'no-store').send();
      }
      try {
        await deps.events.prepare();
      } catch (error) {
        app.logger.warn({ err: error }, 'event stream: the database did not answer');
        // An ordinary error response: the browser's EventSource retries it (a hung one it would not).
        throw new ApiError(503, 'UNAVAILABLE', 'the database did not answer; try again');
      }
      reply.hijack();
      // The security headers set for this reply are not written once it is hijacked: repeat them.
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) reply.raw.setHeader(name, value);
      }
      deps.events.attach(reply.raw, deps.stillSignedIn(request));
    },
  );
}
