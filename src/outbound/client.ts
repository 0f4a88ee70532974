// The partner client: the one delivery path to the partner's HTTP API. Health checks, tokens and
// batches, each request through the same gate, rate limit and deadline; no retry inside.
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../clock/index.js';
import {
  buildPartnerRequest,
  type PartnerProfile,
  readPartnerAnswer,
  shippedDefaultProfile,
} from '../partner/index.js';
import {
  classifyNetworkError,
  classifyStatus,
  HARD_CAPS,
  isTlsVersionRefusal,
  parseRetryAfter,
} from '../policy/index.js';
import { checkBatch } from './batch.js';
import { ConcurrencyGate } from './concurrency.js';
import { type PartnerEndpoints, partnerEndpoints } from './endpoints.js';
import { OutboundError } from './errors.js';
import { limiterShape, maxStartsInAnySecond, SlidingWindowLimiter } from './limiter.js';
import { checkOptions, type PartnerClientOptions } from './options.js';
import { acceptance, agedWhileWaiting, networkMessage, parseJson, tokenSchema } from './outcomes.js';
import { settleOrAbort } from './tls-agent.js';
import { type HeldToken, type TokenGrant, TokenProvider } from './token.js';
import { type Exchange, type ExchangeRequest, Transport } from './transport.js';
import type {
  HealthResult,
  PartnerBatch,
  PermanentOutcome,
  RequestStage,
  RetryableOutcome,
  SendOutcome,
  TokenOutcome,
} from './types.js';

/** The partner client: the only code that talks to the partner's HTTP API. */
export interface PartnerClient {
  /** `GET {base}/health`; ok for a 2xx. Counts against the rate limit like every request. */
  health(signal?: AbortSignal): Promise<HealthResult>;
  /**
   * Make sure a usable token is cached: one that stays valid for `validForMs` more (plus the margin)
   * when the partner's tokens live that long, else one a batch could use now (see
   * `tokenLifeNeededMs`); refreshing it if not.
   */
  ensureToken(validForMs: number, signal?: AbortSignal): Promise<TokenOutcome>;
  /**
   * Send ONE batch in ONE request (plus a token request when no usable token is cached). No retry
   * inside: retries are separate actions the engine authorises and records. Returns data for every
   * partner or network failure; throws only `INVALID_BATCH`, `CLIENT_CLOSED`, `CANCELLED`,
   * `START_NOT_GRANTED` (nothing sent).
   */
  /**
   * `signal` cuts the request at any point (in flight too); `holdNew` only stops it from starting:
   * aborted while it waits for a token, a slot or a rate permit, it throws `CANCELLED` with nothing sent.
   */
  sendBatch(batch: PartnerBatch, signal?: AbortSignal, holdNew?: AbortSignal): Promise<SendOutcome>;
  /**
   * The rate limit from the next request start on (a limit lowered while the service runs). Throws
   * `INVALID_OPTIONS` above the hard cap, as the constructor does.
   */
  setRateLimit(perSecond: number): void;
  /** Refuse new requests, let those in flight finish (each within its deadline), release sockets. Safe twice. */
  close(): Promise<void>;
}

/** Create a partner client; throws `INSECURE_URL`, `INVALID_URL` or `INVALID_OPTIONS` for bad options. */
export function createPartnerClient(options: PartnerClientOptions): PartnerClient {
  return new HttpPartnerClient(options);
}

/** How a request is authorised: an OAuth2 token fetched and refreshed, or a static header. */
type Auth =
  | { kind: 'oauth2'; token: URL; clientId: string; clientSecret: string }
  | { kind: 'static'; header: string; value: string; what: string };

class HttpPartnerClient implements PartnerClient {
  readonly #endpoints: PartnerEndpoints;
  readonly #profile: PartnerProfile;
  readonly #auth: Auth;
  readonly #timeoutMs: number;
  readonly #clock: Clock;
  readonly #limiter: SlidingWindowLimiter;
  readonly #rateWindowMs: number;
  readonly #rateMarginMs: number;
  readonly #gate: ConcurrencyGate;
  readonly #transport: Transport;
  readonly #tokens: TokenProvider;
  #closing: Promise<void> | null = null;

  constructor(options: PartnerClientOptions) {
    const settings = checkOptions(options);
    this.#profile = options.profile ?? shippedDefaultProfile();
    const { auth } = this.#profile;
    this.#endpoints = partnerEndpoints(
      options.baseUrl,
      this.#profile,
      auth.kind === 'oauth2_client_credentials' ? options.tokenUrl! : null,
      options.allowPlainHttpLoopback,
    );
    // checkOptions made sure the credentials of the profile's auth kind are there.
    this.#auth =
      auth.kind === 'oauth2_client_credentials'
        ? {
            kind: 'oauth2',
            token: this.#endpoints.token!,
            clientId: options.clientId!,
            clientSecret: options.clientSecret!,
          }
        : auth.kind === 'api_key'
          ? { kind: 'static', header: auth.header, value: options.apiKey!, what: 'API key' }
          : {
              kind: 'static',
              header: 'authorization',
              value: `Bearer ${options.bearerToken!}`,
              what: 'bearer token',
            };
    this.#timeoutMs = options.timeoutMs;
    this.#clock = options.clock;
    const monotonicNow = options.monotonicNow ?? (() => performance.now());
    this.#rateWindowMs = options.rateWindowMs;
    this.#rateMarginMs = settings.rateMarginMs;
    this.#limiter = new SlidingWindowLimiter({
      ...limiterShape(options.rateLimitPerSecond, options.rateWindowMs),
      marginMs: settings.rateMarginMs,
      now: monotonicNow,
      ...(options.limiterSleep ? { sleep: options.limiterSleep } : {}),
    });
    this.#gate = new ConcurrencyGate(options.maxConcurrent);
    this.#transport = new Transport({
      caPem: options.caPem ?? undefined,
      maxConcurrent: options.maxConcurrent,
      timeoutMs: options.timeoutMs,
      maxResponseBytes: settings.maxResponseBytes,
      limiter: this.#limiter,
      startLimiter: options.startLimiter,
      gate: this.#gate,
      monotonicNow,
    });
    this.#tokens = new TokenProvider(() => this.#fetchToken(), options.clock, {
      marginMs: settings.tokenRefreshMarginMs,
      requestTimeoutMs: options.timeoutMs,
    });
  }

  async health(signal?: AbortSignal): Promise<HealthResult> {
    // A static credential goes with the health check too (a partner may guard every path with it);
    // an OAuth2 token is not fetched for it: the check must also tell a partner down from a token refused.
    const auth = this.#auth;
    const exchange = await this.#transport.exchange(
      {
        method: 'GET',
        url: this.#endpoints.health,
        headers: { accept: 'application/json' },
        readBody: false,
        signal,
      },
      auth.kind === 'static' ? () => ({ [auth.header]: auth.value }) : undefined,
    );
    if (exchange.kind === 'failure') {
      const { code, ms } = exchange;
      const error = networkMessage('health check', exchange, this.#endpoints.health, this.#timeoutMs);
      return isTlsVersionRefusal(code)
        ? { ok: false, code, tlsVersionRefused: true, error, ms }
        : { ok: false, code, error, ms };
    }
    const { status, headers, ms } = exchange;
    if (classifyStatus(status).kind === 'success') return { ok: true, status, ms };
    // A 429's (or 503's) Retry-After holds every request to the partner: the engine needs it.
    const retryAfterMs = parseRetryAfter(headers['retry-after'], this.#clock.now());
    return {
      ok: false,
      status,
      error: `health check answered HTTP ${status}`,
      ...(retryAfterMs === null ? {} : { retryAfterMs }),
      ms,
    };
  }

  async ensureToken(validForMs: number, signal?: AbortSignal): Promise<TokenOutcome> {
    if (!Number.isFinite(validForMs) || validForMs < 0) {
      throw new OutboundError('INVALID_OPTIONS', `validForMs must be ≥ 0, got ${validForMs}`);
    }
    // A static credential does not expire on our side: nothing to fetch (the partner may still refuse it).
    if (this.#auth.kind === 'static') {
      return { kind: 'ok', expiresAtMs: Number.MAX_SAFE_INTEGER, refreshed: false };
    }
    const current = await abortable(this.#tokens.get(validForMs), signal);
    if (current.kind !== 'ok') return current;
    return { kind: 'ok', expiresAtMs: current.expiresAtMs, refreshed: current.refreshed };
  }

  async sendBatch(batch: PartnerBatch, signal?: AbortSignal, holdNew?: AbortSignal): Promise<SendOutcome> {
    checkBatch(batch);
    if (this.#transport.closed) {
      throw new OutboundError('CLIENT_CLOSED', 'the partner client is closed; nothing was sent');
    }
    // Written as the profile says; a lead that cannot be written is the engine's to set aside
    // before its batch is queued, so a problem here is a batch refused whole, with nothing sent.
    const built = buildPartnerRequest(this.#profile, batch.leads, batch.batchKey);
    if (!built.ok) {
      const first = built.problems.slice(0, 3).map((p) => `${p.where}: ${p.problem}`);
      throw new OutboundError(
        'INVALID_BATCH',
        `the batch cannot be written as profile ${this.#profile.name} says (${first.join('; ')}); nothing was sent`,
      );
    }
    const waiting = holdNew && signal ? AbortSignal.any([signal, holdNew]) : (holdNew ?? signal);
    const request: ExchangeRequest = {
      method: built.request.method,
      url: this.#endpoints.leads,
      headers: {
        ...built.request.headers,
        'content-type': 'application/json',
        accept: 'application/json',
      },
      body: JSON.stringify(built.request.body),
      readBody: true,
      signal,
      holdNew,
    };
    const sent = await this.#withAuth(request, waiting);
    if (sent.kind !== 'sent') return sent;
    const { token, exchange } = sent;
    if (exchange.kind === 'failure') return this.#networkOutcome('batch', exchange);
    const { status, headers, ms } = exchange;
    const verdict = classifyStatus(status);
    switch (verdict.kind) {
      case 'success': {
        const answer = exchange.bodyTooLarge
          ? readPartnerAnswer(this.#profile, status, null, batch.leads)
          : readPartnerAnswer(this.#profile, status, exchange.body, batch.leads);
        const perLead = answer.kind === 'per-lead';
        return {
          kind: 'accepted',
          status,
          ...acceptance(exchange),
          leads: perLead ? answer.results : null,
          answerProblems: perLead ? [...answer.unmatched, ...answer.problems] : [],
          ms,
        };
      }
      case 'auth':
        if (token === null) {
          return {
            kind: 'auth',
            status: 401,
            message: `partner refused the ${this.#auth.kind === 'static' ? this.#auth.what : 'credential'} (HTTP 401); a resend uses the same one: check it with the partner`,
            ms,
          };
        }
        this.#tokens.invalidate(token.token);
        return {
          kind: 'auth',
          status: 401,
          message: 'partner refused the token (HTTP 401); it is invalidated and a resend gets a fresh one',
          ms,
        };
      case 'retryable':
        return this.#retryable(
          'batch',
          status,
          headers,
          `partner answered HTTP ${status}: ${verdict.reason}`,
          ms,
        );
      case 'permanent':
        return {
          kind: 'permanent',
          status,
          message: `partner answered HTTP ${status}: ${verdict.reason}`,
          stage: 'batch',
          ms,
        };
    }
  }

  /**
   * Make `request` with a token. The token is judged twice by the rule of `tokenLifeNeededMs`: before
   * the request queues for its slot and rate permit (a refresh goes first, through the same queue),
   * and again once it may start, as it may have aged while waiting. Aged past the rule, the request
   * gives its turn back and gets one fresh token; aged again, it is not sent (a retryable token
   * failure) rather than sent with a token that is running out.
   */
  async #withAuth(
    request: ExchangeRequest,
    waiting: AbortSignal | undefined,
  ): Promise<
    { kind: 'sent'; token: HeldToken | null; exchange: Exchange } | RetryableOutcome | PermanentOutcome
  > {
    const auth = this.#auth;
    if (auth.kind === 'static') {
      const exchange = await this.#transport.exchange(request, () => ({ [auth.header]: auth.value }));
      return { kind: 'sent', token: null, exchange };
    }
    for (let turn = 1; ; turn++) {
      const token = await abortable(this.#tokens.get(), waiting);
      if (token.kind !== 'ok') return token;
      const exchange = await this.#transport.exchange(request, () =>
        this.#tokens.fitsRequest(token).fits ? { authorization: `Bearer ${token.token}` } : null,
      );
      if (exchange.kind !== 'not_started') return { kind: 'sent', token, exchange };
      // A token that no longer fits never fits again as time goes on: this is the one it declined.
      const fit = this.#tokens.fitsRequest(token);
      if (turn >= 2 && !fit.fits) return agedWhileWaiting(token, fit, exchange);
    }
  }

  setRateLimit(perSecond: number): void {
    const shape = limiterShape(perSecond, this.#rateWindowMs);
    const inOneSecond = maxStartsInAnySecond(shape.limit, shape.windowMs, this.#rateMarginMs);
    if (inOneSecond > HARD_CAPS.rateLimitPerSecond || perSecond > HARD_CAPS.rateLimitPerSecond) {
      throw new OutboundError(
        'INVALID_OPTIONS',
        `rateLimitPerSecond must be ≤ ${HARD_CAPS.rateLimitPerSecond}, got ${perSecond}`,
      );
    }
    this.#limiter.reshape(shape);
  }

  close(): Promise<void> {
    if (!this.#closing) {
      const transportClosed = this.#transport.close();
      this.#limiter.close();
      this.#gate.close();
      this.#closing = transportClosed;
    }
    return this.#closing;
  }

  async #fetchToken(): Promise<TokenGrant> {
    // The token's life is counted from the moment its request starts, after any wait for a slot or
    // a rate permit: the partner cannot have issued it before, and our wait is not its endpoint's.
    let requestedAtMs = this.#clock.now();
    const auth = this.#auth;
    if (auth.kind !== 'oauth2') throw new Error('a token was asked for under a static credential');
    const scope =
      this.#profile.auth.kind === 'oauth2_client_credentials' ? this.#profile.auth.scope : undefined;
    const exchange = await this.#transport.exchange(
      {
        method: 'POST',
        url: auth.token,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          client_id: auth.clientId,
          client_secret: auth.clientSecret,
          ...(scope === undefined ? {} : { scope }),
        }).toString(),
        readBody: true,
      },
      () => {
        requestedAtMs = this.#clock.now();
        return {};
      },
    );
    if (exchange.kind === 'failure') return this.#networkOutcome('token', exchange);
    const { status, headers, ms } = exchange;
    const verdict = classifyStatus(status);
    if (verdict.kind === 'retryable') {
      return this.#retryable(
        'token',
        status,
        headers,
        `token endpoint answered HTTP ${status}: ${verdict.reason}`,
        ms,
      );
    }
    if (verdict.kind !== 'success') {
      // A refused client credential (400/401) is not fixed by asking again: permanent.
      return {
        kind: 'permanent',
        status,
        message: `token endpoint refused the client credentials (HTTP ${status})`,
        stage: 'token',
        ms,
      };
    }
    const invalid = (why: string): PermanentOutcome => ({
      kind: 'permanent',
      status,
      message: `token endpoint answered HTTP ${status} but ${why}`,
      stage: 'token',
      ms,
    });
    if (exchange.bodyTooLarge) return invalid('its body is over the size cap (discarded)');
    const parsed = tokenSchema.safeParse(parseJson(exchange.body));
    if (!parsed.success)
      return invalid('not with an OAuth2 bearer token (access_token, token_type, expires_in)');
    return {
      kind: 'granted',
      accessToken: parsed.data.access_token,
      expiresInMs: parsed.data.expires_in * 1000,
      requestedAtMs,
      ms,
    };
  }

  #networkOutcome(
    stage: RequestStage,
    exchange: Extract<Exchange, { kind: 'failure' }>,
  ): RetryableOutcome | PermanentOutcome {
    const what = stage === 'token' ? 'token request' : 'batch request';
    const url =
      stage === 'token' && this.#endpoints.token !== null ? this.#endpoints.token : this.#endpoints.leads;
    const message = networkMessage(what, exchange, url, this.#timeoutMs);
    const verdict = classifyNetworkError(exchange.code);
    const common = { code: exchange.code, message, stage, ms: exchange.ms };
    if (verdict.kind === 'retryable') return { kind: 'retryable', retryAfterMs: null, ...common };
    return isTlsVersionRefusal(exchange.code)
      ? { kind: 'permanent', ...common, tlsVersionRefused: true }
      : { kind: 'permanent', ...common };
  }

  #retryable(
    stage: RequestStage,
    status: number,
    headers: IncomingHttpHeaders,
    message: string,
    ms: number,
  ): RetryableOutcome {
    const retryAfterMs = parseRetryAfter(headers['retry-after'], this.#clock.now());
    return { kind: 'retryable', status, retryAfterMs, message, stage, ms };
  }
}

/** Settle with `promise`, or reject with CANCELLED as soon as `signal` aborts (the work itself goes on). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  return signal ? settleOrAbort(promise, signal, () => cancelled(signal)) : promise;
}

function cancelled(signal: AbortSignal): OutboundError {
  return new OutboundError('CANCELLED', 'cancelled while waiting for a token; the batch was not sent', {
    cause: signal.reason,
  });
}
