import { z } from 'zod';

/** The columns a lead file may have; `name`, `email`, `score` and `source_timestamp` are required. */
export const LEAD_FIELDS = [
  'external_id',
  'name',
  'email',
  'phone',
  'company',
  'score',
  'source_timestamp',
  'value',
] as const;
export type LeadField = (typeof LEAD_FIELDS)[number];
export const REQUIRED_FIELDS: readonly LeadField[] = ['name', 'email', 'score', 'source_timestamp'];

/** A lead after validation and normalisation, before it has a state or a dedup key. */
export interface NormalisedLead {
  externalId: string | null;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  score: number;
  sourceTs: number;
  value: number | null;
}

export interface FieldProblem {
  /** The lead's field, a declared attribute's name (attributes.ts), or the row as a whole. */
  field: LeadField | 'row' | (string & {});
  /** Never contains the value itself: reasons are logged and audited, values may be PII. */
  message: string;
}

export type Validation = { ok: true; lead: NormalisedLead } | { ok: false; problems: FieldProblem[] };

/** Seconds of clock skew tolerated before a source timestamp counts as in the future. */
export const FUTURE_SKEW_MS = 60_000;
const MAX_VALUE = 1_000_000_000;
// No control characters inside a single-line field: C0 (tabs and line breaks included), DEL, C1, and
// the Unicode line and paragraph separators (which break lines in JavaScript, JSON and many viewers).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const ISO_DATE_TIME =
  /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2}))?$/i;

const emptyToNull = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? null : v);
const trimmed = (v: unknown) => (typeof v === 'string' ? v.trim() : v);

const text = (max: number) =>
  z
    .string({ error: 'must be text' })
    .max(max, { error: `longer than ${max} characters` })
    .refine((s) => !CONTROL.test(s), { error: 'contains control characters' })
    // JSON's \ud800 escapes can carry half a character; stored, it would turn into invalid UTF-8.
    .refine((s) => !LONE_SURROGATE.test(s), { error: 'is not valid Unicode (half of a character pair)' });

const schema = z.object({
  external_id: z.preprocess(emptyToNull, z.preprocess(trimmed, text(128)).nullable().optional()),
  name: z.preprocess(trimmed, text(200).min(1, { error: 'is empty' })),
  email: z.preprocess(
    (v) => (typeof v === 'string' ? v.trim().toLowerCase() : v),
    z.email({ error: 'is not a valid e-mail address' }).max(254, { error: 'longer than 254 characters' }),
  ),
  phone: z.preprocess(
    emptyToNull,
    z
      .string({ error: 'must be text' })
      .max(40, { error: 'longer than 40 characters' })
      .refine((s) => /^[\d\s()+.\-/]*$/.test(s.trim()), {
        error: 'may hold only digits, spaces and + ( ) - . /',
      })
      .transform((s) => s.replace(/\D/g, ''))
      .refine((digits) => digits.length >= 7 && digits.length <= 15, { error: 'must have 7 to 15 digits' })
      .nullable()
      .optional(),
  ),
  company: z.preprocess(emptyToNull, z.preprocess(trimmed, text(200)).nullable().optional()),
  score: z.preprocess(
    (v) => (typeof v === 'string' && /^\s*\d{1,3}\s*$/.test(v) ? Number(v) : v),
    z
      .number({ error: 'must be a whole number from 0 to 100' })
      .int({ error: 'must be a whole number from 0 to 100' })
      .min(0, { error: 'must be a whole number from 0 to 100' })
      .max(100, { error: 'must be a whole number from 0 to 100' }),
  ),
  source_timestamp: z.preprocess(
    trimmed,
    z.union([z.string(), z.number()], { error: 'must be an ISO 8601 date-time' }),
  ),
  value: z.preprocess(
    (v) => {
      const e = emptyToNull(v);
      return typeof e === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(e) ? Number(e) : e;
    },
    z
      .number({ error: 'must be a number of at least 0' })
      .min(0, { error: 'must be a number of at least 0' })
      .max(MAX_VALUE, { error: `above ${MAX_VALUE}` })
      .nullable()
      .optional(),
  ),
});

/** Parse a source timestamp: an ISO 8601 date-time with a zone, a date (UTC), or epoch milliseconds (JSON). */
export function parseSourceTimestamp(value: string | number): number | string {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value > 0
      ? value
      : 'must be epoch milliseconds or an ISO 8601 date-time';
  }
  if (!ISO_DATE_TIME.test(value)) {
    return /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(value)
      ? 'needs a time zone (Z or ±hh:mm)'
      : 'must be an ISO 8601 date-time (e.g. 2026-11-20T09:30:00Z)';
  }
  // Date.parse rolls impossible days over (2026-02-30 becomes 2 March): check the day against its month.
  const [year, month, day] = value.slice(0, 10).split('-').map(Number) as [number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate())
    return 'is not a real date';
  const ms = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value);
  return Number.isNaN(ms) ? 'is not a real date' : ms;
}

/**
 * Validate and normalise one row (strings from CSV, any JSON values from JSONL). Every problem of
 * the row is reported, each with its field, none with the value.
 */
export function validateLead(
  record: Record<string, unknown>,
  options: { now: number; requireExternalId: boolean },
): Validation {
  const parsed = schema.safeParse(record);
  const problems: FieldProblem[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = (issue.path[0] as LeadField | undefined) ?? 'row';
      const missing = record[field] === undefined || record[field] === null;
      problems.push({ field, message: missing && field !== 'row' ? 'is required' : issue.message });
    }
  }
  let sourceTs = 0;
  const rawTs = parsed.success ? parsed.data.source_timestamp : record.source_timestamp;
  if (typeof rawTs === 'string' || typeof rawTs === 'number') {
    const ts = parseSourceTimestamp(typeof rawTs === 'string' ? rawTs.trim() : rawTs);
    if (typeof ts === 'string') problems.push({ field: 'source_timestamp', message: ts });
    else if (ts > options.now + FUTURE_SKEW_MS)
      problems.push({ field: 'source_timestamp', message: 'is in the future' });
    else sourceTs = ts;
  }
  // Checked on the raw value too, so a row with other problems still reports a missing external_id.
  const rawExternalId = parsed.success ? parsed.data.external_id : record.external_id;
  if (
    options.requireExternalId &&
    (rawExternalId === undefined ||
      rawExternalId === null ||
      (typeof rawExternalId === 'string' && rawExternalId.trim() === ''))
  ) {
    problems.push({ field: 'external_id', message: 'is required when VALHALLA_DEDUP_KEY=external_id' });
  }
  if (problems.length > 0 || !parsed.success) return { ok: false, problems: dedupeProblems(problems) };
  const data = parsed.data;
  return {
    ok: true,
    lead: {
      externalId: data.external_id ?? null,
      name: data.name,
      email: data.email,
      phone: data.phone ?? null,
      company: data.company ?? null,
      score: data.score,
      sourceTs,
      value: data.value ?? null,
    },
  };
}

function dedupeProblems(problems: FieldProblem[]): FieldProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.field}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
