import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Lead fields that must never reach a log line. pino replaces them wherever they appear at the top
 * level or one level down (`{ lead: { email } }`); code logs pseudonyms and ids, never leads.
 */
const PII_FIELDS = ['email', 'phone', 'name', 'company', 'record', 'row', 'raw'];
export const REDACT_PATHS = PII_FIELDS.flatMap((field) => [field, `*.${field}`]);

export interface LoggerOptions {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** A file to append to; standard error when null. */
  file: string | null;
}

export function createLogger(options: LoggerOptions): Logger {
  const destination = pino.destination({ dest: options.file ?? 2, sync: true, mkdir: true });
  return pino(
    {
      level: options.level,
      base: { service: 'valhalla' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // Under either name: an error object's own fields can hold a record (csv-parse's `record`).
      serializers: { err: serializeError, error: serializeError },
    },
    destination,
  );
}

/**
 * Errors are logged by type, code and message only: a parser's error object can carry the record
 * it failed on (csv-parse does), and that record holds PII.
 */
export function serializeError(error: unknown): { type: string; code?: string; message: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return { type: error.name, ...(typeof code === 'string' ? { code } : {}), message: error.message };
  }
  return { type: typeof error, message: String(error) };
}
