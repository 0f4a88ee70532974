import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { createSessions, createTokenBook } from '../auth.js';
import { ApiError, SESSION_COOKIE, SESSION_TTL_MS } from '../http.js';

const sessionView = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    role: { type: 'string', enum: ['viewer', 'operator', 'admin'] },
    csrfToken: { type: 'string', description: 'send as X-CSRF-Token on every state-changing request' },
  },
} as const;

/** Dashboard sign-in with an API token: a cookie session (HttpOnly, SameSite=Strict) and its CSRF token. */
export function registerSessionRoutes(
  server: FastifyInstance,
  deps: {
    tokens: ReturnType<typeof createTokenBook>;
    sessions: ReturnType<typeof createSessions>;
    /** Throws a 429 while this address (or everyone) is past the failed-authentication limit. */
    refuseWhileLimited: (request: FastifyRequest, reply: FastifyReply) => void;
    recordFailure: (request: FastifyRequest) => void;
  },
): void {
  server.post(
    '/api/session',
    {
      schema: {
        tags: ['session'],
        summary: 'sign in with an API token',
        security: [],
        body: {
          type: 'object',
          required: ['token'],
          additionalProperties: false,
          properties: { token: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: { 200: sessionView },
      },
    },
    async (request, reply) => {
      deps.refuseWhileLimited(request, reply);
      const { token } = request.body as { token: string };
      const entry = deps.tokens.lookup(token);
      if (entry === null) {
        deps.recordFailure(request);
        throw new ApiError(401, 'UNAUTHORIZED', 'this token is not valid');
      }
      const { id, session } = deps.sessions.create(entry);
      reply.setCookie(SESSION_COOKIE, id, {
        httpOnly: true,
        sameSite: 'strict',
        path: '/',
        maxAge: SESSION_TTL_MS / 1000,
      });
      return { name: session.name, role: session.role, csrfToken: session.csrfToken };
    },
  );

  server.get(
    '/api/session',
    {
      config: { role: 'viewer' },
      schema: { tags: ['session'], summary: 'who is signed in', response: { 200: sessionView } },
    },
    async (request) => {
      const p = request.principal!;
      return { name: p.name, role: p.role, csrfToken: p.csrfToken ?? '' };
    },
  );

  server.delete(
    '/api/session',
    { config: { role: 'viewer' }, schema: { tags: ['session'], summary: 'sign out' } },
    async (request, reply) => {
      deps.sessions.delete(request.cookies[SESSION_COOKIE]);
      reply.clearCookie(SESSION_COOKIE, { path: '/' });
      return reply.status(204).send();
    },
  );
}
