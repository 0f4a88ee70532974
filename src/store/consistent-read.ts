import type { Store, StoreTransaction } from './executor.js';

/**
 * Run several reads against one snapshot of the database, so what they return belongs to one moment
 * (a mode and the error rate that caused it, say, never a mode committed between the two reads). On
 * SQLite a deferred read transaction holds one WAL snapshot from its first read; on PostgreSQL a
 * read-only REPEATABLE READ transaction holds one snapshot from its first statement. Writes are
 * refused on PostgreSQL and never made by callers.
 */
export function readConsistently<T>(store: Store, read: (trx: StoreTransaction) => Promise<T>): Promise<T> {
  const transaction = store.db.transaction();
  return store.dialect === 'postgres'
    ? transaction.setIsolationLevel('repeatable read').setAccessMode('read only').execute(read)
    : transaction.execute(read);
}
