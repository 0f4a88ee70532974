import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { SandboxError } from './errors.js';

/** Every Nth `/api/leads` request is answered `status` (429 by default) with a Retry-After header. */
export interface RateLimitFault {
  status: number;
  /** Seconds (sent as a number) or an HTTP date (sent as given). */
  retryAfter: number | string;
  every: number;
}

/**
 * Refuse chosen leads, so a test gets partial answers deterministically. A lead is refused when its
 * e-mail contains `emailContains` (case-insensitive), its key is in `leadKeys`, or it is the `every`-th
 * lead received since the fault was set (counted over batches). In CRM mode the lead gets a
 * `VALIDATION_ERROR` and the others are answered as usual; today's contract has no per-lead refusal,
 * so there the whole batch is answered 422 `invalid_lead` naming the first refused lead.
 */
export interface RefuseLeadsFault {
  emailContains: string | null;
  leadKeys: string[];
  every: number | null;
  /** The reason given (CRM mode: the error's `message`). */
  reason: string;
}

/** The faults in force. All off by default: the sandbox then behaves like a healthy partner. */
export interface SandboxFaults {
  /** Share (0..1) of `/api/leads` requests answered `errorStatus`; `/health` fails at the same rate. */
  errorRate: number;
  errorStatus: number;
  /** Seeds the draws behind `errorRate`: the same seed gives the same sequence of answers. */
  seed: number;
  /** Delay before answering any partner request (not the admin endpoints). */
  latencyMs: number;
  /**
   * A slow token endpoint: `/oauth/token` answers this long after it issued the token, whose life has
   * begun at issue. The client gets a token already partly spent.
   */
  tokenLatencyMs: number;
  /** Accept partner requests and never answer: the client's own timeout must fire. */
  hang: boolean;
  rateLimit: RateLimitFault | null;
  /** Every `/api/leads` request is answered 401, whatever its token. */
  reject401: boolean;
  /** Lifetime of tokens issued from now on. */
  tokenTtlSeconds: number;
  /** A dead partner: the connection of every partner request is destroyed without an answer. */
  down: boolean;
  /** The next N `/api/leads` requests are answered 503, then the sandbox recovers. */
  failNext: number;
  /** Every authenticated batch is refused with this status (e.g. 422), a permanent refusal. */
  permanentStatus: number | null;
  /** Chosen leads refused, one by one (CRM mode) or with their batch (today's contract). */
  refuseLeads: RefuseLeadsFault | null;
}

/** A change of faults: the fields given replace the ones in force; `null` clears a nullable fault. */
export type SandboxFaultsPatch = {
  [K in keyof SandboxFaults]?: K extends 'rateLimit'
    ? (Partial<RateLimitFault> & Pick<RateLimitFault, 'retryAfter'>) | null
    : K extends 'refuseLeads'
      ? Partial<RefuseLeadsFault> | null
      : SandboxFaults[K];
};

export const DEFAULT_TOKEN_TTL_SECONDS = 3600;

export function defaultFaults(): SandboxFaults {
  return {
    errorRate: 0,
    errorStatus: 503,
    seed: randomInt(0, 2 ** 31),
    latencyMs: 0,
    tokenLatencyMs: 0,
    hang: false,
    rateLimit: null,
    reject401: false,
    tokenTtlSeconds: DEFAULT_TOKEN_TTL_SECONDS,
    down: false,
    failNext: 0,
    permanentStatus: null,
    refuseLeads: null,
  };
}

const httpStatus = z.number().int().min(400).max(599);
// A header value: printable ASCII only, so a fault cannot inject a header.
const httpDate = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[\x20-\x7e]+$/, { error: 'must be printable ASCII (an HTTP date)' });

const patchSchema = z.strictObject({
  errorRate: z.number().min(0).max(1).optional(),
  errorStatus: httpStatus.optional(),
  seed: z.number().int().min(0).max(0xffffffff).optional(),
  latencyMs: z.number().int().min(0).max(600_000).optional(),
  tokenLatencyMs: z.number().int().min(0).max(600_000).optional(),
  hang: z.boolean().optional(),
  rateLimit: z
    .strictObject({
      status: httpStatus.default(429),
      retryAfter: z.union([z.number().int().min(0).max(86_400), httpDate]),
      every: z.number().int().min(1).default(1),
    })
    .nullable()
    .optional(),
  reject401: z.boolean().optional(),
  tokenTtlSeconds: z
    .number()
    .int()
    .min(1)
    .max(86_400 * 30)
    .optional(),
  down: z.boolean().optional(),
  failNext: z.number().int().min(0).optional(),
  permanentStatus: httpStatus.nullable().optional(),
  refuseLeads: z
    .strictObject({
      emailContains: z.string().min(1).max(200).nullable().default(null),
      leadKeys: z.array(z.string().min(1).max(200)).max(10_000).default([]),
      every: z.number().int().min(1).nullable().default(null),
      reason: z
        .string()
        .min(1)
        .max(200)
        .regex(/^[\x20-\x7e]+$/, { error: 'must be printable ASCII' })
        .default('refused by the sandbox (fault)'),
    })
    .refine((f) => f.emailContains !== null || f.leadKeys.length > 0 || f.every !== null, {
      error: 'names no lead to refuse: give emailContains, leadKeys or every',
    })
    .nullable()
    .optional(),
});

/** Validate a change of faults (from code or JSON); throws `INVALID_FAULTS` naming the field. */
export function parseFaultsPatch(input: unknown): z.output<typeof patchSchema> {
  const parsed = patchSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((issue) => {
    const where = issue.path.length > 0 ? issue.path.join('.') : 'faults';
    return `${where}: ${issue.message}`;
  });
  throw new SandboxError('INVALID_FAULTS', `invalid faults: ${problems.join('; ')}`);
}

/** A seeded 32-bit generator (mulberry32): small, fast, and the same sequence for the same seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What a fault makes of one request that reached the handler. */
export type FaultAnswer =
  | { kind: 'none' }
  | { kind: 'status'; status: number; reason: string; headers?: Record<string, string> };

const NONE: FaultAnswer = { kind: 'none' };

/**
 * The faults in force and the counters they need (the rate-limit count, the random draws).
 * `/health` draws from its own stream, so health checks never shift which batches fail.
 */
export class FaultState {
  #faults: SandboxFaults;
  #leadsDraw: () => number;
  #healthDraw: () => number;
  #rateLimitCount = 0;
  #refuseCount = 0;

  constructor(initial: SandboxFaults) {
    this.#faults = initial;
    this.#leadsDraw = seededRandom(initial.seed);
    this.#healthDraw = seededRandom(initial.seed ^ 0x9e3779b9);
  }

  get current(): Readonly<SandboxFaults> {
    return this.#faults;
  }

  /** Apply a validated change. A new seed restarts the draws; a new rate limit restarts its count. */
  apply(patch: z.output<typeof patchSchema>): SandboxFaults {
    const next: SandboxFaults = { ...this.#faults };
    for (const [key, value] of Object.entries(patch)) {
      if (value !== undefined) (next as unknown as Record<string, unknown>)[key] = value;
    }
    this.#faults = next;
    if (patch.seed !== undefined) {
      this.#leadsDraw = seededRandom(next.seed);
      this.#healthDraw = seededRandom(next.seed ^ 0x9e3779b9);
    }
    if (patch.rateLimit !== undefined) this.#rateLimitCount = 0;
    if (patch.refuseLeads !== undefined) this.#refuseCount = 0;
    return { ...next };
  }

  /** The injected answer for one `POST /api/leads`, checked before authentication. */
  beforeLeads(): FaultAnswer {
    const f = this.#faults;
    if (f.rateLimit !== null) {
      this.#rateLimitCount += 1;
      if (this.#rateLimitCount % f.rateLimit.every === 0) {
        return {
          kind: 'status',
          status: f.rateLimit.status,
          reason: 'rate_limited',
          headers: { 'retry-after': String(f.rateLimit.retryAfter) },
        };
      }
    }
    if (f.failNext > 0) {
      this.#faults = { ...f, failNext: f.failNext - 1 };
      return { kind: 'status', status: 503, reason: 'unavailable' };
    }
    if (f.errorRate > 0 && this.#leadsDraw() < f.errorRate) {
      return { kind: 'status', status: f.errorStatus, reason: 'unavailable' };
    }
    if (f.reject401) return { kind: 'status', status: 401, reason: 'invalid_token' };
    return NONE;
  }

  /** The injected answer for one `GET /health`. */
  beforeHealth(): FaultAnswer {
    const f = this.#faults;
    if (f.errorRate > 0 && this.#healthDraw() < f.errorRate) {
      return { kind: 'status', status: f.errorStatus, reason: 'unavailable' };
    }
    return NONE;
  }

  /** The refusal of an authenticated, well-formed batch, if one is set. */
  permanentRefusal(): FaultAnswer {
    const status = this.#faults.permanentStatus;
    return status === null ? NONE : { kind: 'status', status, reason: 'rejected' };
  }

  /**
   * Whether the `refuseLeads` fault refuses this lead (each lead of an accepted-for-reading batch is
   * asked once, in order, which drives the `every` count): the reason, or null.
   */
  refusesLead(leadKey: string, email: string | null): string | null {
    const f = this.#faults.refuseLeads;
    if (f === null) return null;
    this.#refuseCount += 1;
    const wanted = f.emailContains?.toLowerCase();
    const byEmail = wanted !== undefined && email?.toLowerCase().includes(wanted) === true;
    const byKey = f.leadKeys.includes(leadKey);
    const byCount = f.every !== null && this.#refuseCount % f.every === 0;
    return byEmail || byKey || byCount ? f.reason : null;
  }
}
