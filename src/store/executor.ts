import type SqliteDatabase from 'better-sqlite3';
import type { Kysely, Transaction } from 'kysely';
import type { Dialect } from './dialect.js';
import type { Database } from './schema.js';

/**
 * The store's handles, as every other module names them (only the store imports the query builder):
 * the database (a SQLite file or a PostgreSQL pool), a transaction the caller holds, and either one,
 * which is what a repository function runs its statements on.
 */
export type StoreDb = Kysely<Database>;
export type StoreTransaction = Transaction<Database>;
export type Executor = StoreDb | StoreTransaction;

/** An open store: the database handle, its dialect and how to release it. */
export interface Store {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** The raw better-sqlite3 handle on SQLite (bulk paths only), null on PostgreSQL. */
  readonly sqlite: SqliteDatabase.Database | null;
  /** Files whose modes were tightened on opening (SQLite: the database, its WAL and SHM). */
  readonly tightened: readonly string[];
  /** Release the database; safe to call twice. */
  close(): Promise<void>;
}
