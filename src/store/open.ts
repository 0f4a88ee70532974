import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, type MigrationProvider, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import type { Dialect } from './dialect.js';
import { StoreError } from './errors.js';
import { migrations } from './migrations/index.js';
import type { Database } from './schema.js';

export type StoreTarget =
  | { kind: 'sqlite'; path: string }
  | { kind: 'postgres'; url: string; /** A schema to use instead of public (tests: one per run). */ schema?: string };

export interface Store {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** The raw better-sqlite3 handle on SQLite (bulk paths only), null on PostgreSQL. */
  readonly sqlite: SqliteDatabase.Database | null;
  /** Release the database; safe to call twice. */
  close(): Promise<void>;
}

const MIGRATION_TABLE = 'valhalla_migration';
const MIGRATION_LOCK_TABLE = 'valhalla_migration_lock';

/** Open the database named by the configuration and bring its schema up to date. */
export async function openStore(target: StoreTarget, options: { migrate?: boolean } = {}): Promise<Store> {
  const store = target.kind === 'sqlite' ? openSqlite(target.path) : await openPostgres(target.url, target.schema);
  if (options.migrate !== false) {
    try {
      await migrateToLatest(store);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}

function openSqlite(path: string): Store {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  let raw: SqliteDatabase.Database;
  try {
    raw = new SqliteDatabase(path);
  } catch (cause) {
    throw new StoreError('DATABASE_UNAVAILABLE', `cannot open the SQLite database ${path}: ${(cause as Error).message}`, { cause });
  }
  raw.pragma('journal_mode = WAL');
  // FULL: a commit survives a power cut. Writes are batched per chunk/cycle, so the fsync is paid rarely.
  raw.pragma('synchronous = FULL');
  raw.pragma('foreign_keys = ON');
  raw.pragma('busy_timeout = 5000');
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: raw }) });
  let closed = false;
  return {
    db,
    dialect: 'sqlite',
    sqlite: raw,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

async function openPostgres(url: string, schema: string | undefined): Promise<Store> {
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreError('DATABASE_UNAVAILABLE', `invalid schema name ${JSON.stringify(schema)}`);
  }
  // bigint columns hold epoch milliseconds and counts, all far below 2^53: read them as numbers.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === 20 || oid === 1700 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: 10_000,
    types,
    ...(schema ? { options: `-c search_path=${schema}` } : {}),
  });
  pool.on('error', () => {
    // An idle client lost its connection; the next query reports it. Without this handler the process would crash.
  });
  try {
    const client = await pool.connect();
    try {
      if (schema) await client.query(`create schema if not exists ${schema}`);
    } finally {
      client.release();
    }
  } catch (cause) {
    await pool.end().catch(() => {});
    throw new StoreError('DATABASE_UNAVAILABLE', `cannot connect to PostgreSQL: ${(cause as Error).message}`, { cause });
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    dialect: 'postgres',
    sqlite: null,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

/** Apply pending migrations under the migrator's lock; refuse a database from a newer release. */
export async function migrateToLatest(store: Store): Promise<string[]> {
  const known = migrations(store.dialect);
  const provider: MigrationProvider = { getMigrations: async () => known };
  await refuseNewerSchema(store, Object.keys(known));
  const migrator = new Migrator({
    db: store.db,
    provider,
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    throw new StoreError('MIGRATION_FAILED', `migration ${failed} failed: ${(error as Error).message}`, { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

async function refuseNewerSchema(store: Store, knownNames: string[]): Promise<void> {
  let applied: { rows: { name: string }[] };
  try {
    applied = await sql<{ name: string }>`select name from ${sql.table(MIGRATION_TABLE)}`.execute(store.db);
  } catch {
    return; // a new database: no migration table yet
  }
  const unknown = applied.rows.map((r) => r.name).filter((name) => !knownNames.includes(name));
  if (unknown.length > 0) {
    throw new StoreError(
      'SCHEMA_TOO_NEW',
      `the database was migrated by a newer release (unknown migrations: ${unknown.join(', ')}); refusing to run against it`,
    );
  }
}
