import type { Kysely, Transaction } from 'kysely';
import type { AuditRow, Database } from './schema.js';

type Executor = Kysely<Database> | Transaction<Database>;

// ---- audit_log reads (the chain itself is appended and verified by src/audit) ----

/** How many entries the audit chain holds. */
export async function countAuditEntries(db: Executor): Promise<number> {
  const row = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** How many entries with this action were appended in [from, until]. */
export async function countAuditActionBetween(
  db: Executor,
  action: string,
  from: number,
  until: number,
): Promise<number> {
  const row = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.countAll<string | number>().as('n'))
    .where('action', '=', action)
    .where('at', '>=', from)
    .where('at', '<=', until)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The entries with one of these actions appended in [from, until], in chain order. */
export function auditEntriesBetween(
  db: Executor,
  actions: readonly string[],
  from: number,
  until: number,
): Promise<Pick<AuditRow, 'seq' | 'at' | 'action' | 'details'>[]> {
  return db
    .selectFrom('audit_log')
    .select(['seq', 'at', 'action', 'details'])
    .where('action', 'in', actions)
    .where('at', '>=', from)
    .where('at', '<=', until)
    .orderBy('seq')
    .execute();
}

/** When each entry with this action was appended, and its details (JSON text); in no set order. */
export function auditDetailsOf(db: Executor, action: string): Promise<Pick<AuditRow, 'at' | 'details'>[]> {
  return db.selectFrom('audit_log').select(['at', 'details']).where('action', '=', action).execute();
}

/** One page of the chain, newest first, before the `beforeSeq` cursor. */
export function auditPage(db: Executor, limit: number, beforeSeq?: number): Promise<AuditRow[]> {
  let query = db.selectFrom('audit_log').selectAll().orderBy('seq', 'desc').limit(limit);
  if (beforeSeq !== undefined) query = query.where('seq', '<', beforeSeq);
  return query.execute();
}

/** The entries after `seq`, in chain order (what a follower of the chain has not seen yet). */
export function auditAfter(db: Executor, seq: number, limit: number): Promise<AuditRow[]> {
  return db.selectFrom('audit_log').selectAll().where('seq', '>', seq).orderBy('seq').limit(limit).execute();
}

/** The sequence number of the newest entry, 0 for an empty chain. */
export async function latestAuditSeq(db: Executor): Promise<number> {
  const row = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .executeTakeFirst();
  return row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq);
}

/**
 * Entries dated in [from, until] that are not this installation's own history: written before its
 * initialisation entry (`seq` below it), or dated before it (`at` below it: written in afterwards).
 */
export async function auditEntriesNotAfter(
  db: Executor,
  window: { from: number; until: number },
  init: { seq: number; at: number },
): Promise<{ n: number; first: number | null }> {
  const row = await db
    .selectFrom('audit_log')
    .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.min('at').as('first')])
    .where('at', '>=', window.from)
    .where('at', '<=', window.until)
    .where((eb) => eb.or([eb('seq', '<', init.seq), eb('at', '<', init.at)]))
    .executeTakeFirstOrThrow();
  return { n: Number(row.n), first: row.first === null ? null : Number(row.first) };
}
