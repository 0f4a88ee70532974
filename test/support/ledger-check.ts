/**
 * The delivery guarantee checked against the partner's own record (README "Delivery guarantee"): the
 * sandbox's ledger (`records()`, `stats()`) and the database must
 * tell the same story. Shared by the crash and fault suites (test/faults).
 *
 * The sandbox's ledger semantics: a batch key's first successful request is recorded (`batches`)
 * and a resend of it is a replay (the stored answer, `replayed`, `replayMismatches` when it carried
 * other leads); a lead key is accepted once, ever, and `leadBatches` lists every batch key that
 * carried it (more than one means the lead was sent twice under different batch keys).
 */
import SqliteDatabase from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { expect } from 'vitest';
import type { LeadState } from '../../src/policy/index.js';
import type { SandboxRecords, SandboxStats } from '../../src/sandbox/index.js';
import type { Database, DeliveryState } from '../../src/store/index.js';
import { leadFromRow } from '../../src/store/leads.js';

/** What the database says about every lead and every live delivery. */
export interface LedgerFacts {
  leads: { id: number; dedup_key: string; state: LeadState; state_reason: string | null }[];
  /** Each lead's place in each live delivery (released ones too: an operator let them out). */
  links: {
    delivery_id: number;
    batch_key: string;
    state: DeliveryState;
    attempts: number;
    lead_id: number;
    lead_key: string;
    released: number;
  }[];
  /** `recovery.resend` entries in the audit chain: batches a restart found mid-request. */
  resends: number;
}

/** The partner's side: a running sandbox, or the same two answers. */
export interface PartnerRecord {
  stats(): SandboxStats;
  records(): SandboxRecords;
}

export async function readLedgerFacts(db: Kysely<Database>): Promise<LedgerFacts> {
  const leads = await db
    .selectFrom('leads')
    .select(['id', 'dedup_key', 'state', 'state_reason'])
    .orderBy('id')
    .execute();
  const links = await db
    .selectFrom('deliveries as d')
    .innerJoin('delivery_leads as dl', 'dl.delivery_id', 'd.id')
    .select(['d.id as delivery_id', 'd.batch_key', 'd.state', 'd.attempts', 'dl.lead_id', 'dl.lead_key'])
    .select('dl.released')
    .where('d.kind', '=', 'live')
    .where('dl.live', '=', 1)
    .orderBy('d.id')
    .orderBy('dl.lead_id')
    .execute();
  const resends = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('action', '=', 'recovery.resend')
    .executeTakeFirstOrThrow();
  return {
    leads: leads.map((l) => ({ ...leadFromRow(l), id: Number(l.id) })),
    links: links.map((l) => ({
      ...l,
      delivery_id: Number(l.delivery_id),
      attempts: Number(l.attempts),
      lead_id: Number(l.lead_id),
      released: Number(l.released),
    })),
    resends: Number(resends.n),
  };
}

/** Read a SQLite database file (read-only, no process of the product needed) through the store's schema. */
export async function withSqliteFile<T>(
  file: string,
  read: (db: Kysely<Database>) => Promise<T>,
): Promise<T> {
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({
      database: new SqliteDatabase(file, { readonly: true, fileMustExist: true }),
    }),
  });
  try {
    return await read(db);
  } finally {
    await db.destroy();
  }
}

export interface LedgerExpectations {
  /** The lead states allowed at the end. Default: exported or quarantined (a run to completion). */
  finalStates?: readonly LeadState[];
  /** How many leads the database must hold. */
  leadCount?: number;
  /** Requests allowed to start in any `rateWindowMs` at the partner (default 5 per 1,000 ms); null: not checked. */
  rateLimit?: number | null;
  rateWindowMs?: number;
}

export interface LedgerSummary {
  byState: Record<string, number>;
  exported: number;
  acceptedLeads: number;
  acceptedBatches: number;
  replays: number;
  resends: number;
  busiestWindow: number;
}

const UNFINISHED_DELIVERY: readonly DeliveryState[] = ['queued', 'sending', 'retry_wait'];
/** A lead in one of these is not done: it must be visibly waiting in a live delivery. */
const WAITING: readonly LeadState[] = ['in_flight'];

/**
 * Check the database against the partner's ledger, with vitest's `expect`: nothing lost, nothing
 * sent twice, nothing sent that was never queued, and the rate held at the partner.
 */
export function expectLedgerConsistent(
  facts: LedgerFacts,
  partner: PartnerRecord,
  expectations: LedgerExpectations = {},
): LedgerSummary {
  const finalStates = expectations.finalStates ?? ['exported', 'quarantined'];
  const stats = partner.stats();
  const records = partner.records();
  const { leads, links } = facts;
  if (expectations.leadCount !== undefined) expect(leads).toHaveLength(expectations.leadCount);

  const unreleased = links.filter((l) => l.released === 0);
  const liveOf = new Map<number, LedgerFacts['links']>();
  for (const link of unreleased) liveOf.set(link.lead_id, [...(liveOf.get(link.lead_id) ?? []), link]);

  // Invariant 8: every lead in exactly one visible state, with a reason where it is not exported;
  // a lead still on its way is in exactly one live delivery that is itself still on its way.
  for (const lead of leads) {
    expect(finalStates, `lead ${lead.id} is ${lead.state}`).toContain(lead.state);
    if (lead.state === 'quarantined' || lead.state === 'expired' || lead.state === 'archived') {
      expect(lead.state_reason, `lead ${lead.id} is ${lead.state} without a reason`).toBeTruthy();
    }
    if (WAITING.includes(lead.state)) {
      const live = liveOf.get(lead.id) ?? [];
      expect(live, `lead ${lead.id} is in_flight without one live delivery`).toHaveLength(1);
      expect(UNFINISHED_DELIVERY, `lead ${lead.id} is in_flight in a finished delivery`).toContain(
        live[0]!.state,
      );
    }
  }
  // Invariant 2 in the database: one live delivery per lead (none released in these runs counts twice).
  for (const [leadId, rows] of liveOf) {
    expect(rows, `lead ${leadId} is in more than one live delivery`).toHaveLength(1);
  }
  // A finished run leaves no delivery mid-way unless waiting leads are allowed.
  if (!finalStates.some((s) => WAITING.includes(s))) {
    for (const link of unreleased) {
      expect(UNFINISHED_DELIVERY, `delivery ${link.batch_key} left ${link.state} at the end`).not.toContain(
        link.state,
      );
    }
  }

  // Invariant 2 at the partner: each lead key accepted under exactly one batch key, and that pair is
  // one the database queued (nothing sent that was never queued); no duplicate, no replay of other leads.
  const queuedPairs = new Set(links.map((l) => `${l.lead_key} ${l.batch_key}`));
  for (const [leadKey, batchKeys] of Object.entries(records.leadBatches)) {
    expect(batchKeys, `lead ${leadKey} reached the partner under several batch keys`).toHaveLength(1);
    expect(queuedPairs.has(`${leadKey} ${batchKeys[0]}`), `${leadKey} sent but never queued so`).toBe(true);
  }
  expect(stats.leads.duplicates, 'the partner saw a lead again under another batch').toBe(0);
  expect(stats.batches.replayMismatches, 'a resent batch key carried other leads').toBe(0);
  for (const batch of records.batches) {
    const dbKeys = links.filter((l) => l.batch_key === batch.batchKey).map((l) => l.lead_key);
    expect([...batch.leads].sort(), `batch ${batch.batchKey}: the partner's leads vs the outbox's`).toEqual(
      dbKeys.sort(),
    );
  }

  // Nothing lost: the partner accepted exactly the leads the database has as exported, each under
  // the batch key of its accepted delivery, and no accepted batch is unknown to the database.
  const exported = leads.filter((l) => l.state === 'exported');
  expect(Object.keys(records.leadBatches)).toHaveLength(stats.leads.accepted);
  expect(exported.length, 'exported in the database vs accepted by the partner').toBe(stats.leads.accepted);
  for (const lead of exported) {
    const live = liveOf.get(lead.id) ?? [];
    expect(live, `exported lead ${lead.id} has no live delivery`).toHaveLength(1);
    expect(live[0]!.state, `exported lead ${lead.id}`).toBe('accepted');
    expect(
      records.leadBatches[live[0]!.lead_key],
      `exported lead ${lead.id} never reached the partner`,
    ).toEqual([live[0]!.batch_key]);
  }
  const acceptedInDb = new Set(links.filter((l) => l.state === 'accepted').map((l) => l.batch_key));
  expect(new Set(records.batches.map((b) => b.batchKey))).toEqual(acceptedInDb);
  expect(acceptedInDb.size).toBe(stats.batches.accepted);

  // Invariant 4: never more than the limit of request starts in any window, restarts included.
  let busiest = 0;
  const rateLimit = expectations.rateLimit === undefined ? 5 : expectations.rateLimit;
  if (rateLimit !== null) {
    const starts = [...stats.requestStarts].sort((a, b) => a - b);
    expect(starts).toHaveLength(stats.requests.total);
    const window = maxInAnyWindow(starts, expectations.rateWindowMs ?? 1_000);
    busiest = window.max;
    expect(window.max, `more than ${rateLimit} requests in the window from ${window.at}`).toBeLessThanOrEqual(
      rateLimit,
    );
  }

  const byState: Record<string, number> = {};
  for (const lead of leads) byState[lead.state] = (byState[lead.state] ?? 0) + 1;
  return {
    byState,
    exported: exported.length,
    acceptedLeads: stats.leads.accepted,
    acceptedBatches: stats.batches.accepted,
    replays: stats.batches.replayed,
    resends: facts.resends,
    busiestWindow: busiest,
  };
}

/** The most request starts in any closed window of `windowMs` (starts sorted ascending). */
export function maxInAnyWindow(
  starts: readonly number[],
  windowMs: number,
): { max: number; at: number | null } {
  let best = { max: 0, at: null as number | null };
  let j = 0;
  for (let i = 0; i < starts.length; i++) {
    while (starts[j]! < starts[i]! - windowMs) j++;
    if (i - j + 1 > best.max) best = { max: i - j + 1, at: starts[j]! };
  }
  return best;
}

/** One line for a test's log. */
export function describeLedger(summary: LedgerSummary): string {
  const states = Object.entries(summary.byState)
    .map(([state, n]) => `${state} ${n}`)
    .join(', ');
  return `leads: ${states}; partner accepted ${summary.acceptedLeads} lead(s) in ${summary.acceptedBatches} batch(es), ${summary.replays} replay(s); recovery resends ${summary.resends}; busiest 1 s: ${summary.busiestWindow} request(s)`;
}
