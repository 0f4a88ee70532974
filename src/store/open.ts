import { closeSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import type pg from 'pg';
import {
  isPrivateFileError,
  openPrivateFile,
  PRIVATE_DIR_MODE,
  tightenExistingFile,
} from '../files/index.js';
import { StoreError } from './errors.js';
import type { Store } from './executor.js';
import { migrateToLatest } from './migrate.js';
import type { Database } from './schema.js';

export type StoreTarget =
  | { kind: 'sqlite'; path: string }
  | {
      kind: 'postgres';
      url: string /** A schema to use instead of public (tests: one per run). */;
      schema?: string;
    };

/** Open the database named by the configuration and bring its schema up to date. */
export async function openStore(target: StoreTarget, options: { migrate?: boolean } = {}): Promise<Store> {
  const store =
    target.kind === 'sqlite' ? openSqlite(target.path) : await openPostgres(target.url, target.schema);
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

/** What the write-ahead log file is cut back to when it starts over: 64 MiB. */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

function openSqlite(path: string): Store {
  let tightened: string[] = [];
  let raw: SqliteDatabase.Database;
  try {
    if (path !== ':memory:') tightened = prepareDatabaseFiles(path);
    raw = new SqliteDatabase(path);
  } catch (cause) {
    if (isPrivateFileError(cause)) throw new StoreError('DATABASE_UNAVAILABLE', cause.message, { cause });
    throw new StoreError(
      'DATABASE_UNAVAILABLE',
      `cannot open the SQLite database ${path}: ${(cause as Error).message}`,
      { cause },
    );
  }
  raw.pragma('journal_mode = WAL');
  // FULL: a commit survives a power cut. Writes are batched per chunk/cycle, so the fsync is paid rarely.
  raw.pragma('synchronous = FULL');
  raw.pragma('foreign_keys = ON');
  // INSERT OR REPLACE deletes the row it replaces: with this on, that delete meets the delete triggers.
  raw.pragma('recursive_triggers = ON');
  raw.pragma('busy_timeout = 5000');
  // Every writer zeroes what it frees: a deleted or updated row, a page's cells moved by a split, a
  // page put on the free list. Without it, the old bytes of a row (a person's e-mail) stay readable in
  // unused page space after the row itself is erased. Set on every connection, not only erasure's:
  // ingest's page splits leave such copies too.
  raw.pragma('secure_delete = ON');
  // A write-ahead log that grew (an ingest folds it every 256 MiB) is cut back to this size when it
  // starts over, instead of keeping its largest size on disk for as long as a connection is open.
  raw.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: raw }) });
  let closed = false;
  return {
    db,
    dialect: 'sqlite',
    sqlite: raw,
    tightened,
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

/**
 * The database holds PII: it is created 0600 before SQLite opens it (SQLite gives the WAL and SHM
 * files the database's own mode, so they follow), in a folder made 0700; a database, WAL or SHM
 * left open to others by an older release or a loose umask is tightened.
 */
function prepareDatabaseFiles(path: string): string[] {
  const dir = dirname(path);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (!existsSync(path)) {
    try {
      closeSync(openPrivateFile(path));
    } catch (error) {
      // Another process created it between the look and the open: it is tightened below.
      if (!(isPrivateFileError(error) && error.code === 'EXISTS')) throw error;
    }
  }
  return [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]
    .map(tightenExistingFile)
    .filter((note): note is string => note !== null);
}

/** PostgreSQL ends a session left idle inside a transaction this long (see openPostgres). */
export const IDLE_IN_TRANSACTION_MS = 15_000;

async function openPostgres(url: string, schema: string | undefined): Promise<Store> {
  if (schema !== undefined && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) {
    throw new StoreError('DATABASE_UNAVAILABLE', `invalid schema name ${JSON.stringify(schema)}`);
  }
  // Loaded here, not at start: a command on the embedded SQLite never pays for the driver.
  const { default: pg } = await import('pg');
  // bigint columns hold epoch milliseconds and counts, all far below 2^53: read them as numbers.
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === 20 || oid === 1700
        ? (value: string) => Number(value)
        : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: 10_000,
    types,
    // A connection that goes silent (a network cut without a reset) is noticed by TCP keepalives.
    keepAlive: true,
    keepAliveInitialDelayMillis: 5_000,
    // No transaction of the product waits on its client: one idle that long has a client that is gone
    // (a runner cut off or frozen). The server ends it, and the lease's row lock it held with it, so
    // the other runners can take over.
    options: `${schema ? `-c search_path=${schema} ` : ''}-c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_MS}`,
  });
  pool.on('error', () => {
    // An idle client lost its connection; the next query reports it. Without this handler the process would crash.
  });
  // A client in use when the server ends its connection (terminated, failover, restart) emits 'error'
  // too, and the pool's handler does not cover a checked-out client: the query in progress rejects
  // (its transaction fails closed) and the process must not die of the event besides.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  try {
    const client = await pool.connect();
    try {
      if (schema) await createSchemaIfMissing(client, schema);
    } finally {
      client.release();
    }
  } catch (cause) {
    await pool.end().catch(() => {});
    throw new StoreError(
      'DATABASE_UNAVAILABLE',
      `cannot connect to PostgreSQL: ${(cause as Error).message}`,
      { cause },
    );
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  let closed = false;
  return {
    db,
    dialect: 'postgres',
    sqlite: null,
    tightened: [],
    async close() {
      if (closed) return;
      closed = true;
      await db.destroy();
    },
  };
}

/**
 * `create schema if not exists` is not safe against itself: two processes starting at once on a fresh
 * schema can both find it missing, and the second fails on the catalog's unique name. It exists then.
 * It also needs CREATE on the database even when the schema exists, which a runner's role has not
 * (docs/production.md): look first.
 */
async function createSchemaIfMissing(client: pg.PoolClient, schema: string): Promise<void> {
  const found = await client.query('select 1 from pg_catalog.pg_namespace where nspname = $1', [schema]);
  if (found.rowCount !== null && found.rowCount > 0) return;
  try {
    await client.query(`create schema if not exists ${schema}`);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== '23505' && code !== '42P06') throw error; // unique_violation, duplicate_schema
  }
}
