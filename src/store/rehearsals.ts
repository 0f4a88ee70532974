import type { LeadState } from '../policy/index.js';
import type { Executor } from './executor.js';
import { leadFromRow } from './leads.js';
import type { DeliveryState, RequestClass, RequestsTable } from './schema.js';

/**
 * What a rehearsal (the conformance run, the rollback drill) reads back from its private store to
 * compare with the sandbox partner's own ledger. Never used on an operator's installation.
 */
export interface LeadOutcome {
  id: number;
  dedup_key: string;
  external_id: string | null;
  state: LeadState;
  state_reason: string | null;
}

/** Every lead with where it ended, in id order. */
export async function leadOutcomes(db: Executor): Promise<LeadOutcome[]> {
  const rows = await db
    .selectFrom('leads')
    .select(['id', 'dedup_key', 'external_id', 'state', 'state_reason'])
    .orderBy('id')
    .execute();
  return rows.map(leadFromRow);
}

/** Every live delivery's batch key, attempts and state. */
export async function liveDeliveryAttempts(
  db: Executor,
): Promise<{ batch_key: string; attempts: number; state: DeliveryState }[]> {
  return db
    .selectFrom('deliveries')
    .select(['batch_key', 'attempts', 'state'])
    .where('kind', '=', 'live')
    .execute();
}

/** Every request recorded for the error-rate rule: its endpoint and class. */
export async function recordedRequests(
  db: Executor,
): Promise<{ endpoint: RequestsTable['endpoint']; class: RequestClass }[]> {
  return db.selectFrom('requests').select(['endpoint', 'class']).execute();
}
