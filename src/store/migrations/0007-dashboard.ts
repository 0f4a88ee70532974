import type { Kysely, Migration } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The dashboard's chart of leads per minute over 24 h reads exports and quarantines by time; without
 * these it would scan every lead each time the chart refreshes.
 */
export function dashboard(_dialect: Dialect): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.createIndex('leads_exported_at').on('leads').column('exported_at').execute();
      await db.schema
        .createIndex('leads_state_updated')
        .on('leads')
        .columns(['state', 'updated_at'])
        .execute();
    },
  };
}
