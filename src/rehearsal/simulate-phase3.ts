// The simulation's Phase 3 run: dry-run cycles, heartbeats on a grid and daily restarts over the
// window, then the stability check (gate 9) of that run.
import { initialize } from '../app/index.js';
import { ManualClock } from '../clock/index.js';
import { type StabilityResult, verifyStability } from '../gates/index.js';
import { nextDailyRestart } from '../policy/index.js';
import { recordHeartbeat } from '../store/index.js';
import { privatePhase3Config } from './private-install.js';
import { HOUR, ingestHour, type SimulationOptions } from './simulate-options.js';

const MB = 1024 * 1024;
/**
 * The stability checks whose evidence the simulation writes itself (heartbeats on a grid, the daily
 * restart, one worker at a time): they pass by construction here; only a real run measures them.
 */
export const SIMULATED_STABILITY_CHECKS: readonly string[] = [
  'this installation',
  'uninterrupted',
  'memory',
  'orphaned processes',
];
/** The RSS the simulated heartbeats report: a worker's usual size here (measured: ~125 MB). */
const SIMULATED_RSS_BYTES = 128 * MB;

/** Phase 3 over the window: dry runs, heartbeats, daily restarts; then the stability check. */
export async function simulatePhase3(
  options: SimulationOptions,
  dir: string,
  start: number,
  end: number,
): Promise<StabilityResult> {
  const clock = new ManualClock(start);
  const config = privatePhase3Config({ dir, name: 'simulation-phase3', installation: options.config });
  // Initialised at the window's start, as a real installation is before its Phase 3 run.
  const { app } = await initialize(config, { clock });
  try {
    const engine = app.engine({ sleep: clock.sleep });
    const interval = options.config.cycleIntervalSeconds * 1000;
    const beatEvery = config.policy.heartbeatIntervalSeconds * 1000;
    // The heartbeats are the simulation's, not a worker's: they carry a fixed nominal RSS, so the
    // memory check says nothing of a real worker (the report says so) and a seed gives the same run.
    const rss = SIMULATED_RSS_BYTES;
    let pid = 1;
    let workerStartedAt = start;
    let nextBeat = start;
    let restart = nextDailyRestart(config.policy.dailyRestartUtc, start);
    let hourIndex = 0;
    const beatUntil = (at: number) =>
      app.store.db.transaction().execute(async (trx) => {
        for (; nextBeat <= at; nextBeat += beatEvery) {
          if (nextBeat >= restart) {
            // The daily restart: the worker finishes, a new one beats 75 s later.
            clock.set(Math.max(clock.now(), restart));
            await app.audit.append(trx, {
              actor: 'supervisor',
              action: 'worker.daily_restart',
              details: { pid, scheduled: new Date(restart).toISOString() },
            });
            pid += 1;
            workerStartedAt = restart + 70_000;
            nextBeat = restart + 75_000;
            clock.set(Math.max(clock.now(), workerStartedAt));
            await app.audit.append(trx, { actor: 'supervisor', action: 'worker.started', details: { pid } });
            restart = nextDailyRestart(config.policy.dailyRestartUtc, restart + 1);
            if (nextBeat > at) break;
          }
          await recordHeartbeat(trx, {
            at: nextBeat,
            runner: `simulation:${pid}`,
            pid,
            worker_started_at: workerStartedAt,
            phase: 3,
            rss_bytes: rss,
            heap_used_bytes: Math.round(rss / 2),
            heap_limit_bytes: config.policy.memoryPerProcessMb * MB,
            state: 'idle',
            cycle_id: null,
          });
        }
      });
    await app.audit.record({ actor: 'supervisor', action: 'worker.started', details: { pid } });
    for (let at = start; at < end; at += interval) {
      while (start + hourIndex * HOUR <= at) {
        clock.set(Math.max(clock.now(), start + hourIndex * HOUR));
        await ingestHour(app, options, hourIndex++);
      }
      await beatUntil(at);
      clock.set(Math.max(clock.now(), at));
      await engine.runCycle();
    }
    // The worker beats on to the end of the window, after its last cycle.
    await beatUntil(end);
    clock.set(end);
    return await verifyStability(
      { store: app.store, clock, config },
      { hours: (end - start) / HOUR, until: end },
    );
  } finally {
    await app.close();
  }
}
