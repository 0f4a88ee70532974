import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { createAlertDispatcher } from '../alerts/index.js';
import { PACKAGE_ROOT } from '../config/index.js';
import { changeMode, type GateClearance } from '../guard/index.js';
import { type Logger, terminalLine } from '../log/index.js';
import {
  createSupervisor,
  type MetricsExposition,
  type Supervisor,
  type SupervisorEvent,
  startMetricsServer,
  type WorkerHandle,
} from '../monitor/index.js';
import { workerHeapFlags, workerRestartRssBytes } from '../policy/index.js';
import { syntheticLeadsWanted } from './synthetic.js';
import type { App } from './types.js';
import type { RunResult } from './worker.js';

/** The longest the synthetic leads' loader may run before the supervisor goes on without it. */
const PREPARE_LIMIT_MS = 300_000;

/** How often the supervisor sends the alerts that are due. */
const ALERT_DISPATCH_MS = 1_000;

export interface SupervisorRunOptions {
  stop: AbortSignal;
  /** Arguments for the worker after `worker` (e.g. `--cycles 2`). */
  workerArgs: string[];
  /** How to start a worker; `valhalla worker` with the heap limit by default (tests pass a harness). */
  spawnWorker?: (execArgv: string[]) => ChildProcess;
  gates?: GateClearance;
  /**
   * Start the admin API and dashboard beside the supervisor (given by the CLI, which knows
   * `src/server`); not started when absent or when VALHALLA_SERVER_PORT is off.
   */
  serve?: (metrics: MetricsExposition) => Promise<{ url: string; close(): Promise<void> }>;
  stdout: Writable;
  stderr: Writable;
  print: (line: string) => void;
}

/** The entry point of the built CLI: the worker is this file's `valhalla worker`. */
export const BIN = join(PACKAGE_ROOT, 'bin', 'valhalla.js');

/**
 * `valhalla run`: a small supervisor of one worker process with a heap limit. It
 * watches the heartbeat and the worker's memory, restarts it after a crash, past its memory limit
 * and daily, rolls back when a heartbeat is missed in Phase 4, sends the alerts, serves /metrics.
 */
export async function runSupervisor(
  app: App,
  options: SupervisorRunOptions,
): Promise<RunResult | { code: number }> {
  const { config, audit, alerts, clock, logger, store } = app;
  // A policy file edited since the last run is recorded (and alerted) before anything else: a start
  // refused for the signatures it voided says why.
  const policy = await app.checkPolicy('config');
  if (policy.changed) {
    options.print(
      `policy changed since the last run: sign-offs void${config.phase === 4 ? ', rolled back' : ''}`,
    );
  }
  if (config.phase === 4) {
    const clearance = await (options.gates ?? app.gates).check();
    if (!clearance.cleared) {
      await store.db.transaction().execute(async (trx) => {
        await audit.append(trx, {
          actor: config.operator,
          action: 'run.refused',
          details: { phase: 4, reason: clearance.reason },
        });
        await alerts.raise(trx, {
          event: 'phase4_refused',
          message: `Phase 4 refused to start: ${clearance.reason}`,
        });
      });
      // Nothing runs from here: the alert goes now, not with a dispatcher that will not start.
      await app.dispatchAlerts().catch((error: unknown) => {
        logger.warn({ err: error }, 'the alert of the refused start could not be sent now');
      });
      return { code: 3, reason: clearance.reason };
    }
  }
  // The policy's memory per process (docs/memory.md): the worker's whole V8 heap is capped at it, and
  // its RSS restarted at 70% of it; the service manager caps the processes together at it.
  const heapMb = config.policy.memoryPerProcessMb;
  const execArgv = workerHeapFlags(heapMb);
  const spawnChild =
    options.spawnWorker ??
    ((argv: string[]) =>
      fork(BIN, ['worker', ...options.workerArgs], {
        execArgv: argv,
        env: process.env,
        cwd: process.cwd(),
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      }));
  const spawnWorker = (): WorkerHandle => {
    const child = spawnChild(execArgv);
    child.stdout?.pipe(options.stdout, { end: false });
    if (child.stderr) forwardStderr(child.stderr, options.stderr);
    return childHandle(child, logger);
  };

  const dispatcher = createAlertDispatcher({ store, clock, logger, channels: app.alertChannels() });
  let supervisor: Supervisor | null = null;
  const onEvent = async (event: SupervisorEvent) => {
    await store.db.transaction().execute(async (trx) => {
      switch (event.kind) {
        case 'started':
          await audit.append(trx, {
            actor: 'supervisor',
            action: 'worker.started',
            details: { pid: event.pid },
          });
          return;
        case 'first_heartbeat':
          await alerts.condition(trx, 'heartbeat', false, {
            event: 'heartbeat_missed',
            message: `the worker's heartbeat is back (pid ${event.pid})`,
            details: { pid: event.pid },
          });
          return;
        case 'heartbeat_missed':
          await audit.append(trx, {
            actor: 'supervisor',
            action: 'worker.heartbeat_missed',
            details: { pid: event.pid, ageMs: event.ageMs, limitMs: event.limitMs },
          });
          await alerts.condition(trx, 'heartbeat', true, {
            event: 'heartbeat_missed',
            message: `no heartbeat from the worker (pid ${event.pid}) for ${Math.round(event.ageMs / 1000)} s (limit ${event.limitMs / 1000} s): ${config.phase === 4 ? 'rolled back, ' : ''}worker killed and restarted`,
            details: { pid: event.pid, ageMs: event.ageMs, limitMs: event.limitMs },
          });
          if (config.phase === 4) {
            await changeMode(
              trx,
              { audit, alerts, clock },
              {
                command: 'rollback',
                actor: 'supervisor',
                reason: `heartbeat missed: none for ${Math.round(event.ageMs / 1000)} s (limit ${event.limitMs / 1000} s)`,
                evidence: { pid: event.pid, ageMs: event.ageMs },
              },
            );
          }
          return;
        case 'memory_exceeded':
          await audit.append(trx, {
            actor: 'supervisor',
            action: 'worker.memory_restart',
            details: { pid: event.pid, rssBytes: event.rssBytes, limitBytes: event.limitBytes },
          });
          await alerts.raise(trx, {
            event: 'memory_restart',
            message: `worker (pid ${event.pid}) at ${mb(event.rssBytes)} MB RSS, over its ${mb(event.limitBytes)} MB limit: restarted`,
            details: { pid: event.pid, rssBytes: event.rssBytes, limitBytes: event.limitBytes },
          });
          return;
        case 'daily_restart':
          await audit.append(trx, {
            actor: 'supervisor',
            action: 'worker.daily_restart',
            details: { pid: event.pid, scheduled: event.at },
          });
          return;
        case 'crashed':
          await audit.append(trx, {
            actor: 'supervisor',
            action: 'worker.crashed',
            details: {
              pid: event.pid,
              code: event.code,
              signal: event.signal,
              restartInMs: event.restartInMs,
            },
          });
          await alerts.raise(trx, {
            event: 'worker_crashed',
            message: `worker (pid ${event.pid}) exited unexpectedly (${event.signal ?? `code ${event.code}`}): restarting in ${event.restartInMs / 1000} s`,
            details: { pid: event.pid, code: event.code, signal: event.signal },
          });
          return;
        case 'finished':
          if (event.code !== 0) {
            await audit.append(trx, {
              actor: 'supervisor',
              action: 'worker.refused_to_start',
              details: { pid: event.pid, code: event.code },
            });
            // The service stops here (a refusal is not retried): the ops team must know.
            await alerts.raise(trx, {
              event: 'gate_voided',
              dedupKey: `refused:${event.pid}`,
              message: `the worker refused to start (exit ${event.code}${event.code === 3 ? ': Phase 4 without every gate green' : ''}); valhalla run has stopped`,
              details: { pid: event.pid, code: event.code },
            });
          }
          return;
      }
    });
    if (event.kind === 'heartbeat_missed' || event.kind === 'memory_exceeded' || event.kind === 'crashed') {
      logger.warn({ event: event.kind, pid: event.pid }, 'worker supervision event');
    }
    // Alerts go out at once, not at the next dispatch tick.
    void dispatcher.dispatchDue().catch(() => undefined);
  };

  supervisor = createSupervisor({
    clock,
    logger,
    spawnWorker,
    heartbeatIntervalMs: config.policy.heartbeatIntervalSeconds * 1000,
    heartbeatGraceMs: config.policy.heartbeatGraceSeconds * 1000,
    memoryLimitBytes: workerRestartRssBytes(heapMb),
    dailyRestartUtc: config.policy.dailyRestartUtc,
    stopGraceMs: 30_000,
    onEvent,
    fatalExitCodes: [2, 3],
  });
  const running = supervisor;
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | null = null;
  const metrics = app.metrics(() => {
    const w = running.worker();
    return { pid: w?.pid ?? null, rssBytes: w?.rssBytes ?? null, heartbeatSince: running.heartbeatSince() };
  });
  if (config.metrics.port !== null) {
    try {
      metricsServer = await startMetricsServer({
        render: () => metrics.render(),
        contentType: metrics.contentType,
        port: config.metrics.port,
      });
      options.print(`metrics: ${metricsServer.url}`);
    } catch (error) {
      // Monitoring may not be switched off silently: say so loudly, audit it, carry on sending nothing less safely.
      const reason = (error as Error).message;
      logger.error({ err: error }, 'metrics endpoint could not start');
      options.print(`metrics endpoint NOT started: ${reason}`);
      await audit.record({ actor: 'supervisor', action: 'metrics.unavailable', details: { reason } });
    }
  }
  let dashboard: { url: string; close(): Promise<void> } | null = null;
  if (options.serve && config.server.port !== null) {
    try {
      dashboard = await options.serve({ render: () => metrics.render(), contentType: metrics.contentType });
      options.print(
        `dashboard: ${dashboard.url}/ (admin API ${dashboard.url}/api, docs ${dashboard.url}/api/docs)`,
      );
    } catch (error) {
      // The CLI's pause/rollback still work; the operators must know the red button is not there.
      const reason = (error as Error).message;
      logger.error({ err: error }, 'dashboard could not start');
      options.print(`dashboard NOT started: ${reason}`);
      await store.db.transaction().execute(async (trx) => {
        await audit.append(trx, {
          actor: 'supervisor',
          action: 'dashboard.unavailable',
          details: { reason },
        });
        await alerts.raise(trx, {
          event: 'dashboard_unavailable',
          message: `the dashboard did not start: ${reason}; roll back with \`valhalla rollback\` meanwhile`,
          details: { reason },
        });
      });
    }
  }
  dispatcher.start(ALERT_DISPATCH_MS);
  // The synthetic leads of an empty Phase 3 store are loaded by a process of its own that ends
  // after, so that no worker keeps their generator in memory. The first worker waits for it; the
  // control plane does not: /metrics, the dashboard and the alerts already run.
  // Only an empty store's first start forks the loader; a store with leads starts its worker at once.
  // Unanswerable (the database away): no loader; the first worker loads the leads itself then.
  const loadSynthetic = await syntheticLeadsWanted({ store, config }).catch(() => false);
  if (!options.spawnWorker && loadSynthetic) {
    // The loader is held to a worker's first-heartbeat limit to say it started: one that hangs as it
    // starts never holds the service (the first worker loads the leads itself then).
    const startLimitMs =
      (config.policy.heartbeatIntervalSeconds + config.policy.heartbeatGraceSeconds) * 1000;
    await prepareInChild(execArgv, options, startLimitMs);
  }
  const onStop = () => void running.stop();
  options.stop.addEventListener('abort', onStop, { once: true });
  running.start();
  try {
    if (options.stop.aborted) await running.stop();
    return await running.done;
  } finally {
    options.stop.removeEventListener('abort', onStop);
    await running.stop();
    await dispatcher.stop();
    await dashboard?.close();
    await metricsServer?.close();
  }
}

/**
 * `valhalla worker --prepare-only` as a child process: resolves when it ends (it says what it did).
 * It must say it started (one IPC message) within `startLimitMs`, else it is killed and the supervisor
 * goes on without it.
 */
function prepareInChild(
  execArgv: string[],
  options: SupervisorRunOptions,
  startLimitMs: number,
): Promise<void> {
  return new Promise((resolve) => {
    const child = fork(BIN, ['worker', '--prepare-only'], {
      execArgv,
      env: process.env,
      cwd: process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    child.stdout?.pipe(options.stdout, { end: false });
    if (child.stderr) forwardStderr(child.stderr, options.stderr);
    let started = false;
    child.once('message', () => {
      started = true;
    });
    const unstarted = setTimeout(() => {
      if (started) return;
      options.print(
        `the synthetic leads' loader (pid ${child.pid}) did not start within ${startLimitMs / 1000} s: stopped; the first worker loads them`,
      );
      child.kill('SIGKILL');
    }, startLimitMs);
    // Started but never done (5,000 leads take seconds): the same, after a bound far above that.
    const unfinished = setTimeout(() => {
      options.print(
        `the synthetic leads' loader (pid ${child.pid}) did not finish within ${PREPARE_LIMIT_MS / 1000} s: stopped; the first worker loads them`,
      );
      child.kill('SIGKILL');
    }, PREPARE_LIMIT_MS);
    const done = () => {
      clearTimeout(unstarted);
      clearTimeout(unfinished);
      resolve();
    };
    // A failure is not fatal here: the first worker loads the leads itself then (and says why).
    child.on('error', done);
    child.on('exit', done);
    options.stop.addEventListener('abort', () => child.kill('SIGTERM'), { once: true });
  });
}

/**
 * A child's standard error to ours. The child's is a pipe, so its log writes JSON there; when ours is
 * a person's terminal, its records are shown as the supervisor's own are (warnings and errors, one
 * line each, no JSON), and its other lines as they are.
 */
export function forwardStderr(from: Readable, to: Writable & { isTTY?: boolean }): void {
  if (to.isTTY !== true) {
    from.pipe(to, { end: false });
    return;
  }
  createInterface({ input: from, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
    if (!line.startsWith('{')) {
      to.write(`${line}\n`);
      return;
    }
    try {
      const shown = terminalLine(line);
      if (shown !== null) to.write(shown);
    } catch {
      to.write(`${line}\n`);
    }
  });
}

function mb(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}

function childHandle(child: ChildProcess, logger: Logger): WorkerHandle {
  // A failed spawn or signal is reported here (an unhandled 'error' would end the supervisor); a
  // worker that never started is seen as exited and restarted with the crash backoff.
  child.on('error', (error) => logger.error({ err: error }, 'worker process error'));
  return {
    pid: child.pid ?? -1,
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    onMessage: (listener) => child.on('message', listener),
    onExit: (listener) => child.on('exit', listener),
  };
}
