/**
 * Contact data in free text: the one detector for every operator-written text that is stored for good
 * (a reason, a comment), since the audit chain can never be edited to take it out again.
 *
 * - An e-mail address, written plainly (`jane@example.com`, `jane @ example.com`) or spelled out
 *   (`jane at example dot com`, `jane (at) example [dot] com`).
 * - A phone number in any common written form: 7 or more digits in one run that may hold spaces, dashes,
 *   dots, slashes and parentheses, with or without a leading `+` or `00` (`+44 20 7946 0958`,
 *   `0044 20 7946 0958`, `(415) 555-0011`, `415.555.0011`, `14155550012`, `tel 4155550011`).
 *
 * What is not contact data: an identifier that starts with a letter (`DSR-2026-0001234`, `INC0012345`,
 * `JIRA-88`), so tickets are given with their prefix; a date (`2026-12-06`, `06/12/2026`), a time. A plain
 * number of 7 or more digits counts as a phone number: it cannot be told from one.
 */
export type ContactData = 'e-mail address' | 'phone number';

const AT = String.raw`(?:\s*@\s*|\s*[([{<]\s*at\s*[)\]}>]\s*|\s+at\s+)`;
const DOT = String.raw`(?:\.|\s*[([{<]\s*dot\s*[)\]}>]\s*|\s+dot\s+)`;
/** local part, the at, then a domain of labels ending in a top-level label of letters. */
const EMAIL = new RegExp(
  String.raw`[\p{L}\p{N}._%+-]+${AT}[\p{L}\p{N}-]+(?:${DOT}[\p{L}\p{N}-]+)*${DOT}\p{L}{2,}(?![\p{L}\p{N}])`,
  'iu',
);

/** A word that announces a number (`tel.`, `phone:`, `call`), with what joins it to the number. */
const PHONE_CUE =
  /(?<![\p{L}\p{N}])(?:tel|telephone|phone|ph|mobile|mob|cell|fax|call|sms|whatsapp|t|m)[.:#/=-]*(?=\s*[+(\d])/giu;
/**
 * Identifiers (starting with a letter, no spaces), dates and times: never a phone number. An IPv4
 * address of 7 or more digits is not told apart from a number written with dots (`06.12.34.56`): refused.
 */
const NOT_A_PHONE = [
  /\p{L}[\p{L}\p{N}_#/.-]*/gu,
  /(?<![\d:])\d{1,2}:\d{2}(?::\d{2})?(?![:\d])/g,
  // A date alone, not a part of a longer run of digits (`(00) 00.00.0000` and `00.00.0000.00` are not dates).
  /(?<![\d./()+-]\s{0,2})\d{4}-\d{2}-\d{2}(?![\s./()-]{0,3}\d)/g,
  /(?<![\d./()+-]\s{0,2})\d{1,2}[/.]\d{1,2}[/.]\d{4}(?![\s./()-]{0,3}\d)/g,
];
/** A run of digits joined by at most two separators at a time (`) `, ` - `), optionally after a `+`. */
const DIGIT_RUN = /\+?\s*\(?\d(?:[\s.\-()/]{0,3}\d)*/g;
const PHONE_MIN_DIGITS = 7;

/** The kind of contact data `text` holds, or null. */
export function findContactData(text: string): ContactData | null {
  const normalised = text.normalize('NFKC');
  if (EMAIL.test(normalised)) return 'e-mail address';
  // The cue is cut off first, so that `tel.4155550011` is not taken for an identifier.
  let rest = normalised.replace(PHONE_CUE, ' ');
  // Each removed part leaves a `|`: digits on either side of it are not one run.
  for (const pattern of NOT_A_PHONE) rest = rest.replace(pattern, '|');
  for (const run of rest.matchAll(DIGIT_RUN)) {
    if (run[0].replace(/\D/g, '').length >= PHONE_MIN_DIGITS) return 'phone number';
  }
  return null;
}

/**
 * The refusal for a text that is kept for good (`what`: "the reason", "the comments"), or null when it
 * may be stored. The message never echoes the text.
 */
export function refuseContactData(text: string, what: string): string | null {
  const found = findContactData(text);
  if (found === null) return null;
  return (
    `what looks like ${found === 'e-mail address' ? 'an e-mail address' : 'a phone number'} is in ${what}, which would be kept for good in the audit chain: ` +
    'write no personal data there; give a ticket or request number with its prefix (e.g. DSR-2026-0001234) instead'
  );
}

/** What a stop (pause, rollback) records in place of a reason that looked like contact data. */
export const REASON_WITHHELD =
  '(reason withheld: it looked like it held an e-mail address or a phone number)';
