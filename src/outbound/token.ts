import type { Clock } from '../clock/index.js';
import type { PermanentOutcome, RetryableOutcome } from './types.js';

/** What one call to the token endpoint gave: a token and its lifetime, or a failure outcome. */
export type TokenGrant =
  | {
      kind: 'granted';
      accessToken: string;
      expiresInMs: number;
      /** Wall clock: when the token request started (after any wait for its turn). */
      requestedAtMs: number;
      ms: number;
    }
  | RetryableOutcome
  | PermanentOutcome;

/** A token held by the client. Its life is counted from the moment it was *requested*. */
export interface HeldToken {
  token: string;
  /** Wall clock: when the token was requested plus the lifetime the partner granted. */
  expiresAtMs: number;
  /** The lifetime the partner granted (`expires_in`). */
  lifetimeMs: number;
}

export type CurrentToken =
  | ({ kind: 'ok'; refreshed: boolean } & HeldToken)
  | RetryableOutcome
  | PermanentOutcome;

/** Whether a held token may be used now: when not, how much life it has and how much it needs. */
export type TokenFit = { fits: true } | { fits: false; leftMs: number; neededMs: number };

/**
 * The least life a token must have left to be used. `askedMs` is what the caller asks for plus the
 * margin (a batch asks for its request's timeout); `requestMs` is one request's timeout plus the
 * margin; `lifetimeMs` is what the partner grants. Each step asks for as much as a fresh token of that
 * lifetime can give:
 * - lifetime ≥ asked: the token must cover what is asked (a batch: its whole request, margin included);
 * - request ≤ lifetime < asked (a caller asking ahead for more than any token lives): the token must
 *   cover one request, as the batch that follows will ask;
 * - lifetime < request (the partner's tokens live shorter than a request may take, so none can
 *   outlive it): the token must be in the first half of its life, at least half its lifetime left.
 *   The partner then sees every request with at least about half the token's life left (it counts
 *   from when it issued the token, which is no earlier than our request for it), a health check's
 *   token serves the batch right after it, and a token is never used with a few ms left.
 */
export function tokenLifeNeededMs(lifetimeMs: number, askedMs: number, requestMs: number): number {
  if (lifetimeMs >= askedMs) return askedMs;
  if (lifetimeMs >= requestMs) return requestMs;
  return lifetimeMs / 2;
}

/** Whether `held` may be used at `nowMs` by the rule of `tokenLifeNeededMs`. */
export function tokenFit(held: HeldToken, nowMs: number, askedMs: number, requestMs: number): TokenFit {
  const leftMs = held.expiresAtMs - nowMs;
  const neededMs = tokenLifeNeededMs(held.lifetimeMs, askedMs, requestMs);
  return leftMs >= neededMs ? { fits: true } : { fits: false, leftMs, neededMs };
}

export interface TokenProviderOptions {
  /** Added to every life asked for: clock skew with the partner. */
  marginMs: number;
  /** One request's overall deadline: a batch's token must cover it (plus the margin) when it can. */
  requestTimeoutMs: number;
}

/**
 * OAuth2 client-credentials token cache. A token is reused while `tokenFit` allows it; otherwise one
 * refresh runs and concurrent callers share it. Expiry is on the wall clock, counted from the moment
 * the token was *requested*, so a slow token endpoint makes us refresh early, never late.
 *
 * A fresh token is judged by the batch's rule too: when the token endpoint took so long that the
 * token is already unusable (over half its life gone, or no longer covering a request), it is not
 * used and not kept. The caller gets a retryable token failure saying so in numbers, and the next
 * call asks again; nothing here fetches twice in a row.
 */
export class TokenProvider {
  readonly #fetchGrant: () => Promise<TokenGrant>;
  readonly #clock: Clock;
  readonly #marginMs: number;
  readonly #requestTimeoutMs: number;
  #cached: HeldToken | null = null;
  #refreshing: Promise<CurrentToken> | null = null;

  constructor(fetchGrant: () => Promise<TokenGrant>, clock: Clock, options: TokenProviderOptions) {
    this.#fetchGrant = fetchGrant;
    this.#clock = clock;
    this.#marginMs = options.marginMs;
    this.#requestTimeoutMs = options.requestTimeoutMs;
  }

  /** One request's timeout plus the margin: what a batch asks of its token. */
  get requestMs(): number {
    return this.#requestTimeoutMs + this.#marginMs;
  }

  /**
   * A token usable for `validForMs` more (plus the margin; default one request's timeout) by the
   * rule of `tokenLifeNeededMs`, refreshing when the cached one is not.
   */
  async get(validForMs: number = this.#requestTimeoutMs): Promise<CurrentToken> {
    const cached = this.#cached;
    if (cached && this.#judge(cached, validForMs).fits) return { kind: 'ok', ...cached, refreshed: false };
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** Whether `held` may still carry a batch that starts now (checked again once the batch may start). */
  fitsRequest(held: HeldToken): TokenFit {
    return this.#judge(held, this.#requestTimeoutMs);
  }

  /** Forget `token` (the partner refused it); a newer token fetched meanwhile is kept. */
  invalidate(token: string): void {
    if (this.#cached?.token === token) this.#cached = null;
  }

  #judge(held: HeldToken, validForMs: number): TokenFit {
    return tokenFit(held, this.#clock.now(), validForMs + this.#marginMs, this.requestMs);
  }

  async #refresh(): Promise<CurrentToken> {
    const grant = await this.#fetchGrant();
    if (grant.kind !== 'granted') return grant;
    const { requestedAtMs } = grant;
    const held: HeldToken = {
      token: grant.accessToken,
      expiresAtMs: requestedAtMs + grant.expiresInMs,
      lifetimeMs: grant.expiresInMs,
    };
    const fit = this.fitsRequest(held);
    if (!fit.fits) {
      // Not kept, and not asked again at once (it would most likely meet the same slow endpoint):
      // the caller backs off, and its next call asks again.
      return {
        kind: 'retryable',
        retryAfterMs: null,
        message: this.#unusableFresh(held, this.#clock.now() - requestedAtMs, fit),
        stage: 'token',
        ms: grant.ms,
      };
    }
    this.#cached = held;
    return { kind: 'ok', ...held, refreshed: true };
  }

  #unusableFresh(held: HeldToken, tookMs: number, fit: { leftMs: number; neededMs: number }): string {
    const request = `${this.#requestTimeoutMs} ms timeout plus the ${this.#marginMs} ms margin`;
    const why =
      held.lifetimeMs < this.requestMs
        ? `under half its life (${ms(fit.neededMs)} ms), the least a token that cannot outlive a request (the ${request}) is used with`
        : `under the ${ms(fit.neededMs)} ms a request needs (the ${request})`;
    return (
      `the token endpoint took ${ms(tookMs)} ms for a token of ${held.lifetimeMs} ms: ` +
      `${ms(Math.max(0, fit.leftMs))} ms of it was left, ${why}; the token is not used`
    );
  }
}

function ms(value: number): number {
  return Math.round(value);
}
