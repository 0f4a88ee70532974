// The CRM batch-contacts contract as the sandbox plays it: the paths, the body a batch create holds,
// and the per-record checks a CRM makes. The sandbox plays the partner's side, so this is written
// from the CRM's point of view and does not read Valhalla's partner profiles.

export const CRM_LEADS_PATH = '/crm/v3/objects/contacts/batch/create';
export const CRM_HEALTH_PATH = '/crm/v3/health';
/** The CRM's limit on one batch create; above it the whole batch is refused with 400. */
export const CRM_MAX_INPUTS = 100;
/** The property the CRM holds unique: the lead's own key, which makes a record sent twice a conflict. */
export const CRM_LEAD_KEY_PROPERTY = 'valhalla_lead_key';

/** The contact properties this CRM account has; any other is refused, as a CRM refuses an unknown property. */
const KNOWN_PROPERTIES = new Set([
  'email',
  'full_name',
  'phone',
  'company',
  'lead_score',
  'external_id',
  'jobtitle',
  'country',
  CRM_LEAD_KEY_PROPERTY,
]);

const LEAD_KEY = /^[\x21-\x7e]{1,200}$/;
const EMAIL = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;
const MAX_EMAIL_LENGTH = 254;

/** One input of a batch create: its lead key, its e-mail (when it is one) and why it is refused (or null). */
export interface CrmInput {
  leadKey: string;
  email: string | null;
  problem: string | null;
}

export type CrmBatchParse = { ok: true; inputs: CrmInput[] } | { ok: false; message: string };

/**
 * Read a batch create. What cannot be tied to one record (not JSON, no `inputs`, 0 or more than 100
 * of them, an input without `properties` or without its lead key) refuses the whole batch; a record
 * with a bad e-mail or an unknown property is refused alone. Messages name properties and indexes,
 * never values: the sandbox may be fed real-looking PII, and its answers end up in client logs.
 */
export function parseCrmBatch(body: Buffer): CrmBatchParse {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, message: 'Invalid input JSON: the body is not JSON' };
  }
  const inputs = isRecord(json) ? json.inputs : undefined;
  if (!Array.isArray(inputs)) {
    return { ok: false, message: 'Invalid input JSON: the body must be an object with an "inputs" array' };
  }
  if (inputs.length === 0 || inputs.length > CRM_MAX_INPUTS) {
    return {
      ok: false,
      message: `Batch size must be 1 to ${CRM_MAX_INPUTS} inputs; this one has ${inputs.length}`,
    };
  }
  const read: CrmInput[] = [];
  for (const [index, input] of inputs.entries()) {
    const properties = isRecord(input) ? input.properties : undefined;
    if (!isRecord(properties)) {
      return { ok: false, message: `inputs[${index}].properties: required, and must be an object` };
    }
    const leadKey = properties[CRM_LEAD_KEY_PROPERTY];
    if (typeof leadKey !== 'string' || !LEAD_KEY.test(leadKey)) {
      return {
        ok: false,
        message: `inputs[${index}].properties.${CRM_LEAD_KEY_PROPERTY}: required, 1 to 200 printable characters`,
      };
    }
    read.push({ leadKey, ...checkProperties(properties) });
  }
  return { ok: true, inputs: read };
}

function checkProperties(properties: Record<string, unknown>): {
  email: string | null;
  problem: string | null;
} {
  const rawEmail = properties.email;
  const email =
    typeof rawEmail === 'string' && rawEmail.length <= MAX_EMAIL_LENGTH && EMAIL.test(rawEmail)
      ? rawEmail
      : null;
  for (const [name, value] of Object.entries(properties)) {
    if (!KNOWN_PROPERTIES.has(name)) {
      // The name is the sender's mapping, not lead data; cut so a long one cannot flood a log.
      return { email, problem: `Property "${name.slice(0, 64)}" does not exist` };
    }
    if (
      value !== null &&
      typeof value !== 'string' &&
      typeof value !== 'number' &&
      typeof value !== 'boolean'
    ) {
      return {
        email,
        problem: `Property values were not valid: ${name} must be a string, number or boolean`,
      };
    }
  }
  if (rawEmail === undefined || rawEmail === null || rawEmail === '') {
    return { email, problem: 'Property values were not valid: email is required' };
  }
  if (email === null) {
    return { email, problem: 'Property values were not valid: email is not a valid e-mail address' };
  }
  return { email, problem: null };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A CRM error for one record, tied to it by its lead key as the CRM's batch errors are. */
export function crmError(category: 'CONFLICT' | 'VALIDATION_ERROR', message: string, leadKey: string) {
  return { status: 'error', category, message, context: { idempotency_key: [leadKey] } };
}

/** A CRM error for the whole request (401, 400, a fault). */
export function crmRequestError(status: number, message: string) {
  const category =
    status === 401
      ? 'INVALID_AUTHENTICATION'
      : status === 429
        ? 'RATE_LIMITS'
        : status === 400 || status === 422
          ? 'VALIDATION_ERROR'
          : status === 404
            ? 'OBJECT_NOT_FOUND'
            : 'INTERNAL_ERROR';
  return { status: 'error', category, message };
}
