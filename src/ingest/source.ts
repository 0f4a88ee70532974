import { createReadStream, promises as fs } from 'node:fs';
import { extname } from 'node:path';
import type { Readable } from 'node:stream';
import { parse as parseCsv } from 'csv-parse';
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
}

const FORMAT_BY_EXTENSION: Record<string, SourceFormat> = { '.csv': 'csv', '.jsonl': 'jsonl', '.ndjson': 'jsonl' };
/** A CSV record longer than this is a broken quote swallowing lines, not a lead. */
const MAX_RECORD_BYTES = 64 * 1024;

/** Open a CSV or JSONL source, checking what can be checked before the first row. */
export async function openSource(input: SourceInput): Promise<OpenedSource> {
  const name = input.path === '-' ? '(standard input)' : input.path;
  let size: number | null = null;
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
      throw new IngestFileError('FILE_UNREADABLE', name, `cannot read: ${code ?? (cause as Error).message}`, { cause });
    }
    if (size === 0) throw new IngestFileError('EMPTY_FILE', name, 'the file is empty (no header, no rows)');
    stream = createReadStream(input.path);
  }
  const declared = input.format ?? (input.path === '-' ? undefined : FORMAT_BY_EXTENSION[extname(input.path).toLowerCase()]);
  if (input.format === undefined && input.path !== '-' && declared === undefined && extname(input.path) !== '') {
    const ext = extname(input.path);
    if (!['.txt', '.dat', '.data'].includes(ext.toLowerCase())) {
      throw new IngestFileError('UNKNOWN_FORMAT', name, `unknown file type ${ext}: use .csv, .jsonl or .ndjson, or --format csv|jsonl`);
    }
  }

  let bytes = 0;
  const decoded = decodeUtf8(stream, name, (chunk) => {
    bytes += chunk.length;
    input.onChunk?.(chunk);
  });
  const first = await decoded.next();
  if (first.done || first.value.replace(/^\uFEFF/, '').trim() === '') {
    // A stream whose first chunk is only white space may still have more; treat a blank start as empty.
    if (first.done) throw new IngestFileError('EMPTY_FILE', name, 'no data (no header, no rows)');
  }
  const firstText = first.done ? '' : first.value;
  const format = declared ?? sniffFormat(firstText);
  const text = prepend(firstText, decoded);
  const ignored: string[] = [];
  const rows = format === 'csv' ? csvRows(text, name, ignored) : jsonlRows(text);
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
async function* decodeUtf8(stream: Readable, name: string, onChunk: (chunk: Buffer) => void): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer | string>) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      onChunk(buffer);
      const nul = buffer.indexOf(0);
      if (nul !== -1) {
        throw new IngestFileError('BINARY_FILE', name, `a NUL byte at byte ${offset + nul}: this is a binary file, not CSV or JSONL`);
      }
      let textChunk: string;
      try {
        textChunk = decoder.decode(buffer, { stream: true });
      } catch (cause) {
        throw new IngestFileError('BAD_ENCODING', name, `not valid UTF-8 (between bytes ${offset} and ${offset + buffer.length}); convert the file to UTF-8`, { cause });
      }
      offset += buffer.length;
      if (textChunk !== '') yield textChunk;
    }
    try {
      const tail = decoder.decode();
      if (tail !== '') yield tail;
    } catch (cause) {
      throw new IngestFileError('BAD_ENCODING', name, `not valid UTF-8: the file ends inside a character (byte ${offset})`, { cause });
    }
  } catch (cause) {
    if (cause instanceof IngestFileError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    throw new IngestFileError('FILE_UNREADABLE', name, `read failed: ${code ?? (cause as Error).message}`, { cause });
  } finally {
    stream.destroy();
  }
}

async function* csvRows(text: AsyncIterable<string>, name: string, ignored: string[]): AsyncGenerator<SourceRow> {
  const skipped: SourceRow[] = [];
  const parser = parseCsv({
    bom: true,
    info: true,
    relax_column_count: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    max_record_size: MAX_RECORD_BYTES,
    on_skip: (error) => {
      // The parser's error may carry the record's text: keep only its code and line.
      const err = error as unknown as { code?: string; lines?: number } | undefined;
      skipped.push({ line: err?.lines ?? 0, unreadable: csvProblem(err?.code) });
    },
  });
  const feeding = (async () => {
    try {
      for await (const chunk of text) {
        if (parser.destroyed) break;
        if (!parser.write(chunk)) await drainedOrClosed(parser);
      }
      if (!parser.destroyed) parser.end();
    } catch (error) {
      parser.destroy(error as Error);
    }
  })();

  let header: string[] | null = null;
  let columnIndex: Array<[string, number]> = [];
  try {
    for await (const item of parser as AsyncIterable<{ record: string[]; info: { lines: number } }>) {
      while (skipped.length > 0) yield skipped.shift()!;
      const { record, info } = item;
      if (header === null) {
        header = record.map((h) => h.trim().toLowerCase());
        const missing = REQUIRED_FIELDS.filter((f) => !header!.includes(f));
        if (missing.length > 0) {
          throw new IngestFileError('MISSING_HEADER', name, `the header (line 1) lacks the column${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; expected a header row with ${LEAD_FIELDS.join(',')}`);
        }
        const duplicates = header.filter((h, i) => header!.indexOf(h) !== i);
        if (duplicates.length > 0) {
          throw new IngestFileError('MISSING_HEADER', name, `the header (line 1) repeats the column ${duplicates[0]}`);
        }
        columnIndex = LEAD_FIELDS.flatMap((f) => (header!.includes(f) ? [[f, header!.indexOf(f)] as [string, number]] : []));
        ignored.push(...header.filter((h) => !(LEAD_FIELDS as readonly string[]).includes(h)));
        continue;
      }
      if (record.length !== header.length) {
        yield { line: info.lines, unreadable: `expected ${header.length} fields as in the header, found ${record.length}` };
        continue;
      }
      const fields: Record<string, unknown> = {};
      for (const [field, index] of columnIndex) fields[field] = record[index];
      yield { line: info.lines, fields };
    }
    while (skipped.length > 0) yield skipped.shift()!;
  } finally {
    if (!parser.destroyed) parser.destroy();
    await feeding;
  }
  if (header === null) throw new IngestFileError('MISSING_HEADER', name, 'no header row: the file has no lines with data');
}

function drainedOrClosed(stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

function csvProblem(code: string | undefined): string {
  switch (code) {
    case 'CSV_QUOTE_NOT_CLOSED':
      return 'broken quoting: a quoted field is never closed';
    case 'CSV_INVALID_CLOSING_QUOTE':
      return 'broken quoting: text after a closing quote';
    case 'CSV_MAX_RECORD_SIZE':
      return `row longer than ${MAX_RECORD_BYTES} bytes (broken quoting?)`;
    default:
      return `not a valid CSV row (${code ?? 'parse error'})`;
  }
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
    if (body.length > MAX_RECORD_BYTES) return { line, unreadable: `row longer than ${MAX_RECORD_BYTES} characters` };
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
    if (buffered.length > MAX_RECORD_BYTES) {
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
