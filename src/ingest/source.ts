/** Opening a source: the file's checks before the first row, its format, and the reader for it. */
import { createReadStream, promises as fs } from 'node:fs';
import { extname } from 'node:path';
import type { Readable } from 'node:stream';
import { csvRows } from './csv.js';
import { IngestFileError } from './errors.js';
import { jsonArrayRows, jsonlRows } from './json.js';
import type { SourceRow } from './source-row.js';
import { decodeUtf8 } from './utf8.js';

export type SourceFormat = 'csv' | 'jsonl';

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
  /** CSV columns read besides the lead's own (the declared attributes), not reported as ignored. */
  keptColumns?: readonly string[];
}

const FORMAT_BY_EXTENSION: Record<string, SourceFormat> = {
  '.csv': 'csv',
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
};

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
      ? csvRows(text, name, ignored, input.keptColumns ?? [])
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
