import { sql } from 'kysely';
import { StoreError } from './errors.js';
import type { Store, StoreTransaction } from './executor.js';
import { migrations, ZEROED_PAGES_MIGRATION } from './migrations/index.js';

/** The table that records applied migrations (the columns Kysely's migrator used: existing databases keep working). */
const MIGRATION_TABLE = 'valhalla_migration';
/** An arbitrary constant: the PostgreSQL advisory lock that serialises migrations across processes. */
const MIGRATION_LOCK_KEY = 0x7661_6c6d;

/**
 * Apply pending migrations, in name order, in one transaction under a lock; refuse a database from a
 * newer release. Returns the names applied (none when the schema is current).
 *
 * Not Kysely's Migrator: on PostgreSQL it introspects every schema of the database to find its table,
 * so a schema created or dropped meanwhile by anyone else fails the migration ("schema … does not exist"),
 * and a `valhalla_migration` table in another schema is mistaken for this one's.
 */
export async function migrateToLatest(store: Store): Promise<string[]> {
  const known = migrations(store.dialect);
  const names = Object.keys(known).sort();
  // The common case, a current schema, is settled by one read: no write lock (SQLite: two processes
  // starting at once would otherwise race for it), no DDL rights needed.
  const applied = await appliedIfReadable(store);
  if (applied !== null) {
    const unknown = applied.filter((name) => !Object.hasOwn(known, name));
    if (unknown.length === 0 && names.every((name) => applied.includes(name))) return [];
  }
  if (applied !== null && applied.length > 0 && !applied.includes(ZEROED_PAGES_MIGRATION)) {
    rewriteFromLiveRows(store);
  }
  let current = '(migration table)';
  // SQLite: a migration that rebuilds a table (0015) drops the old one while rows of other tables still
  // point at it. Foreign keys cannot be switched off inside a transaction: off around it, and every
  // foreign key checked before it commits.
  store.sqlite?.pragma('foreign_keys = OFF');
  try {
    return await store.db.transaction().execute(async (trx) => {
      if (store.dialect === 'postgres') {
        // Per schema (the second key): installations in other schemas migrate independently.
        await sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::int4, hashtext(current_schema()))`.execute(
          trx,
        );
      }
      // PostgreSQL checks CREATE on the schema before it looks for the table, even with `if not exists`,
      // and a runner's role has no CREATE (docs/production.md): on a current schema it must not need it.
      if (store.dialect === 'sqlite' || !(await postgresTableExists(trx, MIGRATION_TABLE))) {
        await sql`create table if not exists ${sql.table(MIGRATION_TABLE)} (
          name varchar(255) not null primary key,
          timestamp varchar(255) not null
        )`.execute(trx);
      }
      // SQLite: hold the write lock before reading what is applied (another process may be migrating).
      if (store.dialect === 'sqlite') {
        await sql`update ${sql.table(MIGRATION_TABLE)} set name = name where 0`.execute(trx);
      }

      const { rows } = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(
        trx,
      );
      const applied = rows.map((r) => r.name);
      const unknown = applied.filter((name) => !Object.hasOwn(known, name));
      if (unknown.length > 0) {
        throw new StoreError(
          'SCHEMA_TOO_NEW',
          `the database was migrated by a newer release (unknown migrations: ${unknown.join(', ')}); refusing to run against it`,
        );
      }
      const pending = names.filter((name) => !applied.includes(name));
      const lastApplied = applied.sort().at(-1);
      const outOfOrder = pending.filter((name) => lastApplied !== undefined && name < lastApplied);
      if (outOfOrder.length > 0) {
        throw new StoreError(
          'MIGRATION_FAILED',
          `migrations ${outOfOrder.join(', ')} sort before the applied ${lastApplied}: refusing to apply them out of order`,
        );
      }
      if (pending.length > 0 && store.dialect === 'postgres') await refuseUnlessOwner(trx, pending);
      for (const name of pending) {
        current = name;
        await known[name]!.up(trx);
        await sql`insert into ${sql.table(MIGRATION_TABLE)} (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
          trx,
        );
      }
      if (store.dialect === 'sqlite' && pending.length > 0) await refuseBrokenForeignKeys(trx);
      return pending;
    });
  } catch (error) {
    if (error instanceof StoreError) throw error;
    if (isPermissionDenied(error)) {
      // A role without DDL rights on a fresh schema, or without the grants (the append-only triggers
      // raise the same SQLSTATE with their own message: those are not this).
      throw new StoreError(
        'MIGRATION_FAILED',
        `${current === '(migration table)' ? 'opening the migration table' : `migration ${current}`} was refused (${(error as Error).message}): the schema is migrated by its owner role with \`valhalla db migrate\`, and the runners' role needs the grants of \`valhalla db grants --app-role NAME --apply\` (docs/production.md)`,
        { cause: error },
      );
    }
    throw new StoreError('MIGRATION_FAILED', `migration ${current} failed: ${(error as Error).message}`, {
      cause: error,
    });
  } finally {
    store.sqlite?.pragma('foreign_keys = ON');
  }
}

/** SQLite, with enforcement off: any row whose foreign key points at nothing fails the migrations. */
async function refuseBrokenForeignKeys(trx: StoreTransaction): Promise<void> {
  const { rows } = await sql<{
    table: string;
    rowid: number;
    parent: string;
  }>`pragma foreign_key_check`.execute(trx);
  if (rows.length > 0) {
    const first = rows[0]!;
    throw new StoreError(
      'MIGRATION_FAILED',
      `the migrations left ${rows.length} row(s) pointing at nothing (first: ${first.table} row ${first.rowid} -> ${first.parent}); nothing was changed`,
    );
  }
}

/**
 * SQLite written by a release before every connection zeroed what it frees: rebuild the file from its
 * live rows (VACUUM), so no old copy of a row (an erased person's data) survives in unused page space,
 * then truncate the write-ahead log that held the old pages. Before the migration that records it:
 * a rewrite that fails (another process holds the database) is tried again at the next start.
 */
function rewriteFromLiveRows(store: Store): void {
  if (store.sqlite === null) return;
  try {
    store.sqlite.exec('VACUUM');
    store.sqlite.pragma('wal_checkpoint(TRUNCATE)');
  } catch (cause) {
    throw new StoreError(
      'MIGRATION_FAILED',
      `this release rewrites the SQLite database once, so that no old copy of an erased row stays in it, and the rewrite failed (${(cause as Error).message}): stop every process using it (the runner, the dashboard) and run the command again`,
      { cause },
    );
  }
}

/** The migrations recorded as applied, or null when the table cannot be read (a fresh database). */
async function appliedIfReadable(store: Store): Promise<string[] | null> {
  try {
    const { rows } = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(
      store.db,
    );
    return rows.map((r) => r.name);
  } catch {
    return null;
  }
}

/** insufficient_privilege from the privileges (not from a trigger), or invalid_schema_name: no usable schema (no USAGE). */
function isPermissionDenied(error: unknown): boolean {
  const { code, message } = error as { code?: string; message?: string };
  return (code === '42501' && /^(permission denied|must be owner)/.test(message ?? '')) || code === '3F000';
}

/** Whether the table exists in the schema `create table` would put it in (the first of the search path). */
async function postgresTableExists(trx: StoreTransaction, table: string): Promise<boolean> {
  const { rows } = await sql<{ found: boolean }>`select exists (
    select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = current_schema() and c.relname = ${table}
  ) as found`.execute(trx);
  return rows[0]?.found === true;
}

/**
 * Migrations are applied by the role that owns the schema's tables. A runner's role (which may read
 * and write them, never alter them) refuses a schema with pending migrations with what to do, rather
 * than failing half-way on the first DDL statement.
 */
async function refuseUnlessOwner(trx: StoreTransaction, pending: string[]): Promise<void> {
  const { rows } = await sql<{ role: string; owner: string; owns: boolean }>`
    select current_user as role, pg_catalog.pg_get_userbyid(c.relowner) as owner,
      pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') as owns
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = current_schema() and c.relname = ${MIGRATION_TABLE}`.execute(trx);
  const row = rows[0];
  if (row === undefined || row.owns) return;
  throw new StoreError(
    'MIGRATION_FAILED',
    `the database schema is older than this release (pending migrations: ${pending.join(', ')}) and the role "${row.role}" may not migrate it: stop every runner, run \`valhalla db migrate\` as the schema's owner role ("${row.owner}"), re-apply the grants, then start this release (docs/production.md)`,
  );
}
