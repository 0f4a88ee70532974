// The partner's reply read as its profile says: either the whole batch is the answer, or each lead
// sent gets exactly one outcome. What cannot be tied to a lead is reported, never guessed: a lead
// the reply does not clearly answer is `unknown`, never accepted by default.
import type { LeadOutcome, PartnerProfile, ResultList } from './profile-schema.js';
import type { ProfileLead } from './request.js';

/** What one sent lead came to; `unknown` when the reply does not say it clearly. */
export type LeadAnswerOutcome = LeadOutcome | 'unknown';

export interface LeadAnswer {
  leadKey: string;
  outcome: LeadAnswerOutcome;
  /**
   * The partner's reason (refused or duplicate, when it gives one), or why the outcome is unknown;
   * null otherwise. On one line, control characters removed, at most `MAX_ANSWER_REASON_CHARS`
   * (long enough that lead data it echoes is whole, for masking). The partner's own text may echo
   * lead data: mask it, then cut it to `MAX_REASON_CHARS` (`oneLine`), before it is stored or shown.
   */
  reason: string | null;
}

/** A place in the reply (`errors[2]`, `(the body)`) and what is wrong with it. Never holds lead values. */
export interface AnswerProblem {
  where: string;
  problem: string;
}

export type PartnerAnswer =
  /** The status and body answer for the whole batch (no per-lead lists, or a status that has none). */
  | { kind: 'batch' }
  | {
      kind: 'per-lead';
      /** One entry per sent lead, in the order sent. */
      results: LeadAnswer[];
      /** Results that match no lead sent (or cannot be tied to one). */
      unmatched: AnswerProblem[];
      /** Everything else the reply got wrong: not JSON, a list that is not a list, a status value not known, a lead answered twice. */
      problems: AnswerProblem[];
    };

/** A reason as stored and shown (after masking) is at most this long: shown to operators, not parsed. */
export const MAX_REASON_CHARS = 200;
/**
 * A reason as read from the answer is at most this long: cut only after it is masked, so that an
 * e-mail address or phone number it echoes near the 200th character is masked whole, not half kept.
 */
export const MAX_ANSWER_REASON_CHARS = 2_000;

const THE_BODY = '(the body)';

/**
 * Read the reply to a request built from `sentLeads` (the same leads, in the same order). `body` is
 * the reply's raw body (null when it had none).
 */
export function readPartnerAnswer(
  profile: PartnerProfile,
  status: number,
  /** The reply's body, or `{ unread }` when it was not read (why: over the size cap, say). */
  body: string | Uint8Array | null | { unread: string },
  sentLeads: readonly ProfileLead[],
): PartnerAnswer {
  const { answer } = profile;
  if (answer.results === null || !answer.httpStatuses.includes(status)) return { kind: 'batch' };
  // `withoutResults: "batch"`: where the reply does not answer a lead clearly, its status does (for the
  // whole batch); otherwise such a lead is unknown.
  const byStatus = answer.withoutResults === 'batch';
  const allUnknown = (where: string, problem: string): PartnerAnswer =>
    byStatus
      ? { kind: 'batch' }
      : {
          kind: 'per-lead',
          results: sentLeads.map((lead) => ({ leadKey: lead.lead_key, outcome: 'unknown', reason: problem })),
          unmatched: [],
          problems: [{ where, problem }],
        };

  if (body !== null && typeof body === 'object' && 'unread' in body) return allUnknown(THE_BODY, body.unread);
  const json = parseBody(body);
  if (json === NOT_JSON) return allUnknown(THE_BODY, 'the reply is not JSON');
  if (json === undefined) return allUnknown(THE_BODY, 'the reply has no body');
  if (!isRecord(json)) return allUnknown(THE_BODY, 'the reply is not a JSON object');

  const lists: { list: ResultList; entries: unknown[] }[] = [];
  for (const list of answer.results) {
    const found = readPath(json, list.path);
    if (found === undefined) continue;
    if (!Array.isArray(found)) return allUnknown(list.path, `"${list.path}" is not a list`);
    lists.push({ list, entries: found });
  }
  if (lists.length === 0) {
    const names = answer.results.map((l) => l.path).join(', ');
    return allUnknown(THE_BODY, `the reply holds none of its result lists (${names})`);
  }

  const claims: Claim[][] = sentLeads.map(() => []);
  const cannotMatch = unmatchable(lists, sentLeads);
  const unmatched: AnswerProblem[] = [];
  const problems: AnswerProblem[] = [];
  for (const { list, entries } of lists) {
    const lookup = list.match.by === 'field' ? leadIndex(sentLeads, list.match.value) : null;
    for (const [i, entry] of entries.entries()) {
      const where = `${list.path}[${i}]`;
      if (!isRecord(entry)) {
        unmatched.push({ where, problem: 'is not an object' });
        continue;
      }
      const leads = matchLeads(list, entry, i, sentLeads.length, lookup);
      if (typeof leads === 'string') {
        unmatched.push({ where, problem: leads });
        continue;
      }
      const claim = outcomeOf(list, entry, where);
      if (claim.problem !== null) problems.push(claim.problem);
      for (const lead of leads) claims[lead]!.push({ where, outcome: claim.outcome, reason: claim.reason });
    }
  }

  const answered = sentLeads.map((lead, index): LeadAnswer => {
    const said = claims[index]!;
    if (said.length === 1) {
      return { leadKey: lead.lead_key, outcome: said[0]!.outcome, reason: said[0]!.reason };
    }
    if (said.length === 0) {
      const why = cannotMatch.get(index) ?? 'the reply does not mention this lead';
      return { leadKey: lead.lead_key, outcome: 'unknown', reason: why };
    }
    const places = said.map((c) => c.where).join(', ');
    problems.push({
      where: places,
      problem: `${said.length} results answer the same lead (${lead.lead_key})`,
    });
    return {
      leadKey: lead.lead_key,
      outcome: 'unknown',
      reason: `the reply answers this lead ${said.length} times (${places})`,
    };
  });
  // Under `withoutResults: "batch"` the status answers for a lead the lists leave unclear: the
  // problems are still reported.
  const results = byStatus
    ? answered.map(
        (r): LeadAnswer => (r.outcome === 'unknown' ? { ...r, outcome: 'accepted', reason: null } : r),
      )
    : answered;
  return { kind: 'per-lead', results, unmatched, problems };
}

interface Claim {
  where: string;
  outcome: LeadAnswerOutcome;
  reason: string | null;
}

/** Sent leads by their match value; a value shared by two leads maps to both (then it matches neither). */
function leadIndex(leads: readonly ProfileLead[], value: 'lead_key' | 'external_id' | 'email') {
  const index = new Map<string, number[]>();
  for (const [i, lead] of leads.entries()) {
    const key = lead[value];
    if (key === null) continue;
    index.set(key, [...(index.get(key) ?? []), i]);
  }
  return index;
}

/**
 * The sent leads no result of a field-matched list can name, and why: the lead has no value to be
 * matched by (an external id it lacks), or shares its value with another lead sent.
 */
function unmatchable(lists: { list: ResultList }[], leads: readonly ProfileLead[]): Map<number, string> {
  const why = new Map<number, string>();
  for (const { list } of lists) {
    if (list.match.by !== 'field') continue;
    const value = list.match.value;
    for (const hits of leadIndex(leads, value).values()) {
      if (hits.length > 1) {
        for (const i of hits)
          why.set(i, `shares its ${value} with another lead sent: no result can name it alone`);
      }
    }
    for (const [i, lead] of leads.entries()) {
      if (lead[value] === null) why.set(i, `has no ${value}, which the reply matches results by`);
    }
  }
  return why;
}

/** The indexes of the sent leads an entry answers, or why it answers none. */
function matchLeads(
  list: ResultList,
  entry: Record<string, unknown>,
  position: number,
  sent: number,
  lookup: Map<string, number[]> | null,
): number[] | string {
  const { match } = list;
  if (match.by === 'index') {
    return position < sent ? [position] : `no lead was sent at position ${position} (${sent} sent)`;
  }
  const found = readPath(entry, match.path);
  const values = typeof found === 'string' ? [found] : Array.isArray(found) ? found : null;
  if (values === null || values.length === 0 || !values.every((v) => typeof v === 'string')) {
    return `holds no ${match.value} at "${match.path}" to tie it to a lead`;
  }
  const leads: number[] = [];
  for (const value of values as string[]) {
    const hits = lookup!.get(value) ?? [];
    if (hits.length === 0) return `its "${match.path}" matches no lead sent in this batch`;
    if (hits.length > 1) return `its "${match.path}" matches ${hits.length} leads sent in this batch`;
    if (!leads.includes(hits[0]!)) leads.push(hits[0]!);
  }
  return leads;
}

function outcomeOf(
  list: ResultList,
  entry: Record<string, unknown>,
  where: string,
): { outcome: LeadAnswerOutcome; reason: string | null; problem: AnswerProblem | null } {
  const { status } = list;
  const reason = () => {
    if (list.reason === null) return null;
    const text = readPath(entry, list.reason);
    return typeof text === 'string' ? oneLine(text, MAX_ANSWER_REASON_CHARS) : null;
  };
  if ('outcome' in status) {
    return {
      outcome: status.outcome,
      reason: status.outcome === 'accepted' ? null : reason(),
      problem: null,
    };
  }
  const value = readPath(entry, status.path);
  for (const outcome of ['accepted', 'duplicate', 'refused'] as const) {
    if (status[outcome].some((known) => known === value)) {
      return { outcome, reason: outcome === 'accepted' ? null : reason(), problem: null };
    }
  }
  const shown = value === undefined ? 'no status' : `the status ${oneLine(JSON.stringify(value), 60)}`;
  return {
    outcome: 'unknown',
    reason: `the reply gives ${shown}, which the profile does not know`,
    problem: { where: `${where}.${status.path}`, problem: `${shown}: not a value the profile knows` },
  };
}

// C0 (line breaks included), DEL, C1 and the Unicode line and paragraph separators.
// biome-ignore lint/suspicious/noControlCharactersInRegex: removing control characters is the point.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** A partner's text made safe to show: no control characters, one line, at most `max` characters. */
export function oneLine(text: string, max = MAX_REASON_CHARS): string {
  const line = text.replace(CONTROL, ' ').replace(/\s+/g, ' ').trim();
  const chars = Array.from(line);
  return chars.length <= max ? line : `${chars.slice(0, max - 1).join('')}…`;
}

const NOT_JSON = Symbol('not JSON');

function parseBody(body: string | Uint8Array | null): unknown {
  if (body === null) return undefined;
  const text = typeof body === 'string' ? body : new TextDecoder().decode(body);
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return NOT_JSON;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value at a dotted path, own members only; undefined when any step is missing. */
function readPath(root: Record<string, unknown>, path: string): unknown {
  let node: unknown = root;
  for (const segment of path.split('.')) {
    if (!isRecord(node) || !Object.hasOwn(node, segment)) return undefined;
    node = node[segment];
  }
  return node;
}
