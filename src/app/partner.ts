import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { PartnerPort } from '../engine/index.js';
import { AUTH_CREDENTIALS } from '../partner/index.js';

export type PartnerClient = PartnerPort & {
  /** The rate limit from the next request start on (lowered while the service runs). */
  setRateLimit(perSecond: number): void;
  close(): Promise<void>;
};
type Client = import('../outbound/index.js').PartnerClient;

/**
 * The partner client for Phase 4, from the configuration: the partner profile, its auth kind's
 * credentials, HTTPS only, the policy's limits. The
 * client is built on first use, so a Phase 3 process never has one (and never opens a socket to the
 * partner).
 */
export function createPartnerClientFromConfig(
  config: Config,
  clock: Clock,
  /** A simulation's virtual time for the rate limiter (default: real time). */
  timing: Pick<import('../outbound/index.js').PartnerClientOptions, 'monotonicNow' | 'limiterSleep'> = {},
  /** Several runners: the shared start log every request must also pass. */
  startLimiter?: import('../outbound/index.js').StartLimiter,
): PartnerClient {
  const { partner, policy, limits } = config;
  const { url, tokenUrl, clientId, clientSecret, apiKey, bearerToken } = partner;
  const { profile } = partner.profile;
  const missing = [
    ...(url === null ? ['VALHALLA_PARTNER_URL'] : []),
    ...AUTH_CREDENTIALS[profile.auth.kind].filter((c) => partner[c.option] === null).map((c) => c.variable),
  ];
  if (url === null || missing.length > 0) {
    // loadConfig refuses Phase 4 without these; this guards a Config built by hand (and Phase 3).
    throw new Error(
      `the partner is not configured for profile ${profile.name} (${profile.auth.kind}): ${missing.join(', ')} not set`,
    );
  }
  let client: Promise<Client> | null = null;
  let rate = limits.rateLimitPerSecond;
  const get = (): Promise<Client> => {
    client ??= import('../outbound/index.js').then(({ createPartnerClient }) =>
      createPartnerClient({
        baseUrl: url,
        // The client refuses (INVALID_OPTIONS) when the profile's auth kind lacks its credentials.
        profile,
        tokenUrl,
        clientId,
        clientSecret,
        apiKey,
        bearerToken,
        ...(partner.caPem ? { caPem: partner.caPem } : {}),
        allowPlainHttpLoopback: false,
        rateLimitPerSecond: rate,
        rateWindowMs: policy.rateWindowMs,
        maxConcurrent: policy.maxConcurrentRequests,
        timeoutMs: policy.apiTimeoutSeconds * 1000,
        clock,
        ...timing,
        ...(startLimiter ? { startLimiter } : {}),
      }),
    );
    return client;
  };
  return {
    health: async (signal) => (await get()).health(signal),
    ensureToken: async (validForMs, signal) => (await get()).ensureToken(validForMs, signal),
    sendBatch: async (batch, signal, holdNew) => (await get()).sendBatch(batch, signal, holdNew),
    setRateLimit(perSecond) {
      rate = perSecond;
      // Registered now, so it runs before any request that asks for the client after this.
      void client
        ?.then((c) => c.setRateLimit(perSecond))
        // The value was checked before (the hard cap); a client that failed to build is reported on use.
        .catch(() => undefined);
    },
    close: async () => {
      if (client) await (await client).close();
    },
  };
}
