/**
 * Generators for the input suite (test/input): lead rows, valid and hostile, written as CSV or JSONL
 * together with the outcome each record must have and the PII that must never leave the store.
 *
 * A generated row is valid only when every one of its fields is valid by construction; a row with a
 * defect has exactly one bad field (or is bad as a whole: broken quoting, wrong field count, not a
 * JSON object, too long). So the outcome of every record is known without re-implementing the
 * validation: valid → accepted, or a duplicate of the first accepted row with the same e-mail
 * (compared trimmed and lower-cased) or else the same external id (trimmed); with a defect →
 * rejected, naming that field (or `row`).
 *
 * Line numbers: a CSV record is reported by the line it starts on; a line break inside a quoted
 * field (CRLF, LF or a lone CR, each one break) moves the lines of the records after it. Empty lines
 * are not records. A JSONL record is one `\n`-terminated line; a line holding only whitespace is not
 * a record, but still counts as a line.
 *
 * Left out of the broad generators on purpose, each covered by its own (failing) test in
 * test/input/ingest-properties.test.ts: lone surrogates in JSONL text fields, C1 control characters
 * and U+2028/U+2029 in text fields, and records of exactly the 64 KB limit.
 */
import fc from 'fast-check';
import { LEAD_FIELDS } from '../../src/ingest/index.js';
import {
  DOMAINS,
  EXTRA_KEYS,
  INJECTION_SAMPLES,
  INVALID_VALUES,
  LOCAL_WORDS,
  LONE_SURROGATE_SAMPLES,
  NOT_JSON_OBJECTS,
  NOW,
  NOW_ISO,
  RECORD_LIMIT,
  UNICODE_SAMPLES,
} from './lead-samples.js';
import { DAY, MINUTE } from './world.js';

export { EXTRA_COLUMNS, NOW, NOW_ISO, RECORD_LIMIT } from './lead-samples.js';

const FC_SEED = process.env.FC_SEED === undefined ? undefined : Number(process.env.FC_SEED);
const FC_RUNS_FACTOR = Number(process.env.FC_RUNS_FACTOR ?? 1);
/**
 * Fixed runs and seed, so CI is reproducible; fast-check prints the seed and path of a failure.
 * FC_SEED=<n> replays or explores another seed, FC_RUNS_FACTOR=<k> runs k times as many cases.
 */
export const fcParams = (numRuns: number, seed: number) => ({
  numRuns: Math.max(1, Math.round(numRuns * FC_RUNS_FACTOR)),
  seed: FC_SEED ?? seed,
});

export type Format = 'csv' | 'jsonl';
export type LeadField = (typeof LEAD_FIELDS)[number];
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** `undefined`: the key is left out (JSONL) or the cell is empty (CSV). */
type Value = Json | undefined;

/** A stored lead, as the leads table holds it. */
export interface ExpectedLead {
  external_id: string | null;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  score: number;
  source_ts: number;
  value: number | null;
  state: 'pending' | 'below_threshold' | 'expired';
}

/** One record of a built file and what must become of it. */
export interface ExpectedRecord {
  line: number;
  outcome: 'accepted' | 'duplicate' | 'rejected';
  lead?: ExpectedLead;
  /** Rejected: the field the row's defect is in (`row` for the row as a whole). */
  field?: LeadField | 'row';
  /** Duplicate: the line of the accepted record it duplicates. */
  of?: number;
  /** Accepted or duplicate: its identities, `email:…` then `external_id:…` (when it has one). */
  identities?: string[];
  /** Rejected: the bad value, which the reason must not quote. */
  badValue?: Value;
}

export interface BuiltFile {
  format: Format;
  text: string;
  records: ExpectedRecord[];
  /** Raw e-mails, phones, names and companies (≥ 6 characters) that must appear nowhere but the store. */
  needles: Set<string>;
  /** Per record, the byte offset where it ends, its line break included: a cut at or after it leaves it whole. */
  byteEnds: number[];
}

// ------------------------------------------------------------------------------------------------
// Field values

/** Control characters (C0, DEL, C1) and the Unicode line and paragraph separators. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const NOT_IN_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/** What a string becomes once written to a UTF-8 file: lone surrogates turn into U+FFFD. */
export const asWritten = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

const PAD = fc.constantFrom('', '', '', ' ', '  ', '\t', '\u00a0', '\u3000');

function clamp(s: string, max: number): string {
  const cut = s.length <= max ? s : s.slice(0, max);
  return /[\ud800-\udbff]$/.test(cut) && s.length > max ? cut.slice(0, -1) : cut;
}

/** Text with no control characters, at most `max` UTF-16 units, not blank. */
function textCore(format: Format, max: number): fc.Arbitrary<string> {
  const sources: fc.WeightedArbitrary<string>[] = [
    { weight: 4, arbitrary: fc.constantFrom(...UNICODE_SAMPLES, ...INJECTION_SAMPLES) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 20 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: max - 3, maxLength: max }) },
  ];
  if (format === 'csv') sources.push({ weight: 1, arbitrary: fc.constantFrom(...LONE_SURROGATE_SAMPLES) });
  return fc.oneof(...sources).map((s) => {
    let t = s.replace(NOT_IN_TEXT, '');
    if (format === 'jsonl') t = t.replace(LONE_SURROGATE, '');
    t = clamp(t, max);
    return t.trim() === '' ? 'x' : t;
  });
}

/** A generated field value: valid, with what it must be stored as, or invalid. */
export type Cell = { value: Value; valid: true; stored: Json } | { value: Value; valid: false };
const ok = (value: Value, stored: Json): Cell => ({ value, valid: true, stored });
const bad = (value: Value): Cell => ({ value, valid: false });

const storedText = (format: Format, v: string) => (format === 'csv' ? asWritten(v) : v).trim();

function textCell(format: Format, max: number): fc.Arbitrary<Cell> {
  return fc.tuple(PAD, textCore(format, max), PAD).map(([a, core, b]) => {
    const value = a + core + b;
    return ok(value, storedText(format, value));
  });
}

function nullish(format: Format): fc.Arbitrary<Cell> {
  const values: Value[] = [undefined, '', '   '];
  if (format === 'jsonl') values.push(null);
  return fc.constantFrom(...values).map((v) => ok(v, null));
}

function phoneCell(): fc.Arbitrary<Cell> {
  return fc
    .record({
      digits: fc.stringMatching(/^[0-9]{7,15}$/),
      plus: fc.boolean(),
      sep: fc.constantFrom(' ', '-', '.', '/', '', ' - '),
      parens: fc.boolean(),
      group: fc.integer({ min: 2, max: 4 }),
      pad: fc.constantFrom('', ' '),
    })
    .map(({ digits, plus, sep, parens, group, pad }) => {
      const groups = digits.match(new RegExp(`.{1,${group}}`, 'g'))!;
      const [first, ...rest] = groups;
      const head = parens && rest.length > 0 ? `(${first})` : first!;
      let formatted = `${plus ? '+' : ''}${[head, ...rest].join(sep)}`;
      if (formatted.length + 2 * pad.length > 40) formatted = `${plus ? '+' : ''}${digits}`;
      return ok(`${pad}${formatted}${pad}`, digits);
    });
}

function scoreCell(format: Format): fc.Arbitrary<Cell & { score: number }> {
  return fc
    .tuple(fc.integer({ min: 0, max: 100 }), fc.constantFrom('plain', 'padded', 'spaced', 'tab', 'number'))
    .map(([n, form]) => {
      const text =
        form === 'padded'
          ? String(n).padStart(3, '0')
          : form === 'spaced'
            ? ` ${n} `
            : form === 'tab'
              ? `\t${n}`
              : String(n);
      const value: Value = format === 'jsonl' && form === 'number' ? n : text;
      return { ...ok(value, n), score: n };
    });
}

function iso(at: number, form: string, zoneOffset: number): string {
  if (form === 'date') return new Date(at).toISOString().slice(0, 10);
  const offsetMinutes = form.startsWith('offset') ? zoneOffset : 0;
  const local = new Date(at + offsetMinutes * MINUTE).toISOString().slice(0, 23);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  const zone = form === 'offset' ? `${sign}${hh}:${mm}` : form === 'offset-basic' ? `${sign}${hh}${mm}` : 'Z';
  const body =
    form === 'minutes' ? local.slice(0, 16) : form === 'fraction9' ? `${local}000000` : local.slice(0, 23);
  const text = `${body}${form === 'lower-z' ? 'z' : zone}`;
  return form === 'space' ? text.replace('T', ' ') : text;
}

function timestampCell(format: Format): fc.Arbitrary<Cell & { ts: number }> {
  const instant = fc.oneof(
    fc.integer({ min: 0, max: 14 * DAY }).map((age) => NOW - age),
    fc.integer({ min: 14 * DAY + 1, max: 800 * DAY }).map((age) => NOW - age),
    // Within the 60 s of clock skew the policy tolerates.
    fc.integer({ min: 0, max: 59_000 }).map((ahead) => NOW + ahead),
  );
  const forms = ['z', 'lower-z', 'space', 'offset', 'offset-basic', 'minutes', 'fraction9', 'date'];
  if (format === 'jsonl') forms.push('epoch', 'epoch');
  return fc
    .tuple(instant, fc.constantFrom(...forms), fc.constantFrom(0, 60, -300, 330, 345, -720, 840))
    .map(([at, form, offset]) => {
      const ts =
        form === 'date'
          ? at - (at % DAY)
          : form === 'minutes'
            ? at - (((at % MINUTE) + MINUTE) % MINUTE)
            : at;
      const value: Value = form === 'epoch' ? ts : iso(ts, form, offset);
      return { ...ok(value, ts), ts };
    });
}

function valueCell(format: Format): fc.Arbitrary<Cell> {
  const whole = fc.integer({ min: 0, max: 1_000_000_000 });
  const cents = fc
    .tuple(fc.integer({ min: 0, max: 99_999_999 }), fc.integer({ min: 0, max: 99 }))
    .map(([i, c]) => `${i}.${String(c).padStart(2, '0')}`);
  const cells: fc.Arbitrary<Cell>[] = [
    nullish(format),
    whole.map((n) => ok(String(n), n)),
    whole.map((n) => ok(` ${n} `, n)),
    cents.map((s) => ok(s, Number(s))),
  ];
  if (format === 'jsonl') {
    cells.push(whole.map((n) => ok(n, n)));
    cells.push(cents.map((s) => ok(Number(s), Number(s))));
  }
  return fc.oneof(...cells);
}

/** The e-mail pool: slot → a lower-case address unique to the slot (and to the property run's token). */
export const poolEmail = (slot: number, token: string) =>
  `${LOCAL_WORDS[slot % LOCAL_WORDS.length]}.s${slot}.${token}@${DOMAINS[slot % DOMAINS.length]}`;

export interface EmailCell {
  slot: number;
  style: 'lower' | 'upper' | 'title' | 'mixed';
  pad: string;
}
const emailCell: fc.Arbitrary<EmailCell> = fc.record({
  slot: fc.oneof(fc.nat({ max: 5 }), fc.nat({ max: 500 })),
  style: fc.constantFrom('lower', 'upper', 'title', 'mixed'),
  pad: fc.constantFrom('', '', ' ', '  ', '\t', '\u00a0'),
});

/** Values that make a field invalid, whatever the rest of the row. */
function invalidCell(format: Format, field: LeadField): fc.Arbitrary<Cell> {
  const fixed = fc.constantFrom(...INVALID_VALUES[format][field]).map(bad);
  if (field === 'name' || field === 'company') {
    const control = fc
      .tuple(
        textCore(format, 60),
        fc.constantFrom('\u0001', '\t', '\n', '\r', '\r\n', '\u001b', '\u007f'),
        textCore(format, 60),
      )
      .map(([a, c, b]) => bad(`${a}${c}${b}`));
    // Huge, yet under the record limit: rejected for its length by validation, not by the reader.
    const huge = fc.integer({ min: 201, max: 60_000 }).map((n) => bad(`N${'é'.repeat(n)}`));
    return fc.oneof(
      { weight: 3, arbitrary: fixed },
      { weight: 2, arbitrary: control },
      { weight: 1, arbitrary: huge },
    );
  }
  return fixed;
}

// ------------------------------------------------------------------------------------------------
// Rows and files

export interface LeadRow {
  kind: 'lead';
  cells: Record<Exclude<LeadField, 'email'>, Cell>;
  email: EmailCell | Cell;
  /** JSONL keys the product does not use (ignored, never a reason to reject). */
  extraKeys: [string, Json][];
  /** CSV: values of the columns the product does not use. */
  extraCells: string[];
  /** CSV: the field count made wrong (cells dropped from the end, or added). */
  wrongCount: { drop: number; add: string[] } | null;
}
/** A record that is bad as a whole, written as one physical line. */
export interface RawRow {
  kind: 'raw';
  variant: 'quote-inside' | 'text-after-quote' | 'overlong' | 'whitespace' | 'not-json';
  text: string;
  pii: string[];
}
export interface BlankLine {
  kind: 'blank';
  text: string;
}
export type Item = LeadRow | RawRow | BlankLine;

const REQUIRED: readonly LeadField[] = ['name', 'email', 'score', 'source_timestamp'];
function leadRow(format: Format): fc.Arbitrary<LeadRow> {
  const validCells = fc.record({
    // 120, not the limit of 128: the property run's token is put before it (materialiseExternalId).
    external_id: fc.oneof(nullish(format), textCell(format, 120)),
    name: textCell(format, 200),
    phone: fc.oneof(nullish(format), phoneCell()),
    company: fc.oneof(nullish(format), textCell(format, 200)),
    score: scoreCell(format),
    source_timestamp: timestampCell(format),
    value: valueCell(format),
  });
  const defect = fc.oneof(
    { weight: 3, arbitrary: fc.constant(null) },
    {
      weight: 2,
      arbitrary: fc
        .constantFrom(...LEAD_FIELDS)
        .chain((field) => invalidCell(format, field).map((cell) => ({ field, cell }))),
    },
  );
  return fc
    .record({
      cells: validCells,
      email: emailCell,
      defect,
      extraKeys: fc.array(
        fc.tuple(fc.constantFrom(...EXTRA_KEYS), fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json>),
        {
          maxLength: 2,
        },
      ),
      extraCells: fc.array(
        fc.oneof(
          fc.constantFrom('', 'line one\nline two', 'a,b', 'q"uote', '=1+1', '\r\n'),
          textCore(format, 30),
        ),
        { minLength: 3, maxLength: 3 },
      ),
      wrongCount:
        format === 'csv'
          ? fc.oneof(
              { weight: 12, arbitrary: fc.constant(null) },
              {
                weight: 1,
                arbitrary: fc.record({
                  drop: fc.nat({ max: 3 }),
                  add: fc.array(fc.constantFrom('x', '', 'extra,cell'), { maxLength: 2 }),
                }),
              },
            )
          : fc.constant(null),
    })
    .map(({ cells, email, defect, extraKeys, extraCells, wrongCount }) => {
      const row: LeadRow = { kind: 'lead', cells, email, extraKeys, extraCells, wrongCount: null };
      if (defect !== null) {
        if (defect.field === 'email') row.email = defect.cell;
        else row.cells[defect.field] = defect.cell;
      }
      if (format === 'csv' && wrongCount && (wrongCount.drop > 0 || wrongCount.add.length > 0))
        row.wrongCount = wrongCount.drop > 0 ? { drop: wrongCount.drop, add: [] } : wrongCount;
      return row;
    });
}

/** Single-line records that are bad as a whole. */
function rawRow(format: Format): fc.Arbitrary<RawRow> {
  const piece = textCore(format, 40).map((s) => s.replace(/[",\r\n]/g, '') || 'x');
  const emailLike = fc.nat({ max: 999 }).map((n) => `broken.row${n}@quote.example`);
  if (format === 'csv') {
    return fc.oneof(
      fc
        .tuple(piece, piece, emailLike)
        .map(([a, b, e]) =>
          raw('quote-inside', `${a}"${b},${e},+47 912 34 567,70,${NOW_ISO}`, [a, e, '+47 912 34 567']),
        ),
      fc
        .tuple(piece, emailLike)
        .map(([a, e]) => raw('text-after-quote', `"${a}"tail,${e},70,${NOW_ISO}`, [a, e])),
      fc
        .tuple(fc.integer({ min: RECORD_LIMIT + 1, max: RECORD_LIMIT + 9_000 }), emailLike)
        .map(([n, e]) => raw('overlong', `Huge ${'W'.repeat(n)},${e},70,${NOW_ISO}`, [e])),
      fc.constantFrom(' ', '\t', '  \t ', '\ufeff').map((t) => raw('whitespace', t, [])),
    );
  }
  return fc.oneof(
    fc.tuple(emailLike, fc.nat({ max: 60 })).map(([e, cut]) => {
      const full = JSON.stringify({ name: 'Truncated Person', email: e, phone: '+47 912 34 567', score: 70 });
      return raw('not-json', full.slice(0, 1 + (cut % (full.length - 1))), [e, '+47 912 34 567']);
    }),
    fc.constantFrom(...NOT_JSON_OBJECTS).map((t) => raw('not-json', t, t.match(/[a-z.]+@[a-z.]+/g) ?? [])),
    fc
      .tuple(fc.integer({ min: RECORD_LIMIT + 1, max: RECORD_LIMIT + 9_000 }), emailLike)
      .map(([n, e]) =>
        raw('overlong', JSON.stringify({ name: `Huge ${'W'.repeat(n)}`, email: e, score: 70 }), [e]),
      ),
  );
}
const raw = (variant: RawRow['variant'], text: string, pii: string[]): RawRow => ({
  kind: 'raw',
  variant,
  text,
  pii,
});

function blank(format: Format): fc.Arbitrary<BlankLine> {
  return fc
    .constantFrom(...(format === 'csv' ? [''] : ['', ' ', '\t', '\r', ' \r']))
    .map((text) => ({ kind: 'blank', text }));
}

export function items(format: Format, maxLength = 40): fc.Arbitrary<Item[]> {
  return fc.array(
    fc.oneof(
      { weight: 10, arbitrary: leadRow(format) },
      { weight: 1, arbitrary: blank(format) },
      { weight: 2, arbitrary: rawRow(format) },
    ),
    { maxLength, size: 'medium' },
  );
}

export interface CsvHeader {
  /** Column order: lead fields and extra columns (by index into EXTRA_COLUMNS). */
  columns: (LeadField | number)[];
  spelling: { upper: boolean; pad: string }[];
}
export const csvHeader: fc.Arbitrary<CsvHeader> = fc
  .record({
    optional: fc.subarray(['external_id', 'phone', 'company', 'value'] as LeadField[]),
    extras: fc.subarray([0, 1, 2, 3, 4], { maxLength: 2 }),
    seed: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
    spelling: fc.array(fc.record({ upper: fc.boolean(), pad: fc.constantFrom('', '', ' ', '\t') }), {
      minLength: 12,
      maxLength: 12,
    }),
  })
  .map(({ optional, extras, seed, spelling }) => {
    const columns: (LeadField | number)[] = LEAD_FIELDS.filter(
      (f) => REQUIRED.includes(f) || optional.includes(f),
    );
    columns.push(...extras);
    // A permutation from the seeds (a stable sort by them), so shrinking moves towards the natural order.
    const order = columns.map((c, i) => ({ c, k: seed[i]! })).sort((x, y) => x.k - y.k);
    return { columns: order.map((o) => o.c), spelling };
  });

export interface FileLayout {
  eol: '\n' | '\r\n' | '\r';
  bom: boolean;
  finalEol: boolean;
  leadingBlankLines: number;
  quoteAll: boolean;
}
export const fileLayout = (format: Format): fc.Arbitrary<FileLayout> =>
  fc.record({
    eol: format === 'csv' ? fc.constantFrom('\n', '\r\n', '\r') : fc.constantFrom('\n', '\r\n'),
    bom: fc.boolean(),
    finalEol: fc.boolean(),
    leadingBlankLines: fc.nat({ max: 2 }),
    quoteAll: fc.boolean(),
  }) as fc.Arbitrary<FileLayout>;
