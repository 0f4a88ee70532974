/**
 * The alert recorder on a real SQLite store with a virtual clock: de-duplication inside and outside
 * the window, conditions (raised once, recovered once, routed like the alert they end) and routing by
 * severity. Nothing is sent here: the recorder writes the outbox, the dispatcher sends it.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ALERT_SEVERITY,
  type AlertEvent,
  type AlertRecorder,
  type ChannelName,
  channelsFor,
  configuredChannels,
  createAlertRecorder,
} from '../../src/alerts/index.js';
import { ManualClock } from '../../src/clock/index.js';
import { type Alert, alertDeliveries, openStore, recentAlerts, type Store } from '../../src/store/index.js';
import { sqliteBackend } from '../support/backends.js';
import { MINUTE } from '../support/world.js';

const START = Date.parse('2026-11-20T12:00:00Z');
const WINDOW = 15 * MINUTE;

let store: Store;
let clock: ManualClock;

beforeEach(async () => {
  store = await openStore(sqliteBackend.target());
  clock = new ManualClock(START);
});
afterEach(async () => {
  await store.close();
});

function recorder(channels: readonly ChannelName[] = ['slack', 'email']): AlertRecorder {
  return createAlertRecorder({ clock, channels, dedupWindowMs: WINDOW });
}

/** Every alert, oldest first, with the channels it has a delivery for. */
async function alertsWithChannels(): Promise<(Alert & { channels: string[] })[]> {
  const rows = (await recentAlerts(store.db, 1000)).reverse();
  return Promise.all(
    rows.map(async (a) => ({
      ...a,
      channels: (await alertDeliveries(store.db, a.id)).map((d) => d.channel),
    })),
  );
}

describe('de-duplication', () => {
  it('counts repeats of a key inside the window on the first alert, and sends nothing more', async () => {
    const alerts = recorder();
    const first = await alerts.raise(store.db, { event: 'quarantine', message: 'batch of 3 quarantined' });
    clock.advance(MINUTE);
    const second = await alerts.raise(store.db, { event: 'quarantine', message: 'batch of 2 quarantined' });
    clock.advance(WINDOW - MINUTE); // exactly at the window's edge: still inside
    const third = await alerts.raise(store.db, { event: 'quarantine', message: 'batch of 1 quarantined' });

    expect(first).toEqual({ alertId: expect.any(Number), repeat: false });
    expect(second).toEqual({ alertId: first.alertId, repeat: true });
    expect(third).toEqual({ alertId: first.alertId, repeat: true });
    const rows = await alertsWithChannels();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: first.alertId,
      at: START,
      event: 'quarantine',
      kind: 'event',
      severity: 'warning',
      message: 'batch of 3 quarantined',
      repeats: 2,
      channels: ['slack'],
    });
    const deliveries = await alertDeliveries(store.db, first.alertId);
    expect(deliveries).toHaveLength(1);
    expect(deliveries[0]).toMatchObject({ state: 'pending', attempts: 0, next_attempt_at: START });
  });

  it('records a new alert once the window has passed, and keeps different keys apart', async () => {
    const alerts = recorder();
    const first = await alerts.raise(store.db, { event: 'quarantine', message: 'one' });
    const otherKey = await alerts.raise(store.db, {
      event: 'quarantine',
      message: 'two',
      dedupKey: 'batch:b-2',
    });
    const otherEvent = await alerts.raise(store.db, { event: 'worker_crashed', message: 'three' });
    clock.advance(WINDOW + 1);
    const later = await alerts.raise(store.db, { event: 'quarantine', message: 'four' });
    clock.advance(MINUTE);
    const laterRepeat = await alerts.raise(store.db, { event: 'quarantine', message: 'five' });

    expect(new Set([first.alertId, otherKey.alertId, otherEvent.alertId, later.alertId]).size).toBe(4);
    expect([first, otherKey, otherEvent, later].map((r) => r.repeat)).toEqual([false, false, false, false]);
    expect(laterRepeat).toEqual({ alertId: later.alertId, repeat: true });
    const rows = await alertsWithChannels();
    expect(rows.map((r) => [r.message, r.dedup_key, r.repeats, r.at])).toEqual([
      ['one', 'quarantine', 0, START],
      ['two', 'batch:b-2', 0, START],
      ['three', 'worker_crashed', 0, START],
      ['four', 'quarantine', 1, START + WINDOW + 1],
    ]);
  });

  it('stores the details as JSON and nothing of a repeat (its message and details are dropped)', async () => {
    const alerts = recorder();
    await alerts.raise(store.db, {
      event: 'rollback',
      message: 'rolled back',
      details: { failures: 3, window: '10 min' },
    });
    await alerts.raise(store.db, { event: 'rollback', message: 'again', details: { failures: 9 } });
    const [row] = await alertsWithChannels();
    expect(JSON.parse(row!.details)).toEqual({ failures: 3, window: '10 min' });
    expect(row!.repeats).toBe(1);
  });
});

describe('conditions', () => {
  const failures = (active: boolean, count: number) => ({
    event: 'failures_hourly' as const,
    message: active
      ? `${count} failures in the last hour (threshold 5)`
      : `failures back to ${count} an hour`,
    details: { failures: count, threshold: 5 },
  });

  it('raises once when it turns on, nothing while it stays on, recovers once when it turns off', async () => {
    const alerts = recorder();
    expect(await alerts.condition(store.db, 'failures', false, failures(false, 0))).toBe('unchanged');
    expect(await alerts.raise(store.db, { event: 'daily_restart', message: 'noise' })).toMatchObject({
      repeat: false,
    });
    const before = (await alertsWithChannels()).length;

    expect(await alerts.condition(store.db, 'failures', true, failures(true, 5))).toBe('raised');
    clock.advance(10 * MINUTE);
    expect(await alerts.condition(store.db, 'failures', true, failures(true, 7))).toBe('unchanged');
    clock.advance(2 * WINDOW); // long after the window: still no second alert while it stays on
    expect(await alerts.condition(store.db, 'failures', true, failures(true, 9))).toBe('unchanged');
    clock.advance(MINUTE);
    const recoveredAt = clock.now();
    expect(await alerts.condition(store.db, 'failures', false, failures(false, 1))).toBe('recovered');
    clock.advance(MINUTE);
    expect(await alerts.condition(store.db, 'failures', false, failures(false, 0))).toBe('unchanged');

    const rows = (await alertsWithChannels()).slice(before);
    expect(rows).toHaveLength(2);
    const [raised, recovered] = rows;
    expect(raised).toMatchObject({
      kind: 'raised',
      event: 'failures_hourly',
      severity: 'critical',
      at: START,
      message: '5 failures in the last hour (threshold 5)',
      dedup_key: 'failures:raised',
      channels: ['email', 'slack'],
    });
    expect(recovered).toMatchObject({
      kind: 'recovered',
      event: 'failures_hourly',
      severity: 'critical',
      at: recoveredAt,
      message: 'failures back to 1 an hour',
      dedup_key: 'failures:recovered',
      // The recovery reaches everyone the alert reached (e-mail included, though it is good news).
      channels: ['email', 'slack'],
    });
    expect(JSON.parse(recovered!.details)).toEqual({
      failures: 1,
      threshold: 5,
      activeSince: new Date(START).toISOString(),
    });
  });

  it('routes a warning condition and its recovery to Slack only', async () => {
    const alerts = recorder();
    const alert = { event: 'quarantine' as const, message: 'quarantine growing' };
    expect(await alerts.condition(store.db, 'q', true, alert)).toBe('raised');
    expect(await alerts.condition(store.db, 'q', false, alert)).toBe('recovered');
    const rows = await alertsWithChannels();
    expect(rows.map((r) => [r.kind, r.severity, r.channels])).toEqual([
      ['raised', 'warning', ['slack']],
      ['recovered', 'warning', ['slack']],
    ]);
  });

  it('goes round again: on, off, on raises a second time; conditions are independent by name', async () => {
    const alerts = recorder();
    const alert = { event: 'heartbeat_missed' as const, message: 'no heartbeat' };
    expect(await alerts.condition(store.db, 'heartbeat', true, alert)).toBe('raised');
    expect(await alerts.condition(store.db, 'other', true, alert)).toBe('raised');
    expect(await alerts.condition(store.db, 'heartbeat', false, alert)).toBe('recovered');
    clock.advance(MINUTE);
    expect(await alerts.condition(store.db, 'heartbeat', true, alert)).toBe('raised');
    expect(await alerts.condition(store.db, 'other', true, alert)).toBe('unchanged');
    const rows = await alertsWithChannels();
    expect(rows.map((r) => `${r.dedup_key}/${r.kind}`)).toEqual([
      'heartbeat:raised/raised',
      'other:raised/raised',
      'heartbeat:recovered/recovered',
      'heartbeat:raised/raised',
    ]);
  });

  it('keeps its state in the database: a new recorder (a restart) does not raise it again', async () => {
    const alert = { event: 'heartbeat_missed' as const, message: 'no heartbeat' };
    expect(await recorder().condition(store.db, 'heartbeat', true, alert)).toBe('raised');
    expect(await recorder().condition(store.db, 'heartbeat', true, alert)).toBe('unchanged');
    expect(await recorder().condition(store.db, 'heartbeat', false, alert)).toBe('recovered');
    expect(await alertsWithChannels()).toHaveLength(2);
  });
});

describe('routing', () => {
  const bySeverity: [AlertEvent, string, ChannelName[]][] = [
    ['daily_restart', 'info', ['slack']],
    ['quarantine', 'warning', ['slack']],
    ['worker_crashed', 'warning', ['slack']],
    ['rollback', 'critical', ['email', 'slack']],
    ['heartbeat_missed', 'critical', ['email', 'slack']],
    ['failures_hourly', 'critical', ['email', 'slack']],
  ];

  it.each(bySeverity)('%s (%s) goes to %j', async (event, severity, expected) => {
    const { alertId } = await recorder().raise(store.db, { event, message: `${event} happened` });
    const [row] = await alertsWithChannels();
    expect(row).toMatchObject({ id: alertId, severity, channels: expected });
    expect(ALERT_SEVERITY[event]).toBe(severity);
  });

  it('a test alert goes to every configured channel, whatever its severity', () => {
    expect(channelsFor(['slack', 'email'], 'info', 'test')).toEqual(['slack', 'email']);
    expect(channelsFor(['email'], 'info', 'test')).toEqual(['email']);
    expect(channelsFor(['slack', 'email'], 'info', 'event')).toEqual(['slack']);
    expect(channelsFor(['slack', 'email'], 'critical', 'recovered')).toEqual(['slack', 'email']);
    expect(channelsFor([], 'critical', 'test')).toEqual([]);
  });

  it('only the configured channels get deliveries; an alert for none is still recorded', async () => {
    await recorder(['email']).raise(store.db, { event: 'daily_restart', message: 'restart' });
    await recorder(['email']).raise(store.db, { event: 'rollback', message: 'rolled back' });
    await recorder([]).raise(store.db, { event: 'gate_voided', message: 'policy changed' });
    const rows = await alertsWithChannels();
    expect(rows.map((r) => [r.event, r.channels])).toEqual([
      ['daily_restart', []],
      ['rollback', ['email']],
      ['gate_voided', []],
    ]);
  });

  it('configuredChannels: Slack with a webhook, e-mail with a server and a list', () => {
    const none = { slackWebhookUrl: null, smtpUrl: null, emailTo: [], emailFrom: 'valhalla@localhost' };
    expect(configuredChannels(none)).toEqual([]);
    expect(
      configuredChannels({ ...none, slackWebhookUrl: 'https://hooks.slack.com/services/T/B/x' }),
    ).toEqual(['slack']);
    expect(configuredChannels({ ...none, smtpUrl: 'smtp://mail.example.com' })).toEqual([]);
    expect(
      configuredChannels({
        ...none,
        slackWebhookUrl: 'https://hooks.slack.com/services/T/B/x',
        smtpUrl: 'smtp://mail.example.com',
        emailTo: ['ops@example.com'],
      }),
    ).toEqual(['slack', 'email']);
  });
});
