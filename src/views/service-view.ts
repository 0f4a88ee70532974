import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { runningWorkers, type Store } from '../store/index.js';

export interface ServiceLimits {
  leadsPerCycle: number;
  actionsPerCycle: number;
  rateLimitPerSecond: number;
}

/**
 * The running service's truth, from its worker's latest heartbeat: the phase, mode, limits and policy
 * hash it runs with, which can differ from the reader's own configuration (an `.env` edited since the
 * service started applies only at its next start). `differences` says where, one item each.
 */
export interface ServiceView {
  running: boolean;
  /** The running worker that beat last, or null when none is running. */
  worker: { pid: number; runner: string; heartbeatAt: string; ageSeconds: number } | null;
  phase: 3 | 4 | null;
  /** The mode the worker last saw (null before its mode watch first looked). */
  mode: string | null;
  limits: ServiceLimits | null;
  policyHash: string | null;
  /** Where this process's configuration differs from the running service's (empty when none runs). */
  differences: string[];
}

export async function readServiceView(deps: {
  store: Store;
  clock: Clock;
  config: Config;
}): Promise<ServiceView> {
  const { store, clock, config } = deps;
  const now = clock.now();
  const limitMs = (config.policy.heartbeatIntervalSeconds + config.policy.heartbeatGraceSeconds) * 1000;
  const alive = await runningWorkers(store.db, now - limitMs);
  const beat = alive.reduce<(typeof alive)[number] | null>(
    (a, b) => (a === null || b.at > a.at ? b : a),
    null,
  );
  if (beat === null) {
    return {
      running: false,
      worker: null,
      phase: null,
      mode: null,
      limits: null,
      policyHash: null,
      differences: [],
    };
  }
  const limits = beat.limits === null ? null : (JSON.parse(beat.limits) as ServiceLimits);
  const differences: string[] = [];
  if (beat.phase !== config.phase) {
    differences.push(`phase ${config.phase} here, Phase ${beat.phase} in the running service`);
  }
  if (limits) {
    for (const [key, words] of [
      ['leadsPerCycle', 'leads/cycle'],
      ['actionsPerCycle', 'actions/cycle'],
      ['rateLimitPerSecond', 'requests/s'],
    ] as const) {
      if (limits[key] !== config.limits[key]) {
        differences.push(`${words} ${config.limits[key]} here, ${limits[key]} in the running service`);
      }
    }
  }
  if (beat.policy_hash !== null && beat.policy_hash !== config.policyHash) {
    differences.push(
      `policy ${config.policyHash.slice(0, 12)}… here, ${beat.policy_hash.slice(0, 12)}… in the running service`,
    );
  }
  return {
    running: true,
    worker: {
      pid: beat.pid,
      runner: beat.runner,
      heartbeatAt: new Date(beat.at).toISOString(),
      ageSeconds: Math.round((now - beat.at) / 1000),
    },
    phase: beat.phase,
    mode: beat.mode,
    limits,
    policyHash: beat.policy_hash,
    differences,
  };
}
