export type AppErrorCode =
  | 'NOT_INITIALIZED'
  | 'SECRET_CHANGED'
  /** The command runs with another dedup rule than the one the installation recorded (refused). */
  | 'DEDUP_RULE_CHANGED'
  | 'AUDIT_CHAIN_BROKEN'
  /** Too many uploads wait for the upload thread already. */
  | 'UPLOADS_BUSY';

export class AppError extends Error {
  override readonly name = 'AppError';
  constructor(
    readonly code: AppErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}
