import { isLoopbackHost } from '../policy/index.js';
import type { ConfigIssue } from './errors.js';

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
  const tokens: ApiTokenEntry[] = [];
  const seen = new Set<string>();
  const entries = (raw.VALHALLA_API_TOKENS ?? '')
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  entries.forEach((entry, index) => {
    const [name = '', role = '', sha256 = '', ...rest] = entry.split(':');
    const where = `entry ${index + 1} (${NAME.test(name) ? name : 'unnamed'})`;
    const problem =
      rest.length > 0 || sha256 === ''
        ? 'must be name:role:sha256 (from `valhalla tokens create`)'
        : !NAME.test(name)
          ? 'the name must be 1-64 letters, digits or . _ @ -'
          : !API_ROLES.includes(role as ApiRole)
            ? `the role must be one of ${API_ROLES.join(', ')}, not ${JSON.stringify(role.slice(0, 20))}`
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
  return { port, host, tokens };
}
