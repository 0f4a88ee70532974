import type { AnswerProblem, LeadAnswer, ProfileLead } from '../partner/index.js';

/** One lead as the partner receives it: the only place lead PII leaves the product. */
export interface PartnerLead {
  idempotency_key: string;
  external_id: string | null;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  score: number;
  source_timestamp: string;
  value: number | null;
}

/**
 * One action's payload: a batch and its stable idempotency key (reused on every retry). The leads
 * are written as the client's partner profile says (src/partner `buildPartnerRequest`).
 */
export interface PartnerBatch {
  batchKey: string;
  leads: readonly ProfileLead[];
}

/** What the partner may say about an accepted batch (all optional in the contract). */
export interface PartnerAcceptance {
  accepted?: number;
  duplicates?: number;
  replayed?: boolean;
  results?: { idempotency_key: string; status: 'accepted' | 'duplicate' }[];
}

/** Which request of a send failed: getting the token (the batch was NOT sent), or the batch itself. */
export type RequestStage = 'token' | 'batch';

export interface AcceptedOutcome {
  kind: 'accepted';
  status: number;
  /**
   * What the partner said of each lead, read as the profile says (one entry per lead, in the order
   * sent); null when the answer is the whole batch's (the profile reads no per-lead results, or this
   * answer holds none and the profile says that means the batch). The client always sets it; a
   * partner port written by hand may leave it out, which means the same as null.
   */
  leads?: LeadAnswer[] | null;
  /** What the reply got wrong or could not tie to a lead (never lead values); empty or absent when none. */
  answerProblems?: AnswerProblem[];
  /** The partner's per-batch report; null when absent, not JSON, not the contract's shape, or too big. */
  body: PartnerAcceptance | null;
  /** Why `body` is null although the partner sent one (e.g. over the size cap); null otherwise. */
  bodyIssue: string | null;
  ms: number;
}

export interface RetryableOutcome {
  kind: 'retryable';
  status?: number;
  /** The network error code when there was no response (e.g. `ECONNREFUSED`, `UND_ERR_ABORTED`). */
  code?: string;
  /** The partner's `Retry-After`, in ms from now; null when it sent none. */
  retryAfterMs: number | null;
  message: string;
  stage: RequestStage;
  ms: number;
}

export interface AuthOutcome {
  kind: 'auth';
  status: 401;
  message: string;
  ms: number;
}

export interface PermanentOutcome {
  kind: 'permanent';
  /** Absent when no response came (e.g. the TLS handshake or the certificate was refused). */
  status?: number;
  /** The network error code when there was no response (e.g. `ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION`). */
  code?: string;
  /**
   * Present (always `true`) when the partner refused the TLS handshake for its protocol version: it
   * offers nothing from TLS 1.2 up (`isTlsVersionRefusal(code)`). Not an outage and not a blip: the
   * partner is misconfigured or outdated, nothing was sent, and asking again cannot help.
   */
  tlsVersionRefused?: true;
  message: string;
  stage: RequestStage;
  ms: number;
}

/**
 * The outcome of ONE request: data, never an exception, never lead data in a message.
 * `auth`: the partner refused the token; it has been invalidated, and a resend gets a fresh one.
 */
export type SendOutcome = AcceptedOutcome | RetryableOutcome | AuthOutcome | PermanentOutcome;

/** The token is valid until `expiresAtMs` (wall clock); or why none could be had. */
export type TokenOutcome =
  | { kind: 'ok'; expiresAtMs: number; refreshed: boolean }
  | RetryableOutcome
  | PermanentOutcome;

export interface HealthResult {
  ok: boolean;
  status?: number;
  /** The network error code when there was no response (e.g. `ECONNREFUSED`). */
  code?: string;
  /** Present (always `true`) when the partner offers no TLS version from 1.2 up: see `PermanentOutcome`. */
  tlsVersionRefused?: true;
  error?: string;
  /** A 429's or 503's `Retry-After`, in ms from now; absent when none was sent. */
  retryAfterMs?: number | null;
  ms: number;
}
