import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  type AnsweredOutcome,
  type CycleKind,
  DELIVERY_EVENT_KINDS,
  DELIVERY_STATES,
  type DeliveryEvent,
  type DeliveryEventKind,
  type DeliveryFacts,
  type DeliveryMove,
  type DeliveryState,
  type DeliveryTransition,
  MAX_UNANSWERED_PER_KEY,
  planDeliveryTransition,
} from '../../src/policy/index.js';
import type {
  CycleKind as StoredCycleKind,
  DeliveryState as StoredDeliveryState,
} from '../../src/store/index.js';

const rules = { maxRetries: 3, backoffSeconds: [1, 2, 4] };

function facts(state: DeliveryState, more: Partial<DeliveryFacts> = {}): DeliveryFacts {
  return {
    state,
    batchKey: 'b-1',
    attempts: state === 'queued' ? 0 : 1,
    failedAnswers: 0,
    unanswered: 0,
    lastOutcome: null,
    partnerMayHave: state === 'quarantined',
    ...more,
  };
}

/** One event of each kind, as the engine raises it. */
const EVENTS: Record<DeliveryEventKind, DeliveryEvent> = {
  authorized: { kind: 'authorized' },
  held_back: { kind: 'held_back', from: 'retry_wait' },
  answered: { kind: 'answered', outcome: { kind: 'accepted', status: 200 }, rules },
  interrupted: { kind: 'interrupted' },
  refused: { kind: 'refused', reason: 'lead 7 is older than 14 days' },
  released: { kind: 'released' },
};

function move(t: DeliveryTransition): DeliveryMove {
  if (t.kind !== 'move') throw new Error(`expected a move, got: ${t.reason}`);
  return t;
}

describe('the delivery lifecycle: every state × every event', () => {
  it("the outbox stores exactly the lifecycle's states, and the cycles table its cycle kinds", () => {
    expectTypeOf<StoredDeliveryState>().toEqualTypeOf<DeliveryState>();
    expectTypeOf<StoredCycleKind>().toEqualTypeOf<CycleKind>();
  });
  // The state each event leads to from each state ('—': it cannot happen there).
  const table: Record<DeliveryEventKind, Record<DeliveryState, DeliveryState | '—'>> = {
    authorized: {
      queued: 'sending',
      sending: '—',
      retry_wait: 'sending',
      accepted: '—',
      quarantined: '—',
      refused: '—',
      dry_run: '—',
    },
    held_back: {
      queued: '—',
      sending: 'retry_wait',
      retry_wait: '—',
      accepted: '—',
      quarantined: '—',
      refused: '—',
      dry_run: '—',
    },
    answered: {
      queued: '—',
      sending: 'accepted',
      retry_wait: '—',
      accepted: '—',
      quarantined: '—',
      refused: '—',
      dry_run: '—',
    },
    interrupted: {
      queued: '—',
      sending: 'retry_wait',
      retry_wait: '—',
      accepted: '—',
      quarantined: '—',
      refused: '—',
      dry_run: '—',
    },
    refused: {
      queued: 'refused',
      sending: '—',
      retry_wait: 'quarantined',
      accepted: '—',
      quarantined: '—',
      refused: '—',
      dry_run: '—',
    },
    released: {
      queued: '—',
      sending: '—',
      retry_wait: '—',
      accepted: '—',
      quarantined: 'retry_wait',
      refused: '—',
      dry_run: '—',
    },
  };
  it('names every event kind and every state', () => {
    expect(Object.keys(table).sort()).toEqual([...DELIVERY_EVENT_KINDS].sort());
    for (const row of Object.values(table))
      expect(Object.keys(row).sort()).toEqual([...DELIVERY_STATES].sort());
  });
  for (const kind of DELIVERY_EVENT_KINDS) {
    for (const state of DELIVERY_STATES) {
      const expected = table[kind][state];
      it(`${kind} from ${state} → ${expected}`, () => {
        const t = planDeliveryTransition(facts(state), EVENTS[kind]);
        if (expected === '—') {
          expect(t.kind).toBe('invalid');
          expect(t.reason).toContain(state);
        } else {
          expect(move(t).to).toBe(expected);
          expect(move(t).reason.length).toBeGreaterThan(0);
        }
      });
    }
  }
  it('final states take no event at all', () => {
    for (const state of ['accepted', 'refused', 'dry_run'] as const) {
      for (const kind of DELIVERY_EVENT_KINDS) {
        expect(planDeliveryTransition(facts(state), EVENTS[kind]).kind).toBe('invalid');
      }
    }
  });
});

describe('authorising and holding back', () => {
  it('an authorised request counts an attempt; one held back before it started uncounts it', () => {
    expect(move(planDeliveryTransition(facts('queued'), { kind: 'authorized' }))).toMatchObject({
      to: 'sending',
      attemptsDelta: 1,
    });
    for (const from of ['queued', 'retry_wait'] as const) {
      expect(move(planDeliveryTransition(facts('sending'), { kind: 'held_back', from }))).toMatchObject({
        to: from,
        attemptsDelta: -1,
      });
    }
  });
});

describe('an answer (README "Delivery outcomes")', () => {
  const answer = (outcome: AnsweredOutcome, more: Partial<DeliveryFacts> = {}) =>
    move(planDeliveryTransition(facts('sending', more), { kind: 'answered', outcome, rules }));

  it('accepted: exported, the partner holds it recorded', () => {
    expect(answer({ kind: 'accepted', status: 201 }, { partnerMayHave: true })).toMatchObject({
      to: 'accepted',
      delayMs: null,
      lastStatus: 201,
      lastOutcome: 'accepted',
      partnerMayHave: false,
    });
  });

  it('a failed answer spends a retry and backs off 1 s, 2 s, 4 s, then quarantines', () => {
    const delays = [0, 1, 2].map(
      (failedAnswers) =>
        answer({ kind: 'retryable', status: 503, message: 'down' }, { failedAnswers }).delayMs,
    );
    expect(delays).toEqual([1000, 2000, 4000]);
    expect(answer({ kind: 'retryable', status: 500 })).toMatchObject({
      to: 'retry_wait',
      failedAnswersDelta: 1,
      lastStatus: 500,
      lastOutcome: 'retryable',
    });
    const spent = answer({ kind: 'retryable', status: 500, message: 'x' }, { failedAnswers: 3 });
    expect(spent).toMatchObject({ to: 'quarantined', failedAnswersDelta: 1, partnerMayHave: false });
    expect(spent.reason).toContain('retries spent');
  });

  it('no answer replays the key (no retry spent) until the bound, then quarantines as one the partner may have', () => {
    expect(answer({ kind: 'retryable', message: 'timeout' })).toMatchObject({
      to: 'retry_wait',
      unansweredDelta: 1,
      partnerMayHave: true,
      lastStatus: null,
    });
    expect(answer({ kind: 'retryable', status: 502 })).toMatchObject({
      to: 'retry_wait',
      unansweredDelta: 1,
    });
    expect(
      answer({ kind: 'retryable', message: 'reset' }, { unanswered: MAX_UNANSWERED_PER_KEY - 1 }),
    ).toMatchObject({
      to: 'quarantined',
      unansweredDelta: 1,
      partnerMayHave: true,
      lastOutcome: 'unanswered',
    });
  });

  it('a 429 spends nothing and holds the partner for its Retry-After', () => {
    const t = answer({ kind: 'retryable', status: 429, retryAfterMs: 7000 });
    expect(t).toMatchObject({ to: 'retry_wait', delayMs: 7000, lastOutcome: 'throttled' });
    expect(t.failedAnswersDelta).toBeUndefined();
    expect(t.unansweredDelta).toBeUndefined();
    expect(t.verdict).toMatchObject({ kind: 'retry', counts: 'throttled', partnerWaitMs: 7000 });
  });

  it('a 401 is resent at once; a second 401 in a row and any other 4xx quarantine', () => {
    expect(answer({ kind: 'auth', status: 401 })).toMatchObject({ to: 'retry_wait', delayMs: 0 });
    expect(answer({ kind: 'auth', status: 401 }, { lastOutcome: 'auth' })).toMatchObject({
      to: 'quarantined',
      lastOutcome: 'auth',
    });
    expect(answer({ kind: 'permanent', status: 422 })).toMatchObject({
      to: 'quarantined',
      partnerMayHave: false,
    });
    expect(answer({ kind: 'permanent', status: 422 }, { unanswered: 1 })).toMatchObject({
      to: 'quarantined',
      partnerMayHave: true,
    });
  });

  it('no token, or a partner without TLS 1.2: nothing was sent, the attempt is uncounted', () => {
    expect(answer({ kind: 'retryable', status: 503, stage: 'token' })).toMatchObject({
      to: 'retry_wait',
      delayMs: 1000,
      attemptsDelta: -1,
      notSent: 'token_failed',
    });
    expect(answer({ kind: 'permanent', stage: 'token' })).toMatchObject({ notSent: 'token_failed' });
    const tls = answer({ kind: 'permanent', tlsVersionRefused: true, message: 'TLS 1.0 only' });
    expect(tls).toMatchObject({ to: 'retry_wait', delayMs: 0, attemptsDelta: -1, notSent: 'tls_refused' });
    expect(tls.lastOutcome).toBeUndefined();
  });
});

describe('recovery, refusal and release', () => {
  it('a batch caught mid-request is asked again under its key, until the bound', () => {
    expect(
      move(
        planDeliveryTransition(facts('sending', { unanswered: 2 }), {
          kind: 'interrupted',
          maxUnansweredPerKey: 3,
        }),
      ).to,
    ).toBe('quarantined');
    expect(move(planDeliveryTransition(facts('sending'), { kind: 'interrupted' }))).toMatchObject({
      to: 'retry_wait',
      delayMs: 0,
      unansweredDelta: 1,
      partnerMayHave: true,
      lastOutcome: 'interrupted',
    });
    const spent = move(
      planDeliveryTransition(facts('sending', { unanswered: MAX_UNANSWERED_PER_KEY - 1 }), {
        kind: 'interrupted',
      }),
    );
    expect(spent).toMatchObject({ to: 'quarantined', partnerMayHave: true });
    expect(spent.reason).toContain('a release replays this key');
  });

  it('refused: never attempted goes back (refused); attempted before is quarantined for a check', () => {
    const event = { kind: 'refused', reason: 'too large' } as const;
    expect(move(planDeliveryTransition(facts('queued'), event))).toMatchObject({
      to: 'refused',
      reason: 'too large',
      lastOutcome: 'refused',
    });
    const attempted = move(planDeliveryTransition(facts('retry_wait', { unanswered: 1 }), event));
    expect(attempted).toMatchObject({ to: 'quarantined', partnerMayHave: true });
    expect(attempted.reason).toContain('already attempted under batch b-1');
  });

  it('a release replays the key of a batch the partner may have, with fresh counts', () => {
    expect(move(planDeliveryTransition(facts('quarantined'), { kind: 'released' }))).toMatchObject({
      to: 'retry_wait',
      delayMs: 0,
      resetOutcomeCounts: true,
      lastOutcome: 'released',
    });
    expect(
      planDeliveryTransition(facts('quarantined', { partnerMayHave: false }), { kind: 'released' }).kind,
    ).toBe('invalid');
  });
});
