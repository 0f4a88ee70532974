/**
 * Turns generated rows (test/support/lead-fuzz.ts) into the bytes of a CSV or JSONL file, with the
 * outcome every record must have and the PII needles to search for; and searches outputs for them.
 */
import fc from 'fast-check';
import type { Kysely } from 'kysely';
import { expect } from 'vitest';
import { LEAD_FIELDS } from '../../src/ingest/index.js';
import type { Database } from '../../src/store/index.js';
import {
  asWritten,
  type BuiltFile,
  type Cell,
  type CsvHeader,
  type EmailCell,
  EXTRA_COLUMNS,
  type ExpectedLead,
  type ExpectedRecord,
  type FileLayout,
  type Format,
  type Item,
  type Json,
  type LeadField,
  type LeadRow,
  NOW,
  NOW_ISO,
  poolEmail,
} from './lead-fuzz.js';
import { DAY } from './world.js';

/** The policy's defaults (config/policy.json): below this score, or older than this, a lead is not pending. */
const MIN_SCORE = 40;
const MAX_AGE_DAYS = 14;

function materialiseEmail(cell: EmailCell | Cell, token: string): Cell {
  if ('valid' in cell) return cell;
  const email = poolEmail(cell.slot, token);
  const styled =
    cell.style === 'upper'
      ? email.toUpperCase()
      : cell.style === 'title'
        ? email.charAt(0).toUpperCase() + email.slice(1)
        : cell.style === 'mixed'
          ? [...email].map((c, i) => (i % 2 ? c.toUpperCase() : c)).join('')
          : email;
  return { value: `${cell.pad}${styled}${cell.pad}`, valid: true, stored: email };
}

/**
 * A valid external id made unique to the property run, as the e-mails are (the runs share one
 * database, and a lead is a duplicate when its external id matches one stored by an earlier run).
 */
function materialiseExternalId(cell: Cell, token: string): Cell {
  if (!cell.valid || typeof cell.stored !== 'string') return cell;
  const id = `${token}.${cell.stored}`;
  return { value: id, valid: true, stored: id };
}

type Piece = { line: number; end: number; judged: Judged | { raw: string[] } };
type Judged =
  | { values: Partial<Record<LeadField, Json | undefined>>; lead: ExpectedLead; pii: string[] }
  | {
      values: Partial<Record<LeadField, Json | undefined>>;
      field: LeadField | 'row';
      badValue: unknown;
      pii: string[];
    };

/** A row's values for the fields the file has, and its verdict: the lead it must become, or its defect. */
function judge(row: LeadRow, present: ReadonlySet<LeadField>, token: string): Judged {
  const cells: Record<LeadField, Cell> = {
    ...row.cells,
    email: materialiseEmail(row.email, token),
    external_id: materialiseExternalId(row.cells.external_id, token),
  };
  const values: Partial<Record<LeadField, Json | undefined>> = {};
  let defect: { field: LeadField | 'row'; badValue: unknown } | null = row.wrongCount
    ? { field: 'row', badValue: undefined }
    : null;
  for (const field of LEAD_FIELDS) {
    if (!present.has(field)) continue;
    const cell = cells[field];
    values[field] = cell.value;
    if (!cell.valid && defect === null) defect = { field, badValue: cell.value };
  }
  const pii = (['name', 'email', 'phone', 'company'] as const).flatMap((f) => {
    const v = values[f];
    return typeof v === 'string' ? [v] : [];
  });
  if (defect !== null) return { values, ...defect, pii };
  const stored = <T extends Json>(field: LeadField): T | null =>
    present.has(field) ? ((cells[field] as Extract<Cell, { valid: true }>).stored as T) : null;
  const score = stored<number>('score')!;
  const sourceTs = stored<number>('source_timestamp')!;
  const lead: ExpectedLead = {
    external_id: stored<string>('external_id'),
    name: stored<string>('name')!,
    email: stored<string>('email')!,
    phone: stored<string>('phone'),
    company: stored<string>('company'),
    score,
    source_ts: sourceTs,
    value: stored<number>('value'),
    state:
      score < MIN_SCORE ? 'below_threshold' : NOW - sourceTs > MAX_AGE_DAYS * DAY ? 'expired' : 'pending',
  };
  return { values, lead, pii };
}

const lineBreaks = (s: string) => s.match(/\r\n|\r|\n/g)?.length ?? 0;
const quoteCsv = (s: string, all: boolean) => (all || /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** A CSV file: the header, then each item; `unclosedTail` adds a last record whose quote never closes. */
export function buildCsv(
  header: CsvHeader,
  itemList: Item[],
  layout: FileLayout,
  token: string,
  unclosedTail: string | null = null,
): BuiltFile {
  const { eol } = layout;
  const present = new Set(header.columns.filter((c): c is LeadField => typeof c === 'string'));
  const names = header.columns.map((c, i) => {
    const base = typeof c === 'number' ? EXTRA_COLUMNS[c]! : c;
    const spelling = header.spelling[i % header.spelling.length]!;
    return `${spelling.pad}${spelling.upper ? base.toUpperCase() : base}${spelling.pad}`;
  });
  const record = (cells: string[]) =>
    cells.length === 1 && cells[0] === '' ? '""' : cells.map((c) => quoteCsv(c, layout.quoteAll)).join(',');

  let text = (layout.bom ? '\ufeff' : '') + eol.repeat(layout.leadingBlankLines);
  let line = 1 + layout.leadingBlankLines;
  const pieces: Piece[] = [];
  const append = (piece: string) => {
    text += piece;
    line += lineBreaks(piece);
  };
  append(record(names) + eol);
  let lastWasRecord = true;
  for (const item of itemList) {
    if (item.kind === 'blank') {
      append(eol);
      lastWasRecord = false;
      continue;
    }
    if (item.kind === 'raw') {
      const at = pieces.push({ line, end: 0, judged: { raw: item.pii } }) - 1;
      append(item.text + eol);
      pieces[at]!.end = text.length;
    } else {
      const judged = judge(item, present, token);
      const toText = (v: Json | undefined) => (v === undefined ? '' : String(v));
      let cells = header.columns.map((c) =>
        typeof c === 'number' ? item.extraCells[c % item.extraCells.length]! : toText(judged.values[c]),
      );
      if (item.wrongCount) {
        const drop = Math.min(item.wrongCount.drop, cells.length - 1);
        cells = drop > 0 ? cells.slice(0, cells.length - drop) : [...cells, ...item.wrongCount.add];
      }
      const at = pieces.push({ line, end: 0, judged }) - 1;
      append(record(cells) + eol);
      pieces[at]!.end = text.length;
    }
    lastWasRecord = true;
  }
  if (unclosedTail !== null) {
    const email = `unclosed.${token}@quote.example`;
    const tailLine = line;
    append(`"${unclosedTail},${email},70,${NOW_ISO}${eol}`);
    pieces.push({ line: tailLine, end: text.length, judged: { raw: [unclosedTail, email] } });
    lastWasRecord = true;
  }
  if (!layout.finalEol && lastWasRecord) text = text.slice(0, -eol.length);
  return finish('csv', text, pieces);
}

/** A JSONL file: one line per item. */
export function buildJsonl(itemList: Item[], layout: FileLayout, token: string): BuiltFile {
  const lines: string[] = [];
  const pieces: Piece[] = [];
  const all = new Set<LeadField>(LEAD_FIELDS);
  for (const item of itemList) {
    if (item.kind === 'blank') {
      lines.push(item.text);
    } else if (item.kind === 'raw') {
      pieces.push({ line: lines.length + 1, end: 0, judged: { raw: item.pii } });
      lines.push(item.text);
    } else {
      const judged = judge(item, all, token);
      const entries = [
        ...LEAD_FIELDS.flatMap((f) =>
          judged.values[f] === undefined ? [] : [[f, judged.values[f]] as const],
        ),
        ...item.extraKeys,
      ];
      // Written by hand: an object literal would turn a `__proto__` key into a prototype.
      lines.push(`{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
      pieces.push({ line: lines.length, end: 0, judged });
    }
  }
  const text =
    (layout.bom ? '\ufeff' : '') +
    lines.join(layout.eol) +
    (layout.finalEol && lines.length > 0 ? layout.eol : '');
  // A line ends after its line break: the BOM, then every line up to it with its break.
  let end = layout.bom ? 1 : 0;
  const ends = lines.map((l) => {
    end += l.length + layout.eol.length;
    return end;
  });
  for (const piece of pieces) piece.end = ends[piece.line - 1]!;
  return finish('jsonl', text, pieces);
}

/** The JSON array of the admin API: one element per item (a blank item becomes a bare `null`). */
export function buildJsonArray(itemList: Item[], token: string): { body: string; file: BuiltFile } {
  const nonBlank = itemList.filter((i) => i.kind !== 'blank');
  const file = buildJsonl(
    nonBlank,
    { eol: '\n', bom: false, finalEol: true, leadingBlankLines: 0, quoteAll: false },
    token,
  );
  // A JSONL line that is not valid JSON is sent as a JSON string instead: still one rejected element.
  const elements = file.text
    .split('\n')
    .slice(0, -1)
    .map((l) => (isJson(l) ? l : JSON.stringify(l)));
  return { body: `[${elements.join(',')}]`, file };
}
const isJson = (s: string) => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};

function finish(format: Format, text: string, pieces: Piece[]): BuiltFile {
  const csv = format === 'csv';
  const needles = new Set<string>();
  const firstLineOf = new Map<string, number>();
  const records: ExpectedRecord[] = pieces.map(({ line, judged }) => {
    if ('raw' in judged) {
      for (const v of judged.raw) addNeedles(needles, v, csv);
      return { line, outcome: 'rejected', field: 'row' };
    }
    for (const v of judged.pii) addNeedles(needles, v, csv);
    if ('field' in judged)
      return { line, outcome: 'rejected', field: judged.field, badValue: judged.badValue as Json };
    // One person under either identity: the e-mail (the default rule's, so named first) or the external id.
    const identities = [
      `email:${judged.lead.email}`,
      ...(judged.lead.external_id === null ? [] : [`external_id:${judged.lead.external_id}`]),
    ];
    const first = identities.map((identity) => firstLineOf.get(identity)).find((l) => l !== undefined);
    if (first !== undefined) return { line, outcome: 'duplicate', of: first, identities };
    for (const identity of identities) firstLineOf.set(identity, line);
    return { line, outcome: 'accepted', lead: judged.lead, identities };
  });
  const byteEnds = pieces.map((p) => Buffer.byteLength(text.slice(0, Math.min(p.end, text.length))));
  return { format, text, records, needles, byteEnds };
}

function addNeedles(needles: Set<string>, raw: string, csv: boolean): void {
  for (const form of csv ? [raw, asWritten(raw)] : [raw]) {
    const value = form.trim();
    if (value.length < 6) continue;
    const digits = value.replace(/\D/g, '');
    if (/\D/.test(value)) needles.add(value);
    if (digits.length >= 10) needles.add(digits);
    const at = value.indexOf('@');
    if (at !== -1) {
      needles.add(value.toLowerCase());
      if (at >= 6) needles.add(value.slice(0, at).toLowerCase());
    }
  }
}

const leadColumns = [
  'external_id',
  'name',
  'email',
  'phone',
  'company',
  'score',
  'source_ts',
  'value',
  'state',
] as const;

/**
 * The records this run stored (leads and outcomes, by line) must be exactly `expected`, in order;
 * with `upToLine`, only those that start on or before it are compared.
 */
export async function expectStored(
  db: Kysely<Database>,
  runId: number,
  expected: ExpectedRecord[],
  upToLine = Number.MAX_SAFE_INTEGER,
): Promise<void> {
  const leads = await db
    .selectFrom('leads')
    .selectAll()
    .where('run_id', '=', runId)
    .where('source_line', '<=', upToLine)
    .orderBy('source_line')
    .execute();
  const outcomes = await db
    .selectFrom('ingest_outcomes')
    .selectAll()
    .where('run_id', '=', runId)
    .where('line', '<=', upToLine)
    .orderBy('line')
    .execute();
  const accepted = expected.filter((r) => r.outcome === 'accepted');
  expect(
    leads.map((l) => l.source_line),
    'the lines stored as leads',
  ).toEqual(accepted.map((r) => r.line));
  leads.forEach((lead, i) => {
    const stored = Object.fromEntries(leadColumns.map((c) => [c, lead[c]]));
    expect(stored, `the lead of line ${lead.source_line}`).toEqual(accepted[i]!.lead);
  });
  const others = expected.filter((r) => r.outcome !== 'accepted');
  expect(
    outcomes.map((o) => `${o.line}:${o.outcome}`),
    'duplicates and rejects by line',
  ).toEqual(others.map((r) => `${r.line}:${r.outcome}`));
  const leadIdByLine = new Map(leads.map((l) => [l.source_line, l.id]));
  outcomes.forEach((outcome, i) => {
    const record = others[i]!;
    if (record.outcome === 'duplicate') {
      expect(outcome.lead_id, `line ${outcome.line} duplicates line ${record.of}`).toBe(
        leadIdByLine.get(record.of!),
      );
      return;
    }
    expect({ line: outcome.line, field: outcome.field }).toEqual({ line: record.line, field: record.field });
    expect(outcome.lead_id).toBeNull();
    expect(outcome.reason.length).toBeGreaterThan(0);
    const bad = typeof record.badValue === 'string' ? record.badValue.trim() : '';
    if (bad.length >= 5) expect(outcome.reason, `the reason for line ${outcome.line}`).not.toContain(bad);
  });
}

export function tally(records: ExpectedRecord[]) {
  const count = (outcome: ExpectedRecord['outcome']) => records.filter((r) => r.outcome === outcome).length;
  const state = (s: string) => records.filter((r) => r.lead?.state === s).length;
  return {
    read: records.length,
    accepted: count('accepted'),
    duplicate: count('duplicate'),
    rejected: count('rejected'),
    states: {
      pending: state('pending'),
      below_threshold: state('below_threshold'),
      expired: state('expired'),
    },
  };
}

export interface Leak {
  needle: string;
  where: string;
  context: string;
}

/**
 * Every needle found in an output, as written or JSON-escaped. Timestamps and counts (JSON numbers)
 * and hashes are blanked first, so a phone's digits cannot match them by chance.
 */
export function findLeaks(needles: Iterable<string>, haystacks: Record<string, string>): Leak[] {
  const cleaned = Object.entries(haystacks).map(
    ([where, text]) =>
      [
        where,
        text
          .replace(/(?<=[:,[])-?\d{4,}(?=[,}\]])/g, '0')
          // Hashes and pseudonyms: hex with both digits and letters (an all-letter run is not one).
          .replace(/\b[0-9a-f]{20,64}\b/g, (hex) => (/\d/.test(hex) && /[a-f]/.test(hex) ? '#' : hex)),
      ] as const,
  );
  const leaks: Leak[] = [];
  for (const needle of needles) {
    const escaped = JSON.stringify(needle).slice(1, -1);
    for (const [where, text] of cleaned) {
      for (const form of new Set([needle, escaped])) {
        const at = text.indexOf(form);
        if (at !== -1) {
          leaks.push({
            needle: form.slice(0, 80),
            where,
            context: text.slice(Math.max(0, at - 60), at + 80),
          });
        }
      }
    }
  }
  return leaks;
}

/** Split bytes into chunks at arbitrary points (inside characters, line breaks and BOMs alike). */
export const chunkPoints = fc.array(fc.nat(), { maxLength: 6 });
export function splitBytes(bytes: Buffer, points: number[]): Buffer[] {
  if (bytes.length === 0) return [bytes];
  const cuts = [...new Set(points.map((p) => p % bytes.length))].filter((p) => p > 0).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    chunks.push(bytes.subarray(from, cut));
    from = cut;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

/** An arbitrary whose values fast-check prints with their long strings cut short. */
export const readable = <T extends object>(arb: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  arb.map((value) => Object.defineProperty(value, fc.toStringMethod, { value: () => summarise(value) }));

/** Fast-check prints a failing case with this: long strings shortened, so the report stays readable. */
export function summarise(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    typeof v === 'string' && v.length > 120 ? `${v.slice(0, 60)}…(${v.length} chars)` : v,
  );
}
