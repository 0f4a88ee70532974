/** Outbox states a test sets up directly, without running a cycle. */
import { leadKey } from '../../src/engine/index.js';
import { createDelivery, type Lead, type Store } from '../../src/store/index.js';

/**
 * Claim `lead` into a live batch `batchKey` of a cycle of its own, as the engine does, but send
 * nothing: the lead is `in_flight` and the batch `queued`, waiting for its first request.
 */
export async function queueInLiveBatch(
  store: Store,
  lead: Lead,
  batchKey: string,
  now: number,
): Promise<void> {
  await store.db.transaction().execute(async (trx) => {
    const cycle = await trx
      .insertInto('cycles')
      .values({ started_at: now, phase: 4, kind: 'live', ceiling: 1, limited_by: 'test' })
      .returning('id')
      .executeTakeFirstOrThrow();
    await createDelivery(trx, { batchKey, cycleId: cycle.id, kind: 'live', payloadSha256: 'x', now }, [
      { id: lead.id, leadKey: leadKey(lead), exposure: 0 },
    ]);
  });
}
