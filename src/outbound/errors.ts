/**
 * Why the partner client refused to do something. Partner and network failures are never thrown:
 * they come back as outcomes (see `SendOutcome`). These are for misuse and for lifecycle.
 */
export type OutboundErrorCode =
  /** A partner URL is plain http:// to a host that is not loopback, or loopback without permission. */
  | 'INSECURE_URL'
  /** A partner URL does not parse, is not http(s), or carries credentials. */
  | 'INVALID_URL'
  /** An option is missing, out of range or above a hard cap of the policy. */
  | 'INVALID_OPTIONS'
  /** A batch is malformed (empty, too large, unusable idempotency key). Nothing was sent. */
  | 'INVALID_BATCH'
  /** The client was closed; nothing was sent. */
  | 'CLIENT_CLOSED'
  /** The caller's signal aborted while the request waited for a slot or a rate permit; nothing was sent. */
  | 'CANCELLED'
  /**
   * The shared start log (several runners, one database) did not grant the start: the database is
   * unreachable or this runner no longer leads. Nothing was sent.
   */
  | 'START_NOT_GRANTED';

export class OutboundError extends Error {
  override readonly name = 'OutboundError';
  constructor(
    readonly code: OutboundErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True for an `OutboundError`, and when `code` is given, only for that code. */
export function isOutboundError(error: unknown, code?: OutboundErrorCode): error is OutboundError {
  return error instanceof OutboundError && (code === undefined || error.code === code);
}
