// The partner client's options: what it is given, their defaults, and their check against the
// policy's hard caps (the client refuses options above them by itself).
import type { Clock } from '../clock/index.js';
import {
  AUTH_CREDENTIALS,
  type PartnerProfile,
  STATIC_CREDENTIAL,
  STATIC_CREDENTIAL_RULE,
  shippedDefaultProfile,
} from '../partner/index.js';
import { HARD_CAPS } from '../policy/index.js';
import { OutboundError } from './errors.js';
import {
  DEFAULT_RATE_MARGIN_MS,
  type LimiterSleep,
  limiterShape,
  maxStartsInAnySecond,
  type StartLimiter,
} from './limiter.js';

export const DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024;
export const DEFAULT_TOKEN_REFRESH_MARGIN_MS = 10_000;

export interface PartnerClientOptions {
  /** `https://…` (a path prefix is kept): the profile's paths are below it. */
  baseUrl: string;
  /**
   * How requests are written and answers read (src/partner): endpoints, auth kind, idempotency
   * header, body, per-lead results. Default: the shipped `valhalla` profile (the product's own contract).
   */
  profile?: PartnerProfile | undefined;
  /** OAuth2 client-credentials token endpoint (auth kind `oauth2_client_credentials`). */
  tokenUrl?: string | null | undefined;
  clientId?: string | null | undefined;
  clientSecret?: string | null | undefined;
  /** The API key sent in the profile's header (auth kind `api_key`). */
  apiKey?: string | null | undefined;
  /** The static token sent as `Authorization: Bearer …` (auth kind `bearer`). */
  bearerToken?: string | null | undefined;
  /** PEM bundle of the CA(s) to trust for the partner, instead of the system store. */
  caPem?: string | null | undefined;
  /** Allow `http://` to 127.0.0.0/8, ::1 or localhost (Phase 3 sandbox, tests). Any other http:// is refused. */
  allowPlainHttpLoopback: boolean;
  /**
   * Request starts allowed in any window of `rateWindowMs` (the policy's window is 1,000 ms, so this is
   * requests per second; hard max 5). Fractional: see `limiterShape` (2.5 → 2 per window).
   */
  rateLimitPerSecond: number;
  rateWindowMs: number;
  /** Added to the window when deciding a start (default 5 ms): clock granularity, closed windows. */
  rateMarginMs?: number;
  /** Requests in flight at once (hard max 5). */
  maxConcurrent: number;
  /** Overall deadline of one request, connect to last body byte (hard max 30,000 ms). */
  timeoutMs: number;
  /** Largest response body read (default 1 MiB); a bigger one is discarded and reported. */
  maxResponseBytes?: number;
  /** Wall clock: token expiry and `Retry-After` dates. */
  clock: Clock;
  /** Monotonic clock for the rate limiter and latencies (default `performance.now`). */
  monotonicNow?: () => number;
  /**
   * How the rate limiter waits (default a real timer). With a virtual `monotonicNow` (a simulation),
   * a virtual sleep that moves that clock.
   */
  limiterSleep?: LimiterSleep;
  /**
   * Added to the life a token must have left (default 10 s): clock skew with the partner. A batch's
   * token must cover `timeoutMs` plus this; when the partner's tokens live shorter than that, the
   * first half of a token's life is used instead (see `tokenLifeNeededMs`).
   */
  tokenRefreshMarginMs?: number;
  /** Every start must also pass this (several runners: the shared start log in the database). */
  startLimiter?: StartLimiter | undefined;
}

interface CheckedSettings {
  rateMarginMs: number;
  maxResponseBytes: number;
  tokenRefreshMarginMs: number;
}

/** Refuse options above the policy's hard caps here too: the client holds the invariants by itself. */
export function checkOptions(options: PartnerClientOptions): CheckedSettings {
  const problems: string[] = [];
  const {
    rateLimitPerSecond,
    rateWindowMs,
    maxConcurrent,
    timeoutMs,
    rateMarginMs = DEFAULT_RATE_MARGIN_MS,
    maxResponseBytes = DEFAULT_MAX_RESPONSE_BYTES,
    tokenRefreshMarginMs = DEFAULT_TOKEN_REFRESH_MARGIN_MS,
  } = options;
  const auth = (options.profile ?? shippedDefaultProfile()).auth;
  for (const credential of AUTH_CREDENTIALS[auth.kind]) {
    const { option } = credential;
    const value = options[option];
    if (typeof value !== 'string' || value === '') {
      problems.push(`${option} is required (the profile's auth is ${auth.kind})`);
    } else if (credential.static && !STATIC_CREDENTIAL.test(value)) {
      problems.push(`${option} ${STATIC_CREDENTIAL_RULE}`);
    }
  }
  if (!(rateLimitPerSecond > 0) || rateLimitPerSecond > HARD_CAPS.rateLimitPerSecond) {
    problems.push(
      `rateLimitPerSecond must be > 0 and ≤ ${HARD_CAPS.rateLimitPerSecond}, got ${rateLimitPerSecond}`,
    );
  }
  if (!Number.isFinite(rateWindowMs) || rateWindowMs <= 0) {
    problems.push(`rateWindowMs must be > 0, got ${rateWindowMs}`);
  }
  if (!Number.isFinite(rateMarginMs) || rateMarginMs < 0 || rateMarginMs > 1000) {
    problems.push(`rateMarginMs must be from 0 to 1000, got ${rateMarginMs}`);
  }
  if (problems.length === 0) {
    const shape = limiterShape(rateLimitPerSecond, rateWindowMs);
    const perSecond = maxStartsInAnySecond(shape.limit, shape.windowMs, rateMarginMs);
    if (perSecond > HARD_CAPS.rateLimitPerSecond) {
      problems.push(
        `${shape.limit} start(s) per ${shape.windowMs} ms (+${rateMarginMs} ms margin) allows ${perSecond} in one second, above the hard cap of ${HARD_CAPS.rateLimitPerSecond}`,
      );
    }
  }
  if (
    !Number.isInteger(maxConcurrent) ||
    maxConcurrent < 1 ||
    maxConcurrent > HARD_CAPS.maxConcurrentRequests
  ) {
    problems.push(
      `maxConcurrent must be a whole number from 1 to ${HARD_CAPS.maxConcurrentRequests}, got ${maxConcurrent}`,
    );
  }
  const maxTimeoutMs = HARD_CAPS.apiTimeoutSeconds * 1000;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > maxTimeoutMs) {
    problems.push(`timeoutMs must be a whole number from 1 to ${maxTimeoutMs}, got ${timeoutMs}`);
  }
  if (!Number.isInteger(maxResponseBytes) || maxResponseBytes < 1 || maxResponseBytes > 64 * 1024 * 1024) {
    problems.push(`maxResponseBytes must be a whole number from 1 to 64 MiB, got ${maxResponseBytes}`);
  }
  if (!Number.isFinite(tokenRefreshMarginMs) || tokenRefreshMarginMs < 0) {
    problems.push(`tokenRefreshMarginMs must be ≥ 0, got ${tokenRefreshMarginMs}`);
  }
  if (typeof options.clock?.now !== 'function') problems.push('clock is required');
  if (problems.length > 0) {
    throw new OutboundError(
      'INVALID_OPTIONS',
      `partner client options refused:\n  - ${problems.join('\n  - ')}`,
    );
  }
  return { rateMarginMs, maxResponseBytes, tokenRefreshMarginMs };
}
