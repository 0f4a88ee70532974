/**
 * A lead's attributes at ingest: the extra columns the partner profile declares, read by their exact
 * column name and typed. A problem names the attribute and why, never the value (it may be personal
 * data, and reasons are logged, audited and written to the rejects file).
 */
import type { AttributeValue, ProfileAttribute } from '../partner/index.js';
import type { LeadAttributes } from '../store/index.js';
import type { FieldProblem } from './lead-schema.js';

export type AttributesRead =
  | { ok: true; attributes: LeadAttributes | null }
  | { ok: false; problems: FieldProblem[] };

// As the lead's own text fields (lead-schema.ts): no control characters, no half of a character pair.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** The longest a string attribute without a maxLength of its own may be, in characters. */
export const DEFAULT_ATTRIBUTE_MAX_LENGTH = 1_000;
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;
const WHOLE = /^[+-]?\d+$/;
const TRUE_WORDS = new Set(['true', 'yes', '1']);
const FALSE_WORDS = new Set(['false', 'no', '0']);

const NOT_READ: AttributesRead = { ok: true, attributes: null };

/**
 * The declared attributes of one row (`fields`: strings from CSV, any JSON values from JSONL). Null
 * when nothing is declared or every value is empty: such a lead stores no attributes (NULL).
 */
export function readAttributes(
  fields: Readonly<Record<string, unknown>>,
  declared: readonly ProfileAttribute[],
): AttributesRead {
  if (declared.length === 0) return NOT_READ;
  const problems: FieldProblem[] = [];
  const attributes: Record<string, AttributeValue> = {};
  let held = 0;
  for (const attribute of declared) {
    const raw = Object.hasOwn(fields, attribute.name) ? fields[attribute.name] : undefined;
    const read = readValue(raw, attribute);
    if (typeof read === 'object' && read !== null && 'problem' in read) {
      problems.push({ field: attribute.name, message: read.problem });
      continue;
    }
    if (read === null && attribute.required) {
      problems.push({ field: attribute.name, message: 'is required' });
      continue;
    }
    attributes[attribute.name] = read;
    if (read !== null) held++;
  }
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, attributes: held === 0 ? null : attributes };
}

/** One attribute's value as its declaration types it; null when empty or absent. */
function readValue(raw: unknown, attribute: ProfileAttribute): AttributeValue | { problem: string } {
  if (raw === undefined || raw === null) return null;
  const text = typeof raw === 'string' ? raw.trim() : null;
  if (text === '') return null;
  switch (attribute.type) {
    case 'string': {
      if (text === null) return { problem: 'must be text' };
      const max = attribute.maxLength ?? DEFAULT_ATTRIBUTE_MAX_LENGTH;
      if (text.length > max) return { problem: `longer than ${max} characters` };
      if (CONTROL.test(text)) return { problem: 'contains control characters' };
      if (LONE_SURROGATE.test(text)) return { problem: 'is not valid Unicode (half of a character pair)' };
      return text;
    }
    case 'number': {
      const n =
        typeof raw === 'number' ? raw : text !== null && DECIMAL.test(text) ? Number(text) : Number.NaN;
      return Number.isFinite(n) ? n : { problem: 'must be a number' };
    }
    case 'integer': {
      const n = typeof raw === 'number' ? raw : text !== null && WHOLE.test(text) ? Number(text) : Number.NaN;
      return Number.isSafeInteger(n) ? n : { problem: 'must be a whole number' };
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw;
      const word = text?.toLowerCase() ?? (raw === 1 ? '1' : raw === 0 ? '0' : null);
      if (word !== null && TRUE_WORDS.has(word)) return true;
      if (word !== null && FALSE_WORDS.has(word)) return false;
      return { problem: 'must be true or false (true/false, yes/no or 1/0)' };
    }
  }
}
