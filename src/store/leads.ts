import type SqliteDatabase from 'better-sqlite3';
import { sql } from 'kysely';
import type { LeadState } from '../policy/index.js';
import type { Dialect } from './dialect.js';
import type { Executor, Store, StoreTransaction } from './executor.js';
import type { DeliveryState, Lead, NewLead } from './schema.js';

/** Columns per row of a multi-row insert; keeps each statement under both backends' parameter limits. */
const INSERT_ROWS_PER_STATEMENT = 250;

/** Which identity of a lead a key stands for: its normalised e-mail or its external id. */
export type LeadIdentity = 'email' | 'external_id';

/** A lead `insertNewLeads` stored: its id, primary dedup key and source line. */
export interface InsertedLead {
  id: number;
  dedup_key: string;
  source_line: number;
}

/**
 * Insert leads, skipping any that matches a stored lead (or an earlier row of `rows`) on any of its
 * unique identities: its dedup key, its e-mail key or its external id key (0013). The database's
 * unique indexes decide, so a lead cannot be stored twice, not even by two ingests at once.
 * Returns the rows inserted, in no particular order.
 */
export async function insertNewLeads(db: Executor, rows: NewLead[]): Promise<InsertedLead[]> {
  const inserted: InsertedLead[] = [];
  for (let i = 0; i < rows.length; i += INSERT_ROWS_PER_STATEMENT) {
    const result = await db
      .insertInto('leads')
      .values(rows.slice(i, i + INSERT_ROWS_PER_STATEMENT))
      // No conflict target: a conflict on any unique index skips the row.
      .onConflict((oc) => oc.doNothing())
      .returning(['id', 'dedup_key', 'source_line'])
      .execute();
    inserted.push(...result);
  }
  return inserted;
}

/** The columns a new lead is inserted with, in the prepared statement's order. */
const NEW_LEAD_COLUMNS = [
  'dedup_key',
  'email_key',
  'external_id_key',
  'external_id',
  'name',
  'email',
  'phone',
  'company',
  'score',
  'source_ts',
  'value',
  'state',
  'state_reason',
  'ingested_at',
  'updated_at',
  'exported_at',
  'run_id',
  'source_line',
  'synthetic',
] as const satisfies readonly (keyof NewLead)[];

/**
 * Every column a new lead can carry is in the list (the multi-row insert of PostgreSQL writes them
 * all): a column added to the table and not here fails to compile. Left out on purpose: the id, and
 * the marks a lead gets later (its dry run, its erasure).
 */
type MissingColumns = Exclude<
  keyof NewLead,
  (typeof NEW_LEAD_COLUMNS)[number] | 'id' | 'dry_run_at' | 'erased_at'
>;
const everyColumn: [MissingColumns] extends [never] ? true : MissingColumns = true;
void everyColumn;

const PREPARED_INSERT = `insert into leads (${NEW_LEAD_COLUMNS.join(', ')})
  values (${NEW_LEAD_COLUMNS.map(() => '?').join(', ')}) on conflict do nothing`;

/** The prepared insert of a SQLite connection, made once: an ingest runs it a million times. */
const preparedInserts = new WeakMap<SqliteDatabase.Database, SqliteDatabase.Statement>();

/**
 * `insertNewLeads` for a bulk writer: on SQLite one prepared statement run per row on the store's
 * connection (inside `trx`, which holds that connection: SQLite has one), skipping the query
 * builder's compilation of a 5,000-parameter statement per 250 rows; on PostgreSQL the multi-row
 * inserts of `insertNewLeads`. The unique indexes decide the same way.
 */
export async function insertNewLeadsInBulk(
  store: Store,
  trx: StoreTransaction,
  rows: NewLead[],
): Promise<InsertedLead[]> {
  const raw = store.sqlite;
  if (raw === null) return insertNewLeads(trx, rows);
  let statement = preparedInserts.get(raw);
  if (statement === undefined) {
    statement = raw.prepare(PREPARED_INSERT);
    preparedInserts.set(raw, statement);
  }
  const inserted: InsertedLead[] = [];
  const values: unknown[] = new Array(NEW_LEAD_COLUMNS.length);
  for (const row of rows) {
    for (let i = 0; i < NEW_LEAD_COLUMNS.length; i++) values[i] = row[NEW_LEAD_COLUMNS[i]!] ?? null;
    const result = statement.run(values);
    if (result.changes === 1) {
      inserted.push({
        id: Number(result.lastInsertRowid),
        dedup_key: row.dedup_key,
        source_line: row.source_line,
      });
    }
  }
  return inserted;
}

/**
 * Insert leads as `insertNewLeads` does; returns the id of each row that was inserted, by dedup key.
 */
export async function insertLeadsSkippingDuplicates(
  db: Executor,
  rows: NewLead[],
): Promise<Map<string, number>> {
  const inserted = new Map<string, number>();
  for (const row of await insertNewLeads(db, rows)) inserted.set(row.dedup_key, row.id);
  return inserted;
}

/** A stored lead an identity key matched: where it came from, and the keys it holds. */
export interface LeadWithKeys {
  id: number;
  run_id: number;
  source_line: number;
  dedup_key: string;
  email_key: string | null;
  external_id_key: string | null;
}

/**
 * The stored leads holding any of these keys as their dedup key, e-mail key or external id key: the
 * leads a duplicate matched, for its reason. One statement per 250 keys (the indexes answer each).
 */
export async function findLeadsByIdentityKeys(db: Executor, keys: string[]): Promise<LeadWithKeys[]> {
  const found: LeadWithKeys[] = [];
  for (let i = 0; i < keys.length; i += INSERT_ROWS_PER_STATEMENT) {
    const slice = keys.slice(i, i + INSERT_ROWS_PER_STATEMENT);
    const rows = await db
      .selectFrom('leads')
      .select(['id', 'run_id', 'source_line', 'dedup_key', 'email_key', 'external_id_key'])
      .where((eb) =>
        eb.or([
          eb('email_key', 'in', slice),
          eb('external_id_key', 'in', slice),
          eb('dedup_key', 'in', slice),
        ]),
      )
      .execute();
    found.push(...rows);
  }
  return found;
}

/**
 * Leads by state, as the database keeps them (0014: triggers update the counts in the transaction
 * that changes a state): a few rows read, whatever the number of leads.
 */
export async function countLeadsByState(db: Executor): Promise<Partial<Record<LeadState, number>>> {
  const rows = await db
    .selectFrom('lead_state_counts')
    .select(['state', (eb) => eb.fn.sum<number | string>('n').as('count')])
    .groupBy('state')
    .execute();
  return Object.fromEntries(rows.filter((r) => Number(r.count) !== 0).map((r) => [r.state, Number(r.count)]));
}

/** Leads by state counted row by row (a scan of every lead): what the kept counts must equal. */
export async function scanLeadsByState(db: Executor): Promise<Partial<Record<LeadState, number>>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .groupBy('state')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.state, Number(r.count)]));
}

/** One page of leads, newest id first, after the `beforeId` cursor (keyset paging: stable under inserts). */
export async function listLeads(
  db: Executor,
  options: { state?: LeadState; limit: number; beforeId?: number },
): Promise<Lead[]> {
  let query = db.selectFrom('leads').selectAll().orderBy('id', 'desc').limit(options.limit);
  if (options.state) query = query.where('state', '=', options.state);
  if (options.beforeId !== undefined) query = query.where('id', '<', options.beforeId);
  return query.execute();
}

/** Leads exported per minute in [from, to): minute index (epoch / 60 s) → count. */
export async function exportedLeadsPerMinute(
  db: Executor,
  from: number,
  to: number,
): Promise<Map<number, number>> {
  const rows = await db
    .selectFrom('leads')
    .select([sql<string | number>`exported_at / 60000`.as('minute'), sql<string | number>`count(*)`.as('n')])
    .where('exported_at', '>=', from)
    .where('exported_at', '<', to)
    .groupBy(sql`exported_at / 60000`)
    .execute();
  return new Map(rows.map((r) => [Math.floor(Number(r.minute)), Number(r.n)]));
}

// ---- erasure and retention (migration 0008) ----

/** What an erased lead holds in its required text columns; the nullable ones become null. */
export const ERASED_MARKER = '(erased)';

/** The columns that hold a person's data; erasure overwrites every one of them. */
export const LEAD_PII_FIELDS = ['name', 'email', 'phone', 'company', 'external_id'] as const;
export type LeadPiiField = (typeof LEAD_PII_FIELDS)[number];

/** The end states `valhalla archive` takes (with `archived` leads that still hold their data). */
export const ARCHIVABLE_STATES = ['exported', 'expired', 'below_threshold', 'archived'] as const;
export type ArchivableState = (typeof ARCHIVABLE_STATES)[number];

/** Leads not complete: `valhalla archive` never touches them. */
export const INCOMPLETE_STATES = ['pending', 'in_flight', 'quarantined'] as const;
export type IncompleteState = (typeof INCOMPLETE_STATES)[number];

/** The predicate of the `leads_archivable` index (0008), word for word: PostgreSQL needs it to use the index. */
const ARCHIVABLE = sql<boolean>`(state in ('exported', 'expired', 'below_threshold') or (state = 'archived' and erased_at is null))`;

/** Every column that holds a person's data, erased; `erased_at` keeps the first erasure's time. */
function erasedColumns(now: number) {
  return {
    name: ERASED_MARKER,
    email: ERASED_MARKER,
    phone: null,
    company: null,
    external_id: null,
    erased_at: sql<number>`coalesce(erased_at, ${now})`,
  };
}

/**
 * Take the write lock first thing in `trx` on SQLite (a write that touches no row), so what the
 * transaction then reads stays true until it commits. PostgreSQL locks the rows it reads instead.
 */
export async function lockLeadsForWrite(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'sqlite') await sql`update leads set id = id where 0`.execute(trx);
}

/**
 * The leads of one person, for erasure: by id, or by e-mail (its keyed hash as the dedup key or the
 * e-mail key, which also finds a lead already erased, whatever its dedup rule; or the stored normalised
 * e-mail, which finds a lead stored before 0013 that shares its e-mail with an earlier one). Locked for
 * update on PostgreSQL.
 */
export async function findLeadsForErasure(
  trx: StoreTransaction,
  dialect: Dialect,
  match: { id: number } | { email: string; emailDedupKey: string },
): Promise<Lead[]> {
  let query = trx.selectFrom('leads').selectAll().orderBy('id');
  query =
    'id' in match
      ? query.where('id', '=', match.id)
      : query.where((eb) =>
          eb.or([
            eb('dedup_key', '=', match.emailDedupKey),
            eb('email_key', '=', match.emailDedupKey),
            eb('email', '=', match.email),
          ]),
        );
  if (dialect === 'postgres') query = query.forUpdate();
  return query.execute();
}

/** Erase one lead's personal data, and set its state (and reason) when given; false if it was not there. */
export async function eraseLeadData(
  trx: StoreTransaction,
  id: number,
  change: { now: number; state?: Lead['state']; reason?: string | null },
): Promise<boolean> {
  const result = await trx
    .updateTable('leads')
    .set({
      ...erasedColumns(change.now),
      updated_at: change.now,
      ...(change.state !== undefined ? { state: change.state } : {}),
      ...(change.reason !== undefined ? { state_reason: change.reason } : {}),
    })
    .where('id', '=', id)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The live batches that carried a lead, oldest first, with when their requests were made. */
export async function liveBatchesOfLead(
  db: Executor,
  leadId: number,
): Promise<
  {
    deliveryId: number;
    batchKey: string;
    leadKey: string;
    state: DeliveryState;
    attempts: number;
    updatedAt: number;
    firstRequestAt: number | null;
    lastRequestAt: number | null;
  }[]
> {
  const rows = await db
    .selectFrom('delivery_leads as dl')
    .innerJoin('deliveries as d', 'd.id', 'dl.delivery_id')
    .leftJoin('requests as r', (join) =>
      join.onRef('r.delivery_id', '=', 'd.id').on('r.endpoint', '=', 'leads'),
    )
    .select((eb) => [
      'd.id as deliveryId',
      'd.batch_key as batchKey',
      'dl.lead_key as leadKey',
      'd.state as state',
      'd.attempts as attempts',
      'd.updated_at as updatedAt',
      eb.fn.min('r.at').as('firstRequestAt'),
      eb.fn.max('r.at').as('lastRequestAt'),
    ])
    .where('dl.lead_id', '=', leadId)
    .where('d.kind', '=', 'live')
    .groupBy(['d.id', 'd.batch_key', 'dl.lead_key', 'd.state', 'd.attempts', 'd.updated_at'])
    .orderBy('d.id')
    .execute();
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return rows.map((r) => ({
    deliveryId: Number(r.deliveryId),
    batchKey: r.batchKey,
    leadKey: r.leadKey,
    state: r.state,
    attempts: Number(r.attempts),
    updatedAt: Number(r.updatedAt),
    firstRequestAt: num(r.firstRequestAt),
    lastRequestAt: num(r.lastRequestAt),
  }));
}

/**
 * A dry run keeps a masked summary of its leads with the batch (pseudonym, masked e-mail, score):
 * replace these leads' masked e-mails with the marker. Returns how many batches changed.
 */
export async function eraseFromBatchSummaries(trx: StoreTransaction, leadIds: number[]): Promise<number> {
  const erased = new Set(leadIds);
  let changed = 0;
  for (let i = 0; i < leadIds.length; i += INSERT_ROWS_PER_STATEMENT) {
    const batches = await trx
      .selectFrom('deliveries')
      .select(['id', 'summary'])
      .where('summary', 'is not', null)
      .where(
        'id',
        'in',
        trx
          .selectFrom('delivery_leads')
          .select('delivery_id')
          .where('lead_id', 'in', leadIds.slice(i, i + INSERT_ROWS_PER_STATEMENT)),
      )
      .execute();
    for (const batch of batches) {
      const summary = JSON.parse(batch.summary ?? 'null') as unknown;
      if (!Array.isArray(summary)) continue;
      let touched = false;
      const scrubbed = summary.map((entry: unknown) => {
        if (typeof entry !== 'object' || entry === null) return entry;
        const item = entry as { lead?: unknown; email?: unknown };
        if (!erased.has(Number(item.lead)) || item.email === undefined || item.email === ERASED_MARKER)
          return entry;
        touched = true;
        return { ...item, email: ERASED_MARKER };
      });
      if (!touched) continue;
      await trx
        .updateTable('deliveries')
        .set({ summary: JSON.stringify(scrubbed) })
        .where('id', '=', batch.id)
        .execute();
      changed++;
    }
  }
  return changed;
}

/** Leads `valhalla archive` would take with this cutoff (last change before it), by state. */
export async function countArchivable(
  db: Executor,
  cutoff: number,
): Promise<Record<ArchivableState, number>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .where(ARCHIVABLE)
    .where('updated_at', '<', cutoff)
    .groupBy('state')
    .execute();
  const counts = { exported: 0, expired: 0, below_threshold: 0, archived: 0 };
  for (const row of rows) counts[row.state as ArchivableState] = Number(row.count);
  return counts;
}

/** Leads not complete (pending, in flight, quarantined) whose last change is before the cutoff, by state. */
export async function countIncompleteBefore(
  db: Executor,
  cutoff: number,
): Promise<Record<IncompleteState, number>> {
  const rows = await db
    .selectFrom('leads')
    .select(['state', (eb) => eb.fn.countAll<number>().as('count')])
    .where('state', 'in', [...INCOMPLETE_STATES])
    .where('updated_at', '<', cutoff)
    .groupBy('state')
    .execute();
  const counts = { pending: 0, in_flight: 0, quarantined: 0 };
  for (const row of rows) counts[row.state as IncompleteState] = Number(row.count);
  return counts;
}

/** The next leads to archive with this cutoff, oldest change first (the index's order: no sort). */
export async function nextArchivable(
  db: Executor,
  cutoff: number,
  limit: number,
): Promise<{ id: number; state: ArchivableState }[]> {
  const rows = await db
    .selectFrom('leads')
    .select(['id', 'state'])
    .where(ARCHIVABLE)
    .where('updated_at', '<', cutoff)
    .orderBy('updated_at')
    .orderBy('id')
    .limit(limit)
    .execute();
  return rows.map((r) => ({ id: Number(r.id), state: r.state as ArchivableState }));
}

/**
 * Archive these leads if they are still in `from` and still archivable with this cutoff: state
 * `archived`, personal data erased. A lead changed meanwhile is left for the next pass. Returns the
 * ids archived. Leads already `archived` keep their reason (why they were dropped).
 */
export async function archiveLeads(
  trx: StoreTransaction,
  ids: number[],
  from: ArchivableState,
  change: { now: number; cutoff: number; reason: string },
): Promise<number[]> {
  if (ids.length === 0) return [];
  const rows = await trx
    .updateTable('leads')
    .set({
      ...erasedColumns(change.now),
      state: 'archived',
      updated_at: change.now,
      ...(from === 'archived' ? {} : { state_reason: change.reason }),
    })
    .where('id', 'in', ids)
    .where('state', '=', from)
    .where(ARCHIVABLE)
    .where('updated_at', '<', change.cutoff)
    .returning('id')
    .execute();
  return rows.map((r) => Number(r.id));
}

/**
 * A Phase 4 start: the synthetic leads still waiting (pending or quarantined) are archived with the
 * reason, so that none can be claimed live (the claim and the guard pass them over too). Returns
 * their ids.
 */
export async function archiveSyntheticLeads(db: Executor, now: number, reason: string): Promise<number[]> {
  const rows = await db
    .updateTable('leads')
    .set({ state: 'archived', state_reason: reason, updated_at: now })
    .where('synthetic', '=', 1)
    .where('state', 'in', ['pending', 'quarantined'])
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}
