/** What every reader yields: one row of a source file, and the longest record a row may be. */

/** One row of a source file: its fields, or why it could not even be read as a row. */
export type SourceRow =
  | { line: number; fields: Record<string, unknown> }
  | { line: number; unreadable: string };

/** A record (CSV) or line (JSONL) longer than this, in characters, is a broken quote swallowing lines, not a lead. */
export const MAX_RECORD_BYTES = 64 * 1024;
