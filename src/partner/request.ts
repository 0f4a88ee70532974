// A batch of leads written as a profile says: each lead mapped onto an item, the items in the
// envelope, the batch key in the idempotency header. Pure: no I/O, and a lead that cannot be written
// is a problem returned, never an exception. Auth headers are the client's, not this module's.
import type { FieldMapping, PartnerProfile, ProfileAttribute, ProfileLeadField } from './profile-schema.js';

/** A value of an extra column kept at ingest. */
export type AttributeValue = string | number | boolean | null;

/** One lead as a profile reads it: the lead's fields, its own key and its extra columns. */
export interface ProfileLead {
  /** The lead's own idempotency key (`lk_…`), stable across retries. */
  lead_key: string;
  external_id: string | null;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  score: number;
  /** Epoch milliseconds. */
  source_ts: number;
  value: number | null;
  /** The columns the profile declares under `attributes`; a column absent here is null. */
  attributes: Readonly<Record<string, AttributeValue>>;
}

/** The request to send: the client adds the base URL, the auth header and the content type. */
export interface PartnerRequest {
  method: 'POST';
  path: string;
  /** The idempotency header alone (none when the profile has no batch idempotency). */
  headers: Record<string, string>;
  body: unknown;
}

/**
 * Why a batch cannot be written: `leadKey` names the lead (null for the batch as a whole), `where`
 * the mapping (`fields[2] → "email"`), `problem` why. Never holds a lead's value: values may be PII.
 */
export interface RequestProblem {
  leadKey: string | null;
  where: string;
  problem: string;
}

/**
 * The request, or every reason it cannot be written. All or nothing: a batch key stands for exactly
 * the leads it was given, so a lead with a problem is never dropped silently from the body; the
 * caller sets it aside (and says why) and builds the batch again without it.
 */
export type RequestBuild = { ok: true; request: PartnerRequest } | { ok: false; problems: RequestProblem[] };

/** The partner's limit on an idempotency key, and what may travel in a header. */
const BATCH_KEY = /^[\x21-\x7e]{1,200}$/;

/** Write `leads` (in this order) as one request under `batchKey`, as `profile` says. */
export function buildPartnerRequest(
  profile: PartnerProfile,
  leads: readonly ProfileLead[],
  batchKey: string,
): RequestBuild {
  const problems: RequestProblem[] = [];
  const batchProblem = (where: string, problem: string) => problems.push({ leadKey: null, where, problem });
  if (leads.length === 0) batchProblem('batch', 'holds no lead');
  if (leads.length > profile.batch.maxLeads) {
    batchProblem(
      'batch',
      `holds ${leads.length} leads, above the profile's maxLeads ${profile.batch.maxLeads}`,
    );
  }
  if (profile.idempotency !== null && !BATCH_KEY.test(batchKey)) {
    batchProblem('batch key', 'must be 1 to 200 printable ASCII characters without spaces');
  }
  const seen = new Set<string>();
  for (const lead of leads) {
    if (seen.has(lead.lead_key)) batchProblem('batch', `lead ${lead.lead_key} appears twice`);
    seen.add(lead.lead_key);
  }
  const attributes = new Map((profile.attributes ?? []).map((a) => [a.name, a]));
  const items: Record<string, unknown>[] = [];
  for (const lead of leads) {
    const item: Record<string, unknown> = {};
    const target = profile.batch.item === undefined ? item : objectAt(item, profile.batch.item);
    for (const [i, mapping] of profile.fields.entries()) {
      const written = writeValue(mapping, lead, attributes);
      if (written.kind === 'problem') {
        problems.push({
          leadKey: lead.lead_key,
          where: `fields[${i}] → "${mapping.to}"`,
          problem: written.problem,
        });
      } else if (written.kind === 'value') {
        setAt(target, mapping.to, written.value);
      }
    }
    items.push(item);
  }
  if (problems.length > 0) return { ok: false, problems };
  const body = profile.batch.envelope === null ? items : setAt({}, profile.batch.envelope, items);
  return {
    ok: true,
    request: {
      method: profile.endpoints.leads.method,
      path: profile.endpoints.leads.path,
      headers: profile.idempotency === null ? {} : { [profile.idempotency.header]: batchKey },
      body,
    },
  };
}

type Written = { kind: 'value'; value: unknown } | { kind: 'omitted' } | { kind: 'problem'; problem: string };

function writeValue(
  mapping: FieldMapping,
  lead: ProfileLead,
  attributes: ReadonlyMap<string, ProfileAttribute>,
): Written {
  const { from } = mapping;
  let raw: unknown;
  let attribute: ProfileAttribute | undefined;
  if (typeof from === 'object') raw = from.const;
  else if (from === 'lead_key') raw = lead.lead_key;
  else if (from.startsWith('attributes.')) {
    const name = from.slice('attributes.'.length);
    attribute = attributes.get(name);
    raw = Object.hasOwn(lead.attributes, name) ? lead.attributes[name] : null;
  } else raw = lead[from as ProfileLeadField];

  const name = typeof from === 'object' ? 'the constant' : from;
  if (raw === null || raw === undefined) {
    if (mapping.required || attribute?.required) {
      return { kind: 'problem', problem: `${name} is required here and the lead has none` };
    }
    return mapping.ifNull === 'omit' ? { kind: 'omitted' } : { kind: 'value', value: null };
  }
  if (attribute !== undefined) {
    const fits = attributeFits(raw, attribute);
    if (fits !== null) return { kind: 'problem', problem: `${name} ${fits}` };
  }
  return convert(raw, mapping, name);
}

/** Null when an attribute's value is what its declaration says; else why not (without the value). */
function attributeFits(value: unknown, attribute: ProfileAttribute): string | null {
  const declared = attribute.type;
  const ok =
    declared === 'string'
      ? typeof value === 'string'
      : declared === 'number'
        ? typeof value === 'number' && Number.isFinite(value)
        : declared === 'integer'
          ? Number.isSafeInteger(value)
          : typeof value === 'boolean';
  if (!ok) return `holds a ${typeof value}, not the ${declared} the profile declares`;
  if (attribute.maxLength !== undefined && typeof value === 'string' && value.length > attribute.maxLength) {
    return `is longer than its ${attribute.maxLength} characters`;
  }
  return null;
}

function convert(value: unknown, mapping: FieldMapping, name: string): Written {
  const problem = (why: string): Written => ({ kind: 'problem', problem: `${name} ${why}` });
  switch (mapping.type) {
    case 'string':
      if (typeof value === 'string') return { kind: 'value', value };
      if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean') {
        return { kind: 'value', value: String(value) };
      }
      return problem('cannot be written as a string');
    case 'number':
      return typeof value === 'number' && Number.isFinite(value)
        ? { kind: 'value', value }
        : problem('is not a finite number');
    case 'integer':
      return Number.isSafeInteger(value) ? { kind: 'value', value } : problem('is not a whole number');
    case 'boolean':
      return typeof value === 'boolean' ? { kind: 'value', value } : problem('is not true or false');
    case 'epoch-ms':
      return Number.isSafeInteger(value) ? { kind: 'value', value } : problem('is not epoch milliseconds');
    case 'iso-timestamp': {
      const date = Number.isSafeInteger(value) ? new Date(value as number) : null;
      return date !== null && !Number.isNaN(date.getTime())
        ? { kind: 'value', value: date.toISOString() }
        : problem('is not a time in epoch milliseconds');
    }
  }
}

/** The object at a dotted path below `root`, made as needed. Paths are checked at load (no `__proto__`). */
function objectAt(root: Record<string, unknown>, path: string): Record<string, unknown> {
  let node = root;
  for (const segment of path.split('.')) {
    const next = node[segment];
    if (typeof next === 'object' && next !== null && !Array.isArray(next))
      node = next as Record<string, unknown>;
    else {
      const made: Record<string, unknown> = {};
      node[segment] = made;
      node = made;
    }
  }
  return node;
}

function setAt<T extends Record<string, unknown>>(root: T, path: string, value: unknown): T {
  const segments = path.split('.');
  const last = segments.pop()!;
  const parent = segments.length === 0 ? root : objectAt(root, segments.join('.'));
  parent[last] = value;
  return root;
}
