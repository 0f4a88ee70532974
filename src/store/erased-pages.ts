import { sql } from 'kysely';
import type { Store } from './executor.js';

/** The tables that hold a lead's personal data: the lead rows, and the batch summaries that name them. */
const TABLES_WITH_LEAD_DATA = ['leads', 'deliveries'] as const;

/**
 * Where the old copies of data just erased (or archived) may still be, once the change committed.
 *
 * - SQLite: every connection zeroes what it frees (`secure_delete`, src/store/open.ts), so the main
 *   file holds none; the write-ahead log still holds the pages as they were, until it is copied into
 *   the database and truncated, done here. `busy`: another process was reading, so the log could not
 *   be truncated now (the next checkpoint does it).
 * - PostgreSQL: an update leaves the old row version in the table's files (and its index entries)
 *   until the table is rewritten; `commands` are the exact statements for the schema in use.
 */
export type ErasedDataRemnants =
  | { kind: 'none' }
  | { kind: 'sqlite_log_busy' }
  | { kind: 'postgres'; schema: string; commands: string[] };

export async function flushErasedData(store: Store): Promise<ErasedDataRemnants> {
  if (store.sqlite === null) {
    const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(store.db);
    const schema = rows[0]?.schema ?? 'public';
    const quoted = `"${schema.replaceAll('"', '""')}"`;
    return {
      kind: 'postgres',
      schema,
      commands: [...TABLES_WITH_LEAD_DATA.map((t) => `VACUUM (FULL) ${quoted}.${t};`), 'CHECKPOINT;'],
    };
  }
  try {
    const [result] = store.sqlite.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
    if (!result || result.busy === 0) return { kind: 'none' };
  } catch {
    // Reported as busy: the data is erased either way, only the old pages linger in the log.
  }
  return { kind: 'sqlite_log_busy' };
}
