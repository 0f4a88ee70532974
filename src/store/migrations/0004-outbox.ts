import { type Kysely, type Migration, sql } from 'kysely';
import type { Dialect } from '../dialect.js';

/**
 * The cycle engine's tables: cycles, the outbox (deliveries, one per batch, with the leads each
 * carries) and alert records; plus the mark a Phase 3 dry run leaves on a lead.
 */
export function outbox(dialect: Dialect): Migration {
  const pk = dialect === 'postgres' ? 'bigserial' : 'integer';
  const big = dialect === 'postgres' ? 'bigint' : 'integer';
  const id = (c: import('kysely').ColumnDefinitionBuilder) =>
    dialect === 'sqlite' ? c.primaryKey().autoIncrement() : c.primaryKey();
  return {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('leads').addColumn('dry_run_at', big).execute();
      // Expiring pending leads past the freshness window each cycle: a range scan, not a scan of the queue.
      await sql`create index leads_pending_age on leads (source_ts) where state = 'pending'`.execute(db);

      // The daily cap and budget, counted as leads are claimed into live batches (one row per UTC day):
      // read in O(1) by every cycle and every guard decision.
      await db.schema
        .createTable('daily_usage')
        .addColumn('day', 'text', (c) => c.primaryKey())
        .addColumn('leads', 'integer', (c) => c.notNull())
        .addColumn('exposure', dialect === 'postgres' ? 'double precision' : 'real', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('cycles')
        .addColumn('id', pk, id)
        .addColumn('started_at', big, (c) => c.notNull())
        .addColumn('finished_at', big)
        .addColumn('phase', 'integer', (c) => c.notNull().check(sql`phase in (3, 4)`))
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('live', 'dry_run', 'idle')`))
        .addColumn('ramp_stage', 'integer')
        .addColumn('ceiling', 'integer', (c) => c.notNull())
        .addColumn('limited_by', 'text', (c) => c.notNull())
        .addColumn('claimed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('actions', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('summary', 'text')
        .addColumn('confirmed_at', big)
        .addColumn('confirmed_by', 'text')
        .execute();

      await db.schema
        .createTable('deliveries')
        .addColumn('id', pk, id)
        .addColumn('batch_key', 'text', (c) => c.notNull().unique())
        .addColumn('cycle_id', big, (c) => c.notNull().references('cycles.id'))
        .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('live', 'dry_run')`))
        .addColumn('state', 'text', (c) =>
          c
            .notNull()
            .check(
              sql`state in ('queued', 'sending', 'retry_wait', 'accepted', 'quarantined', 'refused', 'dry_run')`,
            ),
        )
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', big)
        .addColumn('lead_count', 'integer', (c) => c.notNull())
        .addColumn('payload_sha256', 'text', (c) => c.notNull())
        // A masked summary of the leads (pseudonym, masked e-mail, score): what a dry run would have sent.
        .addColumn('summary', 'text')
        .addColumn('created_at', big, (c) => c.notNull())
        .addColumn('updated_at', big, (c) => c.notNull())
        .addColumn('last_status', 'integer')
        .addColumn('last_outcome', 'text')
        .execute();
      await db.schema
        .createIndex('deliveries_due')
        .on('deliveries')
        .columns(['state', 'next_attempt_at'])
        .execute();
      await db.schema
        .createIndex('deliveries_created')
        .on('deliveries')
        .columns(['kind', 'created_at'])
        .execute();

      await db.schema
        .createTable('delivery_leads')
        .addColumn('delivery_id', big, (c) => c.notNull().references('deliveries.id'))
        .addColumn('lead_id', big, (c) => c.notNull().references('leads.id'))
        .addColumn('lead_key', 'text', (c) => c.notNull())
        .addColumn('live', 'integer', (c) => c.notNull().check(sql`live in (0, 1)`))
        .addColumn('released', 'integer', (c) => c.notNull().defaultTo(0).check(sql`released in (0, 1)`))
        .addPrimaryKeyConstraint('delivery_leads_pk', ['delivery_id', 'lead_id'])
        .execute();
      // One live delivery per lead: only an operator's release of a quarantined
      // delivery lets the lead into another one.
      await sql`create unique index delivery_leads_one_live on delivery_leads (lead_id) where live = 1 and released = 0`.execute(
        db,
      );
      await db.schema.createIndex('delivery_leads_lead').on('delivery_leads').column('lead_id').execute();

      await db.schema
        .createTable('alerts')
        .addColumn('id', pk, id)
        .addColumn('at', big, (c) => c.notNull())
        .addColumn('severity', 'text', (c) =>
          c.notNull().check(sql`severity in ('info', 'warning', 'critical')`),
        )
        .addColumn('event', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('details', 'text', (c) => c.notNull())
        .addColumn('sent_at', big)
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
    },
  };
}
