import { isLoopbackHost } from '../policy/index.js';
import type { ConfigIssue } from './errors.js';
import { describeTokenEntry, looksLikeApiToken } from './mask.js';

export type ApiRole = 'viewer' | 'operator' | 'admin';
export const API_ROLES: readonly ApiRole[] = ['viewer', 'operator', 'admin'];

/** One API token as configured: its holder, its role and the SHA-256 of the token (never the token). */
export interface ApiTokenEntry {
  readonly name: string;
  readonly role: ApiRole;
  readonly sha256: string;
}

/** The admin API and dashboard (`valhalla serve`, and inside `valhalla run`). */
export interface ServerSettings {
  /** A port on `host` (0: any free port), or null when off. */
  readonly port: number | null;
  readonly host: string;
  /**
   * The name browsers reach the dashboard by through a TLS proxy (`valhalla.example.com`, optionally
   * with a port), accepted in the Host header besides the loopback names; null: loopback names only.
   */
  readonly publicHost: string | null;
  readonly tokens: readonly ApiTokenEntry[];
}

export const DEFAULT_SERVER_PORT = 8080;
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * VALHALLA_SERVER_PORT (default 8080, `off`), VALHALLA_SERVER_HOST (a loopback address: the server
 * speaks plain HTTP, so anything wider goes through a TLS proxy on the same host), and
 * VALHALLA_API_TOKENS: `name:role:sha256hex` entries separated by commas (`valhalla tokens create`).
 */
export function readServerSettings(
  raw: Readonly<Record<string, string | undefined>>,
  issues: ConfigIssue[],
): ServerSettings {
  let port: number | null = DEFAULT_SERVER_PORT;
  const portValue = raw.VALHALLA_SERVER_PORT?.trim();
  if (portValue === 'off') port = null;
  else if (portValue !== undefined) {
    if (/^\d+$/.test(portValue) && Number(portValue) <= 65_535) port = Number(portValue);
    else {
      issues.push({
        setting: 'VALHALLA_SERVER_PORT',
        value: portValue,
        problem: 'must be a port number (0 for any free port) or off',
      });
    }
  }
  const host = raw.VALHALLA_SERVER_HOST?.trim() || '127.0.0.1';
  if (!isLoopbackHost(host)) {
    issues.push({
      setting: 'VALHALLA_SERVER_HOST',
      value: host,
      problem:
        'must be a loopback address (127.0.0.1, ::1 or localhost): the dashboard speaks plain HTTP, so reach it through a TLS proxy or an SSH tunnel',
    });
  }
  const publicHost = readPublicHost(raw.VALHALLA_PUBLIC_HOST, issues);
  const tokens: ApiTokenEntry[] = [];
  const seen = new Set<string>();
  const entries = (raw.VALHALLA_API_TOKENS ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  entries.forEach((entry, index) => {
    const [name = '', role = '', sha256 = '', ...rest] = entry.split(':');
    // Named by position (and its holder when that cannot be the token): a malformed entry may be
    // the token itself, pasted where its hash belongs, and is never echoed.
    const where = describeTokenEntry(entry, index + 1);
    const problem =
      rest.length > 0 || sha256 === ''
        ? 'must be name:role:sha256 (from `valhalla tokens create`)'
        : !NAME.test(name)
          ? 'the name must be 1-64 letters, digits or . _ @ -'
          : looksLikeApiToken(name)
            ? "the name looks like a token (vh_…): the entry holds the holder's name and the token's SHA-256, never the token"
            : !API_ROLES.includes(role as ApiRole)
              ? `the role must be one of ${API_ROLES.join(', ')}${/^[a-z]{1,16}$/i.test(role) ? `, not ${JSON.stringify(role)}` : ''}`
              : !SHA256_HEX.test(sha256)
                ? 'the hash must be 64 lowercase hex characters (the SHA-256 of the token, never the token itself)'
                : seen.has(name)
                  ? 'this name is already used by an earlier entry'
                  : null;
    if (problem !== null) {
      issues.push({ setting: 'VALHALLA_API_TOKENS', value: where, problem });
      return;
    }
    seen.add(name);
    tokens.push({ name, role: role as ApiRole, sha256 });
  });
  return { port, host, publicHost, tokens };
}

/** A DNS name (or an IP address), optionally with a port: what a browser sends as `Host`. */
const HOST_NAME =
  /^(?:(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/;

function readPublicHost(value: string | undefined, issues: ConfigIssue[]): string | null {
  const host = value?.trim().toLowerCase();
  if (host === undefined || host === '') return null;
  if (host.length > 253 || !HOST_NAME.test(host) || Number(host.split(':').at(-1)) > 65_535) {
    issues.push({
      setting: 'VALHALLA_PUBLIC_HOST',
      value: host.slice(0, 100),
      problem:
        'must be a host name as browsers send it in Host (valhalla.example.com or valhalla.example.com:8443), no scheme or path',
    });
    return null;
  }
  return host;
}
