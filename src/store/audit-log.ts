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
