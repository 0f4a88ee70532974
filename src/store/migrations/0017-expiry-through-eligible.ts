import { type Kysely, type Migration, sql } from 'kysely';

/**
 * Stale pending leads are found through `leads_eligible` (score, then age: one range of ages for each
 * of the 101 scores, `expireStalePending`), and `leads_pending_age` (age alone) is dropped.
 *
 * Every pending lead an ingest stores went into both partial indexes, each at a random place (its age
 * among the others'), so each index added about a page write per lead at every commit. Measured with
 * 1,000,000 generated leads on this schema's plainest layout (no validation, no chain), dropping it
 * took an ingest from 16.5k to 19.6k leads a second. The cycle's selection never read it.
 *
 * Both backends drop it; PostgreSQL reads the same 101 ranges from its `leads_eligible`.
 */
export function expiryThroughEligible(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await sql`drop index if exists leads_pending_age`.execute(db);
    },
  };
}
