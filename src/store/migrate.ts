import { sql } from 'kysely';
import { StoreError } from './errors.js';
import { migrations } from './migrations/index.js';
import type { Store } from './open.js';

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
  let current = '(migration table)';
  try {
    return await store.db.transaction().execute(async (trx) => {
      if (store.dialect === 'postgres') {
        await sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`.execute(trx);
      }
      await sql`create table if not exists ${sql.table(MIGRATION_TABLE)} (
        name varchar(255) not null primary key,
        timestamp varchar(255) not null
      )`.execute(trx);
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
      for (const name of pending) {
        current = name;
        await known[name]!.up(trx);
        await sql`insert into ${sql.table(MIGRATION_TABLE)} (name, timestamp) values (${name}, ${new Date().toISOString()})`.execute(
          trx,
        );
      }
      return pending;
    });
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw new StoreError('MIGRATION_FAILED', `migration ${current} failed: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
