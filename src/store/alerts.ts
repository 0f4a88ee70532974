import type { Executor, StoreDb } from './executor.js';
import type { Alert, AlertDelivery, AlertKind, AlertSeverity } from './schema.js';

export interface NewAlert {
  at: number;
  severity: AlertSeverity;
  kind: AlertKind;
  event: string;
  dedupKey: string;
  message: string;
  details: unknown;
}

/** Record an alert and one pending delivery per channel; returns its id. */
export async function insertAlert(
  db: Executor,
  alert: NewAlert,
  channels: readonly string[],
): Promise<number> {
  const row = await db
    .insertInto('alerts')
    .values({
      at: alert.at,
      severity: alert.severity,
      kind: alert.kind,
      event: alert.event,
      dedup_key: alert.dedupKey,
      message: alert.message,
      details: JSON.stringify(alert.details),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  if (channels.length > 0) {
    await db
      .insertInto('alert_deliveries')
      .values(
        channels.map((channel) => ({
          alert_id: row.id,
          channel,
          state: 'pending' as const,
          next_attempt_at: alert.at,
        })),
      )
      .execute();
  }
  return row.id;
}

/** The latest alert with this key at or after `since`, if any (the de-duplication window). */
export async function recentAlertWithKey(
  db: Executor,
  dedupKey: string,
  since: number,
): Promise<Alert | undefined> {
  return db
    .selectFrom('alerts')
    .selectAll()
    .where('dedup_key', '=', dedupKey)
    .where('at', '>=', since)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

export async function countAlertRepeat(db: Executor, alertId: number): Promise<void> {
  await db
    .updateTable('alerts')
    .set((eb) => ({ repeats: eb('repeats', '+', 1) }))
    .where('id', '=', alertId)
    .execute();
}

export async function recentAlerts(db: Executor, limit: number): Promise<Alert[]> {
  return db.selectFrom('alerts').selectAll().orderBy('id', 'desc').limit(limit).execute();
}

export async function getAlert(db: Executor, id: number): Promise<Alert | undefined> {
  return db.selectFrom('alerts').selectAll().where('id', '=', id).executeTakeFirst();
}

export async function alertDeliveries(db: Executor, alertId: number): Promise<AlertDelivery[]> {
  return db
    .selectFrom('alert_deliveries')
    .selectAll()
    .where('alert_id', '=', alertId)
    .orderBy('channel')
    .execute();
}

/**
 * Take up to `limit` due deliveries for `leaseMs`: each is updated only if still unleased (or its
 * lease ran out), so two dispatchers never hold the same delivery.
 */
export async function leaseDueAlertDeliveries(
  db: StoreDb,
  now: number,
  leaseMs: number,
  limit: number,
): Promise<(AlertDelivery & { alert: Alert })[]> {
  const due = await db
    .selectFrom('alert_deliveries')
    .select(['alert_id', 'channel'])
    .where('state', '=', 'pending')
    .where('next_attempt_at', '<=', now)
    .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
    .orderBy('next_attempt_at')
    .limit(limit)
    .execute();
  const leased: (AlertDelivery & { alert: Alert })[] = [];
  for (const { alert_id, channel } of due) {
    const result = await db
      .updateTable('alert_deliveries')
      .set({ lease_until: now + leaseMs })
      .where('alert_id', '=', alert_id)
      .where('channel', '=', channel)
      .where('state', '=', 'pending')
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', now)]))
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) continue;
    const delivery = await db
      .selectFrom('alert_deliveries')
      .selectAll()
      .where('alert_id', '=', alert_id)
      .where('channel', '=', channel)
      .executeTakeFirstOrThrow();
    const alert = await db
      .selectFrom('alerts')
      .selectAll()
      .where('id', '=', alert_id)
      .executeTakeFirstOrThrow();
    leased.push({ ...delivery, alert });
  }
  return leased;
}

/**
 * Hand deliveries back without an attempt: due again at `nextAttemptAt`, lease released (a channel
 * that just failed is not tried again for its other alerts before its own retry time).
 */
export async function deferAlertDeliveries(
  db: Executor,
  keys: readonly { alertId: number; channel: string }[],
  nextAttemptAt: number,
): Promise<void> {
  for (const key of keys) {
    await db
      .updateTable('alert_deliveries')
      .set({ next_attempt_at: nextAttemptAt, lease_until: null })
      .where('alert_id', '=', key.alertId)
      .where('channel', '=', key.channel)
      .where('state', '=', 'pending')
      .execute();
  }
}

/** Record one delivery attempt: sent, another try at `nextAttemptAt`, or given up (failed). */
export async function finishAlertDelivery(
  db: Executor,
  key: { alertId: number; channel: string },
  result:
    | { state: 'sent'; at: number }
    | { state: 'pending'; nextAttemptAt: number; error: string }
    | { state: 'failed'; error: string },
): Promise<void> {
  await db
    .updateTable('alert_deliveries')
    .set((eb) => ({
      state: result.state,
      attempts: eb('attempts', '+', 1),
      lease_until: null,
      ...(result.state === 'sent' ? { sent_at: result.at, last_error: null } : { last_error: result.error }),
      ...(result.state === 'pending' ? { next_attempt_at: result.nextAttemptAt } : {}),
    }))
    .where('alert_id', '=', key.alertId)
    .where('channel', '=', key.channel)
    .execute();
}
