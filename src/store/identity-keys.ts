import { sql } from 'kysely';
import type { Dialect } from './dialect.js';
import type { StoreTransaction } from './executor.js';
import type { LeadIdentity } from './leads.js';
import { identityBytes, identityHex, keyHex, leadFromRow } from './leads.js';
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
 * Give one page of leads (ids after `afterId`, in id order) the identities they lack in
 * `lead_identities`, in `trx`, which this takes the write lock for first (another process filling, or
 * ingesting, waits).
 *
 * - A lead that holds its data gets the keys of its e-mail and of its external id.
 * - An erased lead holds neither any more, only its `dedup_key`, and which identity that was is not
 *   recorded (the rule could differ from one ingest to the next before it was fixed). Its dedup key is
 *   its identity: the keys are domain-separated (`email:…` and `external_id:…` are hashed apart), so it
 *   can only ever match the identity it was made from, and the erased person stays out under it.
 * - A key an earlier lead holds already is left to that lead (the primary key allows one holder): both
 *   leads were stored before the rule was fixed, and the earlier one keeps later ones out. Returned in
 *   `shared`, to be reported; neither lead is changed otherwise.
 */
export async function fillIdentityKeysPage(
  trx: StoreTransaction,
  dialect: Dialect,
  options: { afterId: number; limit: number; keysOf: IdentityKeysOf },
): Promise<IdentityFillPage> {
  await lockLeadsTable(trx, dialect);
  const rows = (
    await trx
      .selectFrom('leads')
      .select(['id', 'dedup_key', 'email', 'external_id', 'erased_at'])
      .where('id', '>', options.afterId)
      .orderBy('id')
      .limit(options.limit)
      .execute()
  ).map(leadFromRow);
  const lastId = rows.at(-1)?.id ?? null;
  const keyedBy = { email: 0, external_id: 0, unknown: 0 };
  const wanted = rows.map((row): { id: number; keys: { identity: LeadIdentity; key: string }[] } => {
    if (row.erased_at !== null) {
      keyedBy.unknown++;
      return { id: row.id, keys: [{ identity: 'email', key: row.dedup_key }] };
    }
    const keys = options.keysOf(row);
    if (row.dedup_key === keys.emailKey) keyedBy.email++;
    else if (row.dedup_key === keys.externalIdKey) keyedBy.external_id++;
    else keyedBy.unknown++;
    return {
      id: row.id,
      keys: [
        { identity: 'email', key: keys.emailKey },
        ...(keys.externalIdKey === null
          ? []
          : [{ identity: 'external_id' as const, key: keys.externalIdKey }]),
      ],
    };
  });
  const allKeys = wanted.flatMap((w) => w.keys.map((k) => k.key));
  const holders = new Map<string, number>();
  if (allKeys.length > 0) {
    const held = await trx
      .selectFrom('lead_identities')
      .select(['key', 'lead_id'])
      .where('key', 'in', allKeys.map(identityBytes))
      .execute();
    for (const h of held) holders.set(keyHex(h.key), h.lead_id);
  }

  const added: { key: Buffer; lead_id: number }[] = [];
  const filledLeads = new Set<number>();
  const shared: SharedIdentity[] = [];
  for (const w of wanted) {
    for (const { identity, key } of w.keys) {
      const holder = holders.get(identityHex(key));
      if (holder === undefined) {
        holders.set(identityHex(key), w.id);
        added.push({ key: identityBytes(key), lead_id: w.id });
        filledLeads.add(w.id);
      } else if (holder !== w.id) {
        shared.push({ lead: w.id, identity, of: holder });
      }
    }
  }
  // One statement for the page: a round trip per lead would make a large upgrade's first start slow.
  if (added.length > 0) await trx.insertInto('lead_identities').values(added).execute();
  return { lastId, filled: filledLeads.size, shared, keyedBy };
}

/**
 * Hold off every other writer of `leads` and `lead_identities` until `trx` ends: SQLite takes its one
 * write lock; PostgreSQL locks both tables against inserts and updates (reads go on), so a key found
 * free stays free. `lead_identities` first, as an ingest takes it (src/store/leads.ts): the two wait for
 * each other in one order, never in a circle.
 */
async function lockLeadsTable(trx: StoreTransaction, dialect: Dialect): Promise<void> {
  if (dialect === 'sqlite') {
    await sql`update leads set id = id where 0`.execute(trx);
    return;
  }
  await sql`lock table lead_identities in share row exclusive mode`.execute(trx);
  await sql`lock table leads in share row exclusive mode`.execute(trx);
}

/** Mark the fill done (in `trx`, with its audit entry); false when another process marked it first. */
export function finishIdentityKeysFill(trx: StoreTransaction, now: number): Promise<boolean> {
  return compareAndSetRuntimeValue(trx, IDENTITY_KEYS_FILL, 'pending', 'done', now);
}
