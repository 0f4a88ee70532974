import type { Clock } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import {
  type Alert,
  type AlertDelivery,
  deferAlertDeliveries,
  finishAlertDelivery,
  leaseDueAlertDeliveries,
  type Store,
} from '../store/index.js';
import type { AlertChannel, OutgoingAlert } from './channels.js';

/**
 * Waits before the next try of a delivery, by attempts made (1st failure: 5 s, …). A webhook or a
 * mail server that is down for minutes is retried often; one down for hours is not hammered.
 */
export const ALERT_RETRY_DELAYS_MS: readonly number[] = [
  5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 3_600_000,
];
/** A delivery is given up (failed) after this many attempts: about 2 h 47 min of retries. */
export const ALERT_MAX_ATTEMPTS = ALERT_RETRY_DELAYS_MS.length + 1;

/** How long a pass holds the deliveries it took; another dispatcher cannot take them meanwhile. */
const LEASE_MS = 60_000;
/**
 * The longest one send may take. Twice this fits in the lease, and a send is started only while the
 * lease has this much left, so a delivery is never still in flight when another dispatcher may take it.
 */
const SEND_DEADLINE_MS = 25_000;
const DELIVERIES_PER_PASS = 25;

export interface DispatchResult {
  sent: number;
  retrying: number;
  failed: number;
}

export interface AlertDispatcher {
  /** One pass: send the deliveries due now. Channel failures are recorded, never thrown. */
  dispatchDue(): Promise<DispatchResult>;
  /** Run a pass every `intervalMs` (real timers, unref'd); a second call does nothing. */
  start(intervalMs: number): void;
  /** Stop the loop and wait for a pass in progress; safe to call twice. */
  stop(): Promise<void>;
}

/** The wait before the next try after `attempts` failed attempts, or null when it is time to give up. */
export function alertRetryDelay(attempts: number): number | null {
  if (attempts >= ALERT_MAX_ATTEMPTS) return null;
  return ALERT_RETRY_DELAYS_MS[Math.max(0, attempts - 1)] ?? null;
}

type Leased = AlertDelivery & { alert: Alert };

/**
 * The alert outbox's sender. Each pass leases the due deliveries, then sends them channel by
 * channel, the channels side by side: a channel that hangs or fails costs only its own deliveries.
 * In a channel, the first failure ends that channel's pass: the deliveries after it are handed back,
 * due again at the failed one's retry time (a down server costs one timeout per retry, not one per
 * alert, and the alerts behind a failed one are not held for a whole lease).
 */
export function createAlertDispatcher(deps: {
  store: Store;
  clock: Clock;
  logger: Logger;
  channels: readonly AlertChannel[];
}): AlertDispatcher {
  const { store, clock, logger, channels } = deps;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  /** Bumped by each start(): a pass of an earlier loop (stopped, then started again) does not reschedule. */
  let loop = 0;
  /** Every pass in progress, the loop's and direct calls': stop() waits for all of them. */
  const passes = new Set<Promise<unknown>>();

  async function deliverOnChannel(name: string, deliveries: Leased[], tally: DispatchResult): Promise<void> {
    const channel = channels.find((c) => c.name === name);
    // The deliveries after `index` are handed back (no attempt counted) when this pass stops early.
    const handBack = (index: number, at: number) =>
      deferAlertDeliveries(
        store.db,
        deliveries.slice(index).map((d) => ({ alertId: d.alert_id, channel: name })),
        at,
      );
    for (const [index, delivery] of deliveries.entries()) {
      const key = { alertId: delivery.alert_id, channel: name };
      if (!channel) {
        // Recorded when the channel was configured; it is not any more (settings changed, restart).
        const error = `the ${name} channel is not configured any more: not sent`;
        await finishAlertDelivery(store.db, key, { state: 'failed', error });
        logger.warn({ channel: name, alertId: delivery.alert_id, reason: error }, 'alert delivery failed');
        tally.failed += 1;
        continue;
      }
      if (delivery.lease_until === null || clock.now() + SEND_DEADLINE_MS > delivery.lease_until) {
        // Not enough of the lease left to send safely: the next pass takes them.
        await handBack(index, clock.now());
        return;
      }
      const signal = AbortSignal.timeout(SEND_DEADLINE_MS);
      let failure: string | null = null;
      try {
        await channel.send(toOutgoing(delivery.alert), signal);
      } catch (error) {
        failure = error instanceof Error ? error.message : String(error);
      }
      if (failure === null) {
        await finishAlertDelivery(store.db, key, { state: 'sent', at: clock.now() });
        tally.sent += 1;
        continue;
      }
      const attempts = delivery.attempts + 1;
      const delay = alertRetryDelay(attempts);
      if (delay === null) {
        await finishAlertDelivery(store.db, key, { state: 'failed', error: failure });
        logger.error(
          { channel: name, alertId: delivery.alert_id, attempts, reason: failure },
          'alert delivery failed for good: attempts exhausted',
        );
        tally.failed += 1;
      } else {
        const nextAttemptAt = clock.now() + delay;
        await finishAlertDelivery(store.db, key, { state: 'pending', nextAttemptAt, error: failure });
        logger.warn(
          {
            channel: name,
            alertId: delivery.alert_id,
            attempts,
            nextAttemptAt: new Date(nextAttemptAt).toISOString(),
            reason: failure,
          },
          'alert delivery failed; will retry',
        );
        tally.retrying += 1;
        // The channel just failed: its other alerts wait for the same retry time, not the lease.
        await handBack(index + 1, nextAttemptAt);
        return;
      }
      await handBack(index + 1, clock.now());
      return;
    }
  }

  function dispatchDue(): Promise<DispatchResult> {
    const pass = dispatchPass();
    const settled = pass.catch(() => undefined);
    passes.add(settled);
    void settled.finally(() => passes.delete(settled));
    return pass;
  }

  async function dispatchPass(): Promise<DispatchResult> {
    const leased = await leaseDueAlertDeliveries(store.db, clock.now(), LEASE_MS, DELIVERIES_PER_PASS);
    const tally: DispatchResult = { sent: 0, retrying: 0, failed: 0 };
    if (leased.length === 0) return tally;
    const byChannel = new Map<string, Leased[]>();
    for (const delivery of leased) {
      const list = byChannel.get(delivery.channel) ?? [];
      list.push(delivery);
      byChannel.set(delivery.channel, list);
    }
    const outcomes = await Promise.allSettled(
      [...byChannel].map(([name, deliveries]) => deliverOnChannel(name, deliveries, tally)),
    );
    // Only the database can fail here (a channel's failure is recorded above): say so once the
    // other channel has finished, so its outcomes are recorded first.
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
    return tally;
  }

  function schedule(intervalMs: number, delay: number, thisLoop: number): void {
    timer = setTimeout(() => {
      timer = null;
      void dispatchDue()
        .catch((error: unknown) => logger.error({ err: error }, 'alert dispatch pass failed'))
        .finally(() => {
          if (running && loop === thisLoop) schedule(intervalMs, intervalMs, thisLoop);
        });
    }, delay);
    timer.unref();
  }

  return {
    dispatchDue,
    start(intervalMs) {
      if (running) return;
      running = true;
      loop += 1;
      // The first pass at once: alerts recorded while no process was sending go out on start.
      schedule(intervalMs, 0, loop);
    },
    async stop() {
      running = false;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      await Promise.all([...passes]);
    },
  };
}

/** A stored alert as the channels take it. Its details are product-written JSON (no PII, see AlertInput). */
export function toOutgoing(alert: Alert): OutgoingAlert {
  return {
    id: alert.id,
    at: alert.at,
    severity: alert.severity,
    kind: alert.kind,
    event: alert.event,
    message: alert.message,
    details: parseDetails(alert.details),
    repeats: alert.repeats,
  };
}

function parseDetails(text: string): Record<string, unknown> {
  if (text === '') return {};
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : { value };
  } catch {
    return {};
  }
}
