import type { PartnerProfile } from '../partner/index.js';
import { isLoopbackHost } from '../policy/index.js';
import { OutboundError } from './errors.js';

/** The partner's endpoints, checked once at creation. */
export interface PartnerEndpoints {
  /** `POST` target for batches (the profile's leads path). */
  readonly leads: URL;
  /** `GET` target for the health check (the profile's health path). */
  readonly health: URL;
  /** OAuth2 client-credentials token endpoint; null when the profile's auth is not OAuth2. */
  readonly token: URL | null;
}

/**
 * Parse and check one partner URL: https:// always; http:// only to a loopback host and only when
 * the caller allows it (Phase 3 sandbox, tests). Never echoes credentials.
 */
export function checkPartnerUrl(what: string, raw: string, allowPlainHttpLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (cause) {
    throw new OutboundError('INVALID_URL', `${what} is not a valid URL`, { cause });
  }
  if (url.username || url.password) {
    throw new OutboundError(
      'INVALID_URL',
      `${what} must not carry credentials (${url.protocol}//***@${url.host})`,
    );
  }
  if (url.search || url.hash) {
    throw new OutboundError('INVALID_URL', `${what} must not have a query or fragment (${url.origin})`);
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol !== 'http:') {
    throw new OutboundError('INVALID_URL', `${what} must be https:// (got ${url.protocol}//)`);
  }
  if (!allowPlainHttpLoopback) {
    throw new OutboundError(
      'INSECURE_URL',
      `${what} is plain http:// (${url.origin}): every partner request must be HTTPS with TLS ≥ 1.2`,
    );
  }
  if (!isLoopbackHost(url.hostname)) {
    throw new OutboundError(
      'INSECURE_URL',
      `${what} is plain http:// to a host that is not loopback (${url.origin}): refused`,
    );
  }
  return url;
}

/** The profile's endpoints below a base URL (a path prefix such as `https://partner.example/v2` is kept). */
export function partnerEndpoints(
  baseUrl: string,
  profile: PartnerProfile,
  tokenUrl: string | null,
  allowPlainHttpLoopback: boolean,
): PartnerEndpoints {
  const base = checkPartnerUrl('partner base URL', baseUrl, allowPlainHttpLoopback);
  const token =
    tokenUrl === null ? null : checkPartnerUrl('partner token URL', tokenUrl, allowPlainHttpLoopback);
  return {
    leads: urlBelow(base, profile.endpoints.leads.path),
    health: urlBelow(base, profile.endpoints.health.path),
    token,
  };
}

/** A path below a base URL, the base's own path kept (`https://p.example/v2` + `/api/leads` → `…/v2/api/leads`). */
export function urlBelow(base: URL, path: string): URL {
  const prefix = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  return new URL(`${prefix}${path.replace(/^\/+/, '')}`, base.origin);
}
