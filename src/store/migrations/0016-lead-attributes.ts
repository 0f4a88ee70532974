import { type Kysely, type Migration, sql } from 'kysely';

/**
 * A lead's extra columns kept at ingest (its attributes): `leads.attributes`, a JSON object of name to
 * string, number, boolean or null, as the partner profile declares them; null when the lead has none.
 *
 * Added as a nullable column with no default on both backends: SQLite and PostgreSQL only change the
 * table's definition, never its rows, so a store of 1,000,000 leads migrates at once (no rebuild as in
 * 0015). Every lead stored before reads null: it has no attributes.
 */
export function leadAttributes(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql`alter table leads add column attributes text`.execute(db);
    },
  };
}
