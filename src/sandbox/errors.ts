export type SandboxErrorCode =
  /** A start option is out of range or contradicts another one. */
  | 'INVALID_OPTIONS'
  /** A fault setting (from the options, `setFaults` or `POST /faults`) is out of range. */
  | 'INVALID_FAULTS'
  /** The cached certificate or key cannot be read, or they do not belong together. */
  | 'CERTIFICATE_INVALID';

export class SandboxError extends Error {
  override readonly name = 'SandboxError';
  constructor(
    readonly code: SandboxErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSandboxError(error: unknown): error is SandboxError {
  return error instanceof SandboxError;
}
