import { type Kysely, sql, type Transaction } from 'kysely';
import type { LeadState } from '../policy/index.js';
import type { Database, Lead, NewLead } from './schema.js';

type Executor = Kysely<Database> | Transaction<Database>;

/** Columns per row of a multi-row insert; keeps each statement under both backends' parameter limits. */
const INSERT_ROWS_PER_STATEMENT = 250;

/**
 * Insert leads, skipping any whose dedup key is already stored (or repeated in `rows`):
 * the database's unique key is what makes a lead impossible to store twice.
 * Returns the id of each row that was inserted, by dedup key.
 */
export async function insertLeadsSkippingDuplicates(
  db: Executor,
  rows: NewLead[],
): Promise<Map<string, number>> {
  const inserted = new Map<string, number>();
  for (let i = 0; i < rows.length; i += INSERT_ROWS_PER_STATEMENT) {
    const result = await db
      .insertInto('leads')
      .values(rows.slice(i, i + INSERT_ROWS_PER_STATEMENT))
      .onConflict((oc) => oc.column('dedup_key').doNothing())
      .returning(['id', 'dedup_key'])
      .execute();
    for (const row of result) inserted.set(row.dedup_key, row.id);
  }
  return inserted;
}

/** The stored leads with these dedup keys: where each came from, for a duplicate's reason. */
export async function findLeadOrigins(
  db: Executor,
  dedupKeys: string[],
): Promise<Map<string, { id: number; run_id: number; source_line: number }>> {
  const found = new Map<string, { id: number; run_id: number; source_line: number }>();
  for (let i = 0; i < dedupKeys.length; i += INSERT_ROWS_PER_STATEMENT) {
    const rows = await db
      .selectFrom('leads')
      .select(['id', 'dedup_key', 'run_id', 'source_line'])
      .where('dedup_key', 'in', dedupKeys.slice(i, i + INSERT_ROWS_PER_STATEMENT))
      .execute();
    for (const row of rows)
      found.set(row.dedup_key, { id: row.id, run_id: row.run_id, source_line: row.source_line });
  }
  return found;
}

export async function countLeadsByState(db: Executor): Promise<Partial<Record<LeadState, number>>> {
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
