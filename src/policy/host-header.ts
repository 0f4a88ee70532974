import { isLoopbackHost } from './loopback.js';

/** Whether a request's Host header names this service; a refusal says how it fails. */
export type HostDecision =
  | { allowed: true }
  | { allowed: false; status: 400 | 421; code: 'HOST_MISSING' | 'HOST_DUPLICATE' | 'HOST_NOT_ALLOWED' };

/** `name`, `1.2.3.4`, `[::1]`, each with an optional port: what a browser sends. */
const HOST_VALUE = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}))?$/i;

/**
 * DNS rebinding: a page on another site can make a browser on this host send requests here under the
 * attacker's name (which resolves to 127.0.0.1), and read what comes back as same-origin. Only the
 * loopback names and the configured public name (the TLS proxy's; with its port when it has one)
 * are served. Exactly one Host header: two leave which one counts to whoever reads it.
 * `rawHeaders` is Node's flat [name, value, name, value, …] list, where duplicates are still visible.
 */
export function checkHostHeader(rawHeaders: readonly string[], publicHost: string | null): HostDecision {
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'host') values.push(rawHeaders[i + 1]!);
  }
  if (values.length === 0) return { allowed: false, status: 400, code: 'HOST_MISSING' };
  if (values.length > 1) return { allowed: false, status: 400, code: 'HOST_DUPLICATE' };
  const value = values[0]!.trim().toLowerCase();
  const parsed = HOST_VALUE.exec(value);
  if (parsed === null) return { allowed: false, status: 400, code: 'HOST_NOT_ALLOWED' };
  const [, name = '', port] = parsed;
  if (port !== undefined && Number(port) > 65_535)
    return { allowed: false, status: 400, code: 'HOST_NOT_ALLOWED' };
  if (isLoopbackHost(name)) return { allowed: true };
  if (publicHost !== null) {
    const wanted = HOST_VALUE.exec(publicHost.toLowerCase());
    if (wanted !== null && wanted[1] === name && (wanted[2] === undefined || wanted[2] === port)) {
      return { allowed: true };
    }
  }
  return { allowed: false, status: 421, code: 'HOST_NOT_ALLOWED' };
}
