import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import fastifyCookie from '@fastify/cookie';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { App } from '../app/index.js';
import { type ApiRole, PACKAGE_ROOT } from '../config/index.js';
import type { MetricsExposition } from '../monitor/index.js';
import { checkHostHeader } from '../policy/index.js';
import { createDashboard, type Dashboard } from '../views/index.js';
import {
  AUTH_FAILURE_LIMITS,
  createFailureLimiter,
  createSessions,
  createTokenBook,
  type FailureLimiter,
  type Principal,
  roleAtLeast,
  sameSecret,
} from './auth.js';
import { createEventHub } from './events.js';
import { ApiError, SESSION_COOKIE, SESSION_TTL_MS } from './http.js';
import { registerJsonBodyParser } from './json-body.js';
import { registerActionRoutes } from './routes/actions.js';
import { registerIngestRoutes } from './routes/ingest.js';
import { registerReadRoutes } from './routes/reads.js';
import { registerSessionRoutes } from './routes/session.js';
import { registerSystemRoutes } from './routes/system.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /** The least role that may call the route; routes without one need no sign-in. */
    role?: ApiRole;
  }
}

/** Failed sign-ins per client address per minute (AUTH_FAILURE_LIMITS): then every attempt is refused for a while. */
export const SIGN_IN_ATTEMPTS_PER_MINUTE = AUTH_FAILURE_LIMITS.perAddress;
/** Built by `npm run build` (vite, from web/). */
export const DEFAULT_WEB_ROOT = join(PACKAGE_ROOT, 'dist', 'web');
/** JSON bodies other than uploads are small: a reason, a list of ids, a signed document. */
const BODY_LIMIT_BYTES = 64 * 1024;

const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

export interface ServerDeps {
  app: App;
  /** The Prometheus exposition, when this process has metrics to show. */
  metrics?: MetricsExposition;
  /** Where the dashboard's built assets are (tests may point elsewhere). */
  webRoot?: string;
  /** The failed-authentication limits (default AUTH_FAILURE_LIMITS). */
  authFailureLimits?: { perAddress: number; global: number; windowMs: number };
}

/** Build the admin API and dashboard server (not listening yet). */
export async function buildServer(
  deps: ServerDeps,
): Promise<{ server: FastifyInstance; dashboard: Dashboard }> {
  const { app } = deps;
  const dashboard = createDashboard(app);
  const tokens = createTokenBook(app.config.server.tokens);
  const sessions = createSessions({ ttlMs: SESSION_TTL_MS, max: 1_000, now: () => Date.now() });
  const server = Fastify({ logger: false, bodyLimit: BODY_LIMIT_BYTES, trustProxy: false });
  // First of all hooks, for every path (assets, docs, metrics, 404s): a name this service does not
  // answer to is refused before anything else looks at the request.
  const publicHost = app.config.server.publicHost;
  server.addHook('onRequest', async (request) => {
    const host = checkHostHeader(request.raw.rawHeaders, publicHost);
    if (!host.allowed) throw new ApiError(host.status, host.code, HOST_REFUSALS[host.code]);
  });
  // Set before any plugin, so the docs and static assets' contexts inherit it too.
  // Only the product's own words reach a client: an ApiError's message, or the fields a validation
  // names. Anything else (a parser's message quotes the body; a driver's names tables, hosts and
  // connection strings) is answered by a fixed message for its code, and its detail goes to the log.
  server.setErrorHandler((error: FastifyError | ApiError, request, reply: FastifyReply) => {
    if (error instanceof ApiError) {
      return reply.status(error.statusCode).send({ error: { code: error.code, message: error.message } });
    }
    if (error.validation) {
      return reply.status(400).send({
        error: { code: 'VALIDATION', message: validationMessage(error.validationContext, error.validation) },
      });
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) {
      const known = error.code === undefined ? undefined : CLIENT_ERRORS[error.code];
      app.logger.info({ err: error, route: request.routeOptions.url, status }, 'admin API request refused');
      return reply.status(status).send({
        error: known ?? {
          code: status === 429 ? 'TOO_MANY_REQUESTS' : 'BAD_REQUEST',
          message: 'the request was refused',
        },
      });
    }
    app.logger.error({ err: error, route: request.routeOptions.url }, 'admin API request failed');
    return reply
      .status(500)
      .send({ error: { code: 'INTERNAL', message: 'the request failed; see the log' } });
  });
  // Failed authentications are limited per address and overall, for sign-in and bearer tokens apart:
  // a flood of bad sign-ins does not lock out a script with a good token, nor the other way round.
  const limits = deps.authFailureLimits ?? AUTH_FAILURE_LIMITS;
  const signInFailures = createFailureLimiter(limits, () => Date.now());
  const bearerFailures = createFailureLimiter(limits, () => Date.now());
  const events = createEventHub({
    app,
    dashboard,
    onError: (error) => app.logger.warn({ err: error }, 'event stream: reading the chain failed'),
  });

  // Two validators: query strings arrive as text and are converted to their types; a JSON body is
  // taken as sent (`{"reason": 42}` is refused, not turned into "42"). Neither drops an unknown
  // property: a request with one is refused, so a misspelt field never goes unnoticed.
  const queryValidator = new Ajv({
    coerceTypes: 'array',
    useDefaults: true,
    removeAdditional: false,
    allErrors: true,
  });
  const bodyValidator = new Ajv({
    coerceTypes: false,
    useDefaults: true,
    removeAdditional: false,
    allErrors: true,
  });
  server.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodyValidator : queryValidator).compile(schema),
  );
  server.decorateRequest('principal', null);
  registerJsonBodyParser(server);
  await server.register(fastifyCookie);
  await server.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Valhalla admin API',
        version: '1',
        description:
          'Status, leads (masked), cycles, deliveries, quarantine, mode (pause / resume / roll back), gates and sign-offs, the audit chain, alerts and ingest. Sign in with an API token: `Authorization: Bearer <token>`, or POST /api/session for a cookie session (state-changing requests then need `X-CSRF-Token`).',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          session: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE },
        },
      },
      security: [{ bearer: [] }, { session: [] }],
    },
  });
  await server.register(swaggerUi, { routePrefix: '/api/docs', staticCSP: true });

  server.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/api/docs')) {
      reply.header('Content-Security-Policy', CSP);
      reply.header('X-Frame-Options', 'DENY');
    }
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('Referrer-Policy', 'no-referrer');
    const needed = request.routeOptions.config.role;
    if (needed === undefined) return;
    const principal = authenticate(request, reply);
    if (principal === null) {
      throw new ApiError(401, 'UNAUTHORIZED', 'sign in: an API token (Authorization: Bearer) or a session');
    }
    if (!roleAtLeast(principal.role, needed)) {
      throw new ApiError(
        403,
        'FORBIDDEN',
        `this needs the ${needed} role; ${principal.name} is ${principal.role}`,
      );
    }
    if (!SAFE_METHODS.has(request.method)) checkCrossSite(request, principal);
    request.principal = principal;
  });

  function authenticate(request: FastifyRequest, reply: FastifyReply): Principal | null {
    const header = request.headers.authorization;
    if (header !== undefined) {
      // Judged only while the address (and everyone) is under the failure limit: past it, a good
      // token is refused too, or the answer would tell a guesser which guess was right.
      refuseWhileLimited(bearerFailures, request, reply);
      const match = /^Bearer\s+(\S+)$/i.exec(header);
      const entry = match ? tokens.lookup(match[1]!) : null;
      if (entry === null) {
        bearerFailures.recordFailure(request.ip);
        app.logger.warn(
          { address: request.ip, route: request.routeOptions.url },
          'API: a wrong bearer token',
        );
        return null;
      }
      return { name: entry.name, role: entry.role, via: 'bearer', csrfToken: null };
    }
    const session = sessions.get(request.cookies[SESSION_COOKIE]);
    return (
      session && { name: session.name, role: session.role, via: 'session', csrfToken: session.csrfToken }
    );
  }

  server.setNotFoundHandler((request, reply) => {
    reply.status(404).send({
      error: { code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    });
  });

  registerSystemRoutes(server, { dashboard, metrics: deps.metrics });
  registerSessionRoutes(server, {
    tokens,
    sessions,
    refuseWhileLimited: (request, reply) => refuseWhileLimited(signInFailures, request, reply),
    recordFailure: (request) => {
      signInFailures.recordFailure(request.ip);
      app.logger.warn({ address: request.ip }, 'sign-in: a wrong token');
    },
  });
  const stillSignedIn = (request: FastifyRequest) => {
    if (request.principal?.via !== 'session') return () => true;
    const id = request.cookies[SESSION_COOKIE];
    return () => sessions.get(id) !== null;
  };
  registerReadRoutes(server, { app, dashboard, events, stillSignedIn });
  registerActionRoutes(server, { app, dashboard });
  registerIngestRoutes(server, { dashboard });
  server.get('/api/openapi.json', { schema: { hide: true } }, async () => server.swagger());

  const webRoot = deps.webRoot ?? DEFAULT_WEB_ROOT;
  if (existsSync(join(webRoot, 'index.html'))) {
    await server.register(fastifyStatic, {
      root: webRoot,
      prefix: '/',
      index: ['index.html'],
      wildcard: false,
    });
  } else {
    server.get('/', { schema: { hide: true } }, async (_request, reply) =>
      reply
        .status(503)
        .type('text/plain; charset=utf-8')
        .send(`the dashboard is not built (no ${webRoot}/index.html): run npm run build\n`),
    );
  }
  // Before Fastify waits for requests to finish: an open event stream never would.
  server.addHook('preClose', async () => events.close());
  return { server, dashboard };
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const HOST_REFUSALS = {
  HOST_MISSING: 'refused: a request must name this service in its Host header',
  HOST_DUPLICATE: 'refused: a request with more than one Host header',
  HOST_NOT_ALLOWED:
    'refused: this service answers to its loopback names and VALHALLA_PUBLIC_HOST only (a request under another name may come from another site)',
} as const;

/** Fastify's client errors, each answered in the product's words (its own messages can quote the request). */
const CLIENT_ERRORS: Readonly<Record<string, { code: string; message: string }>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'BODY_TOO_LARGE', message: 'the body is larger than this route takes' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'this content type is not taken here (JSON: application/json)',
  },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'BAD_CONTENT_LENGTH',
    message: 'the Content-Length does not match the body',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'BAD_JSON', message: 'the body is empty but says it is JSON' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'BAD_JSON', message: 'the body is not valid JSON' },
  FST_ERR_CTP_EMPTY_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'the Content-Type is empty' },
  FST_ERR_CTP_INVALID_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'the Content-Type is not valid' },
  FST_ERR_BAD_URL: { code: 'BAD_URL', message: 'the URL is not valid' },
  FST_ERR_ASYNC_CONSTRAINT: { code: 'BAD_REQUEST', message: 'the request was refused' },
  BAD_JSON: { code: 'BAD_JSON', message: 'the body is not valid JSON' },
  BODY_TOO_DEEP: { code: 'BODY_TOO_DEEP', message: 'the JSON body is nested too deeply' },
};

/** Past the failure limit: 429 with the seconds to wait, before the credential is looked at. */
function refuseWhileLimited(limiter: FailureLimiter, request: FastifyRequest, reply: FastifyReply): void {
  const waitMs = limiter.blockedFor(request.ip);
  if (waitMs === 0) return;
  reply.header('Retry-After', String(Math.ceil(waitMs / 1000)));
  throw new ApiError(429, 'TOO_MANY_REQUESTS', 'too many failed sign-ins or tokens: try again later');
}

/** Every problem, each naming its field (`body/ids/0 must be integer`, `body has an unknown property: force`). */
function validationMessage(
  part: string | undefined,
  problems: NonNullable<FastifyError['validation']>,
): string {
  return problems
    .map((p) => {
      const where = `${part ?? 'request'}${p.instancePath}`;
      const extra = (p.params as { additionalProperty?: string }).additionalProperty;
      return extra !== undefined ? `${where} has an unknown property: ${extra}` : `${where} ${p.message}`;
    })
    .join('; ');
}

/**
 * A browser attaches the session cookie to any request to this origin, even one another site makes
 * it send: a cookie-authenticated change must also carry the session's anti-forgery token (which
 * another site cannot read), and come from this origin when the browser says where it comes from.
 * The cookie is SameSite=Strict besides. A bearer token is never attached by a browser on its own.
 */
function checkCrossSite(request: FastifyRequest, principal: Principal): void {
  if (principal.via !== 'session') return;
  // Host against host, not scheme: behind a TLS proxy the page is https while this server sees http.
  const origin = request.headers.origin;
  if (origin !== undefined && originHost(origin) !== request.headers.host) {
    throw new ApiError(403, 'CROSS_SITE', `refused: a request from another origin (${origin})`);
  }
  const presented = request.headers['x-csrf-token'];
  if (
    typeof presented !== 'string' ||
    principal.csrfToken === null ||
    !sameSecret(presented, principal.csrfToken)
  ) {
    throw new ApiError(403, 'CSRF', 'refused: the X-CSRF-Token header of this session is missing or wrong');
  }
}

function originHost(origin: string): string | null {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
}

export interface RunningServer {
  /** `http://host:port` */
  readonly url: string;
  readonly port: number;
  readonly dashboard: Dashboard;
  /** Stop listening and end the event streams; safe to call twice. */
  close(): Promise<void>;
}

/** Build the server and listen on the configured (or given) host and port. */
export async function startServer(
  deps: ServerDeps & { host?: string; port?: number },
): Promise<RunningServer> {
  const { server, dashboard } = await buildServer(deps);
  const host = deps.host ?? deps.app.config.server.host;
  const port = deps.port ?? deps.app.config.server.port ?? 0;
  try {
    await server.listen({ host, port });
  } catch (cause) {
    await server.close();
    throw new Error(`cannot serve the dashboard on ${host}:${port}: ${(cause as Error).message}`, { cause });
  }
  const bound = (server.server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${bound}`,
    port: bound,
    dashboard,
    close() {
      closed ??= server.close();
      return closed;
    },
  };
}
