/** Why a partner profile was refused at load. */
export type PartnerProfileErrorCode =
  /** The file could not be read (missing, a folder, no permission) or is too large to be a profile. */
  | 'PROFILE_UNREADABLE'
  /** The file is not JSON: the message gives the line and column. */
  | 'PROFILE_NOT_JSON'
  /** The JSON is not a valid profile: each issue names its path in the file and why. */
  | 'PROFILE_INVALID';

/** One reason a profile was refused: the path inside the file (`fields[3].from`) and why. */
export interface PartnerProfileIssue {
  path: string;
  problem: string;
}

/**
 * A partner profile refused at load. The message names the file, each path inside it and why;
 * never clamped or repaired: the operator fixes the file.
 */
export class PartnerProfileError extends Error {
  override readonly name = 'PartnerProfileError';
  constructor(
    readonly code: PartnerProfileErrorCode,
    /** The file as named by the caller (or another label for text that came from elsewhere). */
    readonly source: string,
    readonly issues: readonly PartnerProfileIssue[],
    options?: { cause?: unknown },
  ) {
    super(
      `partner profile ${source} refused:\n${issues.map((i) => `  - ${i.path}: ${i.problem}`).join('\n')}`,
      options,
    );
  }
}

/** True for a `PartnerProfileError`, and when `code` is given, only for that code. */
export function isPartnerProfileError(
  error: unknown,
  code?: PartnerProfileErrorCode,
): error is PartnerProfileError {
  return error instanceof PartnerProfileError && (code === undefined || error.code === code);
}
