import { hostname } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import type { Clock } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import { recordHeartbeat, type Store, WORKER_STOPPED } from '../store/index.js';
import type { RequestMonitor } from './request-monitor.js';
import type { HeartbeatMessage } from './supervisor.js';
import type { WorkerState } from './worker-state.js';

export interface HeartbeatOptions {
  store: Store;
  clock: Clock;
  logger: Logger;
  monitor: RequestMonitor;
  phase: 3 | 4;
  intervalMs: number;
  /** When this worker started (the watchdog and `rearm` tell workers apart by it). */
  startedAt: number;
  /** What the worker is doing now. */
  state: () => { state: WorkerState; cycleId: number | null };
  /** To the supervisor over IPC, when there is one. */
  send?: ((message: HeartbeatMessage) => void) | undefined;
  /**
   * What the service runs with, recorded in each heartbeat so that `status` (and the dashboard) can
   * report the running worker's phase, mode, limits and policy, not the reader's own configuration.
   */
  service?: () => {
    mode: string | null;
    policyHash: string;
    limits: { leadsPerCycle: number; actionsPerCycle: number; rateLimitPerSecond: number };
  };
}

export interface Heartbeat {
  /** One beat now: to the supervisor, then to the database (with the hourly failure re-check). */
  beat(): Promise<void>;
  /**
   * Stop beating; waits for a beat in progress. Safe twice. With `final`, one last beat says the
   * worker stopped (state `stopped`): readers no longer count it as running.
   */
  stop(options?: { final?: boolean }): Promise<void>;
}

/** A worker's name in heartbeats and acknowledgements: host:pid. */
export function workerRunnerId(): string {
  return `${hostname()}:${process.pid}`;
}

/** The longest a final heartbeat may hold up a stopping worker (a database that is gone). */
const FINAL_BEAT_BUDGET_MS = 2_000;

/**
 * The worker's heartbeat, every `intervalMs` (policy: 30 s): it runs on the worker's own event loop,
 * so a worker that is frozen or busy-looping misses it, which is what the supervisor watches for.
 */
export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { store, clock, logger, monitor } = options;
  const runner = workerRunnerId();
  let inFlight: Promise<void> | null = null;

  // V8's whole heap limit in this process (old space and young generation, as the supervisor's
  // --max-old-space-size and --max-semi-space-size set it): gate 4 checks it is within the policy.
  const heapLimit = getHeapStatistics().heap_size_limit;

  async function beat(final = false) {
    const memory = process.memoryUsage();
    const { state, cycleId }: { state: WorkerState; cycleId: number | null } = final
      ? { state: WORKER_STOPPED, cycleId: null }
      : options.state();
    const service = options.service?.();
    const at = clock.now();
    // IPC first: the supervisor's watchdog must not wait on a slow database.
    if (!final)
      options.send?.({
        type: 'heartbeat',
        at,
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        state,
        cycleId,
      });
    try {
      await store.db.transaction().execute(async (trx) => {
        await recordHeartbeat(trx, {
          at,
          runner,
          pid: process.pid,
          worker_started_at: options.startedAt,
          phase: options.phase,
          rss_bytes: memory.rss,
          heap_used_bytes: memory.heapUsed,
          heap_limit_bytes: heapLimit,
          state,
          cycle_id: cycleId,
          mode: service?.mode ?? null,
          policy_hash: service?.policyHash ?? null,
          limits: service ? JSON.stringify(service.limits) : null,
        });
        await monitor.checkHourlyFailures(trx);
      });
    } catch (error) {
      logger.error({ err: error }, 'heartbeat not recorded in the database');
    }
  }

  const run = () => {
    inFlight ??= beat().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };
  void run();
  const timer = setInterval(run, options.intervalMs);
  let stopped = false;
  return {
    beat: run,
    async stop(stopOptions = {}) {
      const first = !stopped;
      if (!stopped) {
        stopped = true;
        clearInterval(timer);
      }
      await inFlight;
      if (first && stopOptions.final) {
        let timeout: NodeJS.Timeout | undefined;
        await Promise.race([
          beat(true),
          new Promise<void>((resolve) => {
            timeout = setTimeout(resolve, FINAL_BEAT_BUDGET_MS);
          }),
        ]).finally(() => clearTimeout(timeout));
      }
    },
  };
}
