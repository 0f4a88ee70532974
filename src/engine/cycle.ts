import type { Config } from '../config/index.js';
import { type Mode, readMode } from '../guard/index.js';
import { ClaimConflict, createCycle, finishCycle } from '../store/index.js';
import { openCycle } from './claim.js';
import type { EngineContext } from './context.js';
import { checkPartner } from './partner-check.js';
import { readPartnerHold } from './partner-hold.js';
import { planCycle } from './plan.js';
import {
  type Authorized,
  type CycleContext,
  type CycleReport,
  emptyCycleReport,
  idleReport,
} from './report.js';
import { finish, sendAuthorized } from './send.js';

/**
 * One cycle: plan it, check the partner, claim (or dry-run) its batches, send them, close it.
 * A cycle costs one commit to open (expire, record the cycle, claim new batches, authorise the first
 * request) and one per request (its outcome, the next request's authorisation, or the cycle's end):
 * with synchronous=FULL each commit is an fsync, the cycle's main cost.
 */
export interface CycleOptions {
  stop?: AbortSignal;
  abortRequests?: AbortSignal;
  holdNew?: AbortSignal;
}

/**
 * Whether a cycle started now sends: Phase 4, not forced to a dry run, outbound not disabled, and
 * the mode live. Otherwise it dry-runs (records what it would send, sends nothing).
 */
export function cycleSendsLive(config: Config, mode: Mode): boolean {
  return config.phase === 4 && !config.dryRun && !config.outboundDisabled && mode === 'live';
}

export async function runCycle(ctx: EngineContext, options: CycleOptions = {}): Promise<CycleReport> {
  const { config, store, clock, logger, guard } = ctx;
  const { abortRequests } = options;
  const startedAt = clock.now();
  const mode = await readMode(store.db);
  const live = cycleSendsLive(config, mode);
  // `holdNew` is about sending: a dry run (after a rollback too) goes on recording.
  const holdNew = live ? options.holdNew : undefined;
  // In a live cycle, stopping (SIGTERM) or the mode leaving `live` both mean: claim nothing more,
  // start no request.
  const stop = options.stop && holdNew ? AbortSignal.any([options.stop, holdNew]) : (options.stop ?? holdNew);
  // A health check or token request is cut by the shutdown's deadline, and not started (or cut) once
  // the mode has left `live`: after a rollback nothing at all goes to the partner.
  const cutChecks =
    abortRequests && holdNew ? AbortSignal.any([abortRequests, holdNew]) : (abortRequests ?? holdNew);
  const report = emptyCycleReport(live ? 'live' : 'dry_run');
  if (config.phase === 4 && mode === 'paused')
    return idle(ctx, report, startedAt, 'paused: the queue is kept');
  if (live) {
    // The partner asked every request to wait (a 429's or 503's Retry-After): nothing goes out before.
    const hold = await readPartnerHold(store.db);
    if (hold.holdUntil > startedAt) {
      return idle(
        ctx,
        report,
        startedAt,
        `the partner asked us to wait until ${new Date(hold.holdUntil).toISOString()} (Retry-After): nothing sent`,
      );
    }
  }

  const plan = await planCycle(ctx, { live, startedAt, stopped: stop?.aborted === true, report });
  if (plan.kind === 'idle') return idle(ctx, report, startedAt, plan.reason);
  const context: CycleContext = {
    cycleId: 0,
    ceiling: plan.ceiling,
    actionsPerCycle: plan.actionsPerCycle,
    actions: 0,
    healthPassedAt: null,
    retried: new Set(),
  };
  let batches = plan.batches;
  // A health check must pass before any batch goes out (and before new leads are claimed for one).
  if (live && (plan.dueNow > 0 || batches.length > 0) && !stop?.aborted) {
    if (!(await checkPartner(ctx, context, report, cutChecks))) batches = [];
    // SIGTERM during the health check: claim nothing new.
    if (stop?.aborted) batches = [];
  }

  let next: Authorized | null = null;
  // The gates' answer for the guard, asked outside the transaction (it reads the database).
  if (live) await guard.prepare();
  try {
    next = await openCycle(ctx, { plan, batches, context, report, stop });
  } catch (error) {
    if (!(error instanceof ClaimConflict)) throw error;
    logger.warn({ lost: error.lost }, 'leads claimed by another runner meanwhile; cycle rolled back');
    Object.assign(report, { expired: 0, claimed: 0, dryRunRecorded: 0 });
    return idle(
      ctx,
      report,
      startedAt,
      'leads were claimed by another runner meanwhile: nothing claimed this cycle',
    );
  }
  await sendAuthorized(ctx, next, { context, report, stop, abortRequests, holdNew, cutChecks });
  if (!context.finished) {
    await store.db.transaction().execute(async (trx) => finish(ctx, trx, context, report));
  }
  return report;
}

/** A cycle that did nothing, recorded with its reason. */
export async function idle(
  ctx: EngineContext,
  report: CycleReport,
  startedAt: number,
  reason: string,
): Promise<CycleReport> {
  const { config, store, clock } = ctx;
  const idled = idleReport(report, reason);
  idled.cycleId = await store.db.transaction().execute(async (trx) => {
    const id = await createCycle(trx, {
      startedAt,
      phase: config.phase,
      kind: 'idle',
      rampStage: idled.rampStage,
      ceiling: 0,
      limitedBy: 'idle',
    });
    await finishCycle(trx, id, { finishedAt: clock.now(), claimed: 0, actions: 0, summary: idled });
    return id;
  });
  return idled;
}
