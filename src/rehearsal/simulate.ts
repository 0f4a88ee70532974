import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  type App,
  createPartnerClientFromConfig,
  initialize,
  openApp,
  type PartnerClient,
} from '../app/index.js';
import { ManualClock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { type CycleReport, leadKey, OperatorError } from '../engine/index.js';
import { type StabilityResult, verifyStability } from '../gates/index.js';
import { readMode, writeGoLiveAt } from '../guard/index.js';
import { type LeadState, nextDailyRestart } from '../policy/index.js';
import { type SandboxFaultsPatch, type SandboxPartner, startSandboxPartner } from '../sandbox/index.js';
import {
  auditEntriesBetween,
  dailyUsage,
  listLeads,
  recordHeartbeat,
  utcDay,
  waitingLeadCount,
} from '../store/index.js';
import { writeGeneratedLeads } from '../synthetic/index.js';
import { privateGates, privatePhase3Config, privatePhase4Config } from './private-install.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
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

export interface SimulatedCycle {
  at: string;
  hour: number;
  kind: CycleReport['kind'];
  mode: string;
  rampStage: number | null;
  ceiling: number;
  limitedBy: string;
  claimed: number;
  /** Partner requests carrying batches (retries included): the policy's actions. */
  actions: number;
  accepted: number;
  retrying: number;
  quarantined: number;
  refused: number;
  dryRun: number;
  healthFailed: boolean;
}

export interface SimulationResult {
  options: { hours: number; leadsPerHour: number; faults: FaultProfile; seed: number; start: string };
  faultsDescribed: string;
  /** The limits the simulated Phase 4 ran with. */
  limits: {
    leadsPerCycle: number;
    actionsPerCycle: number;
    rateLimitPerSecond: number;
    dailyLeads: number;
    budget: number;
    cycleIntervalSeconds: number;
  };
  cycles: SimulatedCycle[];
  /** The first cycle of each ramp stage and the most leads any cycle of it claimed. */
  ramp: { stage: number; firstAt: string; hour: number; ceiling: number; maxClaimed: number }[];
  /**
   * Per UTC day: leads exported (the engine's outcomes), leads the partner itself accepted that day
   * (its own record), leads claimed and exposure (the daily caps' counters).
   */
  days: {
    day: string;
    exported: number;
    atPartner: number;
    claimed: number;
    exposure: number;
    dailyCapHeld: boolean;
  }[];
  rollbacks: { at: string; hour: number; reason: string }[];
  /** Outbound paused by the product itself (a 429 storm, a partner without TLS 1.2); nobody resumes in a simulation. */
  pauses: { at: string; hour: number; reason: string }[];
  totals: {
    ingested: number;
    exported: number;
    quarantined: number;
    /** Failed partner requests (errors, dropped, hung); 429s are counted apart. */
    failedRequests: number;
    rateLimited: number;
    tokensIssued: number;
    requests: number;
    leadsByState: Partial<Record<LeadState, number>>;
    /** Leads in batches waiting to be sent again (queued or backing off): kept, not mid-request. */
    waitingInBatches: number;
  };
  /** Checked against the sandbox partner's own ledger. */
  reconciliation: {
    sentTwice: number;
    unexpected: number;
    exportedNotAtPartner: number;
    /** The most requests that reached the partner in any 1 s (its own record; the policy: 5). */
    mostRequestsInAnySecond: number;
    /** How many of the partner's requests the rate check saw (it keeps the last 10,000). */
    rateCheckedRequests: number;
    /** Resends under a batch key that carried other leads than the first time (a client bug). */
    replayMismatches: number;
    /** Leads accepted by ingest that are in no state (lost): must be 0. */
    lost: number;
    ok: boolean;
  };
  /** What `stability verify` would say of a Phase 3 run of the same length and lead flow. */
  stability: StabilityResult;
  runMs: number;
}

/**
 * `valhalla simulate`: the real engine (guard, outbox, partner client, error-rate monitor) under a
 * virtual clock, sending to an in-process sandbox partner over real HTTPS, from private databases in
 * a temporary folder: a Phase 3 run (for the stability verdict), then Phase 4 from go-live. Days of
 * policy time take seconds. The operator is simulated only where the policy needs one: each cycle of
 * ramp stage 1 is confirmed; a rollback is never re-armed.
 */
export async function simulate(options: SimulationOptions): Promise<SimulationResult> {
  const began = performance.now();
  const start = options.start ?? Date.now();
  const end = start + options.hours * HOUR;
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-simulate-'));
  try {
    const stability = await simulatePhase3(options, dir, start, end);
    const live = await simulatePhase4(options, dir, start, end);
    const { limits: used, ...phase4 } = live;
    return {
      options: {
        hours: options.hours,
        leadsPerHour: options.leadsPerHour,
        faults: options.faults,
        seed: options.seed,
        start: new Date(start).toISOString(),
      },
      faultsDescribed: FAULT_PROFILES[options.faults].describe,
      limits: used,
      ...phase4,
      stability,
      runMs: Math.round(performance.now() - began),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

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

/** Ingest the leads that arrive in [from, from + 1 h): synthetic, seeded, timestamped in virtual time. */
async function ingestHour(app: App, options: SimulationOptions, hourIndex: number): Promise<number> {
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

/** Phase 3 over the window: dry runs, heartbeats, daily restarts; then the stability check. */
async function simulatePhase3(
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

async function simulatePhase4(
  options: SimulationOptions,
  dir: string,
  start: number,
  end: number,
): Promise<Omit<SimulationResult, 'options' | 'faultsDescribed' | 'stability' | 'runMs'>> {
  const clock = new ManualClock(start);
  const profile = FAULT_PROFILES[options.faults];
  const sandbox: SandboxPartner = await startSandboxPartner({
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

async function summarise(
  app: App,
  sandbox: SandboxPartner,
  cycles: SimulatedCycle[],
  start: number,
  end: number,
) {
  const { store, config } = app;
  const hourOf = (at: number) => Math.round(((at - start) / HOUR) * 100) / 100;
  const ramp: SimulationResult['ramp'] = [];
  for (const c of cycles) {
    if (c.kind !== 'live' || c.rampStage === null) continue;
    const stage = ramp.find((r) => r.stage === c.rampStage);
    if (stage) stage.maxClaimed = Math.max(stage.maxClaimed, c.claimed);
    else
      ramp.push({
        stage: c.rampStage,
        firstAt: c.at,
        hour: c.hour,
        ceiling: c.ceiling,
        maxClaimed: c.claimed,
      });
  }
  const days: SimulationResult['days'] = [];
  const accepted = sandbox.records().batches;
  for (let day = Math.floor(start / DAY) * DAY; day < end; day += DAY) {
    const usage = await dailyUsage(store.db, day);
    const exported = cycles
      .filter((c) => utcDay(Date.parse(c.at)) === utcDay(day))
      .reduce((sum, c) => sum + c.accepted, 0);
    const atPartner = accepted
      .filter((b) => utcDay(b.receivedAt) === utcDay(day))
      .reduce((sum, b) => sum + b.leads.length - b.duplicates.length, 0);
    days.push({
      day: utcDay(day),
      exported,
      atPartner,
      claimed: usage.leads,
      exposure: usage.exposure,
      dailyCapHeld:
        usage.leads <= config.policy.dailyLeads &&
        atPartner <= config.policy.dailyLeads &&
        usage.exposure <= config.policy.budgetExposure,
    });
  }
  const modeChanges = async (action: string) =>
    (await auditEntriesBetween(store.db, [action], start, end + DAY)).map((e) => ({
      at: new Date(Number(e.at)).toISOString(),
      hour: hourOf(Number(e.at)),
      reason: String((JSON.parse(e.details) as { reason?: unknown }).reason ?? ''),
    }));
  const rollbacks = await modeChanges('mode.rollback');
  const pauses = await modeChanges('mode.pause');
  // The partner's own record against the database: nothing sent twice, nothing it should not have.
  const atPartner = sandbox.records().leadBatches;
  const sentTwice = Object.values(atPartner).filter((batches) => batches.length > 1).length;
  const keysOf = async (state: LeadState) =>
    new Set((await listLeads(store.db, { state, limit: 10_000_000 })).map((l) => leadKey(l)));
  const exported = await keysOf('exported');
  const mayBeAtPartner = new Set([
    ...exported,
    ...(await keysOf('in_flight')),
    ...(await keysOf('quarantined')),
  ]);
  const unexpected = Object.keys(atPartner).filter((key) => !mayBeAtPartner.has(key)).length;
  const exportedNotAtPartner = [...exported].filter((key) => atPartner[key] === undefined).length;
  const stats = sandbox.stats();
  const starts = [...stats.requestStarts].sort((a, b) => a - b);
  const mostRequestsInAnySecond = mostStartsInAnyWindow(starts, config.policy.rateWindowMs);
  // The partner keeps the last 10,000 arrival times: a longer run is checked over those only.
  const rateCheckedRequests = starts.length;
  return {
    cycles,
    ramp,
    days,
    rollbacks,
    pauses,
    reconciliation: {
      sentTwice,
      unexpected,
      exportedNotAtPartner,
      mostRequestsInAnySecond,
      rateCheckedRequests,
      replayMismatches: stats.batches.replayMismatches,
      lost: 0,
      ok:
        sentTwice === 0 &&
        unexpected === 0 &&
        exportedNotAtPartner === 0 &&
        stats.batches.replayMismatches === 0 &&
        mostRequestsInAnySecond <= config.limits.rateLimitPerSecond,
    },
  };
}

async function totals(app: App, sandbox: SandboxPartner, cycles: SimulatedCycle[], ingested: number) {
  const status = await app.status();
  const stats = sandbox.stats();
  const { total: _total, ...leadsByState } = status.leads;
  // 429 is the partner asking to slow down: not a failure by the policy's error-rate rule.
  const answeredWithError = Object.entries(stats.requests.byStatus)
    .filter(([code]) => Number(code) >= 400 && code !== '429')
    .reduce((sum, [, n]) => sum + n, 0);
  return {
    ingested,
    exported: cycles.reduce((sum, c) => sum + c.accepted, 0),
    quarantined: status.leads.quarantined,
    requests: stats.requests.total,
    failedRequests: answeredWithError + stats.requests.dropped + stats.requests.hung,
    rateLimited: stats.requests.byStatus['429'] ?? 0,
    tokensIssued: stats.tokens.issued,
    leadsByState,
    waitingInBatches: await waitingLeadCount(app.store.db),
  };
}

/** The most request arrivals the partner saw in any window of `windowMs` (its own clock). */
export function mostStartsInAnyWindow(starts: readonly number[], windowMs: number): number {
  let most = 0;
  let first = 0;
  for (let last = 0; last < starts.length; last++) {
    while (starts[last]! - starts[first]! >= windowMs) first++;
    most = Math.max(most, last - first + 1);
  }
  return most;
}
