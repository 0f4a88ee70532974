import type { Clock } from '../clock/index.js';
import type { AlertSettings } from '../config/index.js';
import {
  type AlertKind,
  type AlertSeverity,
  countAlertRepeat,
  type Executor,
  getRuntimeValue,
  insertAlert,
  recentAlertWithKey,
  setRuntimeValue,
} from '../store/index.js';

/** What an alert is about. Each has a fixed severity; see ALERT_SEVERITY. */
export type AlertEvent =
  | 'rollback'
  | 'mode_change'
  | 'quarantine'
  | 'heartbeat_missed'
  | 'memory_restart'
  | 'worker_crashed'
  | 'daily_restart'
  | 'gate_voided'
  | 'dashboard_unavailable'
  | 'failures_hourly'
  | 'throttle_storm'
  | 'partner_tls_refused'
  | 'phase4_refused'
  | 'limits_changed'
  | 'limits_refused'
  | 'test';

export const ALERT_SEVERITY: Readonly<Record<AlertEvent, AlertSeverity>> = {
  rollback: 'critical',
  heartbeat_missed: 'critical',
  gate_voided: 'critical',
  failures_hourly: 'critical',
  throttle_storm: 'critical',
  partner_tls_refused: 'critical',
  phase4_refused: 'critical',
  limits_refused: 'warning',
  limits_changed: 'warning',
  memory_restart: 'warning',
  worker_crashed: 'warning',
  dashboard_unavailable: 'warning',
  quarantine: 'warning',
  mode_change: 'warning',
  daily_restart: 'info',
  test: 'info',
};

export type ChannelName = 'slack' | 'email';

/**
 * Which alerts a channel receives. Slack gets every alert. E-mail goes to the ops list only for
 * critical alerts (rollback, heartbeat missed, gate voided) and the policy's e-mail threshold (5+
 * failures an hour, itself critical), so that the inbox is not a second Slack. A recovery goes
 * wherever the alert it ends went; a test alert goes everywhere.
 */
export const CHANNEL_MIN_SEVERITY: Readonly<Record<ChannelName, AlertSeverity>> = {
  slack: 'info',
  email: 'critical',
};

const RANK: Readonly<Record<AlertSeverity, number>> = { info: 0, warning: 1, critical: 2 };

/** The channels configured: Slack when a webhook is set, e-mail when an SMTP server and a list are. */
export function configuredChannels(settings: AlertSettings): ChannelName[] {
  const channels: ChannelName[] = [];
  if (settings.slackWebhookUrl !== null) channels.push('slack');
  if (settings.smtpUrl !== null && settings.emailTo.length > 0) channels.push('email');
  return channels;
}

export function channelsFor(
  channels: readonly ChannelName[],
  severity: AlertSeverity,
  kind: AlertKind,
): ChannelName[] {
  if (kind === 'test') return [...channels];
  return channels.filter((c) => RANK[severity] >= RANK[CHANNEL_MIN_SEVERITY[c]]);
}

/**
 * An alert. Its message and details must hold no PII: counts, ids, batch keys, pseudonyms, reasons
 * written by the product (never a lead field or a partner's response body).
 */
export interface AlertInput {
  event: AlertEvent;
  message: string;
  details?: Record<string, unknown>;
  /** Alerts with the same key within the de-duplication window are counted, not sent; default: the event. */
  dedupKey?: string;
}

export interface AlertRecorder {
  readonly channels: readonly ChannelName[];
  /**
   * Record an alert in the caller's transaction, with one delivery per channel that takes it; sent
   * later by the dispatcher, so a channel that is down never holds up the export. A repeat of the
   * same key within the de-duplication window only counts against the first (no storms).
   */
  raise(trx: Executor, alert: AlertInput): Promise<{ alertId: number; repeat: boolean }>;
  /**
   * A condition (failures over the hourly threshold, a heartbeat missed): one alert when it turns on,
   * one recovery message when it turns off, nothing while it stays as it is.
   */
  condition(
    trx: Executor,
    name: string,
    active: boolean,
    alert: AlertInput,
  ): Promise<'raised' | 'recovered' | 'unchanged'>;
}

interface ConditionState {
  active: boolean;
  since: number;
  severity: AlertSeverity;
}

export function createAlertRecorder(deps: {
  clock: Clock;
  channels: readonly ChannelName[];
  dedupWindowMs: number;
}): AlertRecorder {
  const { clock, channels, dedupWindowMs } = deps;

  async function insert(trx: Executor, alert: AlertInput, kind: AlertKind, severity: AlertSeverity) {
    const now = clock.now();
    return insertAlert(
      trx,
      {
        at: now,
        severity,
        kind,
        event: alert.event,
        dedupKey: alert.dedupKey ?? alert.event,
        message: alert.message,
        details: alert.details ?? {},
      },
      channelsFor(channels, severity, kind),
    );
  }

  return {
    channels,
    async raise(trx, alert) {
      const key = alert.dedupKey ?? alert.event;
      const earlier = await recentAlertWithKey(trx, key, clock.now() - dedupWindowMs);
      if (earlier && earlier.kind === 'event') {
        await countAlertRepeat(trx, earlier.id);
        return { alertId: earlier.id, repeat: true };
      }
      return { alertId: await insert(trx, alert, 'event', ALERT_SEVERITY[alert.event]), repeat: false };
    },
    async condition(trx, name, active, alert) {
      const stateKey = `alert.condition.${name}`;
      const stored = await getRuntimeValue(trx, stateKey);
      const previous: ConditionState | null =
        stored === undefined ? null : (JSON.parse(stored) as ConditionState);
      const wasActive = previous?.active ?? false;
      if (wasActive === active) return 'unchanged';
      const now = clock.now();
      if (active) {
        const severity = ALERT_SEVERITY[alert.event];
        await insert(trx, { ...alert, dedupKey: `${name}:raised` }, 'raised', severity);
        await setRuntimeValue(trx, stateKey, JSON.stringify({ active: true, since: now, severity }), now);
        return 'raised';
      }
      // The recovery goes where the alert went: same severity for routing, marked as a recovery.
      const severity = previous?.severity ?? ALERT_SEVERITY[alert.event];
      await insert(
        trx,
        {
          ...alert,
          dedupKey: `${name}:recovered`,
          details: { ...alert.details, activeSince: new Date(previous?.since ?? now).toISOString() },
        },
        'recovered',
        severity,
      );
      await setRuntimeValue(trx, stateKey, JSON.stringify({ active: false, since: now, severity }), now);
      return 'recovered';
    },
  };
}
