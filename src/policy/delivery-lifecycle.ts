/**
 * A delivery's lifecycle (README "Delivery outcomes", "exactly once"): the states of a batch in the
 * outbox and, for each thing that can happen to it, the next state, when it is tried again and why.
 * Pure, like `planModeChange`: the engine records what this decides and nothing else moves a batch.
 *
 *   queued ──authorized──▶ sending ──answered──▶ accepted | retry_wait | quarantined
 *   retry_wait ──authorized──▶ sending          sending ──held_back──▶ queued | retry_wait (uncounted)
 *   sending ──interrupted (recovery)──▶ retry_wait | quarantined
 *   queued | retry_wait ──refused (guard)──▶ refused (never attempted) | quarantined (attempted)
 *   quarantined ──released (the partner may have it)──▶ retry_wait (its key replayed)
 *
 * `accepted`, `refused` and `dry_run` are final; a quarantined batch the partner cannot have stays
 * quarantined (its leads are released one by one into new batches).
 */
import {
  decideInterrupted,
  decideOutcome,
  type OutcomeRules,
  type OutcomeVerdict,
} from './delivery-outcome.js';

/** Every state a delivery (a batch in the outbox) can be in. */
export const DELIVERY_STATES = [
  'queued',
  'sending',
  'retry_wait',
  'accepted',
  'quarantined',
  'refused',
  'dry_run',
] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** Every kind of cycle: one that sends, one that only records (dry run), one that did nothing. */
export const CYCLE_KINDS = ['live', 'dry_run', 'idle'] as const;
export type CycleKind = (typeof CYCLE_KINDS)[number];

/** For a `switch` that must name every member of a union: fails to compile when one is missing. */
export function assertNever(value: never, what: string): never {
  throw new Error(`unexpected ${what}: ${String(value)}`);
}

/** What the lifecycle needs to know of a delivery. */
export interface DeliveryFacts {
  state: DeliveryState;
  batchKey: string;
  /** Requests authorised for this key so far (the one in flight included). */
  attempts: number;
  failedAnswers: number;
  unanswered: number;
  lastOutcome: string | null;
  /** A request of this key went unanswered: the partner may hold the batch. */
  partnerMayHave: boolean;
}

/** The states a batch is sent from. */
export type DueState = 'queued' | 'retry_wait';

/** The request's outcome as the engine saw it (`decideOutcome`'s facts plus where it stopped). */
export interface AnsweredOutcome {
  kind: 'accepted' | 'retryable' | 'auth' | 'permanent';
  status?: number | undefined;
  retryAfterMs?: number | null | undefined;
  tlsVersionRefused?: boolean | undefined;
  message?: string;
  /** `token`: the token request failed, so the leads request never went out. */
  stage?: 'token' | 'batch' | undefined;
}

/** What can happen to a delivery. */
export type DeliveryEvent =
  /** The guard allowed a request of this batch. */
  | { kind: 'authorized' }
  /** Authorised, but the request never started (the mode left `live`): back where it was, uncounted. */
  | { kind: 'held_back'; from: DueState }
  /** The request came back (or failed before the partner could answer it), judged under the retry rules. */
  | { kind: 'answered'; outcome: AnsweredOutcome; rules: OutcomeRules }
  /** Recovery after a crash: the batch was found mid-request. */
  | { kind: 'interrupted'; maxUnansweredPerKey?: number }
  /** The guard refused the batch for itself (its leads, its size, its content). */
  | { kind: 'refused'; reason: string }
  /** An operator released a quarantined batch the partner may have: its key is replayed. */
  | { kind: 'released' };
export type DeliveryEventKind = DeliveryEvent['kind'];
export const DELIVERY_EVENT_KINDS: readonly DeliveryEventKind[] = [
  'authorized',
  'held_back',
  'answered',
  'interrupted',
  'refused',
  'released',
];

/**
 * The change to record. Absent fields stay as they are; `delayMs` null clears the next attempt.
 * `reason` says why, in words for the audit chain (and, for a quarantine, the leads' reason).
 */
export interface DeliveryMove {
  kind: 'move';
  to: DeliveryState;
  reason: string;
  delayMs?: number | null;
  attemptsDelta?: number;
  failedAnswersDelta?: number;
  unansweredDelta?: number;
  resetOutcomeCounts?: boolean;
  partnerMayHave?: boolean;
  lastStatus?: number | null;
  lastOutcome?: string | null;
  /** For an answer: what `decideOutcome` made of it (the engine audits its counts and the partner's wait). */
  verdict?: OutcomeVerdict;
  /** The leads request never went out (no token, or a partner without TLS 1.2): nothing is known of the key. */
  notSent?: 'token_failed' | 'tls_refused';
}

export type DeliveryTransition =
  | DeliveryMove
  /** The event cannot happen in this state: the caller has a bug (nothing is recorded). */
  | { kind: 'invalid'; reason: string };

/** The next state of `delivery` after `event`. */
export function planDeliveryTransition(delivery: DeliveryFacts, event: DeliveryEvent): DeliveryTransition {
  const { state } = delivery;
  const invalid = (): DeliveryTransition => ({
    kind: 'invalid',
    reason: `a ${state} delivery cannot be ${event.kind.replace('_', ' ')}`,
  });
  switch (event.kind) {
    case 'authorized':
      if (state !== 'queued' && state !== 'retry_wait') return invalid();
      return { kind: 'move', to: 'sending', reason: 'authorised by the guard', attemptsDelta: 1 };
    case 'held_back':
      if (state !== 'sending') return invalid();
      return {
        kind: 'move',
        to: event.from,
        reason: 'outbound stopped before the request started: nothing sent, the attempt is not counted',
        attemptsDelta: -1,
      };
    case 'answered':
      if (state !== 'sending') return invalid();
      return answeredMove(delivery, event.outcome, event.rules);
    case 'interrupted': {
      if (state !== 'sending') return invalid();
      const decision = decideInterrupted(
        {
          failedAnswers: delivery.failedAnswers,
          unanswered: delivery.unanswered,
          lastOutcome: delivery.lastOutcome,
        },
        event.maxUnansweredPerKey,
      );
      if (decision.kind === 'resend') {
        return {
          kind: 'move',
          to: 'retry_wait',
          reason: 'interrupted mid-request; the partner is asked again under the same key (no retry spent)',
          delayMs: 0,
          unansweredDelta: 1,
          partnerMayHave: true,
          lastStatus: null,
          lastOutcome: 'interrupted',
        };
      }
      return {
        kind: 'move',
        to: 'quarantined',
        reason: `${decision.reason}: check batch ${delivery.batchKey} with the partner; a release replays this key`,
        delayMs: null,
        unansweredDelta: 1,
        partnerMayHave: true,
        lastStatus: null,
        lastOutcome: 'interrupted',
      };
    }
    case 'refused':
      if (state !== 'queued' && state !== 'retry_wait') return invalid();
      if (delivery.attempts > 0) {
        // Attempted before: the partner may hold the batch, so its leads never go out under another key.
        return {
          kind: 'move',
          to: 'quarantined',
          reason: `refused before a retry (${event.reason}); already attempted under batch ${delivery.batchKey}: check with the partner before releasing`,
          delayMs: null,
          lastStatus: null,
          lastOutcome: 'refused',
          // Its last request went unanswered: the partner may hold it.
          partnerMayHave: delivery.partnerMayHave || delivery.unanswered > 0,
        };
      }
      return { kind: 'move', to: 'refused', reason: event.reason, delayMs: null, lastOutcome: 'refused' };
    case 'released':
      if (state !== 'quarantined' || !delivery.partnerMayHave) return invalid();
      return {
        kind: 'move',
        to: 'retry_wait',
        reason: 'released by an operator: the partner may have it, so its key is replayed first',
        delayMs: 0,
        resetOutcomeCounts: true,
        lastOutcome: 'released',
      };
    default:
      return assertNever(event, 'delivery event');
  }
}

function answeredMove(delivery: DeliveryFacts, outcome: AnsweredOutcome, rules: OutcomeRules): DeliveryMove {
  const verdict = decideOutcome(
    outcome,
    {
      failedAnswers: delivery.failedAnswers,
      unanswered: delivery.unanswered,
      lastOutcome: delivery.lastOutcome,
    },
    rules,
  );
  const status = outcome.status ?? null;
  if (verdict.kind === 'tls_refused') {
    // Nothing was sent: not a failure of the partner's service but one it cannot be spoken to with.
    return {
      kind: 'move',
      to: 'retry_wait',
      reason: verdict.reason,
      delayMs: 0,
      attemptsDelta: -1,
      verdict,
      notSent: 'tls_refused',
    };
  }
  if ((outcome.kind === 'retryable' || outcome.kind === 'permanent') && outcome.stage === 'token') {
    // No token, so the leads request never went out: nothing is known or spent about this key.
    return {
      kind: 'move',
      to: 'retry_wait',
      reason: 'no token for the batch: nothing was sent, the attempt is not counted',
      delayMs: (rules.backoffSeconds[0] ?? 1) * 1000,
      attemptsDelta: -1,
      verdict,
      notSent: 'token_failed',
    };
  }
  switch (verdict.kind) {
    case 'exported':
      return {
        kind: 'move',
        to: 'accepted',
        reason: 'accepted by the partner',
        delayMs: null,
        lastStatus: status,
        lastOutcome: 'accepted',
        partnerMayHave: false,
        verdict,
      };
    case 'retry':
      return {
        kind: 'move',
        to: 'retry_wait',
        reason: `asked again under the same key in ${verdict.delayMs} ms (${verdict.counts.replace('_', ' ')})`,
        delayMs: verdict.delayMs,
        lastStatus: status,
        lastOutcome: verdict.counts === 'throttled' ? 'throttled' : outcome.kind,
        ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : {}),
        // Nobody answered: the partner may hold the batch from now on, whatever comes next.
        ...(verdict.counts === 'unanswered' ? { unansweredDelta: 1, partnerMayHave: true } : {}),
        verdict,
      };
    case 'quarantine':
      return {
        kind: 'move',
        to: 'quarantined',
        reason: verdict.reason,
        delayMs: null,
        lastStatus: status,
        lastOutcome: verdict.cause === 'unanswered_spent' ? 'unanswered' : outcome.kind,
        // Never cleared here: only an accepted answer says the partner does not hold it unrecorded.
        partnerMayHave: verdict.partnerMayHaveIt || delivery.partnerMayHave,
        ...(verdict.counts === 'failed_answer' ? { failedAnswersDelta: 1 } : { unansweredDelta: 1 }),
        verdict,
      };
    default:
      return assertNever(verdict, 'outcome verdict');
  }
}
