import type { ThrottleState } from '../policy/index.js';
import type { Executor, StoreTransaction } from '../store/index.js';
import { getRuntimeValue, setRuntimeValue } from '../store/index.js';

/**
 * The partner-wide wait: a 429 (or a 503 with Retry-After) holds EVERY request to the partner (health
 * checks, tokens, every batch) until the time it names, for every runner (it is in the database).
 */
const HOLD_UNTIL_KEY = 'partner_hold_until';
/** When the partner started throttling us (the first 429 after any other answer); empty when it is not. */
const THROTTLED_SINCE_KEY = 'partner_throttled_since';

export async function readPartnerHold(db: Executor): Promise<ThrottleState> {
  const [until, since] = await Promise.all([
    getRuntimeValue(db, HOLD_UNTIL_KEY),
    getRuntimeValue(db, THROTTLED_SINCE_KEY),
  ]);
  return {
    holdUntil: until ? Number(until) : 0,
    throttledSince: since ? Number(since) : null,
  };
}

export async function writePartnerHold(trx: StoreTransaction, state: ThrottleState, now: number) {
  await setRuntimeValue(trx, HOLD_UNTIL_KEY, String(state.holdUntil), now);
  await setRuntimeValue(
    trx,
    THROTTLED_SINCE_KEY,
    state.throttledSince === null ? '' : String(state.throttledSince),
    now,
  );
}

/** The partner answered something other than a 429: a throttling run, if any, is over. */
export async function endThrottling(trx: StoreTransaction, now: number) {
  if ((await getRuntimeValue(trx, THROTTLED_SINCE_KEY)) ?? '') {
    await setRuntimeValue(trx, THROTTLED_SINCE_KEY, '', now);
  }
}
