import type { Clock } from '../clock/index.js';
import type { PermanentOutcome, RetryableOutcome } from './types.js';

/** What one call to the token endpoint gave: a token and its lifetime, or a failure outcome. */
export type TokenGrant =
  | { kind: 'granted'; accessToken: string; expiresInMs: number }
  | RetryableOutcome
  | PermanentOutcome;

export type CurrentToken =
  | { kind: 'ok'; token: string; expiresAtMs: number; refreshed: boolean }
  | RetryableOutcome
  | PermanentOutcome;

/**
 * OAuth2 client-credentials token cache. A token is reused while it stays valid for the time asked
 * plus a margin (clock skew with the partner); otherwise one refresh runs and concurrent callers
 * share it. Expiry is on the wall clock, counted from the moment the token was *requested*, so a slow
 * token endpoint makes us refresh early, never late.
 */
export class TokenProvider {
  readonly #fetchGrant: () => Promise<TokenGrant>;
  readonly #clock: Clock;
  readonly #marginMs: number;
  #cached: { token: string; expiresAtMs: number } | null = null;
  #refreshing: Promise<CurrentToken> | null = null;

  constructor(fetchGrant: () => Promise<TokenGrant>, clock: Clock, marginMs: number) {
    this.#fetchGrant = fetchGrant;
    this.#clock = clock;
    this.#marginMs = marginMs;
  }

  /** A token valid for at least `validForMs` more (plus the margin), refreshing when needed. */
  async get(validForMs: number): Promise<CurrentToken> {
    const cached = this.#cached;
    if (cached && cached.expiresAtMs - this.#clock.now() > validForMs + this.#marginMs) {
      return { kind: 'ok', token: cached.token, expiresAtMs: cached.expiresAtMs, refreshed: false };
    }
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** Forget `token` (the partner refused it); a newer token fetched meanwhile is kept. */
  invalidate(token: string): void {
    if (this.#cached?.token === token) this.#cached = null;
  }

  async #refresh(): Promise<CurrentToken> {
    const requestedAt = this.#clock.now();
    const grant = await this.#fetchGrant();
    if (grant.kind !== 'granted') return grant;
    const expiresAtMs = requestedAt + grant.expiresInMs;
    this.#cached = { token: grant.accessToken, expiresAtMs };
    return { kind: 'ok', token: grant.accessToken, expiresAtMs, refreshed: true };
  }
}
