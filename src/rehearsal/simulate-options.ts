// What a simulation is asked: its options, the partner's fault profiles over simulated time, and
// the hourly flow of synthetic leads it ingests in virtual time.
import { PassThrough } from 'node:stream';
import type { App } from '../app/index.js';
import type { Config } from '../config/index.js';
import type { SandboxFaultsPatch } from '../sandbox/index.js';
import { writeGeneratedLeads } from '../synthetic/index.js';

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;

/** The partner's behaviour over the simulated time (hours since the start → the sandbox's faults). */
export const FAULT_PROFILES = {
  healthy: { describe: 'a healthy partner', at: (): SandboxFaultsPatch => ({}) },
  flaky: { describe: '5% of requests fail (503)', at: (): SandboxFaultsPatch => ({ errorRate: 0.05 }) },
  degraded: { describe: '15% of requests fail (503)', at: (): SandboxFaultsPatch => ({ errorRate: 0.15 }) },
  outage: {
    describe: 'down (connections dropped) in hours 6-7 and 30-31.5',
    at: (h: number): SandboxFaultsPatch => ({ down: (h >= 6 && h < 7) || (h >= 30 && h < 31.5) }),
  },
  slow: { describe: 'every answer takes 2 s', at: (): SandboxFaultsPatch => ({ latencyMs: 2_000 }) },
  '429-storm': {
    describe: 'every request answered 429 (Retry-After: 30) for the first hour of every 12',
    at: (h: number): SandboxFaultsPatch => ({ rateLimit: h % 12 < 1 ? { retryAfter: 30, every: 1 } : null }),
  },
  'token-expiry': {
    describe: 'tokens live 2 minutes (refreshed mid-run again and again)',
    at: (): SandboxFaultsPatch => ({ tokenTtlSeconds: 120 }),
  },
} as const;
export type FaultProfile = keyof typeof FAULT_PROFILES;
export const FAULT_PROFILE_NAMES = Object.keys(FAULT_PROFILES) as FaultProfile[];

export interface SimulationOptions {
  /** The installation's configuration: its policy, limits and cycle interval are simulated. */
  config: Config;
  hours: number;
  leadsPerHour: number;
  faults: FaultProfile;
  seed: number;
  /** When the simulated go-live is (default: now). */
  start?: number;
}

/** Ingest the leads that arrive in [from, from + 1 h): synthetic, seeded, timestamped in virtual time. */
export async function ingestHour(app: App, options: SimulationOptions, hourIndex: number): Promise<number> {
  const body = new PassThrough();
  const writing = writeGeneratedLeads(body, {
    count: options.leadsPerHour,
    seed: options.seed * 1_000 + hourIndex,
    now: app.clock.now(),
    format: 'csv',
    // Stand-ins for real leads in a private Phase 4 (real data only) that sends to an in-process
    // sandbox; they never enter an installation's store.
    idPrefix: 'SIM-',
  }).finally(() => body.end());
  const [summary] = await Promise.all([
    app.ingest({ path: '-', stdin: body, format: 'csv', sourceName: `simulated hour ${hourIndex}` }),
    writing,
  ]);
  return summary.accepted;
}

/** A simulation that cannot mean what it would report: refused before anything runs. */
export class SimulationRefused extends Error {
  readonly code = 'SIMULATION_REFUSED';
  override name = 'SimulationRefused';
}

export function isSimulationRefused(error: unknown): error is SimulationRefused {
  return error instanceof SimulationRefused;
}

/** What a simulation refused for its partner profile says to do instead. */
export const SIMULATE_INSTEAD =
  "the simulation rehearses only the contracts the sandbox plays; check this profile against the partner's own sandbox with `valhalla gates conformance --partner configured`";

/**
 * Why a fault profile cannot mean anything under the installation's partner profile, or null. Tokens
 * that expire exist only under OAuth2: a static credential (a bearer token, an API key) never expires
 * on our side, so `token-expiry` would report a healthy run as a token test.
 */
export function faultsRefusedFor(config: Config, faults: FaultProfile): string | null {
  const { name, auth } = config.partner.profile.profile;
  if (faults === 'token-expiry' && auth.kind !== 'oauth2_client_credentials') {
    return `--faults token-expiry needs a partner whose tokens expire (OAuth2); the partner profile ${name} uses a static credential (${auth.kind}), which nothing refreshes`;
  }
  return null;
}
