import type { CeilingLimit } from '../policy/index.js';
import type { CycleKind, Delivery, Lead } from '../store/index.js';
import type { HealthResult, SendOutcome, TokenOutcome } from './partner-port.js';

/**
 * What one cycle did: the same data goes to the terminal, the cycles table and the audit chain. A
 * live cycle sends, a dry run only records what it would have sent, an idle one did nothing and
 * says why; every kind carries the same figures (those it did not use stay 0).
 */
export type CycleReport = LiveCycleReport | DryRunCycleReport | IdleCycleReport;
export type LiveCycleReport = { kind: 'live'; idleReason: null } & CycleFigures;
export type DryRunCycleReport = { kind: 'dry_run'; idleReason: null } & CycleFigures;
/** `idleReason`: why the cycle did nothing. */
export type IdleCycleReport = { kind: 'idle'; idleReason: string } & CycleFigures;

/**
 * What bound the leads claimed this cycle: the ceiling's own limit, or before it the actions left
 * this cycle, leads already waiting in batches, the day's budget, the queue, or a stop.
 */
export type ClaimBound =
  | CeilingLimit
  | 'actions_per_cycle'
  | 'waiting_batches'
  | 'daily_budget'
  | 'queue'
  | 'stopping';

/**
 * A cycle's figures, whatever its kind: one shape, as the cycles table, the `cycle.summary` audit
 * entry and the cycle line carry them. An idle cycle keeps what it had counted before its reason
 * (expired leads, a failed health check, a halt); the counts a kind does not use stay 0.
 */
export interface CycleFigures {
  cycleId: number | null;
  rampStage: number | null;
  ceiling: number;
  /** The smallest of the policy's ceilings: leads per cycle, the ramp stage or the daily cap. */
  limitedBy: CeilingLimit;
  /**
   * What bound the leads claimed this cycle: the ceiling's limit, the day's budget, the actions per
   * cycle, leads already waiting in batches, or the queue (no more eligible leads).
   */
  boundBy: ClaimBound;
  expired: number;
  /** Leads claimed into new batches this cycle, and those batches. */
  claimed: number;
  claimedBatches: number;
  dryRunRecorded: number;
  actions: number;
  /** Leads (and batches) accepted by the partner this cycle (a lead it already held counts: it is exported). */
  accepted: number;
  acceptedBatches: number;
  /** Of `accepted`, the leads the partner answered were duplicates (it held them already). */
  duplicates: number;
  /** Leads the partner refused in a batch it answered (quarantined with its reason; in `quarantined` too). */
  refusedByPartner: number;
  /** Leads the partner profile cannot write (a required value missing): quarantined before any batch. */
  setAside: number;
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

/** A cycle's report before it has done anything (a cycle becomes idle only with its reason: `idleReport`). */
export function emptyCycleReport(kind: Exclude<CycleKind, 'idle'>): CycleReport {
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
    duplicates: 0,
    refusedByPartner: 0,
    setAside: 0,
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
  limitedBy: CeilingLimit;
  outstanding: number;
  room: number;
  claimLimit: number;
  taken: number;
  packed: number;
  skippedForBudget: number;
  stopped: boolean;
}): ClaimBound {
  if (facts.stopped) return 'stopping';
  if (facts.ceiling === 0) return facts.limitedBy;
  if (facts.room === 0) return 'actions_per_cycle';
  if (facts.claimLimit === 0) return 'waiting_batches';
  if (facts.packed < facts.taken) return 'actions_per_cycle';
  if (facts.taken < facts.claimLimit) return facts.skippedForBudget > 0 ? 'daily_budget' : 'queue';
  if (facts.claimLimit < facts.ceiling - facts.outstanding) return 'actions_per_cycle';
  return facts.limitedBy;
}

/** The report of a cycle that did nothing, for `reason`, with the figures it had so far. */
export function idleReport(report: CycleReport, reason: string): IdleCycleReport {
  // Spread first: the summary's fields keep their order (kind and idleReason near the start).
  return { ...report, kind: 'idle', idleReason: reason };
}

/** Guard refusals that stop the cycle's sending (as opposed to refusing one batch). */
export const HALTING: ReadonlySet<string> = new Set([
  'DRY_RUN',
  'MODE_NOT_LIVE',
  'GATES_NOT_CLEARED',
  'NO_PARTNER',
  'PLAIN_HTTP',
]);

/** One cycle's running state, shared by its steps. */
export interface CycleContext {
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
export function tlsVersionRefused(outcome: SendOutcome | HealthResult | TokenOutcome): boolean {
  return 'tlsVersionRefused' in outcome && outcome.tlsVersionRefused === true;
}

/** A delivery the guard allowed, already marked `sending`, with the leads it carries. */
export interface Authorized {
  delivery: Delivery;
  leads: Lead[];
  attempt: number;
}
