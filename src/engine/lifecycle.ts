import {
  type DeliveryEvent,
  type DeliveryMove,
  type DeliveryState,
  type DueState,
  planDeliveryTransition,
} from '../policy/index.js';
import type { StoreTransaction } from '../store/index.js';
import { type Delivery, setDeliveryState } from '../store/index.js';

/**
 * The lifecycle's next step for `delivery` (src/policy/delivery-lifecycle.ts). `state` is the state it
 * is in now when the row in hand was read before (an authorised batch is `sending`). An event the
 * lifecycle does not allow there is a bug: it throws, and the transaction records nothing.
 */
export function planMove(
  delivery: Delivery,
  event: DeliveryEvent,
  state: DeliveryState = delivery.state,
): DeliveryMove {
  const transition = planDeliveryTransition(
    {
      state,
      batchKey: delivery.batch_key,
      attempts: delivery.attempts,
      failedAnswers: delivery.failed_answers,
      unanswered: delivery.unanswered,
      lastOutcome: delivery.last_outcome,
      partnerMayHave: delivery.partner_may_have === 1,
    },
    event,
  );
  if (transition.kind === 'invalid') throw new Error(`delivery ${delivery.id}: ${transition.reason}`);
  return transition;
}

/** Record a move in the outbox at `now` (its delay counts from then). */
export async function recordMove(
  trx: StoreTransaction,
  deliveryId: number,
  move: DeliveryMove,
  now: number,
): Promise<void> {
  await setDeliveryState(trx, deliveryId, {
    state: move.to,
    now,
    ...(move.delayMs !== undefined
      ? { nextAttemptAt: move.delayMs === null ? null : now + move.delayMs }
      : {}),
    ...(move.attemptsDelta ? { attemptsDelta: move.attemptsDelta } : {}),
    ...(move.failedAnswersDelta ? { failedAnswersDelta: move.failedAnswersDelta } : {}),
    ...(move.unansweredDelta ? { unansweredDelta: move.unansweredDelta } : {}),
    ...(move.resetOutcomeCounts ? { resetOutcomeCounts: true } : {}),
    ...(move.partnerMayHave !== undefined ? { partnerMayHave: move.partnerMayHave } : {}),
    ...(move.lastStatus !== undefined ? { lastStatus: move.lastStatus } : {}),
    ...(move.lastOutcome !== undefined ? { lastOutcome: move.lastOutcome } : {}),
  });
}

/** The state a batch was authorised from (a due batch is queued or waiting for its retry). */
export function dueState(delivery: Delivery): DueState {
  if (delivery.state === 'queued' || delivery.state === 'retry_wait') return delivery.state;
  throw new Error(`delivery ${delivery.id} was authorised from ${delivery.state}, not a due state`);
}
