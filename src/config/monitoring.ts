import { isLoopbackHost } from '../policy/index.js';
import type { ConfigIssue } from './errors.js';

/** Where alerts go (the policy's gate 5): a Slack incoming webhook and e-mail over SMTP. */
export interface AlertSettings {
  /** The Slack incoming-webhook URL (a secret: it is the credential), or null. */
  readonly slackWebhookUrl: string | null;
  /** `smtp://` or `smtps://` URL of the mail server (may carry user:password: a secret), or null. */
  readonly smtpUrl: string | null;
  /** The ops list: e-mail recipients. */
  readonly emailTo: readonly string[];
  readonly emailFrom: string;
}

/** Where `/metrics` is served: a port on 127.0.0.1 (0: any free port), or null when off. */
export interface MetricsSettings {
  readonly port: number | null;
}

const EMAIL = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+\.[^\s@<>(),;:"]+$/;
export const DEFAULT_METRICS_PORT = 9464;

export function readAlertSettings(
  raw: Readonly<Record<string, string | undefined>>,
  issues: ConfigIssue[],
): AlertSettings {
  let slackWebhookUrl: string | null = null;
  const slack = raw.VALHALLA_SLACK_WEBHOOK_URL;
  if (slack !== undefined) {
    const parsed = parseUrl(slack);
    if (parsed === null) {
      issues.push({ setting: 'VALHALLA_SLACK_WEBHOOK_URL', value: '(secret)', problem: 'not a valid URL' });
    } else if (
      parsed.protocol === 'https:' ||
      (parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname))
    ) {
      slackWebhookUrl = slack;
    } else {
      issues.push({
        setting: 'VALHALLA_SLACK_WEBHOOK_URL',
        // A value that is no web URL may be the secret itself, misplaced: name nothing of it.
        value: /^https?:$/.test(parsed.protocol) ? `${parsed.protocol}//${parsed.host}/…` : '(not shown)',
        problem: 'must be an https:// URL (plain http:// only to a loopback relay)',
      });
    }
  }
  let smtpUrl: string | null = null;
  if (raw.VALHALLA_SMTP_URL !== undefined) {
    const parsed = parseUrl(raw.VALHALLA_SMTP_URL);
    // The literal prefix, no white space: anything looser (`smtp:user:pw@host`) parses as a URL
    // whose password the masking of `config show` would not recognise.
    if (parsed === null || !/^smtps?:\/\/[^\s]*$/i.test(raw.VALHALLA_SMTP_URL)) {
      const named = parsed !== null && (parsed.protocol === 'smtp:' || parsed.protocol === 'smtps:');
      issues.push({
        setting: 'VALHALLA_SMTP_URL',
        value: named ? `${parsed.protocol}//${parsed.host}` : '(not shown)',
        problem: 'must be an smtp:// or smtps:// URL, with no spaces',
      });
    } else {
      smtpUrl = raw.VALHALLA_SMTP_URL;
    }
  }
  const emailTo = (raw.VALHALLA_ALERT_EMAIL_TO ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  for (const address of emailTo) {
    if (!EMAIL.test(address)) {
      issues.push({ setting: 'VALHALLA_ALERT_EMAIL_TO', value: address, problem: 'not an e-mail address' });
    }
  }
  const emailFrom = raw.VALHALLA_ALERT_EMAIL_FROM?.trim() || 'valhalla@localhost';
  if (!EMAIL.test(emailFrom) && emailFrom !== 'valhalla@localhost') {
    issues.push({ setting: 'VALHALLA_ALERT_EMAIL_FROM', value: emailFrom, problem: 'not an e-mail address' });
  }
  if (smtpUrl !== null && emailTo.length === 0) {
    issues.push({
      setting: 'VALHALLA_ALERT_EMAIL_TO',
      value: undefined,
      problem: 'VALHALLA_SMTP_URL is set: the ops list to send to is required',
    });
  }
  if (smtpUrl === null && emailTo.length > 0) {
    issues.push({
      setting: 'VALHALLA_SMTP_URL',
      value: undefined,
      problem: 'VALHALLA_ALERT_EMAIL_TO is set: the mail server to send through is required',
    });
  }
  return { slackWebhookUrl, smtpUrl, emailTo, emailFrom };
}

export function readMetricsSettings(
  raw: Readonly<Record<string, string | undefined>>,
  issues: ConfigIssue[],
): MetricsSettings {
  const value = raw.VALHALLA_METRICS_PORT?.trim();
  if (value === undefined) return { port: DEFAULT_METRICS_PORT };
  if (value === 'off') return { port: null };
  if (/^\d+$/.test(value) && Number(value) <= 65_535) return { port: Number(value) };
  issues.push({
    setting: 'VALHALLA_METRICS_PORT',
    value,
    problem: 'must be a port number (0 for any free port) or off',
  });
  return { port: null };
}

function parseUrl(value: string): URL | null {
  try {
    return new URL(value);
  } catch {
    return null;
  }
}
