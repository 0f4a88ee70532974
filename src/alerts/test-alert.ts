import { performance } from 'node:perf_hooks';
import type { AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import { finishAlertDelivery, insertAlert, type Store } from '../store/index.js';
import type { AlertChannel, OutgoingAlert } from './channels.js';
import type { ChannelName } from './record.js';

export interface TestAlertResult {
  channel: ChannelName;
  ok: boolean;
  /** Why the channel did not take it (no secret in it), or null. */
  error: string | null;
  /** Real time the send took. */
  ms: number;
}

/**
 * `valhalla alerts test`: send a test alert to every configured channel now, and record what
 * happened: the alert (kind `test`) with each channel's delivery in its final state, and an
 * `alerts.test` audit entry with the results (gate 5's evidence that alerts reach the ops team).
 *
 * The alert is recorded after the sends, in one transaction: recorded first, its deliveries would be
 * pending, and a dispatcher in another process could send them a second time meanwhile.
 */
export async function sendTestAlert(deps: {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  channels: readonly AlertChannel[];
  operator: string;
}): Promise<TestAlertResult[]> {
  const { store, audit, clock, channels, operator } = deps;
  const configured = channels.map((c) => c.name);
  if (channels.length === 0) {
    await audit.record({
      actor: operator,
      action: 'alerts.test',
      details: { configured, results: [], outcome: 'no alert channel configured: nothing sent' },
    });
    return [];
  }

  const at = clock.now();
  const message = `Test alert sent by ${operator} with \`valhalla alerts test\`: this channel reaches the ops team.`;
  const details = { operator, channels: configured };
  const outgoing: OutgoingAlert = {
    id: 0,
    at,
    severity: 'info',
    kind: 'test',
    event: 'test',
    message,
    details,
    repeats: 0,
  };
  const results = await Promise.all(
    channels.map(async (channel): Promise<TestAlertResult> => {
      const started = performance.now();
      try {
        await channel.send(outgoing);
        return { channel: channel.name, ok: true, error: null, ms: elapsed(started) };
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        return { channel: channel.name, ok: false, error: why, ms: elapsed(started) };
      }
    }),
  );

  const finishedAt = clock.now();
  await store.db.transaction().execute(async (trx) => {
    // A write first (SQLite: the transaction takes the write lock before any read).
    const alertId = await insertAlert(
      trx,
      { at, severity: 'info', kind: 'test', event: 'test', dedupKey: `test:${at}`, message, details },
      configured,
    );
    for (const result of results) {
      await finishAlertDelivery(
        trx,
        { alertId, channel: result.channel },
        result.ok
          ? { state: 'sent', at: finishedAt }
          : { state: 'failed', error: result.error ?? 'not delivered' },
      );
    }
    await audit.append(trx, {
      actor: operator,
      action: 'alerts.test',
      subject: `alert:${alertId}`,
      details: {
        configured,
        results,
        outcome: results.every((r) => r.ok) ? 'delivered to every channel' : 'not delivered to every channel',
      },
    });
  });
  return results;
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
