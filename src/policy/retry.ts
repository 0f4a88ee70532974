/**
 * What is retried, and how long to wait: ONE table shared by every caller (the partner client
 * classifies with it, the engine schedules with it). Pure: no I/O, no clock of its own.
 *
 * A retry is only ever safe because every batch carries a stable idempotency key:
 * the partner answers a resend of a batch it already holds with `replayed: true`. So a failure whose
 * delivery is *unknown* (reset mid-request, timeout) is retryable, and anything we do not recognise is
 * permanent: the batch is quarantined and an operator looks, rather than the product guessing.
 */

/** How one failure is treated. */
export type FailureClass =
  /** Transient: back off and resend the same batch with the same idempotency key. */
  | 'retryable'
  /** The partner refused our token: refresh it once and resend. */
  | 'auth'
  /** Resending the same request cannot succeed: quarantine and alert. */
  | 'permanent';

export interface Classification {
  readonly kind: FailureClass;
  /** Why, in words an operator understands; never holds request data. */
  readonly reason: string;
}

/** The outcome of an HTTP status: a 2xx accepts; everything else is a failure with its class. */
export type StatusClassification = { readonly kind: 'success'; readonly reason: string } | Classification;

/**
 * Network error codes (Node's `err.code`, undici's `UND_ERR_*`) that are retried. Anything not listed
 * (TLS and certificate failures above all) is permanent: retrying a refused certificate cannot help
 * and must not be automatic.
 */
export const RETRYABLE_NETWORK_CODES: Readonly<Record<string, string>> = Object.freeze({
  ECONNRESET: 'connection reset by the partner',
  ECONNREFUSED: 'connection refused (partner down or restarting)',
  ECONNABORTED: 'connection aborted',
  ETIMEDOUT: 'connection timed out',
  EPIPE: 'connection closed while sending',
  EHOSTUNREACH: 'partner host unreachable',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  EAI_AGAIN: 'temporary DNS failure',
  // NXDOMAIN is usually a misconfigured host, but with the network down some resolvers answer it
  // too; the health check before every batch catches a wrong host, so a transient reading is safer
  // than quarantining a whole batch on a resolver hiccup (the policy demands handling "network down").
  ENOTFOUND: 'partner host name not resolved',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no response headers in time',
  UND_ERR_BODY_TIMEOUT: 'response body stalled',
  UND_ERR_SOCKET: 'connection closed by the partner',
  UND_ERR_CLOSED: 'connection closed',
  // The client aborts a request itself when its overall timeout (≤ 30 s) fires: delivery is unknown.
  UND_ERR_ABORTED: 'request aborted by the timeout',
});

/**
 * The codes OpenSSL 3 (through Node) gives when the partner cannot speak TLS 1.2 or newer, our floor.
 * Measured with the partner client's own agent (minimum TLS 1.2, maximum Node's default 1.3):
 * - `ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION`: what every OpenSSL server limited to TLS 1.0, 1.1 or
 *   1.0–1.1 answers (alert 70, protocol_version): it cannot meet our hello.
 * - `ERR_SSL_UNSUPPORTED_PROTOCOL`: our side refusing a server hello below TLS 1.2 (a server that
 *   answers with its old version instead of an alert; measured with a client capped at TLS 1.2).
 * Not listed, although they name a version: `ERR_SSL_WRONG_VERSION_NUMBER` is what a server that does
 * not speak TLS at all gives (plain HTTP on the port, another protocol), and
 * `ERR_SSL_NO_PROTOCOLS_AVAILABLE` is our own process offering no version (a maximum below our
 * minimum); neither is a partner refusing TLS 1.2.
 */
export const TLS_VERSION_REFUSAL_CODES: readonly string[] = Object.freeze([
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
]);

/** The reason words of a TLS protocol-version refusal, as `classifyNetworkError` gives them. */
export const TLS_VERSION_REFUSAL_REASON = 'the partner does not offer TLS 1.2 or newer';

/** Whether a network error code says the partner offers no TLS version we accept (≤ TLS 1.1 only). */
export function isTlsVersionRefusal(code: string | null | undefined): boolean {
  return typeof code === 'string' && TLS_VERSION_REFUSAL_CODES.includes(code);
}

/** Statuses named explicitly; the ranges (2xx success, other 4xx permanent, 5xx retryable) cover the rest. */
export const STATUS_RULES: Readonly<Record<number, Classification>> = Object.freeze({
  400: { kind: 'permanent', reason: 'bad request' },
  401: { kind: 'auth', reason: 'token refused; refresh it once and resend' },
  403: { kind: 'permanent', reason: 'forbidden' },
  404: { kind: 'permanent', reason: 'endpoint not found' },
  408: { kind: 'retryable', reason: 'request timeout at the partner' },
  409: { kind: 'permanent', reason: 'conflict' },
  413: { kind: 'permanent', reason: 'batch too large for the partner' },
  422: { kind: 'permanent', reason: 'batch rejected as invalid' },
  429: { kind: 'retryable', reason: 'rate limited by the partner' },
});

/** Classify an HTTP response status. */
export function classifyStatus(status: number): StatusClassification {
  if (Object.hasOwn(STATUS_RULES, status)) return STATUS_RULES[status]!;
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    return { kind: 'permanent', reason: 'not a valid HTTP status' };
  }
  if (status >= 200 && status <= 299) return { kind: 'success', reason: 'accepted' };
  if (status >= 500) return { kind: 'retryable', reason: 'partner server error' };
  if (status >= 400) return { kind: 'permanent', reason: 'refused by the partner' };
  // 1xx never reaches a caller; a 3xx means a moved endpoint, which is configuration, not a blip.
  return { kind: 'permanent', reason: status >= 300 ? 'redirect (not followed)' : 'unexpected status' };
}

/** Classify a network-level failure by its error code; unknown or missing codes are permanent. */
export function classifyNetworkError(code: string | null | undefined): Classification {
  if (code && Object.hasOwn(RETRYABLE_NETWORK_CODES, code)) {
    return { kind: 'retryable', reason: RETRYABLE_NETWORK_CODES[code]! };
  }
  if (isTlsVersionRefusal(code)) return { kind: 'permanent', reason: TLS_VERSION_REFUSAL_REASON };
  if (code && /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|EPROTO$)/.test(code)) {
    return { kind: 'permanent', reason: 'TLS handshake or certificate refused' };
  }
  return { kind: 'permanent', reason: 'unrecognised network failure' };
}

const IMF_FIXDATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;
const RFC850_DATE =
  /^(Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/;
const ASCTIME_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * A `Retry-After` header in milliseconds from `nowMs`: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * Null when absent or malformed; a date in the past gives 0, never a negative wait.
 */
export function parseRetryAfter(
  header: string | readonly string[] | null | undefined,
  nowMs: number,
): number | null {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!value) return null;
  if (/^\d+$/.test(value)) {
    const ms = Number(value) * 1000;
    return Number.isSafeInteger(ms) ? ms : null;
  }
  // Date.parse alone is far too lenient ("1.5" is a date to V8): accept only the three RFC forms.
  if (!IMF_FIXDATE.test(value) && !RFC850_DATE.test(value) && !ASCTIME_DATE.test(value)) return null;
  const at = Date.parse(ASCTIME_DATE.test(value) ? `${value} GMT` : value);
  if (Number.isNaN(at)) return null;
  return Math.max(0, at - nowMs);
}

/**
 * The wait before retry number `retryNumber` (1 = the first retry): the schedule's entry (the last one
 * repeats past its end), or a longer `Retry-After` when the partner asked for one.
 */
export function backoffDelayMs(
  retryNumber: number,
  backoffSeconds: readonly number[],
  retryAfterMs: number | null,
): number {
  if (!Number.isInteger(retryNumber) || retryNumber < 1) {
    throw new RangeError(`retryNumber must be a whole number ≥ 1, got ${retryNumber}`);
  }
  if (backoffSeconds.length === 0 || backoffSeconds.some((s) => !Number.isFinite(s) || s < 0)) {
    throw new RangeError('backoffSeconds must be a non-empty list of seconds ≥ 0');
  }
  const scheduled = (backoffSeconds[Math.min(retryNumber, backoffSeconds.length) - 1] ?? 0) * 1000;
  return Math.max(scheduled, retryAfterMs !== null && retryAfterMs > 0 ? retryAfterMs : 0);
}

/**
 * Retries still allowed after `attempts` requests for the same batch (the first send counts as one
 * attempt, so a batch gets 1 + maxRetries attempts in all).
 */
export function retriesLeft(attempts: number, maxRetries: number): number {
  if (!Number.isInteger(attempts) || attempts < 0 || !Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new RangeError(`attempts and maxRetries must be whole numbers ≥ 0, got ${attempts}, ${maxRetries}`);
  }
  return Math.max(0, maxRetries - Math.max(0, attempts - 1));
}
