import { createHash, randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { AlertRecorder } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock, Sleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { changeMode, type Guard, readGoLiveAt, readMode, writeGoLiveAt } from '../guard/index.js';
import type { Logger } from '../log/index.js';
import type { RequestMonitor } from '../monitor/index.js';
import type { PermanentOutcome, RetryableOutcome } from '../outbound/index.js';
import { isOutboundError } from '../outbound/index.js';
import { maskEmail, type Pseudonymizer } from '../pii/index.js';
import {
  canonicalJson,
  cycleCeiling,
  decideInterrupted,
  decideOutcome,
  exposure,
  freshnessCutoff,
  MAX_PARTNER_WAIT_MS,
  packBatches,
  rampPosition,
  THROTTLE_DEFAULT_WAIT_MS,
  THROTTLE_STORM_MS,
  takeWithinLimits,
  throttleDecision,
} from '../policy/index.js';
import {
  ClaimConflict,
  type CycleKind,
  createCycle,
  createDelivery,
  type Database,
  type Delivery,
  dailyUsage,
  deliveriesInState,
  deliveryLeads,
  dueDeliveries,
  expireStalePending,
  finishCycle,
  type Lead,
  lastLiveCycle,
  nextRetryAt,
  releaseFromDeliveries,
  type Store,
  selectEligible,
  setDeliveryState,
  setLeadsState,
  waitingLeadCount,
} from '../store/index.js';
import { type Leadership, NotLeader } from './leadership.js';
import { endThrottling, readPartnerHold, writePartnerHold } from './partner-hold.js';
import type { HealthResult, PartnerLead, PartnerPort, SendOutcome, TokenOutcome } from './partner-port.js';

/** The partner takes at most this many leads in one request. */
export const MAX_LEADS_PER_REQUEST = 100;
/** A retry that falls due within this long is waited for inside the cycle; a later one waits for the next cycle. */
const MAX_WAIT_IN_CYCLE_MS = 30_000;
/** A health check older than this is repeated before the next request (the guard accepts up to 60 s). */
const HEALTH_RECHECK_MS = 30_000;

export interface EngineDeps {
  config: Config;
  store: Store;
  audit: AuditLog;
  clock: Clock;
  sleep: Sleep;
  logger: Logger;
  pseudonymizer: Pseudonymizer;
  guard: Guard;
  /** The partner client; null in Phase 3, where no socket to the partner is ever opened. */
  partner: PartnerPort | null;
  alerts: AlertRecorder;
  /** Records each request's outcome and rolls back when the error rate says so. */
  monitor: RequestMonitor;
  /**
   * Several runners on one database: every claim, authorisation and recovery first locks the lease
   * and checks this runner still holds it (src/engine/leadership.ts). Absent: one runner, unfenced.
   */
  leadership?: Pick<Leadership, 'holds'> | null | undefined;
  /** The limits in force now (lowered while the service runs); default the configuration's. */
  limits?: () => Config['limits'];
}

/** What one cycle did: the same data goes to the terminal, the cycles table and the audit chain. */
export interface CycleReport {
  cycleId: number | null;
  kind: CycleKind;
  /** Why the cycle did nothing, when it did nothing. */
  idleReason: string | null;
  rampStage: number | null;
  ceiling: number;
  /** The smallest of the policy's ceilings: leads per cycle, the ramp stage or the daily cap. */
  limitedBy: string;
  /**
   * What bound the leads claimed this cycle: the ceiling's limit, the day's budget, the actions per
   * cycle, leads already waiting in batches, or the queue (no more eligible leads).
   */
  boundBy: string;
  expired: number;
  /** Leads claimed into new batches this cycle, and those batches. */
  claimed: number;
  claimedBatches: number;
  dryRunRecorded: number;
  actions: number;
  /** Leads (and batches) accepted by the partner this cycle. */
  accepted: number;
  acceptedBatches: number;
  /** Leads (and batches) given a retry this cycle, each batch counted once however many times it was. */
  retrying: number;
  retryingBatches: number;
  quarantined: number;
  quarantinedBatches: number;
  refused: number;
  healthFailed: boolean;
  /** Why sending stopped inside the cycle (a rollback, a pause, the gates), or null. */
  halted: string | null;
}

export interface Engine {
  /** After a crash: batches caught mid-request are resent with their own key. */
  recover(): Promise<{ resumed: number; quarantined: number }>;
  /**
   * One cycle. `stop` (SIGTERM): claim nothing more, start no new request. `abortRequests`: cut a
   * request in flight (its batch stays `sending` and is resent with its key on the next start).
   * `holdNew` (the mode left `live`): start no new request; one already sent finishes and is recorded.
   */
  runCycle(options?: CycleOptions): Promise<CycleReport>;
}

export interface CycleOptions {
  stop?: AbortSignal;
  abortRequests?: AbortSignal;
  holdNew?: AbortSignal;
}

/** A lead's own idempotency key: derived from its dedup key, so it can never change or be minted twice. */
export function leadKey(lead: Pick<Lead, 'dedup_key'>): string {
  return `lk_${lead.dedup_key.slice(0, 32)}`;
}

export function toPartnerLead(lead: Lead): PartnerLead {
  return {
    idempotency_key: leadKey(lead),
    external_id: lead.external_id,
    name: lead.name,
    email: lead.email,
    phone: lead.phone,
    company: lead.company,
    score: lead.score,
    source_timestamp: new Date(lead.source_ts).toISOString(),
    value: lead.value,
  };
}

/** The hash of what a batch key stands for: its leads as sent, in id order (the order they are sent in). */
export function payloadSha256(batchKey: string, leads: Lead[]): string {
  const inSendOrder = [...leads].sort((a, b) => a.id - b.id);
  return createHash('sha256')
    .update(canonicalJson({ batch: batchKey, leads: inSendOrder.map(toPartnerLead) }))
    .digest('hex');
}

export function createEngine(deps: EngineDeps): Engine {
  const { config, store, audit, clock, sleep, logger, pseudonymizer, guard, partner, alerts, monitor } = deps;
  const leadership = deps.leadership ?? null;
  /** Inside a transaction: this runner still leads (always, with one runner). Locks the lease. */
  const leads = (trx: Transaction<Database>) => (leadership ? leadership.holds(trx) : Promise.resolve(true));
  const mustLead = async (trx: Transaction<Database>, what: string) => {
    if (!(await leads(trx))) throw new NotLeader(`${what}: this runner no longer leads; nothing changed`);
  };
  const policy = config.policy;
  const maxRetries = policy.maxRetries;
  /** A token must outlive a whole attempt: the request's timeout plus margin. */
  const tokenValidForMs = policy.apiTimeoutSeconds * 1000 * 2 + 10_000;

  const pseudonyms = (leads: Lead[]) =>
    leads.map((l) => ({ lead: l.id, pseudonym: pseudonymizer.pseudonym(l.dedup_key) }));

  /**
   * After a crash: a batch caught mid-request had a request nobody answered. The partner may have it,
   * so it is asked again under the same key (a replay cannot duplicate, and spends no retry), unless
   * that key has gone unanswered too often (MAX_UNANSWERED_PER_KEY): then it is quarantined, with an
   * alert, as one the partner may have, and a release replays its key first.
   */
  async function recover() {
    const caught = await deliveriesInState(store.db, 'sending');
    let resumed = 0;
    let quarantined = 0;
    for (const delivery of caught) {
      const now = clock.now();
      const decision = decideInterrupted({
        failedAnswers: delivery.failed_answers,
        unanswered: delivery.unanswered,
        lastOutcome: delivery.last_outcome,
      });
      await store.db.transaction().execute(async (trx) => {
        await mustLead(trx, 'recovery');
        if (decision.kind === 'resend') {
          await audit.append(trx, {
            actor: 'engine',
            action: 'recovery.resend',
            subject: `batch:${delivery.batch_key}`,
            details: {
              delivery: delivery.id,
              attempts: delivery.attempts,
              unanswered: delivery.unanswered + 1,
              reason:
                'interrupted mid-request; the partner is asked again under the same key (no retry spent)',
            },
          });
          await setDeliveryState(trx, delivery.id, {
            state: 'retry_wait',
            now,
            nextAttemptAt: now,
            unansweredDelta: 1,
            partnerMayHave: true,
            lastStatus: null,
            lastOutcome: 'interrupted',
          });
          return;
        }
        const leads = await deliveryLeads(trx, delivery.id);
        await quarantineBatch(
          trx,
          delivery,
          leads.map((l) => l.id),
          pseudonyms(leads),
          {
            action: 'recovery.quarantined',
            attempt: delivery.attempts,
            status: null,
            reason: `${decision.reason}: check batch ${delivery.batch_key} with the partner; a release replays this key`,
            lastOutcome: 'interrupted',
            partnerMayHave: true,
            unansweredDelta: 1,
          },
        );
      });
      if (decision.kind === 'quarantine') quarantined++;
      else resumed++;
    }
    if (caught.length > 0) logger.warn({ resumed, quarantined }, 'batches interrupted mid-request');
    return { resumed, quarantined };
  }

  /** The ramp's clock: set (and audited) by the first live cycle, read by every later one. */
  async function goLiveAt(now: number): Promise<number> {
    const stored = await readGoLiveAt(store.db);
    if (stored !== null) return stored;
    return store.db.transaction().execute(async (trx) => {
      // Under the lease's lock: of several runners, one sets the clock and the others read it.
      await mustLead(trx, 'the ramp clock');
      const meanwhile = await readGoLiveAt(trx);
      if (meanwhile !== null) return meanwhile;
      await audit.append(trx, {
        actor: 'engine',
        action: 'phase4.go_live',
        details: { at: new Date(now).toISOString() },
      });
      await writeGoLiveAt(trx, now);
      return now;
    });
  }

  /**
   * A cycle costs one commit to open (expire, record the cycle, claim new batches, authorise the first
   * request) and one per request (its outcome, the next request's authorisation, or the cycle's end):
   * with synchronous=FULL each commit is an fsync, the cycle's main cost.
   */
  async function runCycle(options: CycleOptions = {}): Promise<CycleReport> {
    const { abortRequests } = options;
    const startedAt = clock.now();
    const mode = await readMode(store.db);
    const live = config.phase === 4 && !config.dryRun && !config.outboundDisabled && mode === 'live';
    // `holdNew` is about sending: a dry run (after a rollback too) goes on recording.
    const holdNew = live ? options.holdNew : undefined;
    // In a live cycle, stopping (SIGTERM) or the mode leaving `live` both mean: claim nothing more,
    // start no request.
    const stop =
      options.stop && holdNew ? AbortSignal.any([options.stop, holdNew]) : (options.stop ?? holdNew);
    // A health check or token request is cut by the shutdown's deadline, and not started (or cut) once
    // the mode has left `live`: after a rollback nothing at all goes to the partner.
    const cutChecks =
      abortRequests && holdNew ? AbortSignal.any([abortRequests, holdNew]) : (abortRequests ?? holdNew);
    const report = emptyCycleReport(live ? 'live' : 'dry_run');
    if (config.phase === 4 && mode === 'paused') return idle(report, startedAt, 'paused: the queue is kept');
    if (live) {
      // The partner asked every request to wait (a 429's or 503's Retry-After): nothing goes out before.
      const hold = await readPartnerHold(store.db);
      if (hold.holdUntil > startedAt) {
        return idle(
          report,
          startedAt,
          `the partner asked us to wait until ${new Date(hold.holdUntil).toISOString()} (Retry-After): nothing sent`,
        );
      }
    }

    const cutoff = freshnessCutoff(policy.maxLeadAgeDays, startedAt);
    // The limits in force at this cycle's start: a lowering while the service runs applies from here.
    const limits = deps.limits?.() ?? config.limits;
    let rampCeiling = limits.leadsPerCycle;
    let leadsLeftToday = Number.POSITIVE_INFINITY;
    let budgetLeft = Number.POSITIVE_INFINITY;
    if (live) {
      const ramp = rampPosition(
        policy.rampStages,
        await goLiveAt(startedAt),
        startedAt,
        limits.leadsPerCycle,
      );
      report.rampStage = ramp.stage;
      rampCeiling = ramp.ceiling;
      if (ramp.confirmEachCycle) {
        const last = await lastLiveCycle(store.db);
        if (last && last.confirmed_at === null) {
          return idle(
            report,
            startedAt,
            `ramp stage ${ramp.stage}: waiting for an operator to confirm cycle ${last.id} (valhalla cycle confirm)`,
          );
        }
      }
      const today = await dailyUsage(store.db, startedAt);
      leadsLeftToday = policy.dailyLeads - today.leads;
      budgetLeft = policy.budgetExposure - today.exposure;
    }
    const { ceiling, limitedBy } = cycleCeiling({
      leadsPerCycle: limits.leadsPerCycle,
      rampCeiling,
      leadsLeftToday,
    });
    report.ceiling = ceiling;
    report.limitedBy = limitedBy;
    // In Phase 3 VALHALLA_MAX_ACTIONS_PER_CYCLE is 0 real actions; the dry run shows the policy file's would-be actions.
    const actionsPerCycle = live ? limits.actionsPerCycle : policy.actionsPerCycle;
    const context: CycleContext = {
      cycleId: 0,
      ceiling,
      actionsPerCycle,
      actions: 0,
      healthPassedAt: null,
      retried: new Set(),
    };
    // Retries already due go first; new batches get only the actions left, so nothing is claimed that cannot be sent.
    const dueNow = live ? (await dueDeliveries(store.db, startedAt, actionsPerCycle)).length : 0;
    const room = Math.max(0, actionsPerCycle - dueNow);
    // Leads claimed earlier and still waiting to go out (queued, or backing off) may be sent in this
    // cycle too: they count against its ceiling, so a cycle never sends more leads than its ceiling
    // (ramp stage 1: one lead per confirmed cycle, not one new lead plus a retried one).
    const outstanding = live ? await waitingLeadCount(store.db) : 0;
    const claimLimit = stop?.aborted
      ? 0
      : Math.max(0, Math.min(ceiling - outstanding, room * MAX_LEADS_PER_REQUEST));
    const candidates = await selectEligible(store.db, {
      minScore: policy.minLeadScore,
      freshSince: cutoff,
      limit: claimLimit === 0 ? 0 : claimLimit + 50,
      notDryRun: !live,
      realOnly: live,
    });
    const within = takeWithinLimits(candidates, claimLimit, budgetLeft);
    let batches = packBatches(within.taken, MAX_LEADS_PER_REQUEST, room);
    report.boundBy = claimBound({
      ceiling,
      limitedBy,
      outstanding,
      room,
      claimLimit,
      taken: within.taken.length,
      packed: batches.reduce((n, b) => n + b.length, 0),
      skippedForBudget: within.skippedForBudget,
      stopped: stop?.aborted === true,
    });
    // A health check must pass before any batch goes out (and before new leads are claimed for one).
    if (live && (dueNow > 0 || batches.length > 0) && !stop?.aborted) {
      if (!(await checkPartner(context, report, cutChecks))) batches = [];
      // SIGTERM during the health check: claim nothing new.
      if (stop?.aborted) batches = [];
    }

    let next: Authorized | null = null;
    // The gates' answer for the guard, asked outside the transaction (it reads the database).
    if (live) await guard.prepare();
    try {
      next = await store.db.transaction().execute(async (trx) => {
        // The lease's row lock: no other runner claims or authorises until this commits.
        await mustLead(trx, 'claim');
        // Several runners (or PostgreSQL's concurrent connections): choose again under the lock.
        if (batches.length > 0 && (leadership !== null || store.dialect === 'postgres')) {
          batches = await claimable(trx, {
            live,
            cutoff,
            claimLimit,
            budgetLeft,
            room,
            startedAt,
            planned: batches.length,
          });
        }
        const expiredIds = await expireStalePending(
          trx,
          cutoff,
          startedAt,
          `older than ${policy.maxLeadAgeDays} days while pending`,
        );
        if (expiredIds.length > 0) {
          await audit.append(trx, {
            actor: 'engine',
            action: 'leads.expired',
            details: { count: expiredIds.length, leads: expiredIds },
          });
        }
        report.expired = expiredIds.length;
        context.cycleId = await createCycle(trx, {
          startedAt,
          phase: config.phase,
          kind: report.kind,
          rampStage: report.rampStage,
          ceiling,
          limitedBy,
        });
        report.cycleId = context.cycleId;
        for (const batch of batches) {
          if (live) await claimBatch(trx, context.cycleId, batch, report);
          else await dryRun(trx, context, batch, report);
        }
        return afterAction(trx, context, report, stop, true);
      });
    } catch (error) {
      if (!(error instanceof ClaimConflict)) throw error;
      logger.warn({ lost: error.lost }, 'leads claimed by another runner meanwhile; cycle rolled back');
      Object.assign(report, { expired: 0, claimed: 0, dryRunRecorded: 0 });
      return idle(
        report,
        startedAt,
        'leads were claimed by another runner meanwhile: nothing claimed this cycle',
      );
    }

    while (next !== null && partner) {
      const current: Authorized = next;
      let outcome: SendOutcome | null;
      try {
        outcome = await partner.sendBatch(
          { batchKey: current.delivery.batch_key, leads: current.leads.map(toPartnerLead) },
          abortRequests,
          holdNew,
        );
      } catch (error) {
        // The client throws only when it sent nothing (cancelled while waiting for a token or the
        // rate limiter, or closed). Held back by a mode change: the batch returns to its queue as it
        // was, this attempt uncounted. At shutdown it is parked. Anything else is a bug.
        if (holdNew?.aborted && !abortRequests?.aborted && isOutboundError(error, 'CANCELLED')) {
          await holdBack(current, report);
          break;
        }
        // The shared start log did not grant the start (the database gone, the lease lost): nothing
        // was sent. Back to its queue uncounted while this runner still leads (the database may not
        // answer: then recovery finds it `sending` and resends it under its key); the term ends.
        if (isOutboundError(error, 'START_NOT_GRANTED')) {
          await holdBack(current, report).catch(() => undefined);
          throw error;
        }
        if (!abortRequests?.aborted) throw error;
        outcome = null;
      }
      if (outcome === null || (abortRequests?.aborted && outcome.kind !== 'accepted')) {
        // Cut by shutdown, not failed by the partner: the batch stays `sending`, uses no retry, and
        // the next start resends it under the same key (the partner may have it already).
        await audit.record({
          actor: 'engine',
          action: 'batch.parked',
          subject: `batch:${current.delivery.batch_key}`,
          details: {
            delivery: current.delivery.id,
            attempt: current.attempt,
            reason: 'request cut at shutdown',
          },
        });
        break;
      }
      await guard.prepare();
      next = await store.db.transaction().execute(async (trx) => {
        // The lease's row first (then the audit lock, in that order everywhere): a runner that no
        // longer leads records nothing; the batch stays `sending` for the leader's recovery, which
        // resends it under its own key (the partner replays it).
        await mustLead(trx, 'the outcome');
        await recordOutcome(trx, context, current, outcome, report);
        return afterAction(trx, context, report, stop, true);
      });
      if (next === null && !context.finished) next = await waitForRetry(context, report, stop, cutChecks);
    }
    if (!context.finished) {
      await store.db.transaction().execute(async (trx) => finish(trx, context, report));
    }
    return report;
  }

  /**
   * Inside the claim's transaction, under the lease's lock: the batches to claim, chosen again from
   * rows locked `FOR UPDATE SKIP LOCKED` (PostgreSQL: a row another transaction holds is passed over,
   * never waited for or claimed twice), against the day's count and budget as they stand now.
   */
  async function claimable(
    trx: Transaction<Database>,
    plan: {
      live: boolean;
      cutoff: number;
      claimLimit: number;
      budgetLeft: number;
      room: number;
      startedAt: number;
      planned: number;
    },
  ): Promise<Lead[][]> {
    let limit = plan.claimLimit;
    let budgetLeft = plan.budgetLeft;
    if (plan.live) {
      const today = await dailyUsage(trx, plan.startedAt);
      limit = Math.max(0, Math.min(limit, policy.dailyLeads - today.leads));
      budgetLeft = Math.min(budgetLeft, policy.budgetExposure - today.exposure);
    }
    const candidates = await selectEligible(trx, {
      minScore: policy.minLeadScore,
      freshSince: plan.cutoff,
      limit: limit === 0 ? 0 : limit + 50,
      notDryRun: !plan.live,
      realOnly: plan.live,
      skipLocked: store.dialect === 'postgres',
    });
    return packBatches(
      takeWithinLimits(candidates, limit, budgetLeft).taken,
      MAX_LEADS_PER_REQUEST,
      plan.room,
    ).slice(0, plan.planned);
  }

  /** An authorised batch that never started (the mode left `live` meanwhile): back to its queue, uncounted. */
  async function holdBack(held: Authorized, report: CycleReport) {
    report.halted ??= 'outbound stopped (mode changed) before the request started';
    await store.db.transaction().execute(async (trx) => {
      // Not the leader any more: the batch is the leader's recovery's now.
      if (!(await leads(trx))) return;
      await audit.append(trx, {
        actor: 'engine',
        action: 'batch.held',
        subject: `batch:${held.delivery.batch_key}`,
        details: {
          delivery: held.delivery.id,
          attempt: held.attempt,
          reason: 'outbound stopped before the request started: nothing sent, the attempt is not counted',
        },
      });
      await setDeliveryState(trx, held.delivery.id, {
        state: held.delivery.state,
        now: clock.now(),
        attemptsDelta: -1,
      });
    });
  }

  /**
   * Inside a transaction: authorise the next due delivery (retries first) if the cycle may send
   * more; else, when nothing more can happen this cycle, close the cycle in the same commit.
   */
  async function afterAction(
    trx: Transaction<Database>,
    context: CycleContext,
    report: CycleReport,
    stop: AbortSignal | undefined,
    /** The caller checked the lease in this transaction already (its row stays locked to the commit). */
    fenced: boolean,
  ): Promise<Authorized | null> {
    let canSend =
      report.kind === 'live' && partner !== null && !report.healthFailed && !report.halted && !stop?.aborted;
    // Nothing is authorised by a runner that no longer leads.
    if (canSend && !fenced && !(await leads(trx))) {
      report.halted = 'this runner no longer leads';
      canSend = false;
    }
    if (canSend && context.actions < context.actionsPerCycle && healthFresh(context)) {
      const authorized = await authorizeNext(trx, context, report);
      if (authorized) return authorized;
    }
    const retryDueSoon =
      canSend && context.actions < context.actionsPerCycle && (await retryWithinCycle(trx)) !== null;
    if (
      !retryDueSoon &&
      !(canSend && !healthFresh(context) && (await dueDeliveries(trx, clock.now(), 1)).length > 0)
    ) {
      await finish(trx, context, report);
    }
    return null;
  }

  async function finish(trx: Transaction<Database>, context: CycleContext, report: CycleReport) {
    report.actions = context.actions;
    await finishCycle(trx, context.cycleId, {
      finishedAt: clock.now(),
      claimed: report.claimed,
      actions: context.actions,
      summary: report,
    });
    context.finished = true;
  }

  function healthFresh(context: CycleContext): boolean {
    return context.healthPassedAt !== null && clock.now() - context.healthPassedAt <= HEALTH_RECHECK_MS;
  }

  async function retryWithinCycle(db: Kysely<Database> | Transaction<Database>): Promise<number | null> {
    const retryAt = await nextRetryAt(db);
    if (retryAt === null) return null;
    // Nothing goes out before the partner's wait is over, whatever the batch's own time.
    const at = Math.max(retryAt, (await readPartnerHold(db)).holdUntil);
    return at - clock.now() <= MAX_WAIT_IN_CYCLE_MS ? at : null;
  }

  /** Between requests: wait for a retry that falls due soon, re-check the partner if needed, authorise it. */
  async function waitForRetry(
    context: CycleContext,
    report: CycleReport,
    stop?: AbortSignal,
    cutChecks?: AbortSignal,
  ): Promise<Authorized | null> {
    const at = await retryWithinCycle(store.db);
    if (at !== null) await sleep(Math.max(0, at - clock.now()), stop);
    if (stop?.aborted) return null;
    // Still inside the partner's wait (it ends later than a cycle waits): no health check, no token.
    if ((await readPartnerHold(store.db)).holdUntil > clock.now()) return null;
    if (!healthFresh(context) && !(await checkPartner(context, report, cutChecks))) return null;
    await guard.prepare();
    return store.db.transaction().execute((trx) => afterAction(trx, context, report, stop, false));
  }

  /** The partner's health check and a token that outlives the batch; false (audited) when either fails. */
  async function checkPartner(
    context: CycleContext,
    report: CycleReport,
    signal?: AbortSignal,
  ): Promise<boolean> {
    if (!partner) return false;
    // Cut (or never started) by our own shutdown or a rollback: nothing to say about the partner.
    const cut = (error: unknown) => {
      if (signal?.aborted) return null;
      throw error;
    };
    const health = await partner.health(signal).catch(cut);
    if (health === null || signal?.aborted) return false;
    if (!health.ok) {
      report.healthFailed = true;
      if (tlsVersionRefused(health)) {
        await store.db
          .transaction()
          .execute((trx) =>
            refuseOldTls(
              trx,
              report,
              health.error ?? 'the partner does not offer TLS 1.2 or newer',
              'health',
            ),
          );
        logger.error({ error: health.error }, 'partner refused: no TLS 1.2 or newer; outbound paused');
        return false;
      }
      await store.db.transaction().execute(async (trx) => {
        if (health.status !== undefined && health.status !== 429) await endThrottling(trx, clock.now());
        // A 429 (or a 503 with Retry-After) holds every request to the partner, as for a batch.
        const asked = health.retryAfterMs && health.retryAfterMs > 0 ? health.retryAfterMs : null;
        if (health.status === 429) {
          await holdPartner(trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, clock.now());
        } else if (asked !== null) await holdPartner(trx, report, asked, false, clock.now());
        await audit.append(trx, {
          actor: 'engine',
          action: 'partner.health_failed',
          details: {
            cycle: context.cycleId || null,
            status: health.status ?? null,
            error: health.error ?? null,
          },
        });
        const decision = await monitor.afterRequest(trx, {
          endpoint: 'health',
          outcome: 'retryable',
          status: health.status ?? null,
          ms: health.ms,
        });
        if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
      });
      logger.warn(
        { status: health.status, error: health.error },
        'partner health check failed: nothing sent',
      );
      return false;
    }
    const token = await partner.ensureToken(tokenValidForMs, signal).catch(cut);
    if (token === null || signal?.aborted) return false;
    if (token.kind !== 'ok') {
      report.healthFailed = true;
      if (tlsVersionRefused(token)) {
        await store.db.transaction().execute((trx) => refuseOldTls(trx, report, token.message, 'token'));
        logger.error(
          { error: token.message },
          'token endpoint refused: no TLS 1.2 or newer; outbound paused',
        );
        return false;
      }
      await store.db.transaction().execute(async (trx) => {
        const asked = token.kind === 'retryable' && token.retryAfterMs ? token.retryAfterMs : null;
        if (token.status === 429) {
          await holdPartner(trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, clock.now());
        } else if (asked !== null) await holdPartner(trx, report, asked, false, clock.now());
        await audit.append(trx, {
          actor: 'engine',
          action: 'partner.token_failed',
          details: { cycle: context.cycleId || null, status: token.status ?? null, message: token.message },
        });
        const decision = await monitor.afterRequest(trx, {
          endpoint: 'token',
          outcome: token.kind,
          status: token.status ?? null,
          ms: token.ms,
        });
        if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
      });
      logger.warn({ status: token.status, reason: token.message }, 'no partner token: nothing sent');
      return false;
    }
    context.healthPassedAt = clock.now();
    return true;
  }

  /** The guard's decision and, when it allows, the batch's move to `sending`, in the caller's commit. */
  async function authorizeNext(
    trx: Transaction<Database>,
    context: CycleContext,
    report: CycleReport,
  ): Promise<Authorized | null> {
    // The partner asked every request to wait: nothing is authorised before that time.
    if ((await readPartnerHold(trx)).holdUntil > clock.now()) return null;
    for (;;) {
      const [delivery] = await dueDeliveries(trx, clock.now(), 1);
      if (!delivery) return null;
      const leads = await deliveryLeads(trx, delivery.id);
      const attempt = delivery.attempts + 1;
      // The same key must always carry the same content: a lead edited while its batch waited
      // (its contact data, say) would change what the key stands for.
      if (payloadSha256(delivery.batch_key, leads) !== delivery.payload_sha256) {
        await refuseDelivery(trx, delivery, leads, [], 'the batch content changed since it was queued');
        report.refused += leads.length;
        continue;
      }
      const decision = await guard.authorize(
        {
          cycleId: context.cycleId,
          deliveryId: delivery.id,
          batchKey: delivery.batch_key,
          attempt,
          leads,
          actionsUsedThisCycle: context.actions,
          actionsPerCycle: context.actionsPerCycle,
          ceiling: context.ceiling,
          healthCheckPassedAt: context.healthPassedAt,
        },
        trx,
      );
      if (decision.allowed) {
        await setDeliveryState(trx, delivery.id, { state: 'sending', now: clock.now(), attemptsDelta: 1 });
        context.actions++;
        return { delivery, leads, attempt };
      }
      // A batch never sent that a lowered limit no longer allows is dissolved (its leads go back to
      // the queue) rather than blocking every later one; other refusals stop this cycle's sending.
      const dissolve =
        decision.code === 'LEAD_INELIGIBLE' ||
        (decision.code === 'BATCH_TOO_LARGE' && delivery.attempts === 0);
      if (!dissolve) {
        // Not this batch's fault: nothing more is sent this cycle (rolled back, paused, gates, caps).
        if (HALTING.has(decision.code)) report.halted = decision.reason;
        return null;
      }
      await refuseDelivery(trx, delivery, leads, decision.ineligibleLeadIds ?? [], decision.reason);
      report.refused += leads.length;
    }
  }

  async function idle(report: CycleReport, startedAt: number, reason: string): Promise<CycleReport> {
    report.kind = 'idle';
    report.idleReason = reason;
    report.cycleId = await store.db.transaction().execute(async (trx) => {
      const id = await createCycle(trx, {
        startedAt,
        phase: config.phase,
        kind: 'idle',
        rampStage: report.rampStage,
        ceiling: 0,
        limitedBy: 'idle',
      });
      await finishCycle(trx, id, { finishedAt: clock.now(), claimed: 0, actions: 0, summary: report });
      return id;
    });
    return report;
  }

  async function claimBatch(
    trx: Transaction<Database>,
    cycleId: number,
    batch: Lead[],
    report: CycleReport,
  ): Promise<void> {
    const batchKey = randomUUID();
    const now = clock.now();
    // A lead claimed meanwhile by another runner throws ClaimConflict: the whole cycle's transaction
    // rolls back and nothing is half-claimed.
    const deliveryId = await createDelivery(
      trx,
      { batchKey, cycleId, kind: 'live', payloadSha256: payloadSha256(batchKey, batch), now },
      batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
    );
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.queued',
      subject: `batch:${batchKey}`,
      details: { cycle: cycleId, delivery: deliveryId, leads: pseudonyms(batch) },
    });
    report.claimed += batch.length;
    report.claimedBatches += 1;
  }

  async function dryRun(
    trx: Transaction<Database>,
    context: CycleContext,
    batch: Lead[],
    report: CycleReport,
  ) {
    const batchKey = randomUUID();
    const decision = await guard.authorize(
      {
        cycleId: context.cycleId,
        deliveryId: null,
        batchKey,
        attempt: 1,
        leads: batch,
        actionsUsedThisCycle: 0,
        actionsPerCycle: context.actionsPerCycle,
        ceiling: context.ceiling,
        healthCheckPassedAt: null,
      },
      trx,
    );
    // Anything but the guard's dry-run verdict (e.g. the mode changed): record nothing, claim nothing.
    if (decision.allowed || decision.code !== 'DRY_RUN') return;
    const now = clock.now();
    const sha = payloadSha256(batchKey, batch);
    const summary = batch.map((l) => ({
      lead: l.id,
      pseudonym: pseudonymizer.pseudonym(l.dedup_key),
      email: maskEmail(l.email),
      score: l.score,
    }));
    const deliveryId = await createDelivery(
      trx,
      { batchKey, cycleId: context.cycleId, kind: 'dry_run', payloadSha256: sha, now, summary },
      batch.map((l) => ({ id: l.id, leadKey: leadKey(l), exposure: exposure(l) })),
    );
    // The chain gets pseudonyms and scores only: it cannot be edited, so even a masked e-mail (whose
    // domain may name a small company) would outlive an erasure there. The batch's summary, which
    // `leads erase` and `archive` can clear, keeps the masked e-mail for the operator.
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.dry_run',
      subject: `batch:${batchKey}`,
      details: {
        cycle: context.cycleId,
        delivery: deliveryId,
        payloadSha256: sha,
        leads: summary.map(({ lead, pseudonym, score }) => ({ lead, pseudonym, score })),
      },
    });
    report.dryRunRecorded += batch.length;
  }

  async function recordOutcome(
    trx: Transaction<Database>,
    context: CycleContext,
    sent: Authorized,
    outcome: SendOutcome,
    report: CycleReport,
  ) {
    const { delivery, leads, attempt } = sent;
    const now = clock.now();
    const ids = leads.map((l) => l.id);
    const subject = `batch:${delivery.batch_key}`;
    const status = outcome.status ?? null;
    const verdict = decideOutcome(
      { ...outcome, tlsVersionRefused: tlsVersionRefused(outcome) },
      {
        failedAnswers: delivery.failed_answers,
        unanswered: delivery.unanswered,
        lastOutcome: delivery.last_outcome,
      },
      { maxRetries, backoffSeconds: policy.backoffSeconds },
    );
    if (verdict.kind === 'tls_refused') {
      // Nothing was sent: not a failure of the partner's service but one it cannot be spoken to with.
      await refuseOldTls(trx, report, verdict.reason, 'leads');
      await setDeliveryState(trx, delivery.id, {
        state: 'retry_wait',
        now,
        nextAttemptAt: now,
        attemptsDelta: -1,
      });
      return;
    }
    if ((outcome.kind === 'retryable' || outcome.kind === 'permanent') && outcome.stage === 'token') {
      // No token, so the leads request never went out: nothing is known or spent about this key.
      await tokenFailedBeforeSend(trx, report, delivery, outcome, now);
      return;
    }
    // Recorded first: a rollback it triggers commits with this outcome, before any next request.
    const decision = await monitor.afterRequest(trx, {
      endpoint: 'leads',
      deliveryId: delivery.id,
      attempt,
      outcome,
    });
    if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
    // Any answer but a 429 ends a throttling run; a 429 (or a Retry-After) holds every request.
    if (status !== null && status !== 429) await endThrottling(trx, now);
    if (verdict.kind === 'retry' && verdict.partnerWaitMs !== null) {
      await holdPartner(trx, report, verdict.partnerWaitMs, verdict.counts === 'throttled', now);
    }
    if (verdict.kind === 'exported') {
      await audit.append(trx, {
        actor: 'engine',
        action: 'batch.accepted',
        subject,
        details: { delivery: delivery.id, attempt, status: outcome.status, leads: pseudonyms(leads) },
      });
      await setDeliveryState(trx, delivery.id, {
        state: 'accepted',
        now,
        nextAttemptAt: null,
        lastStatus: outcome.status ?? null,
        lastOutcome: 'accepted',
        partnerMayHave: false,
      });
      await setLeadsState(trx, ids, { state: 'exported', reason: null, now, exported: true });
      report.accepted += leads.length;
      report.acceptedBatches += 1;
      return;
    }
    const message = 'message' in outcome ? outcome.message : '';
    if (verdict.kind === 'retry') {
      await audit.append(trx, {
        actor: 'engine',
        action: 'batch.retry_scheduled',
        subject,
        details: {
          delivery: delivery.id,
          attempt,
          status,
          outcome: outcome.kind,
          counts: verdict.counts,
          failedAnswers: delivery.failed_answers + (verdict.counts === 'failed_answer' ? 1 : 0),
          unanswered: delivery.unanswered + (verdict.counts === 'unanswered' ? 1 : 0),
          message,
          retryInMs: verdict.delayMs,
        },
      });
      await setDeliveryState(trx, delivery.id, {
        state: 'retry_wait',
        now,
        nextAttemptAt: now + verdict.delayMs,
        lastStatus: status,
        lastOutcome: verdict.counts === 'throttled' ? 'throttled' : outcome.kind,
        ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : {}),
        // Nobody answered: the partner may hold the batch from now on, whatever comes next.
        ...(verdict.counts === 'unanswered' ? { unansweredDelta: 1, partnerMayHave: true } : {}),
      });
      if (!context.retried.has(delivery.id)) {
        context.retried.add(delivery.id);
        report.retrying += leads.length;
        report.retryingBatches += 1;
      }
      return;
    }
    await quarantineBatch(trx, delivery, ids, pseudonyms(leads), {
      action: 'batch.quarantined',
      attempt,
      status,
      reason: verdict.reason,
      lastOutcome: verdict.cause === 'unanswered_spent' ? 'unanswered' : outcome.kind,
      partnerMayHave: verdict.partnerMayHaveIt,
      ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : { unansweredDelta: 1 }),
    });
    report.quarantined += leads.length;
    report.quarantinedBatches += 1;
  }

  /**
   * The client could not get a token for a batch (its token endpoint failed or answered too late): the
   * leads request never went out. The batch goes back to its queue as it was (this attempt uncounted,
   * no retry spent, nothing learnt about its key); the token failure counts for the error rate as a
   * failed token request, and sending stops for this cycle.
   */
  async function tokenFailedBeforeSend(
    trx: Transaction<Database>,
    report: CycleReport,
    delivery: Delivery,
    outcome: RetryableOutcome | PermanentOutcome,
    now: number,
  ) {
    const status = outcome.status ?? null;
    const decision = await monitor.afterRequest(trx, {
      endpoint: 'token',
      outcome: outcome.kind,
      status,
      ms: outcome.ms,
    });
    if (decision.rollback) report.halted = `rolled back: ${decision.reason}`;
    const asked = outcome.kind === 'retryable' && outcome.retryAfterMs ? outcome.retryAfterMs : null;
    if (status === 429) await holdPartner(trx, report, asked ?? THROTTLE_DEFAULT_WAIT_MS, true, now);
    else if (asked !== null) await holdPartner(trx, report, asked, false, now);
    await audit.append(trx, {
      actor: 'engine',
      action: 'partner.token_failed',
      subject: `batch:${delivery.batch_key}`,
      details: {
        delivery: delivery.id,
        status,
        message: outcome.message,
        reason: 'no token for the batch: nothing was sent, the attempt is not counted',
      },
    });
    await setDeliveryState(trx, delivery.id, {
      state: 'retry_wait',
      now,
      nextAttemptAt: now + (policy.backoffSeconds[0] ?? 1) * 1000,
      attemptsDelta: -1,
    });
    report.healthFailed = true;
  }

  /**
   * The partner asked to wait (`waitMs`): every request to it waits until then, for every runner. A
   * 429 run that has lasted THROTTLE_STORM_MS pauses outbound, with
   * a critical alert, instead of waiting on and on.
   */
  async function holdPartner(
    trx: Transaction<Database>,
    report: CycleReport,
    waitMs: number,
    throttled: boolean,
    now: number,
  ) {
    const current = await readPartnerHold(trx);
    if (!throttled) {
      const until = now + Math.min(waitMs, MAX_PARTNER_WAIT_MS);
      await writePartnerHold(trx, { ...current, holdUntil: Math.max(current.holdUntil, until) }, now);
      return;
    }
    const next = throttleDecision(current, now, waitMs);
    // Paused, the run is over: after a resume the next 429 starts a new one.
    await writePartnerHold(trx, next.storm ? { ...next.state, throttledSince: null } : next.state, now);
    if (!next.storm) return;
    const seconds = Math.round(next.heldForMs / 1000);
    const reason =
      waitMs > MAX_PARTNER_WAIT_MS
        ? `the partner answered 429 (rate limited) asking to wait ${Math.round(waitMs / 1000)} s, longer than the ${MAX_PARTNER_WAIT_MS / 1000} s outbound is held for: outbound paused, the queue is kept; resume when the partner allows`
        : `the partner has answered only 429 (rate limited) for ${seconds} s (storm threshold ${THROTTLE_STORM_MS / 1000} s): outbound paused, the queue is kept; resume when the partner allows`;
    const change = await changeMode(
      trx,
      { audit, alerts, clock },
      { command: 'pause', actor: 'monitor', reason },
    );
    if (change.kind !== 'change') return;
    report.halted = `paused: ${reason}`;
    await alerts.raise(trx, {
      event: 'throttle_storm',
      message: `THROTTLED: ${reason}`,
      details: { heldForSeconds: seconds, thresholdSeconds: THROTTLE_STORM_MS / 1000 },
    });
  }

  /**
   * The partner does not offer TLS 1.2 or newer: nothing can be sent to it, and it is not an outage
   * (nothing counts for the error rate). Outbound is paused with a critical alert, audited once.
   */
  async function refuseOldTls(
    trx: Transaction<Database>,
    report: CycleReport,
    reason: string,
    endpoint: 'health' | 'token' | 'leads',
  ) {
    const why = `${reason}; the policy needs TLS 1.2 or newer: outbound paused, the queue is kept`;
    const change = await changeMode(
      trx,
      { audit, alerts, clock },
      { command: 'pause', actor: 'engine', reason: why },
    );
    report.halted = `paused: ${why}`;
    if (change.kind !== 'change') return;
    await audit.append(trx, {
      actor: 'engine',
      action: 'partner.tls_refused',
      details: { endpoint, reason },
    });
    await alerts.raise(trx, {
      event: 'partner_tls_refused',
      message: `REFUSED: ${why}`,
      details: { endpoint },
    });
  }

  /** The guard refused a queued batch for its leads: stale ones expire, the rest go back to pending. */
  /** Quarantine a batch and its leads, with its audit entry and an ops alert (no PII), in one commit. */
  async function quarantineBatch(
    trx: Transaction<Database>,
    delivery: Delivery,
    leadIds: number[],
    audited: { lead: number; pseudonym: string }[],
    why: {
      action: import('../audit/index.js').AuditAction;
      attempt: number;
      status: number | null;
      reason: string;
      lastOutcome: string;
      /** The last request of this key got no answer: a release replays the key first. */
      partnerMayHave?: boolean;
      failedAnswersDelta?: number;
      unansweredDelta?: number;
    },
  ) {
    const now = clock.now();
    await audit.append(trx, {
      actor: 'engine',
      action: why.action,
      subject: `batch:${delivery.batch_key}`,
      details: {
        delivery: delivery.id,
        attempt: why.attempt,
        status: why.status,
        reason: why.reason,
        partnerMayHave: why.partnerMayHave === true || delivery.partner_may_have === 1,
        leads: audited,
      },
    });
    await setDeliveryState(trx, delivery.id, {
      state: 'quarantined',
      now,
      nextAttemptAt: null,
      lastStatus: why.status,
      lastOutcome: why.lastOutcome,
      // Never cleared here: only an accepted answer says the partner does not hold it unrecorded.
      partnerMayHave: why.partnerMayHave === true || delivery.partner_may_have === 1,
      ...(why.failedAnswersDelta ? { failedAnswersDelta: why.failedAnswersDelta } : {}),
      ...(why.unansweredDelta ? { unansweredDelta: why.unansweredDelta } : {}),
    });
    await setLeadsState(trx, leadIds, { state: 'quarantined', reason: why.reason, now });
    await alerts.raise(trx, {
      event: 'quarantine',
      message: `batch of ${leadIds.length} lead(s) quarantined: ${why.reason}`,
      details: {
        delivery: delivery.id,
        batchKey: delivery.batch_key,
        leads: leadIds.length,
        status: why.status,
      },
    });
  }

  /**
   * The guard refused a queued batch. Never attempted: stale leads expire, the rest go back to the
   * queue (no key of theirs ever reached the partner). Attempted before: the partner may hold the
   * batch, so its leads must never go out under another batch key: they are quarantined, with an
   * alert, for an operator to check with the partner.
   */
  async function refuseDelivery(
    trx: Transaction<Database>,
    delivery: Delivery,
    leads: Lead[],
    ineligible: number[],
    reason: string,
  ) {
    const now = clock.now();
    const inFlight = leads.filter((l) => l.state === 'in_flight');
    if (delivery.attempts > 0) {
      const why = `refused before a retry (${reason}); already attempted under batch ${delivery.batch_key}: check with the partner before releasing`;
      await quarantineBatch(
        trx,
        delivery,
        inFlight.map((l) => l.id),
        pseudonyms(leads),
        {
          action: 'batch.quarantined',
          attempt: delivery.attempts,
          status: null,
          reason: why,
          lastOutcome: 'refused',
          // Its last request went unanswered: the partner may hold it.
          partnerMayHave: delivery.partner_may_have === 1 || delivery.unanswered > 0,
        },
      );
      return;
    }
    const cutoff = freshnessCutoff(policy.maxLeadAgeDays, now);
    const stale = inFlight.filter((l) => ineligible.includes(l.id) && l.source_ts < cutoff).map((l) => l.id);
    const back = inFlight.filter((l) => !stale.includes(l.id)).map((l) => l.id);
    await audit.append(trx, {
      actor: 'engine',
      action: 'batch.refused',
      subject: `batch:${delivery.batch_key}`,
      details: { delivery: delivery.id, reason, expired: stale, returnedToPending: back },
    });
    await setDeliveryState(trx, delivery.id, {
      state: 'refused',
      now,
      nextAttemptAt: null,
      lastOutcome: 'refused',
    });
    await setLeadsState(trx, stale, {
      state: 'expired',
      reason: `older than ${policy.maxLeadAgeDays} days before it could be sent`,
      now,
    });
    await setLeadsState(trx, back, { state: 'pending', reason: null, now });
    for (const id of [...stale, ...back]) await releaseFromDeliveries(trx, id);
  }

  return { recover, runCycle };
}

/** A cycle's report before it has done anything. */
export function emptyCycleReport(kind: CycleKind): CycleReport {
  return {
    cycleId: null,
    kind,
    idleReason: null,
    rampStage: null,
    ceiling: 0,
    limitedBy: 'leads_per_cycle',
    boundBy: 'leads_per_cycle',
    expired: 0,
    claimed: 0,
    claimedBatches: 0,
    dryRunRecorded: 0,
    actions: 0,
    accepted: 0,
    acceptedBatches: 0,
    retrying: 0,
    retryingBatches: 0,
    quarantined: 0,
    quarantinedBatches: 0,
    refused: 0,
    healthFailed: false,
    halted: null,
  };
}

/**
 * What bound the leads claimed this cycle (the cycle line and `cycle.summary` name it): the actions
 * left, leads already waiting in batches, the day's budget, the ceiling's own limit (leads per cycle,
 * ramp stage, daily cap), or the queue itself when it held fewer eligible leads than allowed.
 */
export function claimBound(facts: {
  ceiling: number;
  limitedBy: string;
  outstanding: number;
  room: number;
  claimLimit: number;
  taken: number;
  packed: number;
  skippedForBudget: number;
  stopped: boolean;
}): string {
  if (facts.stopped) return 'stopping';
  if (facts.ceiling === 0) return facts.limitedBy;
  if (facts.room === 0) return 'actions_per_cycle';
  if (facts.claimLimit === 0) return 'waiting_batches';
  if (facts.packed < facts.taken) return 'actions_per_cycle';
  if (facts.taken < facts.claimLimit) return facts.skippedForBudget > 0 ? 'daily_budget' : 'queue';
  if (facts.claimLimit < facts.ceiling - facts.outstanding) return 'actions_per_cycle';
  return facts.limitedBy;
}

/** Guard refusals that stop the cycle's sending (as opposed to refusing one batch). */
const HALTING: ReadonlySet<string> = new Set([
  'DRY_RUN',
  'MODE_NOT_LIVE',
  'GATES_NOT_CLEARED',
  'NO_PARTNER',
  'PLAIN_HTTP',
]);

interface CycleContext {
  cycleId: number;
  ceiling: number;
  actionsPerCycle: number;
  /** Requests authorised so far this cycle (retries included). */
  actions: number;
  healthPassedAt: number | null;
  /** Deliveries given a retry this cycle (each counted once in the report). */
  retried: Set<number>;
  finished?: boolean;
}

/** The outbound client marks a partner that does not offer TLS 1.2 or newer (nothing was sent). */
function tlsVersionRefused(outcome: SendOutcome | HealthResult | TokenOutcome): boolean {
  return 'tlsVersionRefused' in outcome && outcome.tlsVersionRefused === true;
}

/** A delivery the guard allowed, already marked `sending`, with the leads it carries. */
interface Authorized {
  delivery: Delivery;
  leads: Lead[];
  attempt: number;
}
