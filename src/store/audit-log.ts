import { sql } from 'kysely';
import type { AuditAction } from '../policy/index.js';
import type { Dialect } from './dialect.js';
import type { Executor, StoreTransaction } from './executor.js';
import type { AuditRow } from './schema.js';

// ---- audit_log appends (src/audit hashes and links the entries; these read the head and write them) ----

/**
 * An arbitrary constant: the PostgreSQL advisory lock that serialises appends across runners. Taken
 * with the schema's hash as its second key: installations in other schemas of the database do not wait on it.
 */
const AUDIT_LOCK_KEY = 0x7661_6c68;

/**
 * Hold the chain for an append until the transaction ends, before its head is read: appends from other
 * transactions, pools and processes wait their turn, so each links to the head it read.
 */
export async function lockAuditChain(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'postgres')
    await sql`select pg_advisory_xact_lock(${AUDIT_LOCK_KEY}::int4, hashtext(current_schema()))`.execute(trx);
  // SQLite: take the write lock before reading the head. A transaction that reads first fails at
  // once (SQLITE_BUSY_SNAPSHOT, no busy wait) when another process appended in between; a write
  // first waits its turn instead. The update touches no row, so the append-only trigger never fires.
  else await sql`update audit_log set seq = seq where 0`.execute(trx);
}

/** The newest entry's sequence number and hash (the chain's head), or undefined for an empty chain. */
export function auditHead(db: Executor): Promise<Pick<AuditRow, 'seq' | 'hash'> | undefined> {
  return db
    .selectFrom('audit_log')
    .select(['seq', 'hash'])
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** Rows per insert statement: well under SQLite's bound-parameter limit with eight columns each. */
const INSERT_CHUNK = 500;

/** Write entries already numbered and hashed, in order. */
export async function insertAuditEntries(trx: StoreTransaction, entries: readonly AuditRow[]): Promise<void> {
  for (let i = 0; i < entries.length; i += INSERT_CHUNK) {
    await trx
      .insertInto('audit_log')
      .values(entries.slice(i, i + INSERT_CHUNK))
      .execute();
  }
}

/** The latest entry with this action, or undefined. */
export function latestAuditEntryOf(db: Executor, action: AuditAction): Promise<AuditRow | undefined> {
  return db
    .selectFrom('audit_log')
    .selectAll()
    .where('action', '=', action)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/** The newest `limit` entries with this action, newest first. */
export function recentAuditEntriesOf(db: Executor, action: AuditAction, limit: number): Promise<AuditRow[]> {
  return db
    .selectFrom('audit_log')
    .selectAll()
    .where('action', '=', action)
    .orderBy('seq', 'desc')
    .limit(limit)
    .execute();
}

/** The highest sequence number among entries with these actions (0: none). */
export async function latestAuditSeqOf(db: Executor, actions: readonly AuditAction[]): Promise<number> {
  const row = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('action', 'in', [...actions])
    .executeTakeFirst();
  return Number(row?.seq ?? 0);
}

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
  action: AuditAction,
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

/**
 * The entries with one of these actions appended in [from, until], in chain order; each entry's
 * action is one of those asked for.
 */
export async function auditEntriesBetween<A extends AuditAction>(
  db: Executor,
  actions: readonly A[],
  from: number,
  until: number,
): Promise<(Pick<AuditRow, 'seq' | 'at' | 'details'> & { action: A })[]> {
  const rows = await db
    .selectFrom('audit_log')
    .select(['seq', 'at', 'action', 'details'])
    .where('action', 'in', actions)
    .where('at', '>=', from)
    .where('at', '<=', until)
    .orderBy('seq')
    .execute();
  // The filter above: only the actions asked for come back.
  return rows as (Pick<AuditRow, 'seq' | 'at' | 'details'> & { action: A })[];
}

/** When each entry with this action was appended, and its details (JSON text); in no set order. */
export function auditDetailsOf(
  db: Executor,
  action: AuditAction,
): Promise<Pick<AuditRow, 'at' | 'details'>[]> {
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
