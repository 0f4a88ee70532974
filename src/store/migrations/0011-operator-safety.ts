import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * What an operator's command needs to know about the running service.
 *
 * - `mode_acks`: a running worker's acknowledgement of a mode change, one row per change and worker:
 *   the change is named by its audit entry (`change_seq`, also kept in runtime_state as
 *   `mode_change_seq`), the worker by its runner (host:pid) and start time. A mode command reads it
 *   to say whether the service took the change, and how long that took.
 * - `heartbeats.mode`, `.policy_hash`, `.limits`: the mode the worker last saw, the policy hash and
 *   the limits it runs with (JSON): `status` reports the running service's truth, not the CLI's own
 *   configuration. Null in heartbeats written before this migration.
 * - `leads.synthetic`: 1 for a synthetic lead, never sent live. Leads already stored are marked when
 *   their external id has the reserved prefix, or when they came from the synthetic leads `valhalla run`
 *   loads into an empty store (`synthetic-leads.csv`), or when their external id has the shape the
 *   generator gave before this release (`EXT-<seed>-<n>`; see markStoredSyntheticLeads).
 */
export function operatorSafety(dialect: Dialect): Migration {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('mode_acks')
        .addColumn('change_seq', big, (c) => c.notNull())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('runner', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer', (c) => c.notNull())
        .addColumn('worker_started_at', big, (c) => c.notNull())
        .addColumn('changed_at', big, (c) => c.notNull())
        .addColumn('acked_at', big, (c) => c.notNull())
        .addPrimaryKeyConstraint('mode_acks_pk', ['change_seq', 'runner', 'worker_started_at'])
        .execute();
      for (const column of ['mode', 'policy_hash', 'limits']) {
        await sql.raw(`alter table heartbeats add column ${column} text`).execute(db);
      }
      await sql.raw('alter table leads add column synthetic integer not null default 0').execute(db);
      await markStoredSyntheticLeads(db, dialect);
    },
  };
}

/**
 * Marks the leads already stored that are synthetic: the reserved prefix, the file `valhalla run` loads
 * into an empty store, and the external ids the generator wrote before the prefix existed
 * (`EXT-<seed>-<n>`, digits only). That last shape is taken as synthetic whatever else the row holds:
 * a real lead whose CRM id happens to look so is held back (never sent live, visible as synthetic in
 * the store) rather than a generated one sent to the partner. Returns how many were marked.
 */
export async function markStoredSyntheticLeads(db: Kysely<unknown>, dialect: Dialect): Promise<number> {
  const legacyShape =
    dialect === 'postgres'
      ? "external_id ~ '^EXT-[0-9]+-[0-9]+$'"
      : "(external_id glob 'EXT-[0-9]*-[0-9]*' and substr(external_id, 5) not glob '*[^0-9-]*' and substr(external_id, 5) not glob '*-*-*')";
  const result = await sql
    .raw(
      `update leads set synthetic = 1
       where synthetic = 0 and (
         upper(trim(external_id)) like 'SYNTHETIC-%'
         or ${legacyShape}
         or run_id in (select id from ingest_runs where source like '%synthetic-leads.csv'))`,
    )
    .execute(db);
  return Number(result.numAffectedRows ?? 0);
}
