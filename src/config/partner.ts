import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isLoopbackHost } from '../policy/index.js';
import type { ConfigIssue } from './errors.js';

/** Where and how the partner is reached. */
export interface PartnerSettings {
  /** The partner's base URL (`POST {url}/api/leads`, `GET {url}/health`), or null when not configured. */
  readonly url: string | null;
  readonly tokenUrl: string | null;
  readonly clientId: string | null;
  readonly clientSecret: string | null;
  readonly caFile: string | null;
  /** The CA bundle's PEM text, read at start. */
  readonly caPem: string | null;
}

/**
 * Read the partner settings. Phase 4 needs all four of URL, token URL, client id and secret, and
 * refuses plain `http://`; Phase 3 allows `http://` only to a loopback sandbox.
 */
export function readPartnerSettings(
  raw: Readonly<Record<string, string | undefined>>,
  phase: 3 | 4,
  cwd: string,
  issues: ConfigIssue[],
): PartnerSettings {
  const url = checkUrl('VALHALLA_PARTNER_URL', raw.VALHALLA_PARTNER_URL, phase, issues);
  const tokenUrl = checkUrl('VALHALLA_PARTNER_TOKEN_URL', raw.VALHALLA_PARTNER_TOKEN_URL, phase, issues);
  const clientId = raw.VALHALLA_PARTNER_CLIENT_ID ?? null;
  const clientSecret = raw.VALHALLA_PARTNER_CLIENT_SECRET ?? null;
  if (phase === 4) {
    for (const [name, value] of [
      ['VALHALLA_PARTNER_URL', raw.VALHALLA_PARTNER_URL],
      ['VALHALLA_PARTNER_TOKEN_URL', raw.VALHALLA_PARTNER_TOKEN_URL],
      ['VALHALLA_PARTNER_CLIENT_ID', clientId],
      ['VALHALLA_PARTNER_CLIENT_SECRET', clientSecret],
    ] as const) {
      if (value === undefined || value === null)
        issues.push({ setting: name, value: undefined, problem: 'required in Phase 4' });
    }
  }
  let caFile: string | null = null;
  let caPem: string | null = null;
  if (raw.VALHALLA_PARTNER_CA_FILE !== undefined) {
    caFile = resolve(cwd, raw.VALHALLA_PARTNER_CA_FILE);
    if (!existsSync(caFile)) {
      issues.push({ setting: 'VALHALLA_PARTNER_CA_FILE', value: caFile, problem: 'no such file' });
    } else {
      try {
        caPem = readFileSync(caFile, 'utf8');
        // Only CERTIFICATE blocks: the release manifest names each by its fingerprint, and a block
        // of another kind (TRUSTED CERTIFICATE, X509 CERTIFICATE) would be trusted unnamed.
        const others = [...caPem.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----/g)]
          .map((m) => m[1])
          .filter((kind) => kind !== 'CERTIFICATE');
        if (!caPem.includes('-----BEGIN CERTIFICATE-----')) {
          issues.push({
            setting: 'VALHALLA_PARTNER_CA_FILE',
            value: caFile,
            problem: 'not a PEM certificate bundle',
          });
        } else if (others.length > 0) {
          issues.push({
            setting: 'VALHALLA_PARTNER_CA_FILE',
            value: caFile,
            problem: `holds PEM blocks other than CERTIFICATE (${[...new Set(others)].join(', ')}): keep only the partner's CA certificates`,
          });
        }
      } catch (cause) {
        issues.push({
          setting: 'VALHALLA_PARTNER_CA_FILE',
          value: caFile,
          problem: `cannot read: ${(cause as Error).message}`,
        });
      }
    }
  }
  return { url, tokenUrl, clientId, clientSecret, caFile, caPem };
}

function checkUrl(
  name: string,
  value: string | undefined,
  phase: 3 | 4,
  issues: ConfigIssue[],
): string | null {
  if (value === undefined) return null;
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    issues.push({ setting: name, value, problem: 'not a valid URL' });
    return null;
  }
  if (parsed.username || parsed.password) {
    issues.push({
      setting: name,
      value: `${parsed.protocol}//***@${parsed.host}`,
      problem: 'credentials do not belong in the URL',
    });
    return null;
  }
  if (parsed.protocol === 'https:') return value.replace(/\/+$/, '');
  if (parsed.protocol !== 'http:') {
    issues.push({ setting: name, value, problem: 'must be an https:// URL' });
    return null;
  }
  if (phase === 4) {
    issues.push({
      setting: name,
      value,
      problem: 'plain http:// is refused in Phase 4: every outbound request is HTTPS with TLS ≥ 1.2',
    });
    return null;
  }
  if (!isLoopbackHost(parsed.hostname)) {
    issues.push({
      setting: name,
      value,
      problem: 'plain http:// is allowed only to a loopback sandbox (127.0.0.1, localhost) in Phase 3',
    });
    return null;
  }
  return value.replace(/\/+$/, '');
}
