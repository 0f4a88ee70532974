import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * SQLite: `INSERT OR REPLACE` into audit_log deletes the entry it collides with, and SQLite fires no
 * delete trigger for that (unless recursive_triggers is on, per connection), so 0001's triggers let it
 * overwrite an entry. Refuse any insert that collides with an existing entry before REPLACE can act.
 * PostgreSQL has no REPLACE (`on conflict do update` fires the update trigger): nothing to do there.
 */
export function auditNoReplace(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect !== 'sqlite') return;
      await sql
        .raw(
          `create trigger audit_log_no_overwrite before insert on audit_log
           when exists (select 1 from audit_log where seq = new.seq or prev_hash = new.prev_hash or hash = new.hash)
           begin select raise(abort, 'valhalla: the audit chain is append-only: INSERT over an existing entry refused'); end`,
        )
        .execute(db);
    },
  };
}
