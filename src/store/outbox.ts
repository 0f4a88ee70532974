import { sql } from 'kysely';
import { addDailyUsage } from './daily-usage.js';
import type { Executor, StoreTransaction } from './executor.js';
import { leadFromRow } from './leads.js';
import type { Delivery, DeliveryState, Lead } from './schema.js';

// ---- leads for a cycle ----

/**
 * Every score a lead can have: the whole numbers 0 to 100 (the table's check; every path that stores a
 * lead takes whole numbers only, and PostgreSQL's column is an integer). Named one by one, they let the
 * expiry read `leads_eligible` (score, then age) as one range of ages per score, instead of every
 * pending lead. A fraction written into a SQLite file by hand would not be found by it; such a lead is
 * still never sent once stale, as the selection checks freshness itself (`selectEligible`).
 */
const EVERY_SCORE: readonly number[] = Array.from({ length: 101 }, (_, score) => score);

/**
 * Pending leads past the freshness cutoff become `expired` (never sent); returns their ids. Found
 * through `leads_eligible`: for each score, the pending leads older than the cutoff (0017).
 */
export async function expireStalePending(
  db: Executor,
  cutoff: number,
  now: number,
  reason: string,
): Promise<number[]> {
  const rows = await expiryStatement(db, cutoff, now, reason).execute();
  return rows.map((r) => r.id);
}

/** The statement `expireStalePending` runs (its plan is tested on both backends). */
export function expiryStatement(db: Executor, cutoff: number, now: number, reason: string) {
  return db
    .updateTable('leads')
    .set({ state: 'expired', state_reason: reason, updated_at: now })
    .where(sql<boolean>`state = 'pending'`)
    .where('score', 'in', EVERY_SCORE)
    .where('source_ts', '<', cutoff)
    .returning('id');
}

/**
 * The eligible leads, best score first (then oldest first): pending, score ≥ min, fresh; for a dry run,
 * not dry-run before. The constant `state = 'pending'` lets PostgreSQL use the partial index.
 */
export async function selectEligible(
  db: Executor,
  options: {
    minScore: number;
    freshSince: number;
    limit: number;
    notDryRun: boolean;
    /** PostgreSQL, in the claiming transaction: lock the rows, passing over those another transaction holds. */
    skipLocked?: boolean;
    /** Live: real leads only (a synthetic lead is never sent). */
    realOnly?: boolean;
  },
): Promise<Lead[]> {
  if (options.limit <= 0) return [];
  let query = db
    .selectFrom('leads')
    .selectAll()
    .where(sql<boolean>`state = 'pending'`)
    .where('score', '>=', options.minScore)
    .where('source_ts', '>=', options.freshSince)
    .orderBy('score', 'desc')
    .orderBy('source_ts', 'asc')
    .orderBy('id', 'asc')
    .limit(options.limit);
  if (options.notDryRun) query = query.where('dry_run_at', 'is', null);
  if (options.realOnly) query = query.where('synthetic', '=', 0);
  if (options.skipLocked) query = query.forUpdate().skipLocked();
  return (await query.execute()).map(leadFromRow);
}

// ---- deliveries (the outbox) ----

/**
 * Commit a batch before its first attempt: the delivery with its idempotency key, each lead's own key,
 * and the leads' new state (live: in_flight; dry run: marked, still pending).
 */
export async function createDelivery(
  trx: StoreTransaction,
  delivery: {
    batchKey: string;
    cycleId: number;
    kind: 'live' | 'dry_run';
    payloadSha256: string;
    now: number;
    /** A masked summary of the leads, kept with the batch (dry runs: what would have been sent). */
    summary?: unknown;
  },
  leads: { id: number; leadKey: string; exposure: number }[],
): Promise<number> {
  const row = await trx
    .insertInto('deliveries')
    .values({
      batch_key: delivery.batchKey,
      cycle_id: delivery.cycleId,
      kind: delivery.kind,
      state: delivery.kind === 'live' ? 'queued' : 'dry_run',
      lead_count: leads.length,
      payload_sha256: delivery.payloadSha256,
      summary: delivery.summary === undefined ? null : JSON.stringify(delivery.summary),
      created_at: delivery.now,
      updated_at: delivery.now,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  await trx
    .insertInto('delivery_leads')
    .values(
      leads.map((l) => ({
        delivery_id: row.id,
        lead_id: l.id,
        lead_key: l.leadKey,
        live: delivery.kind === 'live' ? 1 : 0,
      })),
    )
    .execute();
  const ids = leads.map((l) => l.id);
  const claimed =
    delivery.kind === 'live'
      ? await trx
          .updateTable('leads')
          .set({ state: 'in_flight', updated_at: delivery.now })
          .where('id', 'in', ids)
          .where(sql<boolean>`state = 'pending'`)
          .executeTakeFirst()
      : await trx
          .updateTable('leads')
          .set({ dry_run_at: delivery.now, updated_at: delivery.now })
          .where('id', 'in', ids)
          .where(sql<boolean>`state = 'pending'`)
          .executeTakeFirst();
  if (Number(claimed.numUpdatedRows) !== ids.length) {
    // Another runner claimed one of them first: roll the whole batch back rather than send part of it.
    throw new ClaimConflict(ids.length - Number(claimed.numUpdatedRows));
  }
  if (delivery.kind === 'live') {
    await addDailyUsage(
      trx,
      delivery.now,
      leads.length,
      leads.reduce((sum, l) => sum + l.exposure, 0),
    );
  }
  return row.id;
}

export class ClaimConflict extends Error {
  override readonly name = 'ClaimConflict';
  constructor(readonly lost: number) {
    super(`${lost} lead(s) were claimed by someone else`);
  }
}

/** Deliveries due for an attempt: retries first (they were queued earlier), then new batches. */
export async function dueDeliveries(db: Executor, now: number, limit: number): Promise<Delivery[]> {
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb('state', '=', 'queued'),
        eb.and([eb('state', '=', 'retry_wait'), eb('next_attempt_at', '<=', now)]),
      ]),
    )
    .orderBy(sql`case when state = 'retry_wait' then 0 else 1 end`)
    .orderBy('id', 'asc')
    .limit(limit)
    .execute();
}

/** Leads in live batches not yet sent to a conclusion (queued, or waiting for a retry): one sum. */
export async function waitingLeadCount(db: Executor): Promise<number> {
  const row = await db
    .selectFrom('deliveries')
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('lead_count'), eb.lit(0)).as('leads'))
    .where('state', 'in', ['queued', 'retry_wait'])
    .executeTakeFirstOrThrow();
  return Number(row.leads);
}

/** The earliest time a waiting retry falls due, or null when none waits. */
export async function nextRetryAt(db: Executor): Promise<number | null> {
  const row = await db
    .selectFrom('deliveries')
    .select((eb) => eb.fn.min<number>('next_attempt_at').as('at'))
    .where('state', '=', 'retry_wait')
    .executeTakeFirst();
  return row?.at === null || row?.at === undefined ? null : Number(row.at);
}

/** The leads of a delivery with their keys, in a stable order. */
export async function deliveryLeads(
  db: Executor,
  deliveryId: number,
): Promise<(Lead & { lead_key: string })[]> {
  const rows = await db
    .selectFrom('delivery_leads as dl')
    .innerJoin('leads as l', 'l.id', 'dl.lead_id')
    .selectAll('l')
    .select('dl.lead_key')
    .where('dl.delivery_id', '=', deliveryId)
    .orderBy('l.id')
    .execute();
  return rows.map(leadFromRow);
}

export async function setDeliveryState(
  db: Executor,
  id: number,
  change: {
    state: DeliveryState;
    now: number;
    attemptsDelta?: number;
    /** Count one more failed answer (spends a retry) or one more unanswered request (a replay). */
    failedAnswersDelta?: number;
    unansweredDelta?: number;
    /** A released batch asks the partner again from scratch: both counts back to 0. */
    resetOutcomeCounts?: boolean;
    partnerMayHave?: boolean;
    nextAttemptAt?: number | null;
    lastStatus?: number | null;
    lastOutcome?: string | null;
  },
): Promise<void> {
  await db
    .updateTable('deliveries')
    .set((eb) => ({
      state: change.state,
      updated_at: change.now,
      ...(change.attemptsDelta ? { attempts: eb('attempts', '+', change.attemptsDelta) } : {}),
      ...(change.failedAnswersDelta
        ? { failed_answers: eb('failed_answers', '+', change.failedAnswersDelta) }
        : {}),
      ...(change.unansweredDelta ? { unanswered: eb('unanswered', '+', change.unansweredDelta) } : {}),
      ...(change.resetOutcomeCounts ? { failed_answers: 0, unanswered: 0 } : {}),
      ...(change.partnerMayHave !== undefined ? { partner_may_have: change.partnerMayHave ? 1 : 0 } : {}),
      ...(change.nextAttemptAt !== undefined ? { next_attempt_at: change.nextAttemptAt } : {}),
      ...(change.lastStatus !== undefined ? { last_status: change.lastStatus } : {}),
      ...(change.lastOutcome !== undefined ? { last_outcome: change.lastOutcome } : {}),
    }))
    .where('id', '=', id)
    .execute();
}

export async function setLeadsState(
  db: Executor,
  ids: number[],
  change: {
    state: Lead['state'];
    reason: string | null;
    now: number;
    exported?: boolean;
    /** Only the leads still in this state change (the others are left as they are). */
    from?: Lead['state'];
  },
): Promise<number[]> {
  if (ids.length === 0) return [];
  const changed = await db
    .updateTable('leads')
    .set({
      state: change.state,
      state_reason: change.reason,
      updated_at: change.now,
      ...(change.exported ? { exported_at: change.now } : {}),
    })
    .where('id', 'in', ids)
    .$if(change.from !== undefined, (q) => q.where('state', '=', change.from!))
    .returning('id')
    .execute();
  return changed.map((r) => r.id);
}

/** Deliveries a crash left mid-request: their requests may or may not have reached the partner. */
export async function deliveriesInState(db: Executor, state: DeliveryState): Promise<Delivery[]> {
  return db.selectFrom('deliveries').selectAll().where('state', '=', state).orderBy('id').execute();
}

/** The scores of the leads dry-run in batches created in [from, to) (stability's export quality). */
export async function dryRunScoresBetween(db: Executor, from: number, to: number): Promise<number[]> {
  const rows = await db
    .selectFrom('delivery_leads')
    .innerJoin('deliveries', 'deliveries.id', 'delivery_leads.delivery_id')
    .innerJoin('leads', 'leads.id', 'delivery_leads.lead_id')
    .select('leads.score')
    .where('deliveries.kind', '=', 'dry_run')
    .where('deliveries.created_at', '>=', from)
    .where('deliveries.created_at', '<', to)
    .execute();
  return rows.map((r) => r.score);
}

// ---- quarantine ----

/** The leads with these ids (those that exist), for an operator's action on them. */
export async function leadsWithIds(db: Executor, ids: number[]): Promise<Lead[]> {
  if (ids.length === 0) return [];
  return (await db.selectFrom('leads').selectAll().where('id', 'in', ids).execute()).map(leadFromRow);
}

export async function quarantinedLeads(db: Executor, limit: number, beforeId?: number): Promise<Lead[]> {
  let query = db
    .selectFrom('leads')
    .selectAll()
    .where('state', '=', 'quarantined')
    .orderBy('id', 'desc')
    .limit(limit);
  if (beforeId !== undefined) query = query.where('id', '<', beforeId);
  return (await query.execute()).map(leadFromRow);
}

/** Let a quarantined lead into a new delivery: its old one no longer holds it. */
export async function releaseFromDeliveries(db: Executor, leadId: number): Promise<void> {
  await db
    .updateTable('delivery_leads')
    .set({ released: 1 })
    .where('lead_id', '=', leadId)
    .where('live', '=', 1)
    .execute();
}

/**
 * Quarantined batches the partner may hold (their last request went unanswered) that carry any of
 * `leadIds`, each with every lead it carries (a release replays the whole batch under its key).
 */
export async function replayableDeliveries(
  db: Executor,
  leadIds: number[],
): Promise<{ delivery: Delivery; leadIds: number[] }[]> {
  if (leadIds.length === 0) return [];
  const deliveries = await db
    .selectFrom('deliveries')
    .selectAll()
    .where('state', '=', 'quarantined')
    .where('partner_may_have', '=', 1)
    .where('kind', '=', 'live')
    .where('id', 'in', (eb) =>
      eb
        .selectFrom('delivery_leads')
        .select('delivery_id')
        .where('lead_id', 'in', leadIds)
        .where('live', '=', 1)
        .where('released', '=', 0),
    )
    .orderBy('id')
    .execute();
  const out: { delivery: Delivery; leadIds: number[] }[] = [];
  for (const delivery of deliveries) {
    const rows = await db
      .selectFrom('delivery_leads')
      .select('lead_id')
      .where('delivery_id', '=', delivery.id)
      .orderBy('lead_id')
      .execute();
    out.push({ delivery, leadIds: rows.map((r) => r.lead_id) });
  }
  return out;
}

/** One page of deliveries, newest first, optionally in one state (keyset paging by id). */
export async function listDeliveries(
  db: Executor,
  options: { state?: DeliveryState; limit: number; beforeId?: number },
): Promise<Delivery[]> {
  let query = db.selectFrom('deliveries').selectAll().orderBy('id', 'desc').limit(options.limit);
  if (options.state) query = query.where('state', '=', options.state);
  if (options.beforeId !== undefined) query = query.where('id', '<', options.beforeId);
  return query.execute();
}

/**
 * Per minute in [from, to) (minute index = epoch / 60 s → leads): leads recorded by dry runs (by
 * when the dry-run batch was made), or leads in batches quarantined (by when the batch was: a
 * quarantined batch keeps its state, so a later release does not rewrite the history).
 */
export async function batchLeadsPerMinute(
  db: Executor,
  outcome: 'dry_run' | 'quarantined',
  from: number,
  to: number,
): Promise<Map<number, number>> {
  const column = outcome === 'dry_run' ? 'created_at' : 'updated_at';
  let query = db
    .selectFrom('deliveries')
    .select([
      sql<string | number>`${sql.ref(column)} / 60000`.as('minute'),
      sql<string | number>`sum(lead_count)`.as('n'),
    ])
    .where(column, '>=', from)
    .where(column, '<', to)
    .groupBy(sql`${sql.ref(column)} / 60000`);
  query =
    outcome === 'dry_run' ? query.where('kind', '=', 'dry_run') : query.where('state', '=', 'quarantined');
  const rows = await query.execute();
  return new Map(rows.map((r) => [Math.floor(Number(r.minute)), Number(r.n)]));
}

/** A cycle's live batches (the outbox rows it queued), oldest first. */
export async function liveDeliveriesOfCycle(db: Executor, cycleId: number): Promise<Delivery[]> {
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where('cycle_id', '=', cycleId)
    .where('kind', '=', 'live')
    .orderBy('id')
    .execute();
}
