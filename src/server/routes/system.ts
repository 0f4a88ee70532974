import type { FastifyInstance } from 'fastify';
import type { Dashboard } from '../../app/index.js';
import type { MetricsExposition } from '../../monitor/index.js';

/** Liveness, readiness and the Prometheus scrape: open, like any health endpoint on loopback. */
export function registerSystemRoutes(
  server: FastifyInstance,
  deps: { dashboard: Dashboard; metrics: MetricsExposition | undefined },
): void {
  server.get('/healthz', { schema: { tags: ['system'], summary: 'the process answers' } }, async () => ({
    ok: true,
  }));

  server.get(
    '/readyz',
    { schema: { tags: ['system'], summary: 'the database answers' } },
    async (_request, reply) => {
      try {
        await deps.dashboard.latestAuditSeq();
        return { ready: true, database: 'ok' };
      } catch {
        return reply.status(503).send({ ready: false, database: 'unreachable' });
      }
    },
  );

  server.get(
    '/metrics',
    { schema: { tags: ['system'], summary: 'Prometheus metrics (the same as the metrics port)' } },
    async (_request, reply) => {
      if (!deps.metrics) {
        return reply
          .status(404)
          .send({ error: { code: 'NOT_FOUND', message: 'no metrics in this process' } });
      }
      try {
        const body = await deps.metrics.render();
        return reply.type(deps.metrics.contentType).header('Cache-Control', 'no-store').send(body);
      } catch {
        return reply
          .status(500)
          .send({ error: { code: 'METRICS_UNAVAILABLE', message: 'the scrape failed; see the log' } });
      }
    },
  );
}
