import type { Migration } from 'kysely';

/**
 * From this release every SQLite connection zeroes what it frees (`secure_delete`, src/store/open.ts).
 * A database written before it may hold old copies of rows in unused page space (ingest's page splits
 * left them), erased leads' included. The migration itself changes no table: its name marks the
 * database as rewritten. `migrateToLatest` rewrites an existing SQLite database from its live rows
 * (VACUUM) before recording it, so no copy written by an older release survives. PostgreSQL: nothing
 * (its old row versions are another matter: see docs/retention.md).
 */
export const ZEROED_PAGES_MIGRATION = '0010-zeroed-pages';

export function zeroedPages(): Migration {
  return { async up() {} };
}
