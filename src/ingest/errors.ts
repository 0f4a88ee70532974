export type IngestFileErrorCode =
  | 'FILE_NOT_FOUND'
  | 'FILE_UNREADABLE'
  | 'NOT_A_FILE'
  | 'EMPTY_FILE'
  | 'UNKNOWN_FORMAT'
  | 'BINARY_FILE'
  | 'BAD_ENCODING'
  | 'MISSING_HEADER'
  /** The CSV header repeats a column or is not valid CSV. */
  | 'BAD_HEADER'
  /** The rejects file (an output) cannot be created or written. */
  | 'REJECTS_UNWRITABLE';

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
