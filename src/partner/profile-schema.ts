// The partner profile's shape: one JSON file that says how to speak to a partner (its endpoints, its
// auth kind, its batch body, the mapping of a lead onto an item, and how its answer is read). Data
// only: no code, no templates. Secrets never appear in it; they stay in the environment.
import { z } from 'zod';
import { MAX_LEADS_PER_REQUEST } from '../policy/index.js';

/** The lead's own fields a mapping may read (`source_ts` is epoch milliseconds). */
export const PROFILE_LEAD_FIELDS = [
  'external_id',
  'name',
  'email',
  'phone',
  'company',
  'score',
  'source_ts',
  'value',
] as const;
export type ProfileLeadField = (typeof PROFILE_LEAD_FIELDS)[number];

/** The types a mapping writes. `iso-timestamp` and `epoch-ms` take epoch milliseconds. */
export const VALUE_TYPES = ['string', 'number', 'integer', 'boolean', 'iso-timestamp', 'epoch-ms'] as const;
export type ValueType = (typeof VALUE_TYPES)[number];

/** The types an extra column kept at ingest may have. */
export const ATTRIBUTE_TYPES = ['string', 'number', 'integer', 'boolean'] as const;
export type AttributeType = (typeof ATTRIBUTE_TYPES)[number];

/** The outcomes a partner may give one lead. */
export const LEAD_OUTCOMES = ['accepted', 'duplicate', 'refused'] as const;
export type LeadOutcome = (typeof LEAD_OUTCOMES)[number];

/** A JSON member name that must never be written or read: it would reach an object's prototype. */
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'prototype', 'constructor']);
const SEGMENT = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

/** A dotted path of JSON member names (`properties.email`); no indexes, no wildcards, no expressions. */
const jsonPath = z
  .string({ error: 'must be a dotted path of member names (e.g. "properties.email")' })
  .max(256, { error: 'longer than 256 characters' })
  .refine((path) => path.split('.').every((segment) => SEGMENT.test(segment)), {
    error: 'must be a dotted path of member names (letters, digits, _ and -; e.g. "properties.email")',
  })
  .refine((path) => path.split('.').every((segment) => !FORBIDDEN_SEGMENTS.has(segment)), {
    error: 'names __proto__, prototype or constructor, which are refused',
  });

/** RFC 7230 `token`: what a header field name may be. */
const HEADER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Headers the HTTP client owns (framing, connection, host, body type and encoding, what it accepts, auth, cookies). */
const RESERVED_HEADERS = new Set([
  'accept',
  'accept-encoding',
  'authorization',
  'content-encoding',
  'connection',
  'content-length',
  'content-type',
  'cookie',
  'host',
  'keep-alive',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

const headerName = z
  .string({ error: 'must be a header name' })
  .min(1, { error: 'must not be empty' })
  .max(64, { error: 'longer than 64 characters' })
  .regex(HEADER_TOKEN, { error: 'is not a valid header name (RFC 7230 token characters only)' })
  .refine((name) => !RESERVED_HEADERS.has(name.toLowerCase()), {
    error: 'is a header the HTTP client sets itself (refused)',
  });

/** A request path below the partner's base URL: `/` then plain segments; no query, no `.` or `..`. */
const requestPath = z
  .string({ error: 'must be a path such as "/api/leads"' })
  .max(200, { error: 'longer than 200 characters' })
  .regex(/^(\/[A-Za-z0-9\-._~]+)+\/?$|^\/$/, {
    error: 'must be a path such as "/api/leads" (letters, digits, - . _ ~; no query or fragment)',
  })
  .refine((path) => path.split('/').every((segment) => segment !== '.' && segment !== '..'), {
    error: 'must not hold . or .. segments',
  });

const slug = z.string({ error: 'must be a slug' }).regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, {
  error: 'must be a slug: lower-case letters, digits and hyphens, 1 to 64 characters',
});

const scalar = z.union([z.string().max(1000), z.number(), z.boolean()], {
  error: 'must be a string, a number or a boolean',
});

/**
 * Where a mapping reads: a lead field, the lead's own key (`lead_key`), a declared attribute
 * (`attributes.<name>`) or a constant. Which names exist is `crossCheckProfile`'s to say.
 */
const source = z.union([z.string().max(100), z.strictObject({ const: scalar })], {
  error: `must be a source: one of ${PROFILE_LEAD_FIELDS.join(', ')}, lead_key, attributes.<name> or { "const": … }`,
});

const mapping = z.strictObject({
  to: jsonPath,
  from: source,
  type: z.enum(VALUE_TYPES, { error: `must be one of ${VALUE_TYPES.join(', ')}` }),
  /** A required value that is null leaves the lead out of the request, with a problem named. */
  required: z.boolean().default(false),
  /** What a null becomes when the mapping is not required: `null` in the item, or no member at all. */
  ifNull: z.enum(['null', 'omit'], { error: 'must be "null" or "omit"' }).default('null'),
});

const attribute = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, {
    error: 'must be lower-case letters, digits and _ (starting with a letter), up to 64 characters',
  }),
  type: z.enum(ATTRIBUTE_TYPES, { error: `must be one of ${ATTRIBUTE_TYPES.join(', ')}` }),
  /** True when the column is personal data: masked in logs and erased with the lead. */
  pii: z.boolean({ error: 'must say true or false: is the column personal data?' }),
  required: z.boolean().default(false),
  maxLength: z.number().int().min(1).max(10_000).optional(),
});

const auth = z.discriminatedUnion(
  'kind',
  [
    z.strictObject({
      kind: z.literal('oauth2_client_credentials'),
      scope: z
        .string()
        .regex(/^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/, {
          error: 'must be OAuth2 scope tokens separated by single spaces',
        })
        .max(500)
        .optional(),
    }),
    z.strictObject({ kind: z.literal('api_key'), header: headerName }),
    z.strictObject({ kind: z.literal('bearer') }),
  ],
  { error: 'must have kind "oauth2_client_credentials", "api_key" or "bearer"' },
);

const matchRule = z.discriminatedUnion(
  'by',
  [
    z.strictObject({ by: z.literal('index') }),
    z.strictObject({
      by: z.literal('field'),
      path: jsonPath,
      value: z.enum(['lead_key', 'external_id', 'email'], {
        error: 'must be lead_key, external_id or email',
      }),
    }),
  ],
  { error: 'must have by "index" or by "field"' },
);

const statusRule = z.union(
  [
    z.strictObject({
      path: jsonPath,
      accepted: z.array(scalar).max(50),
      duplicate: z.array(scalar).max(50),
      refused: z.array(scalar).max(50),
    }),
    z.strictObject({ outcome: z.enum(LEAD_OUTCOMES, { error: 'must be accepted, duplicate or refused' }) }),
  ],
  {
    error:
      'must be { "path", "accepted", "duplicate", "refused" } or { "outcome": "accepted" | "duplicate" | "refused" }',
  },
);

/** One array of per-lead results in the answer body. */
const resultList = z.strictObject({
  path: jsonPath,
  match: matchRule,
  status: statusRule,
  reason: jsonPath.nullable(),
});

const answer = z.strictObject({
  httpStatuses: z
    .array(
      z.number().int().min(200, { error: 'must be a success status (200 to 299)' }).max(299, {
        error:
          'must be a success status (200 to 299): any other is the whole batch’s, read by the retry table',
      }),
    )
    .min(1, { error: 'must name at least one status' }),
  /** Null: the partner answers for the whole batch only. */
  results: z.array(resultList).min(1, { error: 'must hold at least one list (or be null)' }).nullable(),
  /**
   * What the status means for a lead the body does not answer clearly (no lists, not JSON, a lead not
   * mentioned or answered unclearly): `batch`, the status answers for it; `unknown`, it is unknown.
   */
  withoutResults: z.enum(['batch', 'unknown'], { error: 'must be "batch" or "unknown"' }),
});

/**
 * The whole profile's shape: every object strict (an unknown key is refused). The checks across
 * parts (a declared attribute, one mapping per target, a token endpoint with OAuth2 …) are
 * `crossCheckProfile`'s: `parsePartnerProfile` runs both.
 */
export const partnerProfileSchema = z.strictObject({
  name: slug,
  description: z.string().min(1, { error: 'must not be empty' }).max(500),
  endpoints: z.strictObject({
    leads: z.strictObject({ method: z.literal('POST', { error: 'must be "POST"' }), path: requestPath }),
    // Required: no cycle sends before the partner's health check has passed.
    health: z.strictObject({ method: z.literal('GET', { error: 'must be "GET"' }), path: requestPath }),
    token: z.strictObject({ path: requestPath }).optional(),
  }),
  auth,
  idempotency: z.strictObject({ header: headerName }).nullable(),
  batch: z.strictObject({
    maxLeads: z
      .number({ error: 'must be a whole number' })
      .int({ error: 'must be a whole number' })
      .min(1, { error: 'must be at least 1' })
      .max(MAX_LEADS_PER_REQUEST, {
        error: `above the product's hard cap of ${MAX_LEADS_PER_REQUEST} leads per request (refused, not clamped)`,
      }),
    envelope: jsonPath.nullable(),
    item: jsonPath.optional(),
  }),
  fields: z
    .array(mapping)
    .min(1, { error: 'must map at least one field' })
    .max(100, { error: 'more than 100 mappings' }),
  attributes: z.array(attribute).max(50, { error: 'more than 50 attributes' }).optional(),
  answer,
});

/** A profile as validated: defaults filled in (`required: false`, `ifNull: "null"`). */
export type PartnerProfile = z.output<typeof partnerProfileSchema>;
export type FieldMapping = PartnerProfile['fields'][number];
export type ProfileAttribute = NonNullable<PartnerProfile['attributes']>[number];
export type ResultList = NonNullable<PartnerProfile['answer']['results']>[number];
