export type IngestFileErrorCode =
  | 'FILE_NOT_FOUND'
  | 'FILE_UNREADABLE'
  | 'NOT_A_FILE'
  | 'EMPTY_FILE'
  | 'UNKNOWN_FORMAT'
  | 'BINARY_FILE'
  | 'BAD_ENCODING'
  | 'MISSING_HEADER';

/** A problem with the file as a whole: the ingest stops and exits non-zero, naming the file. */
export class IngestFileError extends Error {
  override readonly name = 'IngestFileError';
  constructor(
    readonly code: IngestFileErrorCode,
    readonly source: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${source}: ${message}`, options);
  }
}

export function isIngestFileError(error: unknown): error is IngestFileError {
  return error instanceof IngestFileError;
}
