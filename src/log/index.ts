import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, tightenExistingFile } from '../files/index.js';
import { escapeText } from '../text/index.js';

export type { Logger } from 'pino';

/**
 * Lead fields that must never reach a log line. pino replaces them wherever they appear at the top
 * level or one level down (`{ lead: { email } }`); code logs pseudonyms and ids, never leads.
 */
const PII_FIELDS = ['email', 'phone', 'name', 'company', 'attributes', 'record', 'row', 'raw'];
export const REDACT_PATHS = PII_FIELDS.flatMap((field) => [field, `*.${field}`]);

export interface LoggerOptions {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** A file to append JSON lines to; standard error when null. */
  file: string | null;
  /**
   * With no file: whether standard error is a person's terminal (default: whether it is a TTY). A
   * terminal is not given JSON: the commands print their own lines (one per cycle), so only warnings
   * and errors are written, one human line each. Elsewhere (a service manager, a pipe) the JSON lines
   * go to standard error.
   */
  terminal?: boolean;
}

/** pino's numeric level of `warn`: what a terminal is shown of the log. */
const WARN_LEVEL = 40;
const LEVEL_WORDS: Readonly<Record<number, string>> = { 40: 'warning', 50: 'error', 60: 'fatal' };
/** The fields every record has, left out of a terminal line. */
const RECORD_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'service', 'msg']);

/**
 * A log record (one JSON line, redacted already) as a terminal line: `valhalla: warning: message
 * (key=value, ...)`. Nested values are written as JSON.
 */
export function terminalLine(json: string): string | null {
  const record = JSON.parse(json) as Record<string, unknown> & { level?: unknown; msg?: string };
  if (typeof record.level !== 'number') return `${json.trimEnd()}\n`;
  if (record.level < WARN_LEVEL) return null;
  const fields = Object.entries(record)
    .filter(([key]) => !RECORD_FIELDS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  const word = LEVEL_WORDS[record.level] ?? 'error';
  const text = `valhalla: ${word}: ${record.msg ?? ''}${fields.length > 0 ? ` (${fields.join(', ')})` : ''}`;
  // A message can quote input (a file's header, a partner's answer): no terminal control gets through.
  return `${escapeText(text, { newlines: true })}\n`;
}

export function createLogger(options: LoggerOptions): Logger {
  // A log names pseudonyms, ids and errors: owner-only like every file the product writes. A file
  // left open to others is tightened (the note goes to the log itself, below).
  // A missing folder is made owner-only too (it is often the data folder).
  if (options.file !== null) mkdirSync(dirname(options.file), { recursive: true, mode: PRIVATE_DIR_MODE });
  const tightened = options.file === null ? null : tightenExistingFile(options.file);
  const terminal = options.file === null && (options.terminal ?? process.stderr.isTTY === true);
  const destination = terminal
    ? {
        write(json: string) {
          const line = terminalLine(json);
          if (line !== null) process.stderr.write(line);
        },
      }
    : pino.destination({ dest: options.file ?? 2, sync: true, mkdir: true, mode: PRIVATE_FILE_MODE });
  const logger = pino(
    {
      level: options.level,
      base: { service: 'valhalla' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      // Under either name: an error object's own fields can hold a record (csv-parse's `record`).
      serializers: { err: serializeError, error: serializeError },
    },
    destination,
  );
  if (tightened !== null) logger.warn({ note: tightened }, 'a file open to other users was made private');
  return logger;
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
