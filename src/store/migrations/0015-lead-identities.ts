import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * A lead's identities in one keyed table, and keys as bytes, not hex text.
 *
 * Until now each lead row held three 64-character hex keys (its dedup key, its e-mail key, its external
 * id key), each under its own unique index: about 400 bytes a lead in keys alone, and three random
 * index inserts per lead. Now:
 *
 * - `lead_identities (key, lead_id)`: one row per identity a lead holds (its e-mail's key, and its
 *   external id's when it has one), the key its primary key (SQLite: WITHOUT ROWID, so the key is stored
 *   once, in the table's own b-tree). The primary key is what refuses a second lead under either identity,
 *   as the two unique indexes did. A key is the first 12 bytes of the keyed hash (HMAC-SHA-256) of the
 *   identity, `email:<normalised e-mail>` or `external_id:<id>`: domain-separated, so an e-mail key can
 *   never equal an external id key.
 * - `leads.dedup_key`: the first 16 bytes of the key of the identity the dedup rule names, as bytes. A
 *   lead's pseudonym (`L-` and the first 20 hex digits) and its lead key (`lk_` and the first 32) only
 *   ever read those 16 bytes: neither changes for a lead stored before. No index: the lead's identity
 *   in `lead_identities` is what is unique.
 *
 * Leads stored before 0013 whose keys were never filled get their identities at the next start that has
 * the secret, as before (src/store/identity-keys.ts). An erased lead keeps its keys, so the erased
 * person stays out under either identity.
 *
 * Two indexes shrink with it: `leads_exported_at` holds exported leads only (the queries that use it all
 * ask for an export time), and SQLite's `leads_archivable` orders by `updated_at` alone (every SQLite
 * index ends with the row id, so `(updated_at, id)` held the id twice).
 *
 * SQLite cannot drop a column that carries a UNIQUE constraint: the table is rebuilt (created anew,
 * rows copied, the old one dropped, the new one renamed), with the rest of its indexes and its
 * triggers as they stood. The migration runner turns foreign key enforcement off around the
 * migrations' transaction and checks every foreign key before it commits (src/store/migrate.ts).
 */
export function leadIdentities(dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      if (dialect === 'sqlite') await sqliteUp(db);
      else await postgresUp(db);
    },
  };
}

/** Hex digits of a dedup key kept: 16 bytes, 128 bits of a keyed hash. */
const KEY_HEX_DIGITS = 32;
/** Hex digits of an identity key kept: 12 bytes (src/store/leads.ts, IDENTITY_BYTES). */
const IDENTITY_HEX_DIGITS = 24;

async function sqliteUp(db: Kysely<unknown>): Promise<void> {
  const run = (statement: string) => sql.raw(statement).execute(db);
  await run(
    'create table lead_identities (key blob not null primary key, lead_id integer not null references leads (id)) without rowid',
  );
  await run(`insert into lead_identities (key, lead_id)
    select unhex(substr(email_key, 1, ${IDENTITY_HEX_DIGITS})), id from leads where email_key is not null
    on conflict do nothing`);
  await run(`insert into lead_identities (key, lead_id)
    select unhex(substr(external_id_key, 1, ${IDENTITY_HEX_DIGITS})), id from leads where external_id_key is not null
    on conflict do nothing`);

  // What stands on `leads` besides the columns: rebuilt as it was, less what goes with the keys.
  const { rows: dependents } = await sql<{ name: string; sql: string }>`
    select name, sql from sqlite_schema
    where tbl_name = 'leads' and type in ('index', 'trigger') and sql is not null
      and name not in ('leads_email_key', 'leads_external_id_key', 'leads_exported_at', 'leads_archivable')
    order by type, name`.execute(db);
  const { rows: sequence } = await sql<{ seq: number }>`
    select seq from sqlite_sequence where name = 'leads'`.execute(db);

  await run(`create table leads_rebuilt (
    "id" integer primary key autoincrement,
    "dedup_key" blob not null,
    "external_id" text,
    "name" text not null,
    "email" text not null,
    "phone" text,
    "company" text,
    "score" integer not null check (score between 0 and 100),
    "source_ts" integer not null,
    "value" real check (value >= 0),
    "state" text not null check (state in ('pending', 'in_flight', 'exported', 'below_threshold', 'expired', 'quarantined', 'archived')),
    "state_reason" text,
    "ingested_at" integer not null,
    "updated_at" integer not null,
    "exported_at" integer,
    "run_id" integer not null references "ingest_runs" ("id"),
    "source_line" integer not null,
    "dry_run_at" integer,
    "erased_at" integer,
    "synthetic" integer not null default 0
  )`);
  await run(`insert into leads_rebuilt (id, dedup_key, external_id, name, email, phone, company, score, source_ts,
      value, state, state_reason, ingested_at, updated_at, exported_at, run_id, source_line, dry_run_at, erased_at, synthetic)
    select id, unhex(substr(dedup_key, 1, ${KEY_HEX_DIGITS})), external_id, name, email, phone, company, score, source_ts,
      value, state, state_reason, ingested_at, updated_at, exported_at, run_id, source_line, dry_run_at, erased_at, synthetic
    from leads order by id`);
  await run('drop table leads');
  await run('alter table leads_rebuilt rename to leads');
  for (const dependent of dependents) await run(dependent.sql);
  const seq = sequence[0]?.seq;
  if (seq !== undefined) await sql`update sqlite_sequence set seq = ${seq} where name = 'leads'`.execute(db);
  await run('create index leads_exported_at on leads (exported_at) where exported_at is not null');
  await run(`create index leads_archivable on leads (updated_at)
    where (state in ('exported', 'expired', 'below_threshold') or (state = 'archived' and erased_at is null))`);
}

async function postgresUp(db: Kysely<unknown>): Promise<void> {
  const run = (statement: string) => sql.raw(statement).execute(db);
  await run(
    'create table lead_identities (key bytea not null primary key, lead_id bigint not null references leads (id))',
  );
  await run(`insert into lead_identities (key, lead_id)
    select decode(substr(email_key, 1, ${IDENTITY_HEX_DIGITS}), 'hex'), id from leads where email_key is not null
    on conflict do nothing`);
  await run(`insert into lead_identities (key, lead_id)
    select decode(substr(external_id_key, 1, ${IDENTITY_HEX_DIGITS}), 'hex'), id from leads where external_id_key is not null
    on conflict do nothing`);
  // The inline UNIQUE of 0001 (PostgreSQL named it) goes with the type change.
  await run('alter table leads drop constraint if exists leads_dedup_key_key');
  await run(
    `alter table leads alter column dedup_key type bytea using decode(substr(dedup_key, 1, ${KEY_HEX_DIGITS}), 'hex')`,
  );
  await run('alter table leads drop column email_key');
  await run('alter table leads drop column external_id_key');
  await run('drop index leads_exported_at');
  await run('create index leads_exported_at on leads (exported_at) where exported_at is not null');
}
