/** The JSON readers: JSONL (one lead object a line) and one streamed JSON array of lead objects. */
import { IngestFileError } from './errors.js';
import { MAX_RECORD_BYTES, type SourceRow } from './source-row.js';

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

export async function* jsonlRows(text: AsyncIterable<string>): AsyncGenerator<SourceRow> {
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
export async function* jsonArrayRows(text: AsyncIterable<string>, name: string): AsyncGenerator<SourceRow> {
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
