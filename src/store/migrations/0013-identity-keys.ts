import { type Kysely, type Migration, sql } from 'kysely';

/**
 * A lead is the same lead when its normalised e-mail OR its external id matches a stored one,
 * whatever the installation's dedup rule. `dedup_key` stays the lead's primary key
 * (the identity the rule names: what its pseudonym and lead key derive from); beside it:
 *
 * - `email_key`: the keyed hash (HMAC) of the normalised e-mail;
 * - `external_id_key`: the keyed hash of the external id, null when the lead has none.
 *
 * Both are unique (NULLs apart), so the database itself refuses a second lead under either identity,
 * as `dedup_key` always did for one. Both are keyed hashes, never the values: erasure keeps them,
 * as it keeps `dedup_key`, so an erased person stays out under either identity.
 *
 * The hashes need the installation's secret, which a migration does not have: leads already stored
 * get them at the first start that has it (src/app/identity-keys.ts, src/store/identity-keys.ts). The
 * marker `identity_keys.fill` = `pending` says that is still to do; a database without leads needs
 * nothing and gets no marker.
 */
export function identityKeys(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql.raw('alter table leads add column email_key text').execute(db);
      await sql.raw('alter table leads add column external_id_key text').execute(db);
      await sql.raw('create unique index leads_email_key on leads (email_key)').execute(db);
      await sql.raw('create unique index leads_external_id_key on leads (external_id_key)').execute(db);
      // Constants only, written as literals: a parameter in a SELECT list has no type on PostgreSQL.
      await sql
        .raw(
          `insert into runtime_state (key, value, updated_at)
           select '${FILL_MARKER}', 'pending', ${Date.now()} where exists (select 1 from leads)`,
        )
        .execute(db);
    },
  };
}

/** A released migration keeps its own copy of the marker's key (src/store/identity-keys.ts has the live one). */
const FILL_MARKER = 'identity_keys.fill';
