export type StoreErrorCode = 'SCHEMA_TOO_NEW' | 'MIGRATION_FAILED' | 'DATABASE_UNAVAILABLE';

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isStoreError(error: unknown): error is StoreError {
  return error instanceof StoreError;
}
