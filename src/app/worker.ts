import { systemSleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { type CycleReport, describeCycle, isTransient, NotLeader, runCycles } from '../engine/index.js';
import type { GateClearance } from '../guard/index.js';
import {
  type HeartbeatMessage,
  type ModeWatch,
  startHeartbeat,
  type WorkerState,
  watchMode,
  workerRunnerId,
} from '../monitor/index.js';
import { isOutboundError } from '../outbound/index.js';
import type { App } from './types.js';

/** Synthetic leads loaded into an empty store in Phase 3 with real data off. */
export const SYNTHETIC_LEADS = 5_000;

export interface WorkerRunOptions {
  /** SIGTERM/SIGINT: claim nothing new, start no new request, finish what is in hand. */
  stop: AbortSignal;
  /** After the shutdown grace: cut a request in flight (its batch is parked and resent on restart). */
  abortRequests: AbortSignal;
  maxCycles?: number | undefined;
  /** The gate clearance to start Phase 4 under; the gates module's by default. */
  gates?: GateClearance;
  /** To the supervisor (IPC), when there is one. */
  send?: ((message: HeartbeatMessage) => void) | undefined;
  print: (line: string) => void;
  /**
   * A cycle stuck after its term ended: the process must end for the supervisor to start a worker
   * with new connections. The CLI passes its exit; by default the error is thrown from the timer,
   * which ends the process as any uncaught error does (only src/cli exits the process itself).
   */
  exitStuck?: () => void;
  /** Phase 4: the configuration as it is on disk now, read before each cycle for its limits. */
  reloadConfig?: () => Config;
}

/**
 * An empty store in Phase 3 with real data off gets the synthetic leads. `valhalla run` does this in
 * a process of its own before the first worker (`valhalla worker --prepare-only`): the generator
 * (faker) is large, and a worker that loaded it would keep it for the day. A worker that finds the
 * store loaded already skips it at the cost of one count.
 */
export async function prepareSyntheticLeads(app: App, print: (line: string) => void): Promise<void> {
  const loaded = await app.loadSyntheticLeadsIfEmpty(SYNTHETIC_LEADS);
  if (loaded) {
    print(
      `empty store, VALHALLA_REAL_DATA_INGEST=0: loaded ${loaded.read} synthetic leads (accepted ${loaded.accepted}, duplicate ${loaded.duplicate}, rejected ${loaded.rejected})`,
    );
  }
}

/** The result of a run: 0 done, 3 refused (Phase 4 without the gates). */
export interface RunResult {
  code: 0 | 3;
  reason?: string;
}

/**
 * The worker (`valhalla worker`, started by `valhalla run`): cycles, the heartbeat, the mode watch.
 * Phase 4 starts only with the gates verified at that moment.
 */
export async function runWorker(app: App, options: WorkerRunOptions): Promise<RunResult> {
  const { config } = app;
  const gates = options.gates ?? app.gates;
  if (config.phase === 4) {
    const clearance = await gates.check();
    if (!clearance.cleared) {
      await app.audit.record({
        actor: config.operator,
        action: 'run.refused',
        details: { phase: 4, reason: clearance.reason },
      });
      return { code: 3, reason: clearance.reason };
    }
  }
  // A policy that changed since the last run voids the sign-offs (and rolls back in Phase 4).
  const policy = await app.checkPolicy('config');
  if (policy.changed)
    options.print(
      `policy changed since the last run: sign-offs void${config.phase === 4 ? ', rolled back' : ''}`,
    );
  if (config.phase === 4) {
    // Synthetic leads never leave: those still waiting are archived before the first live cycle.
    const archived = await app.archiveSyntheticLeads();
    if (archived > 0) {
      options.print(
        `Phase 4 start: ${archived} synthetic lead(s) were pending: archived, never sent live (audited as leads.synthetic_archived)`,
      );
    }
  }
  await prepareSyntheticLeads(app, options.print);
  const startedAt = app.clock.now();
  let state: { state: WorkerState; cycleId: number | null } = { state: 'starting', cycleId: null };
  // Every worker watches the mode and acknowledges each change it takes (a mode command reports it);
  // only Phase 4 has requests to hold.
  const watch: ModeWatch = watchMode(app.store, app.logger, {
    acknowledge: { clock: app.clock, runner: workerRunnerId(), pid: process.pid, workerStartedAt: startedAt },
  });
  const heartbeat = startHeartbeat({
    store: app.store,
    clock: app.clock,
    logger: app.logger,
    monitor: app.requestMonitor,
    phase: config.phase,
    intervalMs: config.policy.heartbeatIntervalSeconds * 1000,
    startedAt,
    state: () => state,
    send: options.send,
    service: () => ({ mode: watch.mode(), policyHash: config.policyHash, limits: app.limitsInForce() }),
  });
  // Several runners may share the database: this one cycles only while it holds the lease.
  const leadership = app.leadership();
  const engine = app.engine({ gates, leadership });
  let cycles = 0;
  let standingBehind: string | null = null;
  try {
    while (!options.stop.aborted && (options.maxCycles === undefined || cycles < options.maxCycles)) {
      state = { state: 'standby', cycleId: null };
      const term = await leadership.acquire(options.stop, (current) => {
        if (current.holder === standingBehind) return;
        standingBehind = current.holder;
        options.print(`standing by: ${current.holder} (pid ${current.pid} on ${current.host}) leads`);
      });
      if (term === null) break;
      standingBehind = null;
      options.print(`leading (epoch ${term.epoch}, lease ${term.how})`);
      // A term that ended must end its cycle soon (requests are cut at once). A cycle still running
      // well after is stuck on a connection that hangs (a silent network cut): the worker exits, and
      // the supervisor starts a new one with new connections.
      let stuck: NodeJS.Timeout | null = null;
      const onLost = () => {
        stuck = setTimeout(
          () => {
            app.logger.fatal(
              'the lease was lost and the cycle did not end: exiting so that the supervisor restarts the worker',
            );
            options.print('the lease was lost and the cycle did not end: exiting for a restart');
            if (options.exitStuck) options.exitStuck();
            else throw new Error('the lease was lost and the cycle did not end: the worker must restart');
          },
          Math.max(STUCK_AFTER_LOST_MS, config.policy.heartbeatIntervalSeconds * 1000),
        );
        stuck.unref();
      };
      term.lost.addEventListener('abort', onLost, { once: true });
      try {
        const done = await runCycles({
          engine,
          clock: app.clock,
          sleep: systemSleep,
          logger: app.logger,
          intervalMs: config.cycleIntervalSeconds * 1000,
          ...(options.maxCycles !== undefined ? { maxCycles: options.maxCycles - cycles } : {}),
          // Losing the lease is a stop and a cut: nothing more is claimed or sent from here.
          signal: AbortSignal.any([options.stop, term.lost]),
          abortRequests: AbortSignal.any([options.abortRequests, term.lost]),
          ...(config.phase === 4 ? { holdNew: () => watch.signal() } : {}),
          // The policy file edited while running: caught before the next cycle, not at the next restart.
          beforeCycle: async () => {
            const changed = await app.checkPolicy('disk');
            if (changed.changed) options.print('the policy file changed: sign-offs void, outbound stopped');
            if (config.phase === 4) {
              // Limits edited on disk: a lowering is taken from this cycle on, a raise beyond the
              // approved limits refused (each said once).
              if (options.reloadConfig) {
                const reload = await app.reloadLimits(options.reloadConfig);
                if (reload.kind !== 'unchanged') options.print(reload.message);
              }
              // Gates that turn red under a running service (a revoked key, failed evidence) stop every
              // request at the guard; say so once, and once more when they are green again.
              const clearance = await gates.check();
              await app.store.db.transaction().execute((trx) =>
                app.alerts.condition(trx, 'gates', !clearance.cleared, {
                  event: 'gate_voided',
                  message: clearance.cleared
                    ? 'the go-live gates are green again: outbound may resume'
                    : `the go-live gates are no longer green, nothing is sent: ${clearance.reason}`,
                }),
              );
            }
          },
          onCycleStart: () => {
            state = { state: 'cycle', cycleId: null };
          },
          onCycle: (report: CycleReport) => {
            state = { state: 'idle', cycleId: report.cycleId };
            options.print(describeCycle(report));
          },
        });
        cycles += done.cycles;
      } catch (error) {
        // Fail closed: the database gone (or the lease lost) ends this term; nothing is sent until
        // the lease is held again, and the next term starts with recovery. Anything else is a bug.
        if (!endsTerm(error)) throw error;
        app.logger.error({ err: error }, 'outbound stopped: the database or the lease was lost');
        options.print(
          `outbound stopped (${(error as Error).message}): standing by until the database answers`,
        );
        await leadership.resign();
        await systemSleep(Math.min(1_000, config.policy.heartbeatIntervalSeconds * 1000), options.stop);
        continue;
      } finally {
        term.lost.removeEventListener('abort', onLost);
        if (stuck) clearTimeout(stuck);
      }
      if (term.lost.aborted && !options.stop.aborted) {
        options.print(
          `no longer leading (${String((term.lost.reason as Error)?.message ?? term.lost.reason)})`,
        );
      }
    }
  } finally {
    await leadership.resign();
    watch.stop();
    await heartbeat.stop({ final: true });
  }
  return { code: 0 };
}

/** Errors that end a runner's term rather than the process: the database or the lease lost. */
function endsTerm(error: unknown): boolean {
  return error instanceof NotLeader || isOutboundError(error, 'START_NOT_GRANTED') || isTransient(error);
}

/**
 * The least time a cycle may take to end after its term ended before the worker exits (see
 * runWorker): long enough for a busy machine to finish a cycle (a SQLite lock waits up to 5 s), short
 * enough that a hung connection does not keep the worker for long.
 */
const STUCK_AFTER_LOST_MS = 30_000;
