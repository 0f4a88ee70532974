import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { type Mode, readGoLiveAt, readMode } from '../guard/index.js';
import type { RequestMonitor } from '../monitor/index.js';
import { rampPosition } from '../policy/index.js';
import {
  databaseNow,
  latestHeartbeat,
  readConsistently,
  readLease,
  recentCycles,
  type Store,
} from '../store/index.js';
import { readServiceView, type ServiceView } from './service-view.js';

export interface RunState {
  mode: Mode;
  /** The running service's phase, mode, limits and policy (its worker's heartbeat), and how they differ from this process's. */
  service: ServiceView;
  /** The worker's latest heartbeat, or null when none was ever recorded. */
  heartbeat: { at: string; ageSeconds: number; pid: number; rssMb: number; state: string } | null;
  /**
   * The runner that leads (several may share the database), or null when none ever led. `lapsed`:
   * its lease ran out unrenewed (a standby takes over); `released`: it stopped cleanly.
   */
  leader: {
    holder: string;
    host: string;
    pid: number;
    epoch: number;
    lease: 'held' | 'lapsed' | 'released';
    /** Seconds the lease still runs (held), or since it ran out (lapsed). */
    seconds: number;
  } | null;
  /** The error-rate rule over its current window. */
  errorRate: {
    requests: number;
    failures: number;
    rate: number;
    lowerBound: number;
    rollback: boolean;
    reason: string;
  };
  goLiveAt: string | null;
  ramp: { stage: number; ceiling: number; confirmEachCycle: boolean; nextStageAt: string | null } | null;
  lastCycles: {
    id: number;
    kind: string;
    startedAt: string;
    /** Leads claimed for sending (live) or recorded as a dry run. */
    leads: number;
    actions: number;
    confirmed: boolean;
  }[];
}

/** The mode, the ramp stage, the leader, the error rate and the latest cycles, for `status`. */
export async function readRunState(deps: {
  store: Store;
  clock: Clock;
  config: Config;
  requestMonitor: RequestMonitor;
}): Promise<RunState> {
  const { store, clock, config, requestMonitor } = deps;
  // One snapshot: the mode and the error rate that rolled it back are read at the same moment.
  const [[mode, goLiveAt, cycles, beat, errorRate, lease, dbNow], service] = await Promise.all([
    readConsistently(store, (db) =>
      Promise.all([
        readMode(db),
        readGoLiveAt(db),
        recentCycles(db, 5),
        latestHeartbeat(db),
        requestMonitor.current(db),
        readLease(db),
        databaseNow(db, store.dialect, () => clock.now()),
      ]),
    ),
    readServiceView({ store, clock, config }),
  ]);
  // The ramp is the running service's: its phase when one runs, else this process's.
  const phase = service.phase ?? config.phase;
  const ramp =
    phase === 4
      ? rampPosition(
          config.policy.rampStages,
          goLiveAt,
          clock.now(),
          service.limits?.leadsPerCycle ?? config.limits.leadsPerCycle,
        )
      : null;
  return {
    mode,
    service,
    heartbeat: beat
      ? {
          at: new Date(beat.at).toISOString(),
          ageSeconds: Math.round((clock.now() - beat.at) / 1000),
          pid: beat.pid,
          rssMb: Math.round(beat.rss_bytes / (1024 * 1024)),
          state: beat.state,
        }
      : null,
    leader: lease && {
      holder: lease.holder,
      host: lease.host,
      pid: lease.pid,
      epoch: lease.epoch,
      lease: lease.expiresAt === 0 ? 'released' : lease.expiresAt > dbNow ? 'held' : 'lapsed',
      seconds: lease.expiresAt === 0 ? 0 : Math.round(Math.abs(lease.expiresAt - dbNow) / 1000),
    },
    errorRate: {
      requests: errorRate.requests,
      failures: errorRate.failures,
      rate: errorRate.rate,
      lowerBound: errorRate.lowerBound,
      rollback: errorRate.rollback,
      reason: errorRate.reason,
    },
    goLiveAt: goLiveAt === null ? null : new Date(goLiveAt).toISOString(),
    ramp: ramp && {
      stage: ramp.stage,
      ceiling: ramp.ceiling,
      confirmEachCycle: ramp.confirmEachCycle,
      nextStageAt: ramp.nextStageAt === null ? null : new Date(ramp.nextStageAt).toISOString(),
    },
    lastCycles: cycles.map((c) => ({
      id: c.id,
      kind: c.kind,
      startedAt: new Date(c.started_at).toISOString(),
      leads: c.kind === 'dry_run' ? dryRunCount(c.summary) : c.claimed,
      actions: c.actions,
      confirmed: c.confirmed_at !== null,
    })),
  };
}

function dryRunCount(summary: string | null): number {
  if (summary === null) return 0;
  const parsed = JSON.parse(summary) as { dryRunRecorded?: unknown };
  return typeof parsed.dryRunRecorded === 'number' ? parsed.dryRunRecorded : 0;
}
