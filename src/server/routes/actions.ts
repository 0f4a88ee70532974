import type { FastifyInstance } from 'fastify';
import {
  type App,
  confirmReviewedCycle,
  type Dashboard,
  describeModeAck,
  reviewCycle,
} from '../../app/index.js';
import { OperatorError } from '../../engine/index.js';
import type { ModeCommand } from '../../policy/index.js';
import { ApiError, anyObject, reasonBody } from '../http.js';

/**
 * How long a mode change over the API waits for the running worker's acknowledgement (it polls the
 * mode every 100 ms, so it answers well within this; the change itself is committed before the wait).
 */
const API_ACK_WAIT_MS = 3_000;

/** Who did it, in the audit chain: the API token's holder. */
export const apiActor = (name: string) => `api:${name}`;

const MODE_COMMANDS: { command: Exclude<ModeCommand, 'rearm'>; summary: string }[] = [
  { command: 'pause', summary: 'pause outbound (the queue is kept)' },
  { command: 'resume', summary: 'resume after a pause' },
  { command: 'rollback', summary: 'roll back to Phase 3 behaviour now: no new outbound request' },
];

/** The state-changing routes of policy §3's permitted admin actions, each audited and alerted. */
export function registerActionRoutes(
  server: FastifyInstance,
  deps: { app: App; dashboard: Dashboard },
): void {
  const { app, dashboard } = deps;
  const withReason = {
    type: 'object',
    required: ['reason'],
    additionalProperties: false,
    properties: { reason: reasonBody },
  } as const;

  for (const { command, summary } of MODE_COMMANDS) {
    server.post(
      `/api/mode/${command}`,
      {
        config: { role: 'operator' },
        schema: {
          tags: ['mode'],
          summary,
          body: withReason,
          response: {
            200: anyObject(
              '{kind: change, from, to, acknowledgement, acknowledgementText} | {kind: unchanged, mode, reason, acknowledgement, acknowledgementText} | {kind: refused, mode, reason}; acknowledgement.kind: acknowledged (workers with their latency) | no_worker | not_acknowledged',
            ),
          },
        },
      },
      async (request) => {
        const { reason } = request.body as { reason: string };
        const result = await app.changeMode(command, { actor: apiActor(request.principal!.name), reason });
        if (result.kind === 'refused') return result;
        // Whether the running service took it (or the mode already in force), as the CLI reports it.
        const acknowledgement = await app.awaitModeAck({
          ...(result.kind === 'change' && result.changeSeq !== undefined
            ? { changeSeq: result.changeSeq }
            : {}),
          waitMs: API_ACK_WAIT_MS,
        });
        // Mode commands send their own alerts at once, as the CLI's do: the supervisor may not be running.
        await app.dispatchAlerts().catch((error: unknown) => {
          app.logger.warn({ err: error }, 'alert dispatch after a mode change failed');
        });
        return { ...result, acknowledgement, acknowledgementText: describeModeAck(acknowledgement) };
      },
    );
  }

  const withIds = {
    type: 'object',
    required: ['ids', 'reason'],
    additionalProperties: false,
    properties: {
      ids: { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'integer', minimum: 1 } },
      reason: reasonBody,
    },
  } as const;
  for (const name of ['release', 'drop'] as const) {
    server.post(
      `/api/quarantine/${name}`,
      {
        config: { role: 'operator' },
        schema: {
          tags: ['quarantine'],
          summary:
            name === 'release'
              ? 'put quarantined leads back in the queue (retries start again)'
              : 'take quarantined leads out for good (archived, never sent)',
          body: withIds,
          response: { 200: anyObject('{changed: ids, skipped: ids not quarantined}') },
        },
      },
      async (request) => {
        const { ids, reason } = request.body as { ids: number[]; reason: string };
        const actions = app.operatorActions(apiActor(request.principal!.name));
        try {
          return await (name === 'release' ? actions.release(ids, reason) : actions.drop(ids, reason));
        } catch (error) {
          if (error instanceof OperatorError) throw new ApiError(422, error.code, error.message);
          throw error;
        }
      },
    );
  }

  server.get(
    '/api/cycles/review',
    {
      config: { role: 'viewer' },
      schema: {
        tags: ['engine'],
        summary:
          'ramp stage 1: the live cycle awaiting confirmation with its batch (masked leads, scores, the partner answer), or what the ramp waits for',
        response: { 200: anyObject('{kind: awaiting, cycle, batches} | {kind: nothing, waitingFor}') },
      },
    },
    () => reviewCycle(app),
  );

  server.post(
    '/api/cycles/confirm',
    {
      config: { role: 'operator' },
      schema: {
        tags: ['engine'],
        summary:
          'ramp stage 1: confirm the named cycle after its review (valhalla cycle confirm N); a stale or wrong number is refused',
        body: {
          type: 'object',
          required: ['cycleId'],
          additionalProperties: false,
          properties: { cycleId: { type: 'integer', minimum: 1 } },
        },
        response: { 200: anyObject('{confirmed: cycle id, review}') },
      },
    },
    async (request) => {
      const { cycleId } = request.body as { cycleId: number };
      try {
        return await confirmReviewedCycle(app, cycleId, apiActor(request.principal!.name));
      } catch (error) {
        if (error instanceof OperatorError) throw new ApiError(409, error.code, error.message);
        throw error;
      }
    },
  );

  server.post(
    '/api/signoffs',
    {
      config: { role: 'admin' },
      schema: {
        tags: ['gates'],
        summary:
          'record a signed document (valhalla signoff|attest|activate --out FILE): checked like signoff submit',
        body: { type: 'object', additionalProperties: true },
        response: { 201: anyObject('{id}') },
      },
    },
    async (request, reply) => {
      const result = await dashboard.submitSignedDocument(request.body, apiActor(request.principal!.name));
      if (!result.ok) throw new ApiError(422, 'SIGNATURE_REFUSED', result.reason);
      return reply.status(201).send({ id: result.id });
    },
  );
}
