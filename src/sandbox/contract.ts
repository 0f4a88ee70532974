import { z } from 'zod';

/** The partner's limit on one batch. */
export const MAX_BATCH_LEADS = 100;
/** Larger bodies are refused with 413 before they are parsed. 100 leads take about 40 KB. */
export const MAX_BODY_BYTES = 1024 * 1024;
const MAX_KEY_LENGTH = 200;

const key = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(MAX_KEY_LENGTH, { error: `longer than ${MAX_KEY_LENGTH} characters` })
  .regex(/^[\x21-\x7e]+$/, { error: 'must be printable ASCII without spaces' });

const optionalText = z.string().nullable().optional();

/** One lead as the partner reads it; unknown fields are ignored, as a tolerant partner would. */
const leadSchema = z.object({
  idempotency_key: key,
  external_id: optionalText,
  name: z.string().min(1, { error: 'must not be empty' }),
  email: z.string().min(3, { error: 'is not an e-mail address' }),
  phone: optionalText,
  company: optionalText,
  score: z.number().min(0).max(100),
  source_timestamp: z.string().refine((s) => !Number.isNaN(Date.parse(s)), {
    error: 'must be an ISO 8601 date-time',
  }),
  value: z.number().nullable().optional(),
});

export type PartnerLead = z.output<typeof leadSchema>;

export type BatchParse =
  | { ok: true; leadKeys: string[]; emails: string[] }
  | { ok: false; status: 400 | 422; error: string; message: string };

/**
 * Read a batch body. Messages name the field and the lead's index but never its value: the
 * sandbox may be fed real-looking PII, and its answers end up in client logs.
 */
export function parseBatch(body: Buffer): BatchParse {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return { ok: false, status: 400, error: 'invalid_json', message: 'the body is not JSON' };
  }
  if (typeof json !== 'object' || json === null || !Array.isArray((json as { leads?: unknown }).leads)) {
    return {
      ok: false,
      status: 400,
      error: 'invalid_request',
      message: 'the body must be an object with a "leads" array',
    };
  }
  const leads = (json as { leads: unknown[] }).leads;
  if (leads.length === 0 || leads.length > MAX_BATCH_LEADS) {
    return {
      ok: false,
      status: 422,
      error: 'invalid_batch_size',
      message: `a batch holds 1 to ${MAX_BATCH_LEADS} leads; this one has ${leads.length}`,
    };
  }
  const leadKeys: string[] = [];
  const emails: string[] = [];
  for (const [index, lead] of leads.entries()) {
    const parsed = leadSchema.safeParse(lead);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join('.') ?? '';
      return {
        ok: false,
        status: 400,
        error: 'invalid_lead',
        message: `leads[${index}]${field === '' ? '' : `.${field}`}: ${issue?.message ?? 'invalid'}`,
      };
    }
    leadKeys.push(parsed.data.idempotency_key);
    emails.push(parsed.data.email);
  }
  return { ok: true, leadKeys, emails };
}

/** A batch key from the `Idempotency-Key` header, or why it is unusable. */
export function readBatchKey(
  header: string | string[] | undefined,
): { ok: true; key: string } | { ok: false } {
  if (typeof header !== 'string') return { ok: false };
  const parsed = key.safeParse(header.trim());
  return parsed.success ? { ok: true, key: parsed.data } : { ok: false };
}
