import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

const REFUSED = 'valhalla: an exported lead cannot be deleted (it would make its identity sendable again)';

/**
 * An exported lead's row is the proof it was sent: deleting it would let the same person be ingested
 * and sent again, and would drop the frozen score. Refuse DELETE of exported leads (and TRUNCATE on
 * PostgreSQL while any lead is exported). On SQLite, `INSERT OR REPLACE` deletes the row it replaces;
 * the store turns on recursive_triggers so that this delete meets the trigger too.
 */
export function exportedLeadsKept(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      const statements =
        dialect === 'sqlite'
          ? [
              `create trigger leads_exported_no_delete before delete on leads
               when old.exported_at is not null
               begin select raise(abort, '${REFUSED}'); end`,
            ]
          : [
              `create function valhalla_leads_exported_no_delete() returns trigger language plpgsql as $$
               begin
                 if tg_op = 'TRUNCATE' then
                   if exists (select 1 from leads where exported_at is not null) then
                     raise exception '${REFUSED}' using errcode = 'insufficient_privilege';
                   end if;
                   return null;
                 end if;
                 if old.exported_at is not null then
                   raise exception '${REFUSED}' using errcode = 'insufficient_privilege';
                 end if;
                 return old;
               end $$`,
              `create trigger leads_exported_no_delete before delete on leads
               for each row execute function valhalla_leads_exported_no_delete()`,
              `create trigger leads_exported_no_truncate before truncate on leads
               for each statement execute function valhalla_leads_exported_no_delete()`,
            ];
      for (const statement of statements) await sql.raw(statement).execute(db);
    },
  };
}
