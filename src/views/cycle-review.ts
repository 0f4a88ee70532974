import type { Config } from '../config/index.js';
import { type OperatorActions, OperatorError } from '../engine/index.js';
import type { AttributeValue } from '../partner/index.js';
import { maskAttributes, maskEmail, maskName, type Pseudonymizer } from '../pii/index.js';
import { deliveryLeads, lastLiveCycle, liveDeliveriesOfCycle, type Store } from '../store/index.js';
import type { RunState } from './run-state.js';

/** What the review reads and the confirmation does, of an open installation (an opened app is one). */
export interface CycleReviewDeps {
  readonly store: Store;
  /** The partner profile in force: which of a lead's attributes are not personal data. */
  readonly config: Config;
  runState(): Promise<RunState>;
  pseudonymizer(): Pseudonymizer;
  operatorActions(actor?: string): OperatorActions;
}

/** One lead of the batch under review, as anyone but the partner may see it: masked. */
export interface ReviewedLead {
  id: number;
  pseudonym: string;
  name: string;
  email: string;
  score: number;
  /** Its attributes: personal ones (and any the profile does not declare) masked; none once erased. */
  attributes: Record<string, AttributeValue>;
  /** Where it ended: exported (accepted by the partner), quarantined (refused), in flight… */
  state: string;
  reason: string | null;
}

/** A batch the cycle sent, with the partner's answer. */
export interface ReviewedBatch {
  batchKey: string;
  state: string;
  attempts: number;
  /** The partner's last HTTP status, and the outcome recorded for it. */
  partnerStatus: number | null;
  partnerAnswer: string | null;
  leads: ReviewedLead[];
}

/**
 * Ramp stage 1's review (policy §5 step 4: each cycle verified by hand): the live cycle awaiting an
 * operator's confirmation with what it sent and what the partner answered; or, when none awaits,
 * what the ramp is waiting for.
 */
export type CycleReview =
  | {
      kind: 'awaiting';
      cycle: {
        id: number;
        startedAt: string;
        finishedAt: string | null;
        rampStage: number | null;
        claimed: number;
      };
      batches: ReviewedBatch[];
    }
  | { kind: 'nothing'; waitingFor: string };

export async function reviewCycle(app: CycleReviewDeps): Promise<CycleReview> {
  const { store } = app;
  const [last, run] = await Promise.all([lastLiveCycle(store.db), app.runState()]);
  const ramp = run.ramp;
  if (last === undefined) {
    return {
      kind: 'nothing',
      waitingFor:
        run.goLiveAt === null
          ? 'no live cycle yet: the ramp starts with the first live cycle (Phase 4, gates verified, mode live); nothing to confirm'
          : 'no live cycle has sent anything yet: nothing to confirm',
    };
  }
  if (last.confirmed_at !== null) {
    const stage =
      ramp === null
        ? 'the service is not live'
        : ramp.confirmEachCycle
          ? `ramp stage ${ramp.stage}: the next live cycle (at most ${ramp.ceiling} lead) runs, then waits for its review`
          : `ramp stage ${ramp.stage} (ceiling ${ramp.ceiling}) asks no confirmation`;
    return {
      kind: 'nothing',
      waitingFor: `cycle ${last.id} was confirmed by ${last.confirmed_by} at ${new Date(last.confirmed_at).toISOString()}; ${stage}`,
    };
  }
  const batches = await liveDeliveriesOfCycle(store.db, last.id);
  const pseudonymizer = app.pseudonymizer();
  const declared = app.config.partner.profile.profile.attributes ?? [];
  return {
    kind: 'awaiting',
    cycle: {
      id: last.id,
      startedAt: new Date(last.started_at).toISOString(),
      finishedAt: last.finished_at === null ? null : new Date(last.finished_at).toISOString(),
      rampStage: last.ramp_stage,
      claimed: last.claimed,
    },
    batches: await Promise.all(
      batches.map(async (b) => ({
        batchKey: b.batch_key,
        state: b.state,
        attempts: b.attempts,
        partnerStatus: b.last_status,
        partnerAnswer: b.last_outcome,
        leads: (await deliveryLeads(store.db, b.id)).map((l) => ({
          id: l.id,
          pseudonym: pseudonymizer.pseudonym(l.dedup_key),
          name: l.erased_at === null ? maskName(l.name) : '(erased)',
          email: l.erased_at === null ? maskEmail(l.email) : '(erased)',
          score: l.score,
          attributes: maskAttributes(l.erased_at === null ? l.attributes : null, declared),
          state: l.state,
          reason: l.state_reason,
        })),
      })),
    ),
  };
}

/**
 * Confirm the named cycle after its review: only the live cycle awaiting confirmation, once it has
 * finished (the partner's answer is in). A stale or wrong number is refused, naming the right one.
 */
export async function confirmReviewedCycle(
  app: CycleReviewDeps,
  cycleId: number,
  actor?: string,
): Promise<{ confirmed: number; review: CycleReview }> {
  const review = await reviewCycle(app);
  if (review.kind === 'nothing') {
    throw new OperatorError('NOTHING_TO_CONFIRM', `nothing to confirm: ${review.waitingFor}`);
  }
  if (review.cycle.id !== cycleId) {
    throw new OperatorError(
      'ALREADY_CONFIRMED',
      `cycle ${cycleId} is not the cycle awaiting confirmation: cycle ${review.cycle.id} is (review it with \`valhalla cycle confirm\`)`,
    );
  }
  if (review.cycle.finishedAt === null) {
    throw new OperatorError(
      'NOTHING_TO_CONFIRM',
      `cycle ${cycleId} is still running: its partner answer is not in yet; review it once it has finished`,
    );
  }
  const { confirmed } = await app.operatorActions(actor).confirmCycle(cycleId);
  return { confirmed, review };
}
