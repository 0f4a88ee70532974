/**
 * Alert delivery end to end, on SQLite and PostgreSQL: the recorder writes the outbox, the
 * dispatcher sends it through the REAL channels to a REAL SMTP server (smtp-server) and a local
 * HTTP receiver standing in for Slack's webhook. Time is a ManualClock for the stored times (retry
 * schedule, leases); sockets and timeouts run on real time, kept short.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { SMTPServerOptions } from 'smtp-server';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  ALERT_MAX_ATTEMPTS,
  type AlertChannel,
  type AlertDispatcher,
  type AlertRecorder,
  createAlertChannels,
  createAlertDispatcher,
  createAlertRecorder,
  isAlertChannelError,
  type OutgoingAlert,
  sendTestAlert,
} from '../../src/alerts/index.js';
import { type AuditLog, createAuditLog } from '../../src/audit/index.js';
import { ManualClock } from '../../src/clock/index.js';
import type { AlertSettings } from '../../src/config/index.js';
import { createLogger, type Logger } from '../../src/log/index.js';
import { createPseudonymizer } from '../../src/pii/index.js';
import {
  type AlertDelivery,
  alertDeliveries,
  createIngestRun,
  insertLeadsSkippingDuplicates,
  leaseDueAlertDeliveries,
  openStore,
  recentAlerts,
  type Store,
  type StoreTarget,
} from '../../src/store/index.js';
import { backends, dropTestSchemas } from '../support/backends.js';
import { runInProcess, testEnv } from '../support/cli.js';
import {
  type MailServer,
  type SlackReceiver,
  startSlackReceiver,
  startSmtpServer,
} from '../support/receivers.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, MINUTE, NOW, until } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
/** The webhook's path is its credential: it must never appear in an error, a log line or the CLI's output. */
const WEBHOOK_TOKEN = 'xoxWebhookT0kenDoNotLeak42';
const WEBHOOK_PATH = `/services/T0VALHALLA/B0ALERTS/${WEBHOOK_TOKEN}`;
const SMTP_PASSWORD = 'Sm7pPassw0rd!NeverShown';
const OPS = ['ops@example.com', 'oncall@example.com'];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  // Dispatchers and channels first, then the stores, then the servers they talked to.
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

// ---------------------------------------------------------------------------------------------
// Receivers

async function startSlack(): Promise<SlackReceiver> {
  const receiver = await startSlackReceiver(WEBHOOK_PATH);
  cleanups.push(() => receiver.close());
  return receiver;
}

async function startSmtp(options: Partial<SMTPServerOptions> = {}): Promise<MailServer> {
  const server = await startSmtpServer(options);
  cleanups.push(() => server.close());
  return server;
}

// ---------------------------------------------------------------------------------------------
// The world of one test

interface World {
  target: StoreTarget;
  store: Store;
  clock: ManualClock;
  slack: SlackReceiver;
  smtp: MailServer;
  settings: AlertSettings;
  channels: AlertChannel[];
  alerts: AlertRecorder;
  dispatcher: AlertDispatcher;
  audit: AuditLog;
  logFile: string;
  /** Channels, a store and a dispatcher of their own: a second process on the same database. */
  secondDispatcher(): Promise<AlertDispatcher>;
  deliveries(alertId: number): Promise<Record<string, AlertDelivery>>;
}

function channelsFrom(settings: AlertSettings, timeoutMs: number): AlertChannel[] {
  const channels = createAlertChannels(settings, { timeoutMs });
  cleanups.push(async () => {
    for (const channel of channels) await channel.close();
  });
  return channels;
}

function fileLogger(file: string): Logger {
  return createLogger({ level: 'info', file });
}

describe.each(list)('alerts on $name', (backend) => {
  async function world(options: { timeoutMs?: number } = {}): Promise<World> {
    const dir = tempDir();
    const [slack, smtp] = await Promise.all([startSlack(), startSmtp()]);
    const target = backend.target();
    const store = await openStore(target);
    cleanups.push(() => store.close());
    const clock = new ManualClock(NOW);
    const settings: AlertSettings = {
      slackWebhookUrl: slack.webhookUrl,
      smtpUrl: smtp.url,
      emailTo: OPS,
      emailFrom: 'valhalla@example.com',
    };
    const timeoutMs = options.timeoutMs ?? 3_000;
    const channels = channelsFrom(settings, timeoutMs);
    const logFile = join(dir, 'valhalla.log');
    const logger = fileLogger(logFile);
    const dispatcher = createAlertDispatcher({ store, clock, logger, channels });
    cleanups.push(() => dispatcher.stop());
    return {
      target,
      store,
      clock,
      slack,
      smtp,
      settings,
      channels,
      alerts: createAlertRecorder({
        clock,
        channels: channels.map((c) => c.name),
        dedupWindowMs: 15 * MINUTE,
      }),
      dispatcher,
      audit: createAuditLog(store, clock),
      logFile,
      async secondDispatcher() {
        const other = await openStore(target);
        cleanups.push(() => other.close());
        const second = createAlertDispatcher({
          store: other,
          clock,
          logger: fileLogger(join(dir, 'second.log')),
          channels: channelsFrom(settings, timeoutMs),
        });
        cleanups.push(() => second.stop());
        return second;
      },
      async deliveries(alertId) {
        const rows = await alertDeliveries(store.db, alertId);
        return Object.fromEntries(rows.map((d) => [d.channel, d]));
      },
    };
  }

  /** A rollback alert the way changeMode raises it (critical: Slack and e-mail). */
  async function raiseRollback(
    w: World,
    details: Record<string, unknown> = {},
    key = `mode:${w.clock.now()}`,
  ) {
    const { alertId } = await w.alerts.raise(w.store.db, {
      event: 'rollback',
      dedupKey: key,
      message:
        'ROLLED BACK by engine: error rate 40% over 10 requests (limit 10%). Outbound stopped; the worker continues as a dry run; the queue is kept.',
      details: { from: 'live', to: 'rolled_back', actor: 'engine', failures: 4, requests: 10, ...details },
    });
    return alertId;
  }

  it('delivers to Slack and e-mail with severity, event and message, and no raw PII of the leads it is about', async () => {
    const w = await world();
    // Leads with known PII in the store, the way ingest stores them.
    const people = [
      {
        name: 'Ingrid Rasmussen-Whitcombe',
        email: 'ingrid.whitcombe@fjordlys.example',
        phone: '+47 912 34 567',
        company: 'Fjordlys Shipping AS',
      },
      {
        name: 'Tobias Okonkwo-Lindqvist',
        email: 't.okonkwo@nordhavn-logistik.example',
        phone: '+46 70 123 45 67',
        company: 'Nordhavn Logistik AB',
      },
      {
        name: 'Marguerite Delacroix-Baines',
        email: 'mdb@ateliers-baines.example',
        phone: '+33 6 12 34 56 78',
        company: 'Ateliers Baines SARL',
      },
    ];
    const p = createPseudonymizer('test-secret-0123456789abcdef0123456789abcdef');
    const runId = await createIngestRun(w.store.db, {
      startedAt: NOW,
      source: 'leads.csv',
      format: 'csv',
      operator: 'ops',
    });
    const keys = people.map((person) => p.dedupKey('email', person.email));
    const ids = await insertLeadsSkippingDuplicates(
      w.store,
      people.map((person, i) => ({
        dedup_key: keys[i]!,
        email_key: keys[i]!,
        external_id_key: null,
        external_id: null,
        name: person.name,
        email: person.email,
        phone: person.phone,
        company: person.company,
        score: 80,
        source_ts: NOW - MINUTE,
        value: 1000,
        state: 'quarantined',
        state_reason: 'retries spent (HTTP 503)',
        ingested_at: NOW,
        updated_at: NOW,
        exported_at: null,
        run_id: runId,
        source_line: i + 2,
      })),
    );
    const leadIds = keys.map((k) => ids.get(k)!);
    const pseudonyms = keys.map((k) => p.pseudonym(k));
    const batchKey = 'b-20261120-0007-9f3c';

    // As the engine does on a quarantine (warning: Slack), and changeMode on the rollback that followed.
    const quarantineId = await w.store.db.transaction().execute(async (trx) => {
      const { alertId } = await w.alerts.raise(trx, {
        event: 'quarantine',
        message: `batch of ${leadIds.length} lead(s) quarantined: retries spent (HTTP 503)`,
        details: { delivery: 7, batchKey, leads: leadIds.length, leadIds, pseudonyms, status: 503 },
      });
      return alertId;
    });
    const rollbackId = await raiseRollback(w, { batchKey, leadIds, pseudonyms });

    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 3, retrying: 0, failed: 0 });

    // Slack: two posts to the webhook, JSON with a text and blocks.
    expect(w.slack.requests).toHaveLength(2);
    const posts = w.slack.requests.map((r) => {
      expect(r.path).toBe(WEBHOOK_PATH);
      expect(r.contentType).toMatch(/^application\/json/);
      return JSON.parse(r.body) as { text: string; blocks: unknown[] };
    });
    const quarantinePost = posts.find((post) => post.text.includes('quarantine'))!;
    const rollbackPost = posts.find((post) => post.text.includes('rollback'))!;
    expect(quarantinePost.text).toContain(
      '[WARNING] quarantine: batch of 3 lead(s) quarantined: retries spent (HTTP 503)',
    );
    expect(rollbackPost.text).toContain('[CRITICAL] rollback: ROLLED BACK by engine: error rate 40%');
    const quarantineBlocks = JSON.stringify(quarantinePost.blocks);
    expect(quarantineBlocks).toContain(`alert #${quarantineId}`);
    expect(quarantineBlocks).toContain('2026-11-20T12:00:00.000Z');
    expect(quarantineBlocks).toContain(`batchKey: ${batchKey}`);
    expect(quarantineBlocks).toContain(pseudonyms[0]);
    expect(JSON.stringify(rollbackPost.blocks)).toContain('severity critical');

    // E-mail: the critical one only, to the ops list.
    expect(w.smtp.messages).toHaveLength(1);
    const mail = w.smtp.messages[0]!;
    expect(mail.from).toBe('valhalla@example.com');
    expect(mail.to).toEqual(OPS);
    expect(mail.subject).toMatch(/^\[valhalla CRITICAL\] rollback: ROLLED BACK by engine: error rate 40%/);
    expect(mail.text).toContain('Event:     rollback');
    expect(mail.text).toContain('Severity:  critical');
    expect(mail.text).toContain(`Alert:     #${rollbackId}`);
    expect(mail.text).toContain('Outbound stopped; the worker continues as a dry run; the queue is kept.');
    expect(mail.text).toContain(`batchKey: ${batchKey}`);
    expect(mail.text).toContain(pseudonyms[2]);

    // The PII is really there in the store, and in neither payload, raw or decoded.
    const stored = JSON.stringify(await w.store.db.selectFrom('leads').selectAll().execute());
    const payloads = [...w.slack.requests.map((r) => r.body), mail.raw, mail.subject, mail.text].join('\n');
    for (const person of people) {
      for (const value of [person.name, person.email, person.phone, person.company]) {
        expect(stored).toContain(value);
        expect(payloads).not.toContain(value);
      }
      expect(payloads).not.toContain(person.email.split('@')[0]);
      expect(payloads).not.toContain(person.name.split(' ')[1]);
      expect(payloads).not.toContain(person.phone.replace(/\D/g, ''));
    }

    for (const [id, channels] of [
      [quarantineId, ['slack']],
      [rollbackId, ['email', 'slack']],
    ] as const) {
      const deliveries = await w.deliveries(id);
      expect(Object.keys(deliveries).sort()).toEqual([...channels]);
      for (const d of Object.values(deliveries)) {
        expect(d).toMatchObject({
          state: 'sent',
          attempts: 1,
          sent_at: NOW,
          last_error: null,
          lease_until: null,
        });
      }
    }
    // Sent is sent: another pass sends nothing.
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(2);
    expect(w.smtp.messages).toHaveLength(1);
  });

  it('Slack answering 500: pending with its retry time, sent once Slack is back; the e-mail went out meanwhile', async () => {
    const w = await world();
    w.slack.mode = 'fail';
    const id = await raiseRollback(w);

    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 1, retrying: 1, failed: 0 });
    let deliveries = await w.deliveries(id);
    expect(deliveries.email).toMatchObject({ state: 'sent', attempts: 1, sent_at: NOW });
    expect(deliveries.slack).toMatchObject({
      state: 'pending',
      attempts: 1,
      next_attempt_at: NOW + 5_000,
      lease_until: null,
      sent_at: null,
    });
    expect(deliveries.slack!.last_error).toMatch(
      /^Slack webhook 127\.0\.0\.1:\d+ answered HTTP 500: internal_error$/,
    );
    expect(w.smtp.messages).toHaveLength(1);

    // Not due yet: nothing is tried.
    w.slack.mode = 'ok';
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    w.clock.advance(4_999);
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(1);

    w.clock.advance(1);
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 1, retrying: 0, failed: 0 });
    deliveries = await w.deliveries(id);
    expect(deliveries.slack).toMatchObject({
      state: 'sent',
      attempts: 2,
      sent_at: NOW + 5_000,
      last_error: null,
    });
    expect(w.slack.requests).toHaveLength(2);
    expect(w.slack.requests[1]!.body).toBe(w.slack.requests[0]!.body);
    expect(w.smtp.messages).toHaveLength(1);

    // The failure was logged by channel and reason, without the webhook's secret path.
    const log = readFileSync(w.logFile, 'utf8');
    const failure = log
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .find((entry) => entry.msg === 'alert delivery failed; will retry');
    expect(failure).toMatchObject({
      channel: 'slack',
      alertId: id,
      attempts: 1,
      reason: expect.stringContaining('HTTP 500'),
    });
    expect(log).not.toContain(WEBHOOK_TOKEN);
  });

  it('after Slack fails, its other alerts of the pass are handed back for the same retry time, not held for the lease', async () => {
    const w = await world();
    w.slack.mode = 'fail';
    const first = await raiseRollback(w, {}, 'rollback-1');
    const second = await raiseRollback(w, {}, 'rollback-2');
    expect(second).not.toBe(first);
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 2, retrying: 1, failed: 0 });
    // One request to the failing webhook, not two; the second alert waits with the first, unleased, unattempted.
    expect(w.slack.requests).toHaveLength(1);
    const [a, b] = [(await w.deliveries(first)).slack!, (await w.deliveries(second)).slack!];
    const [failed, handedBack] = a.attempts === 1 ? [a, b] : [b, a];
    expect(failed).toMatchObject({ state: 'pending', attempts: 1, next_attempt_at: NOW + 5_000 });
    expect(handedBack).toMatchObject({
      state: 'pending',
      attempts: 0,
      next_attempt_at: NOW + 5_000,
      lease_until: null,
    });
    w.slack.mode = 'ok';
    w.clock.advance(5_000);
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 2, retrying: 0, failed: 0 });
  });

  it('a webhook that never answers is cut by the timeout, and does not hold up the e-mail', async () => {
    const w = await world({ timeoutMs: 1_500 });
    w.slack.mode = 'hang';
    const id = await raiseRollback(w);

    const started = performance.now();
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 1, retrying: 1, failed: 0 });
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(1_400);
    expect(elapsed).toBeLessThan(6_000);
    // The e-mail arrived long before the Slack send gave up.
    expect(w.smtp.messages).toHaveLength(1);
    expect(w.smtp.messages[0]!.at - started).toBeLessThan(1_200);
    expect(w.slack.requests).toHaveLength(1);

    const deliveries = await w.deliveries(id);
    expect(deliveries.email).toMatchObject({ state: 'sent' });
    expect(deliveries.slack).toMatchObject({ state: 'pending', attempts: 1, next_attempt_at: NOW + 5_000 });
    expect(deliveries.slack!.last_error).toMatch(
      /^Slack webhook 127\.0\.0\.1:\d+: no answer within 1500 ms$/,
    );
  });

  it('gives up after the last attempt: failed with its last error, on the retry schedule, never tried again', async () => {
    const w = await world();
    w.slack.mode = 'fail';
    const { alertId } = await w.alerts.raise(w.store.db, {
      event: 'daily_restart',
      message: 'daily restart at 02:00 UTC',
    });
    const waits: number[] = [];
    expect(ALERT_MAX_ATTEMPTS).toBe(8);
    for (let attempt = 1; attempt <= ALERT_MAX_ATTEMPTS; attempt++) {
      const result = await w.dispatcher.dispatchDue();
      const slack = (await w.deliveries(alertId)).slack!;
      expect(slack.attempts).toBe(attempt);
      if (attempt < ALERT_MAX_ATTEMPTS) {
        expect(result).toEqual({ sent: 0, retrying: 1, failed: 0 });
        expect(slack.state).toBe('pending');
        waits.push(slack.next_attempt_at - w.clock.now());
        w.clock.set(slack.next_attempt_at);
      } else {
        expect(result).toEqual({ sent: 0, retrying: 0, failed: 1 });
        expect(slack).toMatchObject({ state: 'failed', sent_at: null, lease_until: null });
        expect(slack.last_error).toContain('HTTP 500');
      }
    }
    expect(waits).toEqual([5_000, 30_000, 120_000, 600_000, 1_800_000, HOUR, HOUR]);
    expect(w.slack.requests).toHaveLength(ALERT_MAX_ATTEMPTS);

    w.slack.mode = 'ok';
    w.clock.advance(24 * 60 * MINUTE);
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(ALERT_MAX_ATTEMPTS);
    expect(readFileSync(w.logFile, 'utf8')).toContain('alert delivery failed for good: attempts exhausted');
  });

  it('a delivery for a channel that is no longer configured fails with the reason; the other is sent', async () => {
    const w = await world();
    const id = await raiseRollback(w);
    const slackOnly = createAlertDispatcher({
      store: w.store,
      clock: w.clock,
      logger: fileLogger(w.logFile),
      channels: w.channels.filter((c) => c.name === 'slack'),
    });
    expect(await slackOnly.dispatchDue()).toEqual({ sent: 1, retrying: 0, failed: 1 });
    const deliveries = await w.deliveries(id);
    expect(deliveries.slack).toMatchObject({ state: 'sent' });
    expect(deliveries.email).toMatchObject({
      state: 'failed',
      attempts: 1,
      last_error: 'the email channel is not configured any more: not sent',
    });
    expect(w.smtp.messages).toHaveLength(0);
  });

  it('two dispatchers on the same database never send the same delivery twice', async () => {
    const w = await world();
    const second = await w.secondDispatcher();
    w.slack.delayMs = 40; // each send takes a while: the two passes overlap
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) ids.push(await raiseRollback(w, { n: i }, `mode:${i}`));

    const totals = { sent: 0, retrying: 0, failed: 0 };
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([w.dispatcher.dispatchDue(), second.dispatchDue()]);
      for (const r of results) {
        totals.sent += r.sent;
        totals.retrying += r.retrying;
        totals.failed += r.failed;
      }
      if (results.every((r) => r.sent + r.retrying + r.failed === 0)) break;
    }
    expect(totals).toEqual({ sent: 12, retrying: 0, failed: 0 });
    const slackIds = w.slack.requests.map((r) => Number(/alert #(\d+)/.exec(r.body)?.[1]));
    const mailIds = w.smtp.messages.map((m) => Number(/Alert: {5}#(\d+)/.exec(m.text)?.[1]));
    expect(slackIds.sort((a, b) => a - b)).toEqual(ids);
    expect(mailIds.sort((a, b) => a - b)).toEqual(ids);
    for (const id of ids) {
      for (const d of Object.values(await w.deliveries(id)))
        expect(d).toMatchObject({ state: 'sent', attempts: 1 });
    }
  });

  it('a lease held by a dispatcher that died is respected until it runs out, then the delivery is sent', async () => {
    const w = await world();
    const second = await w.secondDispatcher();
    const id = await raiseRollback(w);
    // A dispatcher took both deliveries and died before sending.
    const taken = await leaseDueAlertDeliveries(w.store.db, w.clock.now(), 60_000, 10);
    expect(taken.map((d) => d.channel).sort()).toEqual(['email', 'slack']);

    expect(await second.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    w.clock.advance(60_000);
    expect(await second.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(0);
    expect(w.smtp.messages).toHaveLength(0);

    w.clock.advance(1);
    expect(await second.dispatchDue()).toEqual({ sent: 2, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(1);
    expect(w.smtp.messages).toHaveLength(1);
    const deliveries = await w.deliveries(id);
    expect(deliveries.slack).toMatchObject({ state: 'sent', attempts: 1, sent_at: NOW + 60_001 });
  });

  it('the interval loop sends what is recorded, and stop() is safe twice and waits for the pass', async () => {
    const w = await world();
    w.dispatcher.start(50);
    w.dispatcher.start(50);
    const id = await raiseRollback(w);
    await until(() => w.smtp.messages.length > 0 && w.slack.requests.length > 0, {
      what: 'the loop to send on both channels',
      timeoutMs: 10_000,
      everyMs: 20,
    });
    await w.dispatcher.stop();
    await w.dispatcher.stop();
    const deliveries = await w.deliveries(id);
    expect(deliveries.slack).toMatchObject({ state: 'sent' });
    expect(deliveries.email).toMatchObject({ state: 'sent' });
    // Stopped: a new alert stays pending.
    const later = await raiseRollback(w, {}, 'mode:later');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await w.deliveries(later)).slack).toMatchObject({ state: 'pending', attempts: 0 });
    expect(w.slack.requests).toHaveLength(1);
  });

  it('sendTestAlert delivers to both channels, records the test alert in its final state and audits the results', async () => {
    const w = await world();
    const results = await sendTestAlert({
      store: w.store,
      audit: w.audit,
      clock: w.clock,
      channels: w.channels,
      operator: 'ops-anna',
    });
    expect(results).toEqual([
      { channel: 'slack', ok: true, error: null, ms: expect.any(Number) },
      { channel: 'email', ok: true, error: null, ms: expect.any(Number) },
    ]);
    const post = JSON.parse(w.slack.requests[0]!.body) as { text: string };
    expect(post.text).toContain('[TEST] test: Test alert sent by ops-anna');
    expect(w.smtp.messages).toHaveLength(1);
    expect(w.smtp.messages[0]!.subject).toMatch(/^\[valhalla TEST\] test: Test alert sent by ops-anna/);
    expect(w.smtp.messages[0]!.to).toEqual(OPS);

    const [alert] = await recentAlerts(w.store.db, 10);
    expect(alert).toMatchObject({ kind: 'test', event: 'test', severity: 'info', at: NOW });
    const deliveries = await w.deliveries(alert!.id);
    expect(deliveries.slack).toMatchObject({ state: 'sent', attempts: 1, sent_at: NOW, lease_until: null });
    expect(deliveries.email).toMatchObject({ state: 'sent', attempts: 1, sent_at: NOW, lease_until: null });
    // Nothing left for a dispatcher to send a second time.
    expect(await w.dispatcher.dispatchDue()).toEqual({ sent: 0, retrying: 0, failed: 0 });
    expect(w.slack.requests).toHaveLength(1);

    const entries = await w.store.db.selectFrom('audit_log').selectAll().orderBy('seq').execute();
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      actor: 'ops-anna',
      action: 'alerts.test',
      subject: `alert:${alert!.id}`,
      at: NOW,
    });
    expect(JSON.parse(entries[0]!.details)).toEqual({
      configured: ['slack', 'email'],
      outcome: 'delivered to every channel',
      results: results.map((r) => ({ ...r })),
    });
    expect((await w.audit.verify()).ok).toBe(true);
  });

  it('sendTestAlert with the mail server down: e-mail failed (no secret in the error), Slack sent, both audited', async () => {
    const w = await world();
    await w.smtp.close();
    const results = await sendTestAlert({
      store: w.store,
      audit: w.audit,
      clock: w.clock,
      channels: w.channels,
      operator: 'ops',
    });
    expect(results[0]).toMatchObject({ channel: 'slack', ok: true, error: null });
    expect(results[1]).toMatchObject({ channel: 'email', ok: false });
    expect(results[1]!.error).toMatch(
      new RegExp(`^SMTP server 127\\.0\\.0\\.1:${w.smtp.port}: .*ECONNREFUSED`),
    );
    const [alert] = await recentAlerts(w.store.db, 1);
    const deliveries = await w.deliveries(alert!.id);
    expect(deliveries.email).toMatchObject({ state: 'failed', attempts: 1, last_error: results[1]!.error });
    expect(deliveries.slack).toMatchObject({ state: 'sent' });
    const entry = await w.store.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'alerts.test')
      .executeTakeFirstOrThrow();
    expect(JSON.parse(entry.details)).toMatchObject({
      outcome: 'not delivered to every channel',
      results: [
        { channel: 'slack', ok: true },
        { channel: 'email', ok: false, error: results[1]!.error },
      ],
    });
  });

  it('sendTestAlert with no channel configured sends nothing and audits that', async () => {
    const w = await world();
    const results = await sendTestAlert({
      store: w.store,
      audit: w.audit,
      clock: w.clock,
      channels: [],
      operator: 'ops',
    });
    expect(results).toEqual([]);
    expect(await recentAlerts(w.store.db, 10)).toEqual([]);
    const entries = await w.store.db.selectFrom('audit_log').selectAll().execute();
    expect(entries.map((e) => [e.action, JSON.parse(e.details)])).toEqual([
      ['alerts.test', { configured: [], results: [], outcome: 'no alert channel configured: nothing sent' }],
    ]);
  });

  it('channel errors never carry the webhook path or the SMTP password', async () => {
    const w = await world();
    const authServer = await startSmtp({
      allowInsecureAuth: true,
      onAuth(_auth, _session, callback) {
        callback(new Error('Invalid username or password'));
      },
    });
    const deadSlack = await startSlack();
    await deadSlack.close();
    const channels = channelsFrom(
      {
        slackWebhookUrl: deadSlack.webhookUrl,
        smtpUrl: `smtp://alerts-user:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${authServer.port}`,
        emailTo: OPS,
        emailFrom: 'valhalla@example.com',
      },
      2_000,
    );
    const alert: OutgoingAlert = {
      id: 1,
      at: NOW,
      severity: 'critical',
      kind: 'event',
      event: 'rollback',
      message: 'rolled back',
      details: {},
      repeats: 0,
    };
    const errors: unknown[] = [];
    for (const channel of channels)
      errors.push(
        await channel.send(alert).then(
          () => null,
          (e: unknown) => e,
        ),
      );
    expect(errors).toHaveLength(2);
    const [slackError, mailError] = errors;
    expect(isAlertChannelError(slackError) && slackError.code).toBe('NETWORK');
    expect(isAlertChannelError(mailError) && mailError.code).toBe('REJECTED');
    const slackMessage = (slackError as Error).message;
    const mailMessage = (mailError as Error).message;
    expect(slackMessage).toMatch(/^Slack webhook 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(mailMessage).toMatch(/^SMTP server 127\.0\.0\.1:\d+: .*Invalid username or password/);
    for (const message of [slackMessage, mailMessage]) {
      expect(message).not.toContain(WEBHOOK_TOKEN);
      expect(message).not.toContain('T0VALHALLA');
      expect(message).not.toContain(SMTP_PASSWORD);
      expect(message).not.toContain(encodeURIComponent(SMTP_PASSWORD));
    }
    expect(authServer.messages).toHaveLength(0);
    expect(w.slack.requests).toHaveLength(0);
  });

  it('`valhalla alerts test` and `alerts list`: 0 when both channels deliver, 1 naming the one that fails, 3 with none', async () => {
    const [slack, smtp] = await Promise.all([startSlack(), startSmtp()]);
    const dir = tempDir();
    const env = testEnv(dir, {
      VALHALLA_DATABASE_URL: backend.databaseUrl(),
      VALHALLA_LOG_LEVEL: 'warn',
      VALHALLA_SLACK_WEBHOOK_URL: slack.webhookUrl,
      VALHALLA_SMTP_URL: smtp.url,
      VALHALLA_ALERT_EMAIL_TO: OPS.join(','),
      VALHALLA_ALERT_EMAIL_FROM: 'valhalla@example.com',
    });

    expect((await runInProcess(['init'], { env, cwd: dir })).code).toBe(0);
    const ok = await runInProcess(['alerts', 'test'], { env, cwd: dir });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^slack\s+ok\s+\(\d+ ms\)$/m);
    expect(ok.stdout).toMatch(/^email\s+ok\s+\(\d+ ms\)$/m);
    expect(slack.requests).toHaveLength(1);
    expect(smtp.messages).toHaveLength(1);
    expect(smtp.messages[0]!.subject).toContain('[valhalla TEST]');

    const listed = await runInProcess(['alerts', 'list', '--json'], { env, cwd: dir });
    expect(listed.code).toBe(0);
    const { alerts } = JSON.parse(listed.stdout) as {
      alerts: { kind: string; event: string; deliveries: { channel: string; state: string }[] }[];
    };
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ kind: 'test', event: 'test' });
    expect(alerts[0]!.deliveries.map((d) => `${d.channel}:${d.state}`)).toEqual(['email:sent', 'slack:sent']);

    await smtp.close();
    const failed = await runInProcess(['alerts', 'test'], { env, cwd: dir });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/^slack\s+ok/m);
    expect(failed.stdout).toMatch(/^email\s+failed: SMTP server 127\.0\.0\.1:\d+: .*ECONNREFUSED/m);
    expect(failed.stderr).toContain('the test alert did not reach: email');

    const table = await runInProcess(['alerts', 'list', '--limit', '5'], { env, cwd: dir });
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+TIME\s+SEVERITY\s+KIND\s+EVENT\s+REPEATS\s+DELIVERY\s+MESSAGE$/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(
      /\binfo\s+test\s+test\s+0\s+email:failed slack:sent\s+Test alert sent by test-operator/,
    );
    expect(lines[2]).toContain('email:sent slack:sent');
    for (const out of [ok, listed, failed, table]) {
      expect(out.stdout + out.stderr).not.toContain(WEBHOOK_TOKEN);
    }

    const noneEnv = testEnv(tempDir(), {
      VALHALLA_DATABASE_URL: backend.databaseUrl(),
      VALHALLA_LOG_LEVEL: 'warn',
    });
    expect((await runInProcess(['init'], { env: noneEnv, cwd: dir })).code).toBe(0);
    const none = await runInProcess(['alerts', 'test'], { env: noneEnv, cwd: dir });
    expect(none.code).toBe(3);
    expect(none.stdout).toBe('');
    expect(none.stderr).toContain('no alert channel is configured');
  });
});
