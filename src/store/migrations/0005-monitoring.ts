import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';
import { columnTypes } from './columns.js';

/**
 * Monitoring: every outbound request's outcome (the error-rate window and the hourly failure count
 * read it), the worker's heartbeats (watchdog, stability verification, metrics), and the alert
 * outbox: an alert is recorded in the transaction of its event and delivered per channel later, so
 * a channel that is down never blocks the export and nothing is lost when the process dies.
 */
export function monitoring(dialect: Dialect): Migration {
  const { pk, big, id } = columnTypes(dialect);
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('requests')
        .addColumn('id', pk, id)
        .addColumn('at', big, (c) => c.notNull())
        // leads: a batch request; health / token: a failed check before one (a passing one is not
        // recorded: the batch request that follows it is).
        .addColumn('endpoint', 'text', (c) =>
          c.notNull().check(sql`endpoint in ('leads', 'health', 'token')`),
        )
        .addColumn('delivery_id', big, (c) => c.references('deliveries.id'))
        .addColumn('attempt', 'integer')
        .addColumn('outcome', 'text', (c) =>
          c.notNull().check(sql`outcome in ('accepted', 'retryable', 'auth', 'permanent')`),
        )
        .addColumn('status', 'integer')
        // success, failure (counts against the error rate) or excluded (429: the partner's own throttle).
        .addColumn('class', 'text', (c) =>
          c.notNull().check(sql`class in ('success', 'failure', 'excluded')`),
        )
        .addColumn('ms', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('requests_at').on('requests').column('at').execute();

      await db.schema
        .createTable('heartbeats')
        .addColumn('id', pk, id)
        .addColumn('at', big, (c) => c.notNull())
        .addColumn('runner', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer', (c) => c.notNull())
        .addColumn('worker_started_at', big, (c) => c.notNull())
        .addColumn('phase', 'integer', (c) => c.notNull())
        .addColumn('rss_bytes', big, (c) => c.notNull())
        .addColumn('heap_used_bytes', big, (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('cycle_id', big)
        .execute();
      await db.schema.createIndex('heartbeats_at').on('heartbeats').column('at').execute();

      // Alerts: a de-duplication key (repeats within the window are counted on the first, not sent),
      // whether it raises, recovers or just reports, and how many repeats it absorbed.
      await db.schema
        .alterTable('alerts')
        .addColumn('dedup_key', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      await db.schema
        .alterTable('alerts')
        .addColumn('kind', 'text', (c) =>
          c.notNull().defaultTo('event').check(sql`kind in ('event', 'raised', 'recovered', 'test')`),
        )
        .execute();
      await db.schema
        .alterTable('alerts')
        .addColumn('repeats', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('alerts_dedup').on('alerts').columns(['dedup_key', 'at']).execute();

      await db.schema
        .createTable('alert_deliveries')
        .addColumn('alert_id', big, (c) => c.notNull().references('alerts.id'))
        .addColumn('channel', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull().check(sql`state in ('pending', 'sent', 'failed')`))
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', big, (c) => c.notNull())
        // A dispatcher holds a delivery until then: two processes never send the same alert twice.
        .addColumn('lease_until', big)
        .addColumn('sent_at', big)
        .addColumn('last_error', 'text')
        .addPrimaryKeyConstraint('alert_deliveries_pk', ['alert_id', 'channel'])
        .execute();
      await db.schema
        .createIndex('alert_deliveries_due')
        .on('alert_deliveries')
        .columns(['state', 'next_attempt_at'])
        .execute();
    },
  };
}
