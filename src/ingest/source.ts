import { createReadStream, promises as fs } from 'node:fs';
import { extname } from 'node:path';
import type { Readable } from 'node:stream';
import { IngestFileError } from './errors.js';
import { LEAD_FIELDS, REQUIRED_FIELDS } from './lead-schema.js';

export type SourceFormat = 'csv' | 'jsonl';

/** One row of a source file: its fields, or why it could not even be read as a row. */
export type SourceRow =
  | { line: number; fields: Record<string, unknown> }
  | { line: number; unreadable: string };

export interface OpenedSource {
  name: string;
  format: SourceFormat;
  /** Size in bytes when known (a file), for progress. */
  size: number | null;
  rows: AsyncGenerator<SourceRow>;
  /** Bytes consumed so far, and the SHA-256 of the bytes when fully read. */
  bytesRead(): number;
  /** Columns in the header that the product does not use (CSV only). */
  ignoredColumns(): string[];
}

export interface SourceInput {
  /** A path, or `-` for standard input. */
  path: string;
  format?: SourceFormat;
  stdin?: Readable;
  onChunk?: (chunk: Buffer) => void;
  /**
   * The text is one JSON array of lead objects (an `application/json` upload): each element is read
   * as a JSONL row would be, its number in the array as its line. Read as a stream, element by
   * element: a whole-body `JSON.parse` of 10 MB of `{}` builds millions of objects at once.
   */
  jsonArray?: boolean;
}

const FORMAT_BY_EXTENSION: Record<string, SourceFormat> = {
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
};
/** A record (CSV) or line (JSONL) longer than this, in characters, is a broken quote swallowing lines, not a lead. */
const MAX_RECORD_BYTES = 64 * 1024;

/** Open a CSV or JSONL source, checking what can be checked before the first row. */
export async function openSource(input: SourceInput): Promise<OpenedSource> {
  const name = input.path === '-' ? '(standard input)' : input.path;
  let size: number | null = null;
  let declared: SourceFormat | undefined = input.format;
  let stream: Readable;
  if (input.path === '-') {
    stream = input.stdin ?? process.stdin;
  } else {
    try {
      const stat = await fs.stat(input.path);
      if (!stat.isFile()) throw new IngestFileError('NOT_A_FILE', name, 'not a regular file');
      size = stat.size;
      await fs.access(input.path, fs.constants.R_OK);
    } catch (cause) {
      if (cause instanceof IngestFileError) throw cause;
      const code = (cause as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new IngestFileError('FILE_NOT_FOUND', name, 'no such file', { cause });
      throw new IngestFileError('FILE_UNREADABLE', name, `cannot read: ${code ?? (cause as Error).message}`, {
        cause,
      });
    }
    if (size === 0) throw new IngestFileError('EMPTY_FILE', name, 'the file is empty (no header, no rows)');
    // Checked before the file is opened: a stream opened and then abandoned would leak its descriptor.
    declared ??= FORMAT_BY_EXTENSION[extname(input.path).toLowerCase()];
    const ext = extname(input.path);
    if (declared === undefined && ext !== '' && !['.txt', '.dat', '.data'].includes(ext.toLowerCase())) {
      throw new IngestFileError(
        'UNKNOWN_FORMAT',
        name,
        `unknown file type ${ext}: use .csv, .jsonl or .ndjson, or --format csv|jsonl`,
      );
    }
    stream = createReadStream(input.path);
  }

  let bytes = 0;
  const decoded = decodeUtf8(stream, name, (chunk) => {
    bytes += chunk.length;
    input.onChunk?.(chunk);
  });
  const first = await decoded.next();
  if (first.done) throw new IngestFileError('EMPTY_FILE', name, 'no data (no header, no rows)');
  let firstText = first.done ? '' : first.value;
  if (input.jsonArray) {
    // Before the run starts (as a body that is not JSON at all is refused before any row): the
    // first character that is not white space opens the array. White space alone is skipped, not kept.
    for (;;) {
      const start = firstText.replace(/^\uFEFF/, '').trimStart();
      if (start !== '') {
        if (start[0] !== '[')
          throw new IngestFileError('NOT_AN_ARRAY', name, 'not a JSON array of lead objects');
        break;
      }
      const next = await decoded.next();
      if (next.done) throw new IngestFileError('EMPTY_FILE', name, 'no data (white space only)');
      firstText = next.value;
    }
  }
  const format = input.jsonArray ? 'jsonl' : (declared ?? sniffFormat(firstText));
  const text = prepend(firstText, decoded);
  const ignored: string[] = [];
  const rows = input.jsonArray
    ? jsonArrayRows(text, name)
    : format === 'csv'
      ? csvRows(text, name, ignored)
      : jsonlRows(text);
  return { name, format, size, rows, bytesRead: () => bytes, ignoredColumns: () => ignored };
}

function sniffFormat(start: string): SourceFormat {
  const firstChar = start.replace(/^\uFEFF/, '').trimStart()[0];
  return firstChar === '{' ? 'jsonl' : 'csv';
}

async function* prepend(first: string, rest: AsyncGenerator<string>): AsyncGenerator<string> {
  if (first !== '') yield first;
  yield* rest;
}

/** Decode bytes as strict UTF-8; a NUL byte or an invalid sequence is a file-level error with its offset. */
async function* decodeUtf8(
  stream: Readable,
  name: string,
  onChunk: (chunk: Buffer) => void,
): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      onChunk(buffer);
      const nul = buffer.indexOf(0);
      if (nul !== -1) {
        throw new IngestFileError(
          'BINARY_FILE',
          name,
          `a NUL byte at byte ${offset + nul}: this is a binary file, not CSV or JSONL`,
        );
      }
      let textChunk: string;
      try {
        textChunk = decoder.decode(buffer, { stream: true });
      } catch (cause) {
        throw new IngestFileError(
          'BAD_ENCODING',
          name,
          `not valid UTF-8 (between bytes ${offset} and ${offset + buffer.length}); convert the file to UTF-8`,
          { cause },
        );
      }
      offset += buffer.length;
      if (textChunk !== '') yield textChunk;
    }
    try {
      const tail = decoder.decode();
      if (tail !== '') yield tail;
    } catch (cause) {
      throw new IngestFileError(
        'BAD_ENCODING',
        name,
        `not valid UTF-8: the file ends inside a character (byte ${offset})`,
        { cause },
      );
    }
  } catch (cause) {
    if (cause instanceof IngestFileError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    throw new IngestFileError('FILE_UNREADABLE', name, `read failed: ${code ?? (cause as Error).message}`, {
      cause,
    });
  } finally {
    stream.destroy();
  }
}

async function* csvRows(
  text: AsyncIterable<string>,
  name: string,
  ignored: string[],
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
      columnIndex = LEAD_FIELDS.flatMap((f) =>
        header!.includes(f) ? [[f, header!.indexOf(f)] as [string, number]] : [],
      );
      ignored.push(...header.filter((h) => !(LEAD_FIELDS as readonly string[]).includes(h)));
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

/** One JSON text as a row: a lead object, or why it is not one (never quoting the text). */
function jsonRow(line: number, body: string): SourceRow {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    // JSON.parse's message quotes the text it failed on, which may be PII: say only that it failed.
    return { line, unreadable: 'not valid JSON' };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { line, unreadable: 'not a JSON object' };
  }
  return { line, fields: value as Record<string, unknown> };
}

async function* jsonlRows(text: AsyncIterable<string>): AsyncGenerator<SourceRow> {
  let buffered = '';
  let line = 0;
  let first = true;
  const rowOf = (raw: string): SourceRow | null => {
    line++;
    let body = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (first) {
      body = body.replace(/^\uFEFF/, '');
      first = false;
    }
    if (body.trim() === '') return null;
    if (body.length > MAX_RECORD_BYTES)
      return { line, unreadable: `row longer than ${MAX_RECORD_BYTES} characters` };
    return jsonRow(line, body);
  };
  let discarding = false;
  for await (const chunk of text) {
    let from = 0;
    if (discarding) {
      const end = chunk.indexOf('\n');
      if (end === -1) continue;
      discarding = false;
      from = end + 1;
    }
    buffered += from === 0 ? chunk : chunk.slice(from);
    let start = 0;
    let newline = buffered.indexOf('\n');
    while (newline !== -1) {
      const row = rowOf(buffered.slice(start, newline));
      if (row) yield row;
      start = newline + 1;
      newline = buffered.indexOf('\n', start);
    }
    buffered = buffered.slice(start);
    // The line's text so far: a CR waiting for its LF (the chunk split a CRLF) and the first line's
    // byte-order mark are not part of it, as rowOf does not count them either.
    const pending =
      buffered.length - (buffered.endsWith('\r') ? 1 : 0) - (first && buffered.startsWith('\uFEFF') ? 1 : 0);
    if (pending > MAX_RECORD_BYTES) {
      // A line with no end in sight: report it and skip to the next line so memory stays flat.
      line++;
      yield { line, unreadable: `row longer than ${MAX_RECORD_BYTES} characters` };
      buffered = '';
      discarding = true;
    }
  }
  if (buffered !== '') {
    const row = rowOf(buffered);
    if (row) yield row;
  }
}

/** An element nested deeper than this is not a lead (a lead object is one level deep). */
const MAX_ELEMENT_DEPTH = 32;
const OPENERS = new Set(['[', '{']);
const CLOSERS = new Set([']', '}']);
const JSON_SPACE = new Set([' ', '\t', '\n', '\r']);

/**
 * The elements of one top-level JSON array, one at a time, each read as a JSONL row (its number in
 * the array as its line). Only the element being read is kept, and at most MAX_RECORD_BYTES of it:
 * a longer element, or one nested deeper than MAX_ELEMENT_DEPTH, is scanned to its end without being
 * kept and becomes a rejected row. The array itself must be well formed (elements separated by
 * commas, closed, nothing after it): otherwise the run stops with a file-level error, as a truncated
 * CSV quote would not (a JSON array cut short has no row boundary to resynchronise on).
 */
async function* jsonArrayRows(text: AsyncIterable<string>, name: string): AsyncGenerator<SourceRow> {
  /** Before the `[`; inside, before an element or `]`; after `,`; after an element; after `]`. */
  let state: 'start' | 'open' | 'value' | 'next' | 'closed' = 'start';
  let line = 0;
  let element = '';
  let kept = true;
  let depth = 0;
  let deepest = 0;
  let inString = false;
  let escaped = false;
  /** The element is a bare literal (number, true, false, null): it ends at a delimiter. */
  let literal = false;
  let inElement = false;
  const broken = (what: string) =>
    new IngestFileError('BAD_JSON', name, `not a well-formed JSON array: ${what} (after element ${line})`);
  const finish = (): SourceRow => {
    inElement = false;
    const row: SourceRow =
      !kept || element.length > MAX_RECORD_BYTES
        ? { line, unreadable: `row longer than ${MAX_RECORD_BYTES} characters` }
        : deepest > MAX_ELEMENT_DEPTH
          ? { line, unreadable: `nested deeper than ${MAX_ELEMENT_DEPTH} levels` }
          : jsonRow(line, element);
    element = '';
    return row;
  };
  let first = true;
  for await (let chunk of text) {
    if (first) {
      chunk = chunk.replace(/^\uFEFF/, '');
      first = false;
    }
    let from = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i]!;
      if (inElement) {
        if (literal) {
          if (c !== ',' && c !== ']' && !JSON_SPACE.has(c)) continue;
          element += chunk.slice(from, i);
          yield finish();
          state = 'next';
          // The delimiter is read again below as the element's follower.
        } else {
          if (inString) {
            if (escaped) escaped = false;
            else if (c === '\\') escaped = true;
            else if (c === '"') inString = false;
            if (inString || depth > 0) continue;
          } else if (c === '"') {
            inString = true;
            continue;
          } else if (OPENERS.has(c)) {
            depth++;
            if (depth > deepest) deepest = depth;
            continue;
          } else if (CLOSERS.has(c)) {
            depth--;
            if (depth > 0) continue;
          } else continue;
          // The element's last character: a closing bracket at depth 0, or a top-level string's quote.
          if (kept) element += chunk.slice(from, i + 1);
          yield finish();
          state = 'next';
          continue;
        }
      }
      if (JSON_SPACE.has(c)) continue;
      if (state === 'start') {
        if (c !== '[') throw broken('it does not start with [');
        state = 'open';
      } else if (state === 'next') {
        if (c === ',') state = 'value';
        else if (c === ']') state = 'closed';
        else throw broken('a comma or ] is missing');
      } else if (state === 'closed') {
        throw broken('text after its closing ]');
      } else if (c === ']' && state === 'open') {
        state = 'closed';
      } else if (c === ']' || c === ',') {
        throw broken(c === ']' ? 'a comma before ]' : 'an empty element');
      } else {
        line++;
        inElement = true;
        kept = true;
        deepest = 0;
        escaped = false;
        from = i;
        literal = c !== '"' && !OPENERS.has(c);
        inString = c === '"';
        depth = OPENERS.has(c) ? 1 : 0;
        deepest = depth;
      }
    }
    if (inElement && kept) {
      element += chunk.slice(from);
      if (element.length > MAX_RECORD_BYTES) {
        kept = false;
        element = '';
      }
    }
  }
  if (inElement && literal && state !== 'closed') {
    // A literal can only end at a delimiter; at the end of the text the array was never closed.
    throw broken('it is never closed');
  }
  if (state !== 'closed') throw broken(state === 'start' ? 'it is empty' : 'it is never closed');
}
