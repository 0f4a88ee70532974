import { createTransport } from 'nodemailer';
import type { SMTPTransportOptions } from 'nodemailer/lib/smtp-transport';
import { request } from 'undici';
import type { AlertSettings } from '../config/index.js';
import { settleOrAbort, tlsAgent } from '../outbound/index.js';
import { isLoopbackHost } from '../policy/index.js';
import type { AlertKind, AlertSeverity } from '../store/index.js';
import { type ChannelName, configuredChannels } from './record.js';

/** An alert as a channel sends it: a stored alert with its details parsed. */
export interface OutgoingAlert {
  /** The alert's id; 0 when it is not recorded yet (a test alert is recorded after it is sent). */
  id: number;
  at: number;
  severity: AlertSeverity;
  kind: AlertKind;
  event: string;
  message: string;
  details: Record<string, unknown>;
  /** Repeats within the de-duplication window counted on this alert so far. */
  repeats: number;
}

export interface AlertChannel {
  readonly name: ChannelName;
  /** Deliver one alert; throws an AlertChannelError (no secret in its message) when it was not accepted. */
  send(alert: OutgoingAlert, signal?: AbortSignal): Promise<void>;
  /** Release sockets; safe to call twice. */
  close(): Promise<void>;
}

export type AlertChannelErrorCode = 'TIMEOUT' | 'REJECTED' | 'NETWORK' | 'CANCELLED' | 'CLOSED';

/** A channel did not take an alert. The message names the server, never the webhook path or a password. */
export class AlertChannelError extends Error {
  override readonly name = 'AlertChannelError';
  constructor(
    readonly code: AlertChannelErrorCode,
    readonly channel: ChannelName,
    message: string,
  ) {
    super(message);
  }
}

export function isAlertChannelError(error: unknown): error is AlertChannelError {
  return error instanceof AlertChannelError;
}

/** Slack's and SMTP servers' answers are small: enough of a refusal's body to say why, no more. */
const REFUSAL_SNIPPET_CHARS = 120;
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The channels the settings configure (see configuredChannels): Slack when a webhook is set, e-mail
 * when an SMTP server and the ops list are. `timeoutMs` bounds every step of one send (connect,
 * greeting, answer); `caPem` pins the CA for both (a relay with a private CA).
 */
export function createAlertChannels(
  settings: AlertSettings,
  options: { timeoutMs?: number; caPem?: string } = {},
): AlertChannel[] {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return configuredChannels(settings).map((name) => {
    switch (name) {
      case 'slack':
        return createSlackChannel(settings.slackWebhookUrl!, timeoutMs, options.caPem);
      case 'email':
        return createEmailChannel(settings, timeoutMs, options.caPem);
      default: {
        const unknown: never = name;
        throw new Error(`unknown alert channel ${String(unknown)}`);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Slack

function createSlackChannel(webhookUrl: string, timeoutMs: number, caPem: string | undefined): AlertChannel {
  const url = new URL(webhookUrl);
  // The webhook's path is its credential: errors and logs name the host only.
  const where = `Slack webhook ${url.host}`;
  const secrets = [
    webhookUrl,
    url.pathname + url.search,
    ...url.pathname.split('/').filter((s) => s.length >= 8),
  ];
  const agent = tlsAgent({ caPem, connections: 2, timeoutMs });
  let closing: Promise<void> | null = null;

  return {
    name: 'slack',
    async send(alert, signal) {
      if (closing)
        throw new AlertChannelError('CLOSED', 'slack', `${where}: the channel is closed; not sent`);
      // undici's own timeouts bound each phase; the deadline bounds the whole exchange.
      const deadline = AbortSignal.timeout(timeoutMs);
      const combined = signal ? AbortSignal.any([signal, deadline]) : deadline;
      let status: number;
      let snippet: string;
      try {
        const response = await request(url, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify(slackPayload(alert)),
          signal: combined,
        });
        status = response.statusCode;
        snippet = await readSnippet(response.body);
      } catch (error) {
        if (signal?.aborted) {
          throw new AlertChannelError('CANCELLED', 'slack', `${where}: cancelled before an answer`);
        }
        if (deadline.aborted || isUndiciTimeout(error)) {
          throw new AlertChannelError('TIMEOUT', 'slack', `${where}: no answer within ${timeoutMs} ms`);
        }
        throw new AlertChannelError('NETWORK', 'slack', `${where}: ${redact(describe(error), secrets)}`);
      }
      if (status < 200 || status > 299) {
        const why = snippet === '' ? '' : `: ${redact(snippet, secrets)}`;
        throw new AlertChannelError('REJECTED', 'slack', `${where} answered HTTP ${status}${why}`);
      }
    },
    close() {
      closing ??= agent.close().catch(() => undefined);
      return closing;
    },
  };
}

const EMOJI: Readonly<Record<AlertSeverity, string>> = {
  critical: ':rotating_light:',
  warning: ':warning:',
  info: ':information_source:',
};

/** `CRITICAL`, `RECOVERED` or `TEST`: what a reader sees first. */
function label(alert: OutgoingAlert): string {
  if (alert.kind === 'recovered') return 'RECOVERED';
  if (alert.kind === 'test') return 'TEST';
  return alert.severity.toUpperCase();
}

/** The Slack message: a plain `text` (notifications, old clients) and blocks with the same content. */
export function slackPayload(alert: OutgoingAlert): { text: string; blocks: unknown[] } {
  const emoji =
    alert.kind === 'recovered'
      ? ':white_check_mark:'
      : alert.kind === 'test'
        ? ':test_tube:'
        : EMOJI[alert.severity];
  const head = `[${label(alert)}] ${alert.event}`;
  const details = detailsLine(alert.details);
  const context = [
    new Date(alert.at).toISOString(),
    `severity ${alert.severity}`,
    ...(alert.id > 0 ? [`alert #${alert.id}`] : []),
    ...(alert.repeats > 0 ? [`repeated ${alert.repeats} more time(s) within the de-duplication window`] : []),
  ].join(' · ');
  const message = truncate(alert.message, 2_000);
  return {
    text: escapeSlack(`${emoji} ${head}: ${message}`),
    blocks: [
      {
        type: 'section',
        text: { type: 'mrkdwn', text: `${emoji} *${escapeSlack(head)}*\n${escapeSlack(message)}` },
      },
      ...(details === ''
        ? []
        : [{ type: 'context', elements: [{ type: 'mrkdwn', text: escapeSlack(details) }] }]),
      { type: 'context', elements: [{ type: 'mrkdwn', text: escapeSlack(context) }] },
    ],
  };
}

/** Slack's mrkdwn treats these three as control characters; everything else is shown as it is. */
function escapeSlack(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/** `key: value, key: value`, cut to one short line. */
function detailsLine(details: Record<string, unknown>): string {
  const parts = Object.entries(details).map(([key, value]) => `${key}: ${valueText(value)}`);
  return truncate(parts.join(', '), 300);
}

function valueText(value: unknown): string {
  if (typeof value === 'string') return value;
  return JSON.stringify(value) ?? String(value);
}

// ---------------------------------------------------------------------------------------------
// E-mail

function createEmailChannel(
  settings: AlertSettings,
  timeoutMs: number,
  caPem: string | undefined,
): AlertChannel {
  const url = new URL(settings.smtpUrl!);
  const secure = url.protocol === 'smtps:';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? (secure ? 465 : 587) : Number(url.port);
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const where = `SMTP server ${url.host || host}`;
  const secrets = [settings.smtpUrl!, ...(url.password === '' ? [] : [url.password, password])];
  const options: SMTPTransportOptions = {
    host,
    port,
    secure,
    // A password or an alert in clear text over the network is not acceptable: STARTTLS is required
    // unless the server is on this machine (a local relay) or the connection is TLS from the start.
    requireTLS: !secure && !isLoopbackHost(url.hostname),
    tls: { minVersion: 'TLSv1.2', rejectUnauthorized: true, ...(caPem === undefined ? {} : { ca: caPem }) },
    ...(user === '' ? {} : { auth: { user, pass: password } }),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
    debug: false,
  };
  const transport = createTransport(options);
  let closed = false;

  return {
    name: 'email',
    async send(alert, signal) {
      if (closed) throw new AlertChannelError('CLOSED', 'email', `${where}: the channel is closed; not sent`);
      if (signal?.aborted) throw new AlertChannelError('CANCELLED', 'email', `${where}: cancelled; not sent`);
      const sending = transport.sendMail({
        from: settings.emailFrom,
        to: [...settings.emailTo],
        subject: emailSubject(alert),
        text: emailBody(alert),
      });
      try {
        // nodemailer takes no signal; its own timeouts bound the exchange, the signal only stops the wait.
        await (signal ? settleOrAbort(sending, signal, () => signal.reason) : sending);
      } catch (error) {
        if (signal?.aborted) {
          sending.catch(() => undefined);
          throw new AlertChannelError('CANCELLED', 'email', `${where}: cancelled before an answer`);
        }
        const text = redact(describe(error), secrets);
        const code = /timeout|timed out|greeting never received/i.test(text) ? 'TIMEOUT' : smtpCode(error);
        throw new AlertChannelError(code, 'email', `${where}: ${truncate(text, 300)}`);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      transport.close();
    },
  };
}

/** `[valhalla CRITICAL] rollback: ROLLED BACK by …`, on one line. */
export function emailSubject(alert: OutgoingAlert): string {
  return truncate(`[valhalla ${label(alert)}] ${alert.event}: ${oneLine(alert.message)}`, 150);
}

/** A plain-text body: the facts first, then the message, then every detail on its own line. */
export function emailBody(alert: OutgoingAlert): string {
  const lines = [
    `Valhalla alert: ${label(alert)}`,
    '',
    `Event:     ${alert.event}`,
    `Severity:  ${alert.severity}`,
    `Kind:      ${alert.kind}${alert.kind === 'recovered' ? ' (the condition has ended)' : ''}`,
    `Time:      ${new Date(alert.at).toISOString()}`,
    ...(alert.id > 0 ? [`Alert:     #${alert.id}`] : []),
    ...(alert.repeats > 0
      ? [`Repeats:   ${alert.repeats} more time(s) within the de-duplication window`]
      : []),
    '',
    alert.message,
    '',
  ];
  const entries = Object.entries(alert.details);
  if (entries.length > 0) {
    lines.push('Details:');
    for (const [key, value] of entries) lines.push(`  ${key}: ${truncate(valueText(value), 500)}`);
    lines.push('');
  }
  lines.push(
    '-- ',
    'Sent by Valhalla to the ops list. `valhalla alerts list` shows recent alerts and their delivery.',
  );
  return lines.join('\n');
}

function smtpCode(error: unknown): AlertChannelErrorCode {
  const responseCode = (error as { responseCode?: unknown }).responseCode;
  return typeof responseCode === 'number' ? 'REJECTED' : 'NETWORK';
}

// ---------------------------------------------------------------------------------------------
// Shared

function isUndiciTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_BODY_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    (error instanceof Error && error.name === 'TimeoutError')
  );
}

/** An error's code and message, following `cause` once (undici wraps socket errors). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause : null;
  const code = (error as { code?: unknown }).code ?? (cause as { code?: unknown } | null)?.code;
  const message = error.message || cause?.message || error.name;
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    if (secret.length >= 4) out = out.replaceAll(secret, '***');
  }
  return out;
}

async function readSnippet(body: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(Buffer.from(chunk));
    size += chunk.length;
    if (size >= REFUSAL_SNIPPET_CHARS * 4) break;
  }
  return truncate(oneLine(Buffer.concat(chunks).toString('utf8').trim()), REFUSAL_SNIPPET_CHARS);
}

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ');
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
