import { sql } from 'kysely';
import type { Dialect } from './dialect.js';
import type { StoreTransaction } from './executor.js';
import type { LeadIdentity } from './leads.js';
import { compareAndSetRuntimeValue } from './runtime-state.js';

/**
 * The runtime_state key that says the leads stored before migration 0013 still need their identity
 * keys (`pending`, written by the migration when it found leads) or have them (`done`).
 */
export const IDENTITY_KEYS_FILL = 'identity_keys.fill';

/** The keyed hashes of a lead's two identities (computed by the caller, who holds the secret). */
export type IdentityKeysOf = (lead: { email: string; external_id: string | null }) => {
  emailKey: string;
  externalIdKey: string | null;
};

/** A lead stored before 0013 whose identity an earlier lead holds: both were stored before the rule. */
export interface SharedIdentity {
  lead: number;
  identity: LeadIdentity;
  /** The earlier lead that holds the key. */
  of: number;
}

export interface IdentityFillPage {
  /** The last lead id looked at (the next page starts after it); null when there were none. */
  lastId: number | null;
  /** Leads given at least one key. */
  filled: number;
  shared: SharedIdentity[];
  /**
   * Which identity the page's leads were keyed by (their dedup key: the rule in force when each was
   * stored); `unknown` for an erased lead, or one whose dedup key is neither.
   */
  keyedBy: Record<LeadIdentity | 'unknown', number>;
}

/**
 * Give one page of leads (ids after `afterId`, in id order) the identity keys they lack, in `trx`,
 * which this takes the leads' write lock for first (another process filling, or ingesting, waits).
 *
 * - A lead that holds its data gets the keyed hashes of its e-mail and external id.
 * - An erased lead holds neither any more, only its `dedup_key`, and which identity that was is not
 *   recorded (the rule could differ from one ingest to the next before it was fixed). It is stored as
 *   both keys: the hashes are domain-separated (`email:…` and `external_id:…` are hashed apart), so
 *   it can only ever match the identity it was made from, and the erased person stays out under it.
 * - A key an earlier lead holds already is left empty (the unique index allows one holder): both
 *   leads were stored before the rule was fixed, and the earlier one keeps later ones out. Returned
 *   in `shared`, to be reported; neither lead is changed otherwise.
 */
export async function fillIdentityKeysPage(
  trx: StoreTransaction,
  dialect: Dialect,
  options: { afterId: number; limit: number; keysOf: IdentityKeysOf },
): Promise<IdentityFillPage> {
  await lockLeadsTable(trx, dialect);
  const rows = await trx
    .selectFrom('leads')
    .select(['id', 'dedup_key', 'email', 'external_id', 'erased_at', 'email_key', 'external_id_key'])
    .where('id', '>', options.afterId)
    .orderBy('id')
    .limit(options.limit)
    .execute();
  const lastId = rows.at(-1)?.id ?? null;
  const keyedBy = { email: 0, external_id: 0, unknown: 0 };
  const wanted = rows.map((row) => {
    if (row.erased_at !== null) {
      keyedBy.unknown++;
      return { row, emailKey: row.dedup_key, externalIdKey: row.dedup_key };
    }
    const keys = options.keysOf(row);
    if (row.dedup_key === keys.emailKey) keyedBy.email++;
    else if (row.dedup_key === keys.externalIdKey) keyedBy.external_id++;
    else keyedBy.unknown++;
    return { row, ...keys };
  });
  const emailKeys = wanted.filter((w) => w.row.email_key === null).map((w) => w.emailKey);
  const externalIdKeys = wanted
    .filter((w) => w.row.external_id_key === null && w.externalIdKey !== null)
    .map((w) => w.externalIdKey as string);
  const emailHolders = new Map<string, number>();
  const externalIdHolders = new Map<string, number>();
  if (emailKeys.length > 0 || externalIdKeys.length > 0) {
    const holders = await trx
      .selectFrom('leads')
      .select(['id', 'email_key', 'external_id_key'])
      .where((eb) =>
        eb.or([
          ...(emailKeys.length > 0 ? [eb('email_key', 'in', emailKeys)] : []),
          ...(externalIdKeys.length > 0 ? [eb('external_id_key', 'in', externalIdKeys)] : []),
        ]),
      )
      .execute();
    for (const h of holders) {
      if (h.email_key !== null) emailHolders.set(h.email_key, h.id);
      if (h.external_id_key !== null) externalIdHolders.set(h.external_id_key, h.id);
    }
  }

  const changes: { id: number; emailKey: string | null; externalIdKey: string | null }[] = [];
  const shared: SharedIdentity[] = [];
  const take = (
    holders: Map<string, number>,
    key: string | null,
    lead: number,
    identity: LeadIdentity,
  ): string | null => {
    if (key === null) return null;
    const holder = holders.get(key);
    if (holder === undefined) {
      holders.set(key, lead);
      return key;
    }
    if (holder !== lead) shared.push({ lead, identity, of: holder });
    return null;
  };
  for (const w of wanted) {
    const emailKey = w.row.email_key ?? take(emailHolders, w.emailKey, w.row.id, 'email');
    const externalIdKey =
      w.row.external_id_key ?? take(externalIdHolders, w.externalIdKey, w.row.id, 'external_id');
    if (emailKey !== w.row.email_key || externalIdKey !== w.row.external_id_key) {
      changes.push({ id: w.row.id, emailKey, externalIdKey });
    }
  }
  if (changes.length > 0) {
    // One statement for the page: a round trip per lead would make a large upgrade's first start slow.
    const caseOf = (value: (c: (typeof changes)[number]) => string | null) =>
      sql.join(
        changes.map((c) => sql`when ${c.id} then ${value(c)}`),
        sql` `,
      );
    await sql`update leads
      set email_key = case id ${caseOf((c) => c.emailKey)} else email_key end,
          external_id_key = case id ${caseOf((c) => c.externalIdKey)} else external_id_key end
      where id in (${sql.join(changes.map((c) => c.id))})`.execute(trx);
  }
  return { lastId, filled: changes.length, shared, keyedBy };
}

/**
 * Hold off every other writer of `leads` until `trx` ends: SQLite takes its one write lock; PostgreSQL
 * locks the table against inserts and updates (reads go on), so a key found free stays free.
 */
async function lockLeadsTable(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'sqlite') await sql`update leads set id = id where 0`.execute(trx);
  else await sql`lock table leads in share row exclusive mode`.execute(trx);
}

/** Mark the fill done (in `trx`, with its audit entry); false when another process marked it first. */
export function finishIdentityKeysFill(trx: StoreTransaction, now: number): Promise<boolean> {
  return compareAndSetRuntimeValue(trx, IDENTITY_KEYS_FILL, 'pending', 'done', now);
}
