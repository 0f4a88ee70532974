// The simulation's Phase 4 run from go-live: live cycles through the ramp stages against the
// in-process sandbox partner under its fault profile, a simulated operator confirming stage 1.
import { join } from 'node:path';
import { type App, createPartnerClientFromConfig, openApp, type PartnerClient } from '../app/index.js';
import { ManualClock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { OperatorError } from '../engine/index.js';
import { readMode, writeGoLiveAt } from '../guard/index.js';
import { type SandboxPartner, type SandboxProfile, startSandboxPartner } from '../sandbox/index.js';
import { privateGates, privatePhase4Config } from './private-install.js';
import { FAULT_PROFILES, HOUR, ingestHour, type SimulationOptions } from './simulate-options.js';
import { summarise, totals } from './simulate-reconcile.js';
import type { SimulatedCycle, SimulationResult } from './simulate-result.js';

/**
 * The limits Phase 4 would run with here: the installation's own when it is configured for Phase 4;
 * from a Phase 3 configuration (whose actions per cycle are 0 by design), the policy file's actions
 * per cycle and the configured rate.
 */
function phase4Limits(installation: Config): Record<string, string> {
  return {
    VALHALLA_MAX_ACTIONS_PER_CYCLE: String(
      installation.phase === 4 ? installation.limits.actionsPerCycle : installation.policy.actionsPerCycle,
    ),
    VALHALLA_RATE_LIMIT: String(installation.limits.rateLimitPerSecond),
  };
}

export async function simulatePhase4(
  options: SimulationOptions,
  /** The sandbox contract that plays the installation's profile (`sandboxProfileFor`, checked by `simulate`). */
  played: SandboxProfile,
  dir: string,
  start: number,
  end: number,
): Promise<Omit<SimulationResult, 'options' | 'faultsDescribed' | 'profile' | 'stability' | 'runMs'>> {
  const clock = new ManualClock(start);
  const profile = FAULT_PROFILES[options.faults];
  const sandbox: SandboxPartner = await startSandboxPartner({
    profile: played,
    clock,
    sleep: clock.sleep,
    certDir: join(dir, 'cert'),
    faults: { seed: options.seed, ...profile.at(0) },
  });
  let app: App | null = null;
  let client: PartnerClient | null = null;
  try {
    const config = privatePhase4Config({
      dir,
      name: 'simulation-phase4',
      installation: options.config,
      partner: sandbox,
      leadsPerCycle: options.config.limits.leadsPerCycle,
      env: phase4Limits(options.config),
    });
    app = await openApp({ config, clock });
    const { policy, limits } = config;
    // The partner client of Phase 4, on the virtual clock: its rate limiter waits in virtual time.
    client = createPartnerClientFromConfig(config, clock, {
      monotonicNow: () => clock.now(),
      limiterSleep: (ms) => clock.sleep(ms),
    });
    const engine = app.engine({ gates: privateGates('simulation'), partner: client, sleep: clock.sleep });
    await writeGoLiveAt(app.store.db, start);
    const operator = app.operatorActions('simulated operator');
    const interval = options.config.cycleIntervalSeconds * 1000;
    const cycles: SimulatedCycle[] = [];
    let hourIndex = 0;
    let ingested = 0;
    let faultsText = '';
    for (let at = start; at < end; at += interval) {
      while (start + hourIndex * HOUR <= at) {
        clock.set(Math.max(clock.now(), start + hourIndex * HOUR));
        ingested += await ingestHour(app, options, hourIndex++);
      }
      // A cycle that ran long (backoff waits, a slow partner) delays the next one, as the runner does.
      clock.set(Math.max(clock.now(), at));
      const hour = (clock.now() - start) / HOUR;
      const patch = profile.at(hour);
      if (JSON.stringify(patch) !== faultsText) {
        faultsText = JSON.stringify(patch);
        sandbox.setFaults({ down: false, rateLimit: null, ...patch });
      }
      try {
        await operator.confirmCycle();
      } catch (error) {
        // Nothing to confirm (not at stage 1, or confirmed already): the simulated operator moves on.
        if (!(error instanceof OperatorError)) throw error;
      }
      const report = await engine.runCycle();
      cycles.push({
        at: new Date(at).toISOString(),
        hour: Math.round(hour * 100) / 100,
        kind: report.kind,
        mode: await readMode(app.store.db),
        rampStage: report.rampStage,
        ceiling: report.ceiling,
        limitedBy: report.limitedBy,
        claimed: report.claimed,
        actions: report.actions,
        accepted: report.accepted,
        retrying: report.retrying,
        quarantined: report.quarantined,
        refused: report.refused,
        dryRun: report.dryRunRecorded,
        healthFailed: report.healthFailed,
      });
    }
    clock.set(Math.max(clock.now(), end));
    const summary = await summarise(app, sandbox, cycles, start, end);
    const counted = await totals(app, sandbox, cycles, ingested);
    // The limits the simulated Phase 4 ran with (its own configuration), as reported.
    const used = {
      leadsPerCycle: limits.leadsPerCycle,
      actionsPerCycle: limits.actionsPerCycle,
      rateLimitPerSecond: limits.rateLimitPerSecond,
      dailyLeads: policy.dailyLeads,
      budget: policy.budgetExposure,
      cycleIntervalSeconds: options.config.cycleIntervalSeconds,
    };
    // Nothing lost: every lead ingest accepted is in exactly one state.
    const lost = ingested - Object.values(counted.leadsByState).reduce((sum, n) => sum + n, 0);
    const reconciliation = { ...summary.reconciliation, lost, ok: summary.reconciliation.ok && lost === 0 };
    return { ...summary, reconciliation, totals: counted, limits: used };
  } finally {
    await client?.close().catch(() => undefined);
    await app?.close();
    await sandbox.close();
  }
}
