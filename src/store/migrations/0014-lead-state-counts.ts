import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Leads by state, kept by the database itself: `status` (and the metrics) read a handful of rows
 * instead of counting every lead (a scan of 1,000,000 leads is most of a second). Triggers on
 * `leads` keep the counts in the same transaction as the change, whichever module makes it (ingest,
 * the cycle's claims and outcomes, quarantine and release, erasure, retention), so a count can never
 * disagree with the rows: a rolled-back change rolls its count back with it.
 *
 * - SQLite (one writer at a time): one row per state (all seven from the start), and row triggers
 *   add and take away one.
 * - PostgreSQL (several writers): a row per state would make every transaction that changes a state
 *   wait for every other one that does (a row lock held to commit), and could deadlock two of them.
 *   Instead each statement appends its net change per state (statement triggers over the transition
 *   tables: one small insert per statement, not per row); the count of a state is the sum of its
 *   rows. Now and then a statement folds the rows into one per state, under a lock it only tries to
 *   take, so no writer ever waits for another here.
 *
 * The counts start from the leads already stored (one scan, here, once).
 */
export function leadStateCounts(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      const statements = dialect === 'postgres' ? POSTGRES : SQLITE;
      for (const statement of statements) await sql.raw(statement).execute(db);
    },
  };
}

/** The lead states of 0001's CHECK, each a row from the start: a trigger only ever updates one. */
const LEAD_STATES = [
  'pending',
  'in_flight',
  'exported',
  'below_threshold',
  'expired',
  'quarantined',
  'archived',
];

// A plain update of a row of a small table WITHOUT ROWID costs an insert no measurable time; an upsert
// (insert … on conflict do update) per lead cost an ingest about a sixth of its speed.
const SQLITE = [
  'create table lead_state_counts (state text not null primary key, n integer not null) without rowid',
  `insert into lead_state_counts (state, n) values ${LEAD_STATES.map((s) => `('${s}', 0)`).join(', ')}`,
  `update lead_state_counts set n = (select count(*) from leads where leads.state = lead_state_counts.state)`,
  `create trigger lead_state_counts_insert after insert on leads
   begin
     update lead_state_counts set n = n + 1 where state = new.state;
   end`,
  `create trigger lead_state_counts_update after update of state on leads
   when old.state is not new.state
   begin
     update lead_state_counts set n = n - 1 where state = old.state;
     update lead_state_counts set n = n + 1 where state = new.state;
   end`,
  `create trigger lead_state_counts_delete after delete on leads
   begin
     update lead_state_counts set n = n - 1 where state = old.state;
   end`,
];

/** An arbitrary constant: the advisory lock a fold of the counts tries to take (never waits for). */
const FOLD_LOCK_KEY = 0x7661_6c73;

const POSTGRES = [
  'create table lead_state_counts (state text not null, n bigint not null)',
  'insert into lead_state_counts (state, n) select state, count(*) from leads group by state',
  // About one statement in fifty folds the rows: the table stays a few dozen rows long.
  `create function valhalla_fold_lead_state_counts() returns void language plpgsql as $$
   begin
     if random() < 0.02 and pg_try_advisory_xact_lock(${FOLD_LOCK_KEY}, hashtext(current_schema())) then
       with gone as (delete from lead_state_counts returning state, n)
       insert into lead_state_counts (state, n)
         select state, sum(n) from gone group by state having sum(n) <> 0;
     end if;
   end $$`,
  `create function valhalla_lead_state_counts_insert() returns trigger language plpgsql as $$
   begin
     insert into lead_state_counts (state, n) select state, count(*) from new_leads group by state;
     perform valhalla_fold_lead_state_counts();
     return null;
   end $$`,
  `create function valhalla_lead_state_counts_update() returns trigger language plpgsql as $$
   begin
     insert into lead_state_counts (state, n)
       select state, sum(n) from (
         select state, count(*) as n from new_leads group by state
         union all
         select state, -count(*) as n from old_leads group by state
       ) as change
       group by state having sum(n) <> 0;
     -- An update that moved no lead between states recorded nothing: nothing to fold either.
     if found then
       perform valhalla_fold_lead_state_counts();
     end if;
     return null;
   end $$`,
  `create function valhalla_lead_state_counts_delete() returns trigger language plpgsql as $$
   begin
     insert into lead_state_counts (state, n) select state, -count(*) from old_leads group by state;
     perform valhalla_fold_lead_state_counts();
     return null;
   end $$`,
  `create trigger lead_state_counts_insert after insert on leads
   referencing new table as new_leads
   for each statement execute function valhalla_lead_state_counts_insert()`,
  `create trigger lead_state_counts_update after update on leads
   referencing old table as old_leads new table as new_leads
   for each statement execute function valhalla_lead_state_counts_update()`,
  `create trigger lead_state_counts_delete after delete on leads
   referencing old table as old_leads
   for each statement execute function valhalla_lead_state_counts_delete()`,
];
