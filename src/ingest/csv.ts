/** The CSV reader: RFC 4180 records split from streamed text, the header checked, each record a row. */
import { IngestFileError } from './errors.js';
import { LEAD_FIELDS, REQUIRED_FIELDS } from './lead-schema.js';
import { MAX_RECORD_BYTES, type SourceRow } from './source-row.js';

/**
 * The rows of a CSV text: the lead's columns, and the `kept` ones (the declared attributes), by their
 * header name (trimmed, lower-cased); every other column is named in `ignored`.
 */
export async function* csvRows(
  text: AsyncIterable<string>,
  name: string,
  ignored: string[],
  kept: readonly string[] = [],
): AsyncGenerator<SourceRow> {
  let header: string[] | null = null;
  let columnIndex: Array<[string, number]> = [];
  for await (const record of csvRecords(text)) {
    if (header === null) {
      if ('broken' in record) {
        throw new IngestFileError(
          'BAD_HEADER',
          name,
          `the header (line ${record.line}) is not valid CSV: ${record.broken}`,
        );
      }
      header = record.fields.map((h) => h.trim().toLowerCase());
      const missing = REQUIRED_FIELDS.filter((f) => !header!.includes(f));
      if (missing.length > 0) {
        throw new IngestFileError(
          'MISSING_HEADER',
          name,
          `the header (line ${record.line}) lacks the column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; expected a header row with ${LEAD_FIELDS.join(',')}`,
        );
      }
      const duplicates = header.filter((h, i) => header!.indexOf(h) !== i);
      if (duplicates.length > 0) {
        throw new IngestFileError(
          'BAD_HEADER',
          name,
          `the header (line ${record.line}) repeats the column ${duplicates[0]}`,
        );
      }
      const read = new Set<string>([...LEAD_FIELDS, ...kept]);
      columnIndex = [...read].flatMap((f) =>
        header!.includes(f) ? [[f, header!.indexOf(f)] as [string, number]] : [],
      );
      ignored.push(...header.filter((h) => !read.has(h)));
      continue;
    }
    if ('broken' in record) {
      yield { line: record.line, unreadable: record.broken };
      continue;
    }
    if (record.fields.length !== header.length) {
      yield {
        line: record.line,
        unreadable: `expected ${header.length} fields as in the header, found ${record.fields.length}`,
      };
      continue;
    }
    const fields: Record<string, unknown> = {};
    for (const [field, index] of columnIndex) fields[field] = record.fields[index];
    yield { line: record.line, fields };
  }
  if (header === null)
    throw new IngestFileError('MISSING_HEADER', name, 'no header row: the file has no lines with data');
}

/** One CSV record as read, by the line it starts on: its fields, or why it is not a valid record. */
type CsvRecord = { line: number; fields: string[] } | { line: number; broken: string };

type Scan =
  | { kind: 'more' }
  | { kind: 'record'; fields: string[]; end: number }
  | { kind: 'broken'; reason: string };

const QUOTE = 0x22;
const COMMA = 0x2c;
const LF = 0x0a;
const CR = 0x0d;

/**
 * Split CSV text (RFC 4180: `,` between fields, `"` quoting with `""` inside, CRLF, LF or CR line
 * ends, line breaks allowed inside quotes) into records, skipping empty lines. csv-parse's
 * `skip_records_with_error` cannot resynchronise: after a broken quote it keeps reading the rest of
 * the file as one field (or, past `max_record_size`, silently drops the rest of the chunk), so good
 * rows after a broken one were lost without a trace. Here a broken record is reported by its first
 * line and reading starts again on the line after it; memory stays bounded by MAX_RECORD_BYTES.
 */
async function* csvRecords(text: AsyncIterable<string>): AsyncGenerator<CsvRecord> {
  const source = text[Symbol.asyncIterator]();
  let buf = '';
  let pos = 0;
  let line = 1;
  let eof = false;
  let first = true;
  /** After a broken record: skip to the start of the line after the one `pos` is on. */
  let skipping = false;
  const more = async (): Promise<boolean> => {
    const next = eof ? null : await source.next();
    if (next === null || next.done) {
      eof = true;
      return false;
    }
    let chunk = next.value;
    if (first) {
      chunk = chunk.replace(/^\uFEFF/, '');
      first = false;
    }
    buf = buf.slice(pos) + chunk;
    pos = 0;
    return true;
  };
  try {
    for (;;) {
      if (skipping) {
        const brk = findLineBreak(buf, pos);
        if (brk === -1) {
          buf = '';
          pos = 0;
          if (!(await more())) return;
          continue;
        }
        const end = afterLineBreak(buf, brk, eof);
        if (end === -1) {
          await more();
          continue;
        }
        pos = end;
        line++;
        skipping = false;
        continue;
      }
      if (pos >= buf.length) {
        if (!(await more())) return;
        continue;
      }
      const c = buf.charCodeAt(pos);
      if (c === LF || c === CR) {
        // An empty line: not a record.
        const end = afterLineBreak(buf, pos, eof);
        if (end === -1) {
          await more();
          continue;
        }
        pos = end;
        line++;
        continue;
      }
      const scan = scanRecord(buf, pos, eof);
      if (scan.kind === 'more') {
        await more();
        continue;
      }
      if (scan.kind === 'record') {
        yield { line, fields: scan.fields };
        line += countLineBreaks(buf, pos, scan.end);
        pos = scan.end;
        continue;
      }
      yield { line, broken: scan.reason };
      skipping = true;
    }
  } finally {
    await source.return?.();
  }
}

/** Scan one record starting at `start`; `more` when the text so far cannot tell where it ends. */
function scanRecord(buf: string, start: number, eof: boolean): Scan {
  const fields: string[] = [];
  const tooLong = () => buf.length - start > MAX_RECORD_BYTES;
  // The limit is on the record's text: its line break (LF, CRLF or CR) does not count.
  const done = (end: number, textEnd = end): Scan =>
    textEnd - start > MAX_RECORD_BYTES
      ? { kind: 'broken', reason: `row longer than ${MAX_RECORD_BYTES} characters` }
      : { kind: 'record', fields, end };
  let i = start;
  for (;;) {
    if (buf.charCodeAt(i) === QUOTE) {
      const open = i;
      let value = '';
      i++;
      for (;;) {
        const q = buf.indexOf('"', i);
        if (q === -1 || (q === buf.length - 1 && !eof)) {
          if (eof) return { kind: 'broken', reason: 'broken quoting: a quoted field is never closed' };
          if (tooLong())
            return {
              kind: 'broken',
              reason: `broken quoting: a quoted field is not closed within ${MAX_RECORD_BYTES} characters`,
            };
          return { kind: 'more' };
        }
        value += buf.slice(i, q);
        if (buf.charCodeAt(q + 1) === QUOTE) {
          value += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i >= buf.length) return eof ? done(i) : { kind: 'more' };
      const c = buf.charCodeAt(i);
      if (c === COMMA) {
        i++;
        continue;
      }
      if (c === LF || c === CR) {
        const end = afterLineBreak(buf, i, eof);
        return end === -1 ? { kind: 'more' } : done(end, i);
      }
      // Text after a quote that is lines away from its opening one: most likely the opening quote was
      // never closed and this quote opens a field of a later row.
      const spansLines = findLineBreak(buf.slice(open, i), 0) !== -1;
      return {
        kind: 'broken',
        reason: spansLines
          ? 'broken quoting: a quoted field is never closed'
          : 'broken quoting: text after a closing quote',
      };
    }
    let j = i;
    for (; j < buf.length; j++) {
      const c = buf.charCodeAt(j);
      if (c === COMMA || c === LF || c === CR || c === QUOTE) break;
    }
    if (j >= buf.length) {
      if (!eof)
        return tooLong()
          ? { kind: 'broken', reason: `row longer than ${MAX_RECORD_BYTES} characters` }
          : { kind: 'more' };
      fields.push(buf.slice(i, j));
      return done(j);
    }
    const c = buf.charCodeAt(j);
    if (c === QUOTE) return { kind: 'broken', reason: 'broken quoting: a quote inside an unquoted field' };
    fields.push(buf.slice(i, j));
    if (c === COMMA) {
      i = j + 1;
      continue;
    }
    const end = afterLineBreak(buf, j, eof);
    return end === -1 ? { kind: 'more' } : done(end, j);
  }
}

function findLineBreak(buf: string, from: number): number {
  for (let i = from; i < buf.length; i++) {
    const c = buf.charCodeAt(i);
    if (c === LF || c === CR) return i;
  }
  return -1;
}

/** The index after the line break at `i` (CRLF, LF or CR); -1 when a CR ends the text so far. */
function afterLineBreak(buf: string, i: number, eof: boolean): number {
  if (buf.charCodeAt(i) === LF) return i + 1;
  if (i + 1 < buf.length) return buf.charCodeAt(i + 1) === LF ? i + 2 : i + 1;
  return eof ? i + 1 : -1;
}

function countLineBreaks(buf: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = buf.charCodeAt(i);
    if (c === LF || (c === CR && buf.charCodeAt(i + 1) !== LF)) n++;
  }
  return n;
}
