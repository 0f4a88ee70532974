import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Clock } from '../clock/index.js';

export interface IssuedToken {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

/** The partner's own check of a bearer token, as it stands when a request presents it. */
export type TokenCheck =
  | { ok: true; lifeLeftMs: number; lifetimeMs: number }
  | { ok: false; reason: 'unknown' | 'expired' };

export type TokenRequest =
  | { ok: true }
  | { ok: false; status: 400 | 401; error: 'invalid_request' | 'unsupported_grant_type' | 'invalid_client' };

/** The OAuth2 client-credentials server: one client, opaque random tokens with an expiry. */
export class TokenIssuer {
  readonly #clientId: string;
  readonly #clientSecret: string;
  readonly #clock: Clock;
  /** token → expiry (clock ms) and lifetime. Expired tokens are dropped when met, or when the map is swept. */
  readonly #tokens = new Map<string, { expiresAt: number; lifetimeMs: number }>();

  constructor(clientId: string, clientSecret: string, clock: Clock) {
    this.#clientId = clientId;
    this.#clientSecret = clientSecret;
    this.#clock = clock;
  }

  /**
   * Check a token request: form fields `grant_type`, `client_id`, `client_secret`, or the client
   * in HTTP Basic auth (RFC 6749 §2.3.1: each part form-encoded, then base64).
   */
  check(headers: IncomingHttpHeaders, body: Buffer): TokenRequest {
    const form = new URLSearchParams(body.toString('utf8'));
    const grantType = form.get('grant_type');
    if (grantType === null) return { ok: false, status: 400, error: 'invalid_request' };
    if (grantType !== 'client_credentials')
      return { ok: false, status: 400, error: 'unsupported_grant_type' };
    const basic = readBasicAuth(headers.authorization);
    const id = basic?.id ?? form.get('client_id');
    const secret = basic?.secret ?? form.get('client_secret');
    if (id === null || secret === null) return { ok: false, status: 401, error: 'invalid_client' };
    // Both compared, always, in constant time: the answer's timing says nothing about which was wrong.
    const idMatches = sameText(id, this.#clientId);
    const secretMatches = sameText(secret, this.#clientSecret);
    return idMatches && secretMatches ? { ok: true } : { ok: false, status: 401, error: 'invalid_client' };
  }

  issue(ttlSeconds: number): IssuedToken {
    const now = this.#clock.now();
    if (this.#tokens.size >= 10_000) this.#sweep(now);
    const token = randomBytes(32).toString('base64url');
    this.#tokens.set(token, { expiresAt: now + ttlSeconds * 1000, lifetimeMs: ttlSeconds * 1000 });
    return { access_token: token, token_type: 'Bearer', expires_in: ttlSeconds };
  }

  /**
   * Whether `Authorization: Bearer <token>` holds a token this issuer gave out that has not expired,
   * and if so how much of its life is left. An expired token is told apart from one never issued (or
   * already swept, or malformed): `unknown`.
   */
  verify(authorization: string | undefined): TokenCheck {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    const token = match?.[1];
    if (token === undefined) return { ok: false, reason: 'unknown' };
    const issued = this.#tokens.get(token);
    if (issued === undefined) return { ok: false, reason: 'unknown' };
    const lifeLeftMs = issued.expiresAt - this.#clock.now();
    if (lifeLeftMs <= 0) {
      this.#tokens.delete(token);
      return { ok: false, reason: 'expired' };
    }
    return { ok: true, lifeLeftMs, lifetimeMs: issued.lifetimeMs };
  }

  #sweep(now: number): void {
    for (const [token, { expiresAt }] of this.#tokens) if (now >= expiresAt) this.#tokens.delete(token);
  }
}

function readBasicAuth(header: string | undefined): { id: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (match?.[1] === undefined) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    const formDecode = (s: string) => decodeURIComponent(s.replace(/\+/g, ' '));
    return { id: formDecode(decoded.slice(0, colon)), secret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    return undefined; // a malformed %-escape
  }
}

function sameText(a: string, b: string): boolean {
  // Hashing first makes both sides the same length, which timingSafeEqual requires.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/** A CRM private app's static token: `Authorization: Bearer <token>` must hold exactly it. */
export class StaticBearer {
  readonly #token: string;

  constructor(token: string) {
    this.#token = token;
  }

  verify(authorization: string | undefined): boolean {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    return match?.[1] !== undefined && sameText(match[1], this.#token);
  }
}
