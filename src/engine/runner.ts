import type { Clock, Sleep } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import { assertNever } from '../policy/index.js';
import type { Engine } from './engine.js';
import type { CycleReport } from './report.js';

export interface RunOptions {
  engine: Engine;
  clock: Clock;
  sleep: Sleep;
  logger: Logger;
  intervalMs: number;
  /** Stop after this many cycles (`--once` is 1); unbounded when undefined. */
  maxCycles?: number;
  /** Aborted on SIGTERM/SIGINT: no new claims, no new request. */
  signal: AbortSignal;
  /** Aborted when the grace period after SIGTERM is over: a request still in flight is cut and parked. */
  abortRequests?: AbortSignal;
  /** A fresh signal per cycle that aborts when the mode leaves `live` (the mode watch); Phase 4. */
  holdNew?: () => AbortSignal;
  /** Before each cycle (e.g. the policy check, which may roll back). */
  beforeCycle?: () => Promise<void>;
  onCycleStart?: () => void;
  onCycle?: (report: CycleReport) => void;
}

/** Recover, then run cycles every `intervalMs` (start to start) until told to stop. */
export async function runCycles(options: RunOptions): Promise<{ cycles: number }> {
  const { engine, clock, sleep, logger, signal } = options;
  await engine.recover();
  let cycles = 0;
  while (!signal.aborted && (options.maxCycles === undefined || cycles < options.maxCycles)) {
    const started = clock.now();
    options.onCycleStart?.();
    await options.beforeCycle?.();
    const report = await engine.runCycle({
      stop: signal,
      ...(options.abortRequests ? { abortRequests: options.abortRequests } : {}),
      ...(options.holdNew ? { holdNew: options.holdNew() } : {}),
    });
    cycles++;
    options.onCycle?.(report);
    // One record per cycle: its message is the cycle's terminal line, its fields every figure of the
    // same report, so the line and the record cannot disagree.
    logger.info({ event: 'cycle', ...report }, describeCycle(report));
    if (options.maxCycles !== undefined && cycles >= options.maxCycles) break;
    await sleep(Math.max(0, options.intervalMs - (clock.now() - started)), signal);
  }
  return { cycles };
}

/** One line per cycle for the terminal: what it did, in leads and batches, with no lead data. */
export function describeCycle(report: CycleReport): string {
  const head = `cycle ${report.cycleId ?? '-'} [${report.kind}]`;
  const inBatches = (leads: number, batches: number) =>
    `${leads} lead(s) in ${batches} batch${batches === 1 ? '' : 'es'}`;
  let work: string[];
  switch (report.kind) {
    case 'idle':
      return `${head} ${report.idleReason}`;
    case 'dry_run':
      work = [`dry-run recorded ${report.dryRunRecorded} lead(s), nothing sent`];
      break;
    case 'live':
      work = [
        `claimed ${inBatches(report.claimed, report.claimedBatches)}`,
        `actions ${report.actions}, accepted ${inBatches(report.accepted, report.acceptedBatches)}, retry scheduled for ${inBatches(report.retrying, report.retryingBatches)}, quarantined ${inBatches(report.quarantined, report.quarantinedBatches)}`,
      ];
      break;
    default:
      return assertNever(report, 'cycle kind');
  }
  const bound = report.boundBy === report.limitedBy ? '' : `; bound by ${words(report.boundBy)}`;
  const parts = [
    report.rampStage === null ? null : `ramp stage ${report.rampStage}`,
    `ceiling ${report.ceiling} (${words(report.limitedBy)}${bound})`,
    ...work,
    report.refused > 0 ? `refused ${report.refused}` : null,
    report.expired > 0 ? `expired ${report.expired}` : null,
    report.healthFailed ? 'partner health check FAILED: nothing sent' : null,
    report.halted ? `stopped: ${report.halted}` : null,
  ];
  return `${head} ${parts.filter(Boolean).join(', ')}`;
}

const LIMIT_WORDS: Readonly<Record<string, string>> = {
  leads_per_cycle: 'leads per cycle',
  ramp_stage: 'ramp stage',
  daily_cap: 'daily cap',
  daily_budget: "the day's budget",
  actions_per_cycle: 'actions per cycle',
  waiting_batches: 'leads already waiting in batches',
  queue: 'the queue: no more eligible leads',
  stopping: 'stopping',
};

function words(limit: string): string {
  return LIMIT_WORDS[limit] ?? limit.replaceAll('_', ' ');
}
