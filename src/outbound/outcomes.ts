// The partner's answers read into outcomes: a batch's acceptance body and a token grant checked
// against the contract, a network failure put in words, and a batch whose token aged while it waited.
import { z } from 'zod';
import { classifyNetworkError, isTlsVersionRefusal } from '../policy/index.js';
import type { HeldToken, TokenFit } from './token.js';
import type { Exchange, NotStarted } from './transport.js';
import type { PartnerAcceptance, RetryableOutcome } from './types.js';

const acceptanceSchema = z.object({
  accepted: z.number().int().nonnegative().optional(),
  duplicates: z.number().int().nonnegative().optional(),
  replayed: z.boolean().optional(),
  results: z
    .array(z.object({ idempotency_key: z.string(), status: z.enum(['accepted', 'duplicate']) }))
    .optional(),
});

export const tokenSchema = z.object({
  // RFC 6750 b64token: nothing that could break out of the Authorization header.
  access_token: z
    .string()
    .max(8192)
    .regex(/^[A-Za-z0-9\-._~+/]+=*$/),
  token_type: z.string().regex(/^bearer$/i),
  expires_in: z
    .number()
    .positive()
    .max(366 * 86_400),
});

/**
 * A network failure in words: what failed, its code, and the retry table's reading of it. No request
 * data: of the URL, the host alone.
 */
export function networkMessage(
  what: string,
  exchange: Extract<Exchange, { kind: 'failure' }>,
  url: URL,
  timeoutMs: number,
): string {
  if (exchange.timedOut) return `${what} timed out: no complete answer within ${timeoutMs} ms (aborted)`;
  if (exchange.cancelled) return `${what} cancelled by the caller while in flight; delivery unknown`;
  if (isTlsVersionRefusal(exchange.code)) {
    // Refused in the handshake, before a byte of the request: nothing was sent.
    return `the partner at ${url.host} does not offer TLS 1.2 or newer (${exchange.code}): refused; nothing was sent`;
  }
  return `${what} failed: ${exchange.code} (${classifyNetworkError(exchange.code).reason})`;
}

/** The batch waited for its turn twice and its token had aged past the rule both times: not sent. */
export function agedWhileWaiting(
  token: HeldToken,
  fit: Extract<TokenFit, { fits: false }>,
  notStarted: NotStarted,
): RetryableOutcome {
  const round = Math.round;
  const { leftMs, neededMs } = fit;
  return {
    kind: 'retryable',
    retryAfterMs: null,
    message:
      `the token had ${round(Math.max(0, leftMs))} ms of its ${token.lifetimeMs} ms left once the batch ` +
      `could start (after waiting ${round(notStarted.waitedMs)} ms for a connection slot and a rate permit), ` +
      `under the ${round(neededMs)} ms it needs; a fresh token aged the same way: the batch was not sent`,
    stage: 'token',
    ms: notStarted.waitedMs,
  };
}

export function acceptance(exchange: Extract<Exchange, { kind: 'response' }>): {
  body: PartnerAcceptance | null;
  bodyIssue: string | null;
} {
  if (exchange.bodyTooLarge) {
    return { body: null, bodyIssue: 'response body over the size cap: discarded unread' };
  }
  if (exchange.body === null || exchange.body.length === 0) return { body: null, bodyIssue: null };
  const json = parseJson(exchange.body);
  if (json === undefined) return { body: null, bodyIssue: 'response body is not JSON' };
  const parsed = acceptanceSchema.safeParse(json);
  if (!parsed.success) return { body: null, bodyIssue: 'response body is not the contract shape' };
  return { body: parsed.data as PartnerAcceptance, bodyIssue: null };
}

export function parseJson(body: Buffer | null): unknown {
  if (body === null) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}
