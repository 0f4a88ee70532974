import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import { type TokenGrant, TokenProvider, tokenFit, tokenLifeNeededMs } from '../../src/outbound/token.js';
import { HOUR, NOW } from '../support/world.js';

/** The hard maximum request timeout and the default margin: a request asks 40 s of a token. */
const TIMEOUT_MS = 30_000;
const MARGIN_MS = 10_000;
/** What the engine asks before a cycle: 2 × the timeout + 10 s. */
const CYCLE_ASK_MS = 2 * TIMEOUT_MS + 10_000;

/** A grant as the test scripts it; the provider's fetcher stamps when its request started. */
type Scripted =
  | Exclude<TokenGrant, { kind: 'granted' }>
  | Omit<Extract<TokenGrant, { kind: 'granted' }>, 'requestedAtMs'>;

const granted = (accessToken: string, expiresInMs: number): Scripted => ({
  kind: 'granted',
  accessToken,
  expiresInMs,
  ms: 5,
});

/**
 * A provider on a manual clock. Each grant may take `tookMs` of that clock (a slow token endpoint);
 * `hold` keeps the next fetch pending until released (to line up concurrent callers).
 */
function provider(
  grants: { grant: Scripted; tookMs?: number }[],
  options: { marginMs?: number; requestTimeoutMs?: number } = {},
) {
  const clock = new ManualClock(NOW);
  let calls = 0;
  let gate: Promise<void> | null = null;
  let open: (() => void) | null = null;
  const tokens = new TokenProvider(
    async () => {
      const next = grants[Math.min(calls, grants.length - 1)]!;
      calls++;
      if (gate) await gate;
      const requestedAtMs = clock.now();
      clock.advance(next.tookMs ?? 0);
      return next.grant.kind === 'granted' ? { ...next.grant, requestedAtMs } : next.grant;
    },
    clock,
    { marginMs: options.marginMs ?? MARGIN_MS, requestTimeoutMs: options.requestTimeoutMs ?? TIMEOUT_MS },
  );
  return {
    tokens,
    clock,
    calls: () => calls,
    hold() {
      gate = new Promise((resolve) => {
        open = resolve;
      });
    },
    release() {
      gate = null;
      open?.();
    },
  };
}

describe('tokenLifeNeededMs: the least life a token must have left to be used', () => {
  const request = TIMEOUT_MS + MARGIN_MS;
  it.each([
    // [lifetime, asked, need, why]
    [HOUR, request, request, 'a long-lived token covers the request and the margin'],
    [HOUR, CYCLE_ASK_MS + MARGIN_MS, CYCLE_ASK_MS + MARGIN_MS, 'and what a caller asks ahead'],
    [request, request, request, 'a lifetime exactly a request still covers it'],
    [60_000, CYCLE_ASK_MS + MARGIN_MS, request, 'asked more than any token lives: one request'],
    [request - 1, request, (request - 1) / 2, 'shorter than a request: the first half of its life'],
    [2000, request, 1000, 'a 2 s token: at least 1 s left'],
    [2000, CYCLE_ASK_MS + MARGIN_MS, 1000, 'the same when asked ahead: the batch after reuses it'],
    [2000, 0, 0, 'asked for nothing (any unexpired token): nothing'],
  ])('lifetime %i ms, asked %i ms: needs %d ms (%s)', (lifetime, asked, need) => {
    expect(tokenLifeNeededMs(lifetime, asked, request)).toBe(need);
  });

  it('a token fits while its life left is at least what it needs, not 1 ms less', () => {
    const held = { token: 't', expiresAtMs: NOW + 2000, lifetimeMs: 2000 };
    expect(tokenFit(held, NOW + 1000, 40_000, 40_000)).toEqual({ fits: true });
    expect(tokenFit(held, NOW + 1001, 40_000, 40_000)).toEqual({ fits: false, leftMs: 999, neededMs: 1000 });
    expect(tokenFit(held, NOW + 2500, 40_000, 40_000)).toEqual({ fits: false, leftMs: -500, neededMs: 1000 });
  });
});

describe('TokenProvider', () => {
  it('long-lived tokens: reused while they cover the request plus the margin, refreshed from 1 ms less', async () => {
    const { tokens, clock, calls } = provider([
      { grant: granted('t1', 60_000) },
      { grant: granted('t2', 60_000) },
    ]);
    expect(await tokens.get()).toEqual({
      kind: 'ok',
      token: 't1',
      expiresAtMs: NOW + 60_000,
      lifetimeMs: 60_000,
      refreshed: true,
    });
    clock.advance(20_000); // 40 s left: exactly the 30 s timeout plus the 10 s margin
    expect(await tokens.get()).toMatchObject({ token: 't1', refreshed: false });
    clock.advance(1); // 39,999 ms left
    expect(await tokens.get()).toMatchObject({
      token: 't2',
      refreshed: true,
      expiresAtMs: NOW + 20_001 + 60_000,
    });
    expect(calls()).toBe(2);
  });

  it('a caller asking ahead gets a token that covers what it asks when tokens live that long', async () => {
    const { tokens, clock, calls } = provider([
      { grant: granted('t1', HOUR) },
      { grant: granted('t2', HOUR) },
    ]);
    await tokens.get(CYCLE_ASK_MS);
    clock.advance(HOUR - CYCLE_ASK_MS - MARGIN_MS); // 80 s left: covers 70 s + 10 s
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 't1', refreshed: false });
    clock.advance(1);
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 't2', refreshed: true });
    expect(calls()).toBe(2);
  });

  it('tokens that cannot cover what is asked but can cover a request: held to one request', async () => {
    // 60 s tokens; the engine asks 70 s (+10 s) ahead: no token gives that, so it asks what the batch
    // right after will, and the batch reuses the token the health check got.
    const { tokens, clock, calls } = provider([
      { grant: granted('t1', 60_000) },
      { grant: granted('t2', 60_000) },
    ]);
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 't1', refreshed: true });
    clock.advance(20_000); // 40 s left
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 't1', refreshed: false });
    expect(await tokens.get()).toMatchObject({ token: 't1', refreshed: false });
    clock.advance(1);
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 't2', refreshed: true });
    expect(await tokens.get()).toMatchObject({ token: 't2', refreshed: false });
    expect(calls()).toBe(2);
  });

  it('2 s tokens: used in the first half of their life, refreshed right after it', async () => {
    const { tokens, clock, calls } = provider([
      { grant: granted('s1', 2000) },
      { grant: granted('s2', 2000) },
      { grant: granted('s3', 2000) },
    ]);
    // A health check asks ahead, the batch right after reuses its token: one token call, not two.
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 's1', refreshed: true });
    clock.advance(300);
    expect(await tokens.get()).toMatchObject({ token: 's1', refreshed: false });
    expect(calls()).toBe(1);
    clock.advance(700); // 1,000 ms left: half its life, still used
    expect(await tokens.get()).toMatchObject({ token: 's1', refreshed: false });
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 's1', refreshed: false });
    clock.advance(1); // 999 ms left: refreshed, never used with a few ms left
    expect(await tokens.get()).toMatchObject({ token: 's2', refreshed: true, expiresAtMs: NOW + 3001 });
    // The same for a caller asking ahead.
    clock.advance(1001);
    expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ token: 's3', refreshed: true });
    expect(calls()).toBe(3);
  });

  it('the margin does not apply to the first half of a short token: it is bigger than the token', async () => {
    const { tokens, clock, calls } = provider([{ grant: granted('s1', 2000) }], { marginMs: 10_000 });
    await tokens.get();
    clock.advance(1000);
    expect(await tokens.get()).toMatchObject({ token: 's1', refreshed: false });
    expect(calls()).toBe(1);
  });

  it('fitsRequest judges a held token as it ages, by the batch rule', async () => {
    const { tokens, clock } = provider([{ grant: granted('s1', 2000) }]);
    const current = await tokens.get();
    if (current.kind !== 'ok') throw new Error('no token');
    expect(tokens.fitsRequest(current)).toEqual({ fits: true });
    clock.advance(1000);
    expect(tokens.fitsRequest(current)).toEqual({ fits: true });
    clock.advance(53);
    expect(tokens.fitsRequest(current)).toEqual({ fits: false, leftMs: 947, neededMs: 1000 });
  });

  describe('a slow token endpoint', () => {
    it('a token granted with half its life left is used; one more ms gone and it is not', async () => {
      const inTime = provider([{ grant: granted('s1', 2000), tookMs: 1000 }]);
      expect(await inTime.tokens.get()).toMatchObject({ kind: 'ok', token: 's1', expiresAtMs: NOW + 2000 });
      const late = provider([{ grant: granted('s2', 2000), tookMs: 1001 }]);
      expect(await late.tokens.get()).toEqual({
        kind: 'retryable',
        retryAfterMs: null,
        stage: 'token',
        ms: 5,
        message:
          'the token endpoint took 1001 ms for a token of 2000 ms: 999 ms of it was left, under half its ' +
          'life (1000 ms), the least a token that cannot outlive a request (the 30000 ms timeout plus the ' +
          '10000 ms margin) is used with; the token is not used',
      });
      expect(late.calls()).toBe(1);
    });

    it('an unusable fresh token is neither used nor kept, and not fetched again in the same call', async () => {
      const { tokens, clock, calls } = provider([
        { grant: granted('s1', 2000) },
        { grant: granted('slow', 2000), tookMs: 1500 },
        { grant: granted('s3', 2000), tookMs: 200 },
      ]);
      await tokens.get();
      clock.advance(1500);
      // s1 has 500 ms left: refreshed; the fresh one comes with 500 ms left: refused, one call.
      const first = await tokens.get();
      expect(first).toMatchObject({ kind: 'retryable', stage: 'token' });
      expect(first.kind === 'retryable' && first.message).toMatch(
        /^the token endpoint took 1500 ms for a token of 2000 ms: 500 ms of it was left/,
      );
      expect(calls()).toBe(2);
      // The next call asks again (the caller backed off): the endpoint is fast again.
      expect(await tokens.get()).toMatchObject({ kind: 'ok', token: 's3', refreshed: true });
      expect(calls()).toBe(3);
    });

    it('a long-lived token that took too long to come no longer covers a request: not used', async () => {
      const { tokens } = provider([{ grant: granted('t1', 45_000), tookMs: 5001 }]);
      const outcome = await tokens.get();
      expect(outcome).toMatchObject({ kind: 'retryable', stage: 'token' });
      expect(outcome.kind === 'retryable' && outcome.message).toBe(
        'the token endpoint took 5001 ms for a token of 45000 ms: 39999 ms of it was left, under the ' +
          '40000 ms a request needs (the 30000 ms timeout plus the 10000 ms margin); the token is not used',
      );
    });

    it('a fresh token that covers a request but not what a caller asks ahead is still given', async () => {
      // Asking again could not do better: a fresh token is judged by what a batch needs.
      const { tokens } = provider([{ grant: granted('t1', 60_000), tookMs: 15_000 }]);
      expect(await tokens.get(CYCLE_ASK_MS)).toMatchObject({ kind: 'ok', token: 't1', refreshed: true });
    });
  });

  it('shares one refresh between concurrent callers, whatever each asks', async () => {
    const { tokens, calls, hold, release } = provider([{ grant: granted('t1', 60_000) }]);
    hold();
    const pending = [tokens.get(CYCLE_ASK_MS), tokens.get(), tokens.get(0)];
    release();
    const results = await Promise.all(pending);
    expect(results.map((r) => r.kind === 'ok' && r.token)).toEqual(['t1', 't1', 't1']);
    expect(calls()).toBe(1);
  });

  it('concurrent callers share the refusal of a token that came too late: one call', async () => {
    const { tokens, calls, hold, release } = provider([{ grant: granted('s1', 2000), tookMs: 1200 }]);
    hold();
    const pending = [tokens.get(), tokens.get(), tokens.get(CYCLE_ASK_MS)];
    release();
    const results = await Promise.all(pending);
    expect(results.map((r) => r.kind)).toEqual(['retryable', 'retryable', 'retryable']);
    expect(calls()).toBe(1);
  });

  it('invalidates only the token the partner refused; a fresh one replaces it', async () => {
    const { tokens, calls } = provider([{ grant: granted('t1', 60_000) }, { grant: granted('t2', 60_000) }]);
    await tokens.get(0);
    tokens.invalidate('some-older-token');
    expect(await tokens.get(0)).toMatchObject({ token: 't1', refreshed: false });
    tokens.invalidate('t1');
    expect(await tokens.get(0)).toMatchObject({ token: 't2', refreshed: true });
    expect(calls()).toBe(2);
  });

  it('does not cache a failure: the next call asks again', async () => {
    const failure: TokenGrant = {
      kind: 'retryable',
      status: 503,
      retryAfterMs: null,
      message: 'token endpoint answered HTTP 503',
      stage: 'token',
      ms: 1,
    };
    const { tokens, calls } = provider([{ grant: failure }, { grant: granted('t1', 60_000) }]);
    expect(await tokens.get(0)).toEqual(failure);
    expect(await tokens.get(0)).toMatchObject({ kind: 'ok', token: 't1' });
    expect(calls()).toBe(2);
  });
});
