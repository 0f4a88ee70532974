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
  | 'REJECTS_UNWRITABLE'
  /** A JSON upload that is not an array (refused before a run starts). */
  | 'NOT_AN_ARRAY'
  /** A JSON array that is not well formed (cut short, a comma missing, text after it). */
  | 'BAD_JSON'
  /** Stopped early: too many rows rejected (see REJECT_BOUND in ingest.ts). */
  | 'TOO_MANY_REJECTS';

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
