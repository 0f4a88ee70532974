import type { Store } from './open.js';

/**
 * SQLite: have the data this connection overwrites zeroed in the file, not merely unlinked
 * (`secure_delete`); without it an erased e-mail can stay readable in a page's free space. Nothing on
 * PostgreSQL (its old row versions stay until VACUUM).
 */
export function zeroOverwrittenPages(store: Store): void {
  store.sqlite?.pragma('secure_delete = ON');
}

/**
 * After an erasure commits: SQLite's write-ahead log still holds the pages as they were before it;
 * copy the log into the database and truncate it. `busy`: another process was reading, so the log
 * could not be truncated (the next checkpoint does it). `postgres`: not applicable.
 */
export function truncateWriteAheadLog(store: Store): 'done' | 'busy' | 'postgres' {
  if (store.sqlite === null) return 'postgres';
  try {
    const [result] = store.sqlite.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (!result || result.busy === 0) return 'done';
  } catch {
    // Reported as busy: the data is erased either way, only the old pages linger.
  }
  return 'busy';
}
