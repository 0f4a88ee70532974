import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Erasure and retention. A lead's personal data (name, e-mail, phone, company, external id) can be
 * erased while its row stays: the dedup key keeps the person from being ingested again, the score
 * and state keep the counts right, and the audit chain (pseudonyms only) still verifies.
 *
 * Nothing here relaxes 0001/0003: an exported lead's score stays frozen and its row is never deleted;
 * overwriting its contact data was never refused. What is added:
 *
 * - `erased_at`: when the lead's personal data was erased (null: it holds it).
 * - An erased lead holds no personal data (the marker, or null) and stays erased: its data cannot be
 *   written back, `erased_at` cannot change, and it can never again be `pending` or `in_flight`, so
 *   the outbox can never send the marker to the partner in place of a person.
 * - The index `valhalla archive` walks: leads in an end state not yet archived with their data erased,
 *   by their last change. Its predicate is the query's, word for word (PostgreSQL needs that to use it).
 */
export function erasure(dialect: Dialect): Migration {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('leads').addColumn('erased_at', big).execute();
      await sql
        .raw(`create index leads_archivable on leads (updated_at, id) where ${ARCHIVABLE_PREDICATE}`)
        .execute(db);
      for (const statement of dialect === 'postgres' ? POSTGRES_TRIGGERS : SQLITE_TRIGGERS) {
        await sql.raw(statement).execute(db);
      }
    },
  };
}

/** A released migration keeps its own copy of the marker and the predicate (src/store/leads.ts has the live ones). */
const MARKER = '(erased)';
const ARCHIVABLE_PREDICATE =
  "(state in ('exported', 'expired', 'below_threshold') or (state = 'archived' and erased_at is null))";

const HOLDS_NO_PII = 'valhalla: an erased lead holds no personal data';
const STAYS_ERASED = 'valhalla: an erased lead stays erased and is never queued or sent again';

const SQLITE_HOLDS_PII = `new.erased_at is not null and (new.name is not '${MARKER}' or new.email is not '${MARKER}'
     or new.phone is not null or new.company is not null or new.external_id is not null)`;

const SQLITE_TRIGGERS = [
  `create trigger leads_erased_holds_no_pii before update on leads
   when ${SQLITE_HOLDS_PII}
   begin select raise(abort, '${HOLDS_NO_PII}'); end`,
  `create trigger leads_erased_holds_no_pii_insert before insert on leads
   when ${SQLITE_HOLDS_PII}
   begin select raise(abort, '${HOLDS_NO_PII}'); end`,
  `create trigger leads_erased_stays_erased before update on leads
   when old.erased_at is not null and (new.erased_at is not old.erased_at or new.state in ('pending', 'in_flight'))
   begin select raise(abort, '${STAYS_ERASED}'); end`,
];

const POSTGRES_TRIGGERS = [
  `create function valhalla_leads_erasure_guard() returns trigger language plpgsql as $$
   begin
     if new.erased_at is not null and (new.name is distinct from '${MARKER}' or new.email is distinct from '${MARKER}'
        or new.phone is not null or new.company is not null or new.external_id is not null) then
       raise exception '${HOLDS_NO_PII}' using errcode = 'check_violation';
     end if;
     if tg_op = 'UPDATE' then
       if old.erased_at is not null and (new.erased_at is distinct from old.erased_at
          or new.state in ('pending', 'in_flight')) then
         raise exception '${STAYS_ERASED}' using errcode = 'check_violation';
       end if;
     end if;
     return new;
   end $$`,
  // Only rows that are or become erased run the function: not every claim and outcome of the engine.
  `create trigger leads_erasure_guard before update on leads
   for each row when (old.erased_at is not null or new.erased_at is not null)
   execute function valhalla_leads_erasure_guard()`,
  `create trigger leads_erasure_guard_insert before insert on leads
   for each row when (new.erased_at is not null)
   execute function valhalla_leads_erasure_guard()`,
];
