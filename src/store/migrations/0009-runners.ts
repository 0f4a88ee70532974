import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * Several runners on one database.
 *
 * - `runner_lease`: one row per lease (`leader`). The runner named in it leads until `expires_at`;
 *   each takeover raises `epoch`. `pid_space` tells whether another runner can see the holder's
 *   process (the same boot of the same machine, the same pid namespace); `quiet_until`: no batch
 *   caught mid-request is recovered before then (a previous leader's request may still be in flight). Every claim, authorisation and request start reads this row FOR
 *   UPDATE and checks it is still this runner's and unexpired, so a runner that lost the lease (cut
 *   off, paused, slow) can change nothing, and those transactions run one at a time across runners.
 * - `rate_starts`: the shared sliding log of request starts to the partner. A start is granted only
 *   while fewer than the limit lie in the last window (plus margin), under the lease's row lock.
 *   `settled_at` is when the partner had certainly seen the request (its answer began, or the request
 *   ended); until then the start counts as arriving "now", up to `expires_at` (the request's timeout).
 *
 * Times are epoch milliseconds: on PostgreSQL from the database's clock, so runners on several hosts
 * share one clock; on SQLite (one host) from the runner's.
 */
export function runners(dialect: Dialect): Migration {
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const pk = dialect === 'postgres' ? 'bigserial' : 'integer';
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('runner_lease')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer', (c) => c.notNull())
        .addColumn('pid_space', 'text', (c) => c.notNull())
        .addColumn('epoch', big, (c) => c.notNull())
        .addColumn('acquired_at', big, (c) => c.notNull())
        .addColumn('renewed_at', big, (c) => c.notNull())
        .addColumn('expires_at', big, (c) => c.notNull())
        .addColumn('quiet_until', big, (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('rate_starts')
        .addColumn('id', pk, (c) => (dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey()))
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('epoch', big, (c) => c.notNull())
        .addColumn('granted_at', big, (c) => c.notNull())
        .addColumn('settled_at', big)
        .addColumn('expires_at', big, (c) => c.notNull())
        .execute();
      await sql.raw('create index rate_starts_granted on rate_starts (granted_at)').execute(db);
    },
  };
}
