import { deliveriesInState, deliveryLeads } from '../store/index.js';
import type { EngineContext } from './context.js';
import { planMove, recordMove } from './lifecycle.js';
import { quarantineBatch } from './outcome.js';

/**
 * After a crash: a batch caught mid-request had a request nobody answered. The partner may have it,
 * so it is asked again under the same key (a replay cannot duplicate, and spends no retry), unless
 * that key has gone unanswered too often (MAX_UNANSWERED_PER_KEY): then it is quarantined, with an
 * alert, as one the partner may have, and a release replays its key first.
 */
export async function recover(ctx: EngineContext) {
  const { store, audit, clock, logger, mustLead, pseudonyms } = ctx;
  const caught = await deliveriesInState(store.db, 'sending');
  let resumed = 0;
  let quarantined = 0;
  for (const delivery of caught) {
    const now = clock.now();
    const move = planMove(delivery, { kind: 'interrupted' });
    await store.db.transaction().execute(async (trx) => {
      await mustLead(trx, 'recovery');
      if (move.to === 'retry_wait') {
        await audit.append(trx, {
          actor: 'engine',
          action: 'recovery.resend',
          subject: `batch:${delivery.batch_key}`,
          details: {
            delivery: delivery.id,
            attempts: delivery.attempts,
            unanswered: delivery.unanswered + 1,
            reason: move.reason,
          },
        });
        await recordMove(trx, delivery.id, move, now);
        return;
      }
      const leads = await deliveryLeads(trx, delivery.id);
      await quarantineBatch(
        ctx,
        trx,
        delivery,
        move,
        leads.map((l) => l.id),
        pseudonyms(leads),
        { action: 'recovery.quarantined', attempt: delivery.attempts, status: null },
      );
    });
    if (move.to === 'quarantined') quarantined++;
    else resumed++;
  }
  if (caught.length > 0) logger.warn({ resumed, quarantined }, 'batches interrupted mid-request');
  return { resumed, quarantined };
}
