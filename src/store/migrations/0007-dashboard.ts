import type { Kysely, Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The dashboard's chart of leads per minute over 24 h reads exports by time; without this it would
 * scan every lead each time the chart refreshes. (Dry runs and quarantines come from deliveries,
 * already indexed by kind and time, and by state.)
 */
export function dashboard(_dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.createIndex('leads_exported_at').on('leads').column('exported_at').execute();
    },
  };
}
