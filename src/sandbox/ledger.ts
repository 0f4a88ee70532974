import type { TokenCheck } from './tokens.js';

/** What the sandbox has seen, for tests and operators. Admin requests are not counted. */
export interface SandboxStats {
  requests: {
    total: number;
    byPath: Record<string, number>;
    /** Answers by status; dropped (`down`) and hung requests have none. */
    byStatus: Record<string, number>;
    dropped: number;
    hung: number;
  };
  tokens: {
    issued: number;
    refused: number;
    /** Bearer tokens presented with `POST /api/leads`, by the partner's own check on arrival. */
    presented: { valid: number; expired: number; unknown: number };
    /**
     * Of the valid tokens presented, the one with the least life left as a share of its lifetime:
     * life left (ms) and lifetime (ms) on the sandbox's clock, counted from when it issued the token.
     * Null before any.
     */
    leastLifeLeft: { lifeLeftMs: number; lifetimeMs: number } | null;
  };
  health: { checks: number };
  batches: {
    /** Every `POST /api/leads` that arrived. */
    received: number;
    accepted: number;
    replayed: number;
    /** Answered (or dropped, or left hanging) by an injected fault. */
    failedByFault: number;
    /** Refused for a bad token, header or body (400, 401, 413, 422). */
    refused: number;
    /** Replays whose leads differ from the batch first sent under that key: a client bug. */
    replayMismatches: number;
  };
  /** Leads accepted and duplicates (CRM mode: conflicts). Refused leads are in the per-lead ledger. */
  leads: { accepted: number; duplicates: number };
  /** Arrival times (the sandbox clock's ms) of the last 10,000 partner requests, oldest first. */
  requestStarts: number[];
}

export interface BatchRecord {
  batchKey: string;
  receivedAt: number;
  /** Every lead key in the batch, in order. */
  leads: string[];
  /** Those among them already accepted under an earlier batch (or earlier in this one). */
  duplicates: string[];
}

export interface SandboxRecords {
  /** Every accepted batch (a batch key's first successful request), in arrival order. */
  batches: BatchRecord[];
  /** Lead key → every batch key that carried it. More than one means the lead was sent twice. */
  leadBatches: Record<string, string[]>;
}

export interface BatchResponse {
  batch: string;
  accepted: number;
  duplicates: number;
  replayed: boolean;
  results: { idempotency_key: string; status: 'accepted' | 'duplicate' }[];
}

/**
 * What the sandbox did with one lead key, over every request that carried it in a batch it read
 * (authenticated and well formed). For reconciling against the sender: nothing lost (`accepted`),
 * nothing sent twice (`duplicates`), refused leads known (`refusals`).
 */
export interface SandboxLeadRecord {
  /** Times a batch it read carried this lead (replays of a known batch key included). */
  received: number;
  /** Accepted once, ever: when (the sandbox clock's ms), or null. */
  acceptedAt: number | null;
  /** The record id the CRM gave it (CRM mode); null in today's contract or before acceptance. */
  id: string | null;
  /** Times it came again after it was accepted (today's `duplicate`, the CRM's `CONFLICT`). */
  duplicates: number;
  /** Times a known batch key was replayed with it (today's contract only). */
  replays: number;
  /** Each refusal's reason, in order (a validation error, or the `refuseLeads` fault). */
  refusals: string[];
}

/** The per-lead ledger, by lead key. */
export type SandboxLeadRecords = Record<string, SandboxLeadRecord>;

const MAX_REQUEST_STARTS = 10_000;
/** Paths counted under their own name; anything else is `other`, so a scan cannot grow the map. */
const KNOWN_PATHS = new Set([
  '/api/leads',
  '/health',
  '/oauth/token',
  '/crm/v3/objects/contacts/batch/create',
  '/crm/v3/health',
]);

/** The sandbox's memory: counters, accepted batches, and which lead keys it has accepted. */
export class Ledger {
  #stats = emptyStats();
  #starts: number[] = [];
  #startsNext = 0;
  #batches = new Map<string, { record: BatchRecord; response: BatchResponse }>();
  #leadBatches = new Map<string, string[]>();
  #leads = new Map<string, SandboxLeadRecord>();
  /** CRM mode: the e-mail addresses held (lower case), each with the lead key it came with. */
  #emails = new Map<string, string>();
  #nextId = 1;

  /** The live counters, for the server to increment. */
  get counters(): Omit<SandboxStats, 'requestStarts'> {
    return this.#stats;
  }

  requestArrived(path: string, at: number): void {
    const s = this.#stats.requests;
    s.total += 1;
    const name = KNOWN_PATHS.has(path) ? path : 'other';
    s.byPath[name] = (s.byPath[name] ?? 0) + 1;
    // A ring buffer: the oldest start is overwritten once 10,000 are kept.
    if (this.#starts.length < MAX_REQUEST_STARTS) this.#starts.push(at);
    else this.#starts[this.#startsNext] = at;
    this.#startsNext = (this.#startsNext + 1) % MAX_REQUEST_STARTS;
  }

  /** The partner's check of the token a `POST /api/leads` presented. */
  tokenPresented(check: TokenCheck): void {
    const tokens = this.#stats.tokens;
    if (!check.ok) {
      tokens.presented[check.reason] += 1;
      return;
    }
    tokens.presented.valid += 1;
    const least = tokens.leastLifeLeft;
    if (least === null || check.lifeLeftMs / check.lifetimeMs < least.lifeLeftMs / least.lifetimeMs) {
      tokens.leastLifeLeft = { lifeLeftMs: check.lifeLeftMs, lifetimeMs: check.lifetimeMs };
    }
  }

  /** A static bearer token (CRM mode) presented: valid, or unknown. */
  staticTokenPresented(ok: boolean): void {
    this.#stats.tokens.presented[ok ? 'valid' : 'unknown'] += 1;
  }

  answered(status: number): void {
    const byStatus = this.#stats.requests.byStatus;
    byStatus[status] = (byStatus[status] ?? 0) + 1;
  }

  /** The stored answer for a batch key already accepted, counted as a replay. */
  replay(batchKey: string, leadKeys: readonly string[]): BatchResponse | undefined {
    const stored = this.#batches.get(batchKey);
    if (stored === undefined) return undefined;
    this.#stats.batches.replayed += 1;
    for (const leadKey of leadKeys) {
      const lead = this.#lead(leadKey);
      lead.received += 1;
      lead.replays += 1;
    }
    const sent = stored.record.leads;
    if (sent.length !== leadKeys.length || sent.some((k, i) => k !== leadKeys[i])) {
      this.#stats.batches.replayMismatches += 1;
    }
    return { ...stored.response, replayed: true };
  }

  /** Accept a new batch: each lead key is accepted once, ever; later carriers get `duplicate`. */
  accept(batchKey: string, leadKeys: readonly string[], at: number): BatchResponse {
    const results: BatchResponse['results'] = [];
    const duplicates: string[] = [];
    for (const leadKey of leadKeys) {
      const carriers = this.#leadBatches.get(leadKey);
      const lead = this.#lead(leadKey);
      lead.received += 1;
      if (carriers === undefined) {
        this.#leadBatches.set(leadKey, [batchKey]);
        lead.acceptedAt = at;
        results.push({ idempotency_key: leadKey, status: 'accepted' });
      } else {
        if (!carriers.includes(batchKey)) carriers.push(batchKey);
        lead.duplicates += 1;
        duplicates.push(leadKey);
        results.push({ idempotency_key: leadKey, status: 'duplicate' });
      }
    }
    const response: BatchResponse = {
      batch: batchKey,
      accepted: leadKeys.length - duplicates.length,
      duplicates: duplicates.length,
      replayed: false,
      results,
    };
    this.#batches.set(batchKey, {
      record: { batchKey, receivedAt: at, leads: [...leadKeys], duplicates },
      response,
    });
    const s = this.#stats;
    s.batches.accepted += 1;
    s.leads.accepted += response.accepted;
    s.leads.duplicates += response.duplicates;
    return response;
  }

  /** A lead of a batch read in full and refused as a whole (today's contract): received and refused. */
  refusedWithBatch(leadKey: string, reason: string | null): void {
    const lead = this.#lead(leadKey);
    lead.received += 1;
    if (reason !== null) lead.refusals.push(reason);
  }

  /**
   * One CRM record: accepted (a new id), a conflict (its lead key, or its e-mail under another key,
   * is held already), or refused for `refusal`. The CRM has no batch key: each record stands alone.
   */
  crmRecord(
    leadKey: string,
    email: string | null,
    refusal: string | null,
    at: number,
  ):
    | { outcome: 'accepted'; id: string }
    | { outcome: 'conflict'; on: 'lead key' | 'e-mail'; existingId: string }
    | { outcome: 'refused' } {
    const lead = this.#lead(leadKey);
    lead.received += 1;
    const leads = this.#stats.leads;
    if (refusal !== null) {
      lead.refusals.push(refusal);
      return { outcome: 'refused' };
    }
    const emailKey = email?.toLowerCase() ?? null;
    const heldEmail = emailKey === null ? undefined : this.#emails.get(emailKey);
    if (lead.acceptedAt !== null || (heldEmail !== undefined && heldEmail !== leadKey)) {
      lead.duplicates += 1;
      leads.duplicates += 1;
      const byKey = lead.acceptedAt !== null;
      const holder = byKey ? lead : this.#leads.get(heldEmail!)!;
      return { outcome: 'conflict', on: byKey ? 'lead key' : 'e-mail', existingId: holder.id ?? '' };
    }
    lead.acceptedAt = at;
    lead.id = String(this.#nextId++);
    if (emailKey !== null) this.#emails.set(emailKey, leadKey);
    leads.accepted += 1;
    return { outcome: 'accepted', id: lead.id };
  }

  /** A CRM batch read and answered per record. */
  crmBatchAnswered(): void {
    this.#stats.batches.accepted += 1;
  }

  /** The per-lead ledger: every lead key of every batch read, in first-arrival order. */
  leads(): SandboxLeadRecords {
    return Object.fromEntries([...this.#leads].map(([k, v]) => [k, structuredClone(v)]));
  }

  #lead(leadKey: string): SandboxLeadRecord {
    let lead = this.#leads.get(leadKey);
    if (lead === undefined) {
      lead = { received: 0, acceptedAt: null, id: null, duplicates: 0, replays: 0, refusals: [] };
      this.#leads.set(leadKey, lead);
    }
    return lead;
  }

  snapshot(): SandboxStats {
    const ordered =
      this.#starts.length < MAX_REQUEST_STARTS
        ? [...this.#starts]
        : [...this.#starts.slice(this.#startsNext), ...this.#starts.slice(0, this.#startsNext)];
    return { ...structuredClone(this.#stats), requestStarts: ordered };
  }

  records(): SandboxRecords {
    return {
      batches: [...this.#batches.values()].map(({ record }) => structuredClone(record)),
      leadBatches: Object.fromEntries([...this.#leadBatches].map(([k, v]) => [k, [...v]])),
    };
  }

  reset(): void {
    this.#stats = emptyStats();
    this.#starts = [];
    this.#startsNext = 0;
    this.#batches.clear();
    this.#leadBatches.clear();
    this.#leads.clear();
    this.#emails.clear();
    this.#nextId = 1;
  }
}

function emptyStats(): Omit<SandboxStats, 'requestStarts'> {
  return {
    requests: { total: 0, byPath: {}, byStatus: {}, dropped: 0, hung: 0 },
    tokens: {
      issued: 0,
      refused: 0,
      presented: { valid: 0, expired: 0, unknown: 0 },
      leastLifeLeft: null,
    },
    health: { checks: 0 },
    batches: { received: 0, accepted: 0, replayed: 0, failedByFault: 0, refused: 0, replayMismatches: 0 },
    leads: { accepted: 0, duplicates: 0 },
  };
}
