import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  isOutboundError,
  type LimiterSleep,
  limiterShape,
  maxStartsInAnySecond,
  type RatePermit,
  SlidingWindowLimiter,
} from '../../src/outbound/index.js';

/**
 * Virtual time: `sleep` registers a timer, `run` jumps the clock from timer to timer until nothing
 * is left. Deterministic, and bounded by a step budget so a bug cannot spin forever.
 */
class VirtualTime {
  now = 0;

  /** A limiter on this virtual time: its clock and its sleep. */
  limiter(
    options: Omit<ConstructorParameters<typeof SlidingWindowLimiter>[0], 'now' | 'sleep'>,
  ): SlidingWindowLimiter {
    return new SlidingWindowLimiter({ ...options, now: this.clock, sleep: this.sleep });
  }
  readonly #timers: { at: number; seq: number; fire: () => void }[] = [];
  #seq = 0;

  readonly clock = () => this.now;

  readonly sleep: LimiterSleep = (ms, signal) =>
    new Promise<void>((resolve) => {
      const timer = { at: this.now + ms, seq: this.#seq++, fire: resolve };
      this.#timers.push(timer);
      signal.addEventListener(
        'abort',
        () => {
          const index = this.#timers.indexOf(timer);
          if (index !== -1) this.#timers.splice(index, 1);
          resolve();
        },
        { once: true },
      );
    });

  /** Wait in virtual time (for the simulated requests themselves). */
  wait(ms: number): Promise<void> {
    return this.sleep(ms, new AbortController().signal);
  }

  async run(maxSteps = 100_000): Promise<void> {
    for (let step = 0; step < maxSteps; step++) {
      await settle();
      if (this.#timers.length === 0) return;
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers.shift()!;
      this.now = Math.max(this.now, next.at);
      next.fire();
    }
    throw new Error('virtual time did not settle within the step budget');
  }
}

/** Let every pending promise callback run. */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The most starts inside any half-open interval [t, t + span). */
function mostInAnyWindow(starts: readonly number[], span: number): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let most = 0;
  let lo = 0;
  for (let hi = 0; hi < sorted.length; hi++) {
    while (sorted[hi]! - sorted[lo]! >= span) lo++;
    most = Math.max(most, hi - lo + 1);
  }
  return most;
}

interface Simulated {
  /** When the caller asks for a permit. */
  asksAt: number;
  /** From grant to the start of the partner's answer (connect, handshake, latency, processing). */
  answerDelay: number;
  /** Where in [grant, answer] the partner sees the request arrive, as a fraction. */
  seenFraction?: number;
  /** From the start of the answer to the end of the request. */
  duration: number;
}

/**
 * Drive `requests` through a limiter in virtual time. Returns, in grant order, the grant times (our
 * starts), the partner's arrival times (somewhere between grant and answer) and the caller indexes.
 */
async function simulate(
  limiter: SlidingWindowLimiter,
  vt: VirtualTime,
  requests: readonly Simulated[],
): Promise<{ grants: number[]; arrivals: number[]; order: number[] }> {
  const grants: number[] = [];
  const arrivals: number[] = [];
  const order: number[] = [];
  const tasks = requests.map(async (request, index) => {
    await vt.wait(request.asksAt);
    const permit = await limiter.acquire();
    grants.push(vt.now);
    arrivals.push(vt.now + Math.floor(request.answerDelay * (request.seenFraction ?? 1)));
    order.push(index);
    if (request.answerDelay > 0) await vt.wait(request.answerDelay);
    permit.markAnswered();
    await vt.wait(request.duration);
    permit.release();
  });
  await vt.run();
  await Promise.all(tasks);
  return { grants, arrivals, order };
}

describe('SlidingWindowLimiter', () => {
  it('lets the first start through only one window (plus margin) after creation', async () => {
    const vt = new VirtualTime();
    vt.now = 5000;
    const limiter = vt.limiter({
      limit: 5,
      windowMs: 1000,
      marginMs: 10,
    });
    const { grants: starts } = await simulate(limiter, vt, [{ asksAt: 0, answerDelay: 0, duration: 0 }]);
    expect(starts).toEqual([6010]);
  });

  it('starts at once when told the window before creation was empty', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 2,
      windowMs: 1000,
      marginMs: 0,
      startFull: false,
    });
    const { grants: starts } = await simulate(
      limiter,
      vt,
      [0, 0, 0].map(() => ({ asksAt: 0, answerDelay: 0, duration: 0 })),
    );
    expect(starts).toEqual([0, 0, 1000]);
  });

  it('saturated: bursts of `limit` exactly one window + margin apart, in the order asked', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 5,
      windowMs: 1000,
      marginMs: 10,
    });
    const requests = Array.from({ length: 20 }, (_, i) => ({ asksAt: i, answerDelay: 0, duration: 5 }));
    const { grants: starts, order } = await simulate(limiter, vt, requests);
    expect(order).toEqual(requests.map((_, i) => i));
    expect(starts).toEqual([
      ...Array(5).fill(1010),
      ...Array(5).fill(2020),
      ...Array(5).fill(3030),
      ...Array(5).fill(4040),
    ]);
    expect(mostInAnyWindow(starts, 1000)).toBe(5);
    expect(limiter.granted).toBe(20);
  });

  it('reshaped to a lower limit while running: the next starts keep the new limit, earlier starts still count', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({ limit: 5, windowMs: 1000, marginMs: 0, startFull: false });
    const first = await Promise.all(Array.from({ length: 5 }, () => limiter.acquire()));
    for (const permit of first) {
      permit.markAnswered();
      permit.release();
    }
    // Five started at 0 under the old shape; from now on, two per second.
    limiter.reshape({ limit: 2, windowMs: 1000 });
    expect([limiter.limit, limiter.windowMs]).toEqual([2, 1000]);
    const { grants } = await simulate(
      limiter,
      vt,
      Array.from({ length: 5 }, () => ({ asksAt: 0, answerDelay: 0, duration: 0 })),
    );
    expect(grants).toEqual([1000, 1000, 2000, 2000, 3000]);
    expect(mostInAnyWindow(grants, 1000)).toBe(2);
    // A longer window (a rate under 1/s) is taken the same way.
    limiter.reshape(limiterShape(0.5, 1000));
    const { grants: slower } = await simulate(limiter, vt, [
      { asksAt: 0, answerDelay: 0, duration: 0 },
      { asksAt: 0, answerDelay: 0, duration: 0 },
    ]);
    expect(slower).toEqual([5000, 7000]);
  });

  it('refuses a shape that is no limit, as the constructor does', () => {
    const limiter = new SlidingWindowLimiter({ limit: 5, windowMs: 1000 });
    for (const shape of [
      { limit: 0, windowMs: 1000 },
      { limit: 1.5, windowMs: 1000 },
      { limit: 2, windowMs: 0 },
    ]) {
      let error: unknown = null;
      try {
        limiter.reshape(shape);
      } catch (e) {
        error = e;
      }
      expect(isOutboundError(error) && error.code, JSON.stringify(shape)).toBe('INVALID_OPTIONS');
    }
    expect([limiter.limit, limiter.windowMs]).toEqual([5, 1000]);
    limiter.close();
  });

  it('counts a permit from the moment the answer began (a slow answer delays the next)', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 1,
      windowMs: 1000,
      marginMs: 10,
    });
    const { grants } = await simulate(limiter, vt, [
      { asksAt: 0, answerDelay: 300, duration: 0 },
      { asksAt: 0, answerDelay: 0, duration: 0 },
    ]);
    expect(grants).toEqual([1010, 2320]);
  });

  it('holds every start while a granted permit has no answer yet, and wakes when it settles', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 1,
      windowMs: 100,
      marginMs: 0,
      startFull: false,
    });
    const first = await limiter.acquire();
    let secondAt: number | null = null;
    const second = limiter.acquire().then((permit) => {
      secondAt = vt.now;
      return permit;
    });
    await vt.run();
    // Far past a window, still blocked: the first request may reach the partner at any moment.
    vt.now = 5000;
    await vt.run();
    expect(secondAt).toBeNull();
    first.release();
    await vt.run();
    expect(secondAt).toBe(5100);
    (await second).release();
  });

  it('a permit released without an answer counts from its release', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 1,
      windowMs: 100,
      marginMs: 0,
      startFull: false,
    });
    const first = await limiter.acquire();
    vt.now = 40;
    first.release();
    first.markAnswered();
    first.release();
    let at = -1;
    const next = limiter.acquire().then((permit) => {
      at = vt.now;
      return permit;
    });
    await vt.run();
    expect(at).toBe(140);
    (await next).release();
  });

  it('close() rejects every queued waiter and later calls with CLIENT_CLOSED; safe twice', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({ limit: 1, windowMs: 1000 });
    const waiting = [limiter.acquire(), limiter.acquire(), limiter.acquire()];
    await settle();
    expect(limiter.waiting).toBe(3);
    limiter.close();
    limiter.close();
    const results = await Promise.allSettled(waiting);
    for (const result of results) {
      expect(result.status).toBe('rejected');
      expect(isOutboundError((result as PromiseRejectedResult).reason, 'CLIENT_CLOSED')).toBe(true);
    }
    expect(limiter.waiting).toBe(0);
    await expect(limiter.acquire()).rejects.toMatchObject({ code: 'CLIENT_CLOSED' });
    await vt.run();
    expect(limiter.granted).toBe(0);
  });

  it('an aborted waiter leaves the queue with CANCELLED; the others keep their order', async () => {
    const vt = new VirtualTime();
    const limiter = vt.limiter({
      limit: 1,
      windowMs: 100,
      marginMs: 0,
    });
    const abort = new AbortController();
    const got: string[] = [];
    const take = (name: string, signal?: AbortSignal) =>
      limiter.acquire(signal).then((permit: RatePermit) => {
        got.push(`${name}@${vt.now}`);
        permit.markAnswered();
        permit.release();
      });
    const a = take('a');
    const b = take('b', abort.signal);
    const c = take('c');
    abort.abort(new Error('operator cancelled'));
    await expect(b).rejects.toMatchObject({ code: 'CANCELLED' });
    await vt.run();
    await Promise.all([a, c]);
    expect(got).toEqual(['a@100', 'c@200']);
    await expect(limiter.acquire(abort.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses a limit that is not a whole number ≥ 1 and a window ≤ 0', () => {
    for (const limit of [0, -1, 1.5, Number.NaN]) {
      expect(() => new SlidingWindowLimiter({ limit, windowMs: 1000 })).toThrow(/whole number/);
    }
    expect(() => new SlidingWindowLimiter({ limit: 1, windowMs: 0 })).toThrow(/window/);
    expect(() => new SlidingWindowLimiter({ limit: 1, windowMs: 1000, marginMs: -1 })).toThrow(/margin/);
  });

  it('property: no window of windowMs ever holds more than `limit` starts or partner arrivals, whatever the timing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 50, max: 1500 }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(
          fc.record({
            asksAt: fc.integer({ min: 0, max: 8000 }),
            answerDelay: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 400 })),
            seenFraction: fc.double({ min: 0, max: 1, noNaN: true }),
            duration: fc.integer({ min: 0, max: 2000 }),
          }),
          { minLength: 1, maxLength: 60 },
        ),
        async (limit, windowMs, marginMs, requests) => {
          const vt = new VirtualTime();
          const limiter = vt.limiter({
            limit,
            windowMs,
            marginMs,
          });
          const { grants, arrivals } = await simulate(limiter, vt, requests);
          expect(grants).toHaveLength(requests.length);
          for (const times of [grants, arrivals]) {
            expect(mostInAnyWindow(times, windowMs)).toBeLessThanOrEqual(limit);
            // Stronger, as designed: `limit` places apart is at least a window plus the margin.
            const sorted = [...times].sort((x, y) => x - y);
            for (let i = 0; i + limit < sorted.length; i++) {
              expect(sorted[i + limit]! - sorted[i]!).toBeGreaterThanOrEqual(windowMs + marginMs);
            }
            // And nothing in the first window after creation (no state survives a restart).
            expect(sorted[0]!).toBeGreaterThanOrEqual(windowMs + marginMs);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('property: saturated, it starts each request as soon as the rule allows (it achieves the rate)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 50, max: 1500 }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 6000 }), { minLength: 1, maxLength: 60 }),
        async (limit, windowMs, marginMs, arrivals) => {
          const sortedArrivals = [...arrivals].sort((a, b) => a - b);
          const vt = new VirtualTime();
          const limiter = vt.limiter({
            limit,
            windowMs,
            marginMs,
          });
          const requests = sortedArrivals.map((asksAt) => ({ asksAt, answerDelay: 0, duration: 0 }));
          const { grants: starts } = await simulate(limiter, vt, requests);
          // The earliest lawful schedule, FIFO: as late as its request, its predecessor, and the
          // start `limit` places back plus the window and margin (creation counts as a full window).
          const expected: number[] = [];
          for (let i = 0; i < sortedArrivals.length; i++) {
            const previous = expected[i - 1] ?? 0;
            const slotFree = (i >= limit ? expected[i - limit]! : 0) + windowMs + marginMs;
            expected.push(Math.max(sortedArrivals[i]!, previous, slotFree));
          }
          expect(starts).toEqual(expected);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('limiterShape and maxStartsInAnySecond', () => {
  it('keeps whole rates, rounds a fractional rate down, stretches the window below 1', () => {
    expect(limiterShape(5, 1000)).toEqual({ limit: 5, windowMs: 1000 });
    expect(limiterShape(2.5, 1000)).toEqual({ limit: 2, windowMs: 1000 });
    expect(limiterShape(4.99, 1000)).toEqual({ limit: 4, windowMs: 1000 });
    expect(limiterShape(0.5, 1000)).toEqual({ limit: 1, windowMs: 2000 });
    expect(limiterShape(0.3, 1000)).toEqual({ limit: 1, windowMs: 3334 });
    expect(limiterShape(1, 200)).toEqual({ limit: 1, windowMs: 200 });
  });

  it('refuses a rate ≤ 0 or not finite, and a window ≤ 0', () => {
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => limiterShape(rate, 1000)).toThrow(/rate limit/);
    }
    expect(() => limiterShape(1, 0)).toThrow(/window/);
  });

  it('bounds the starts in any closed second, margin included', () => {
    expect(maxStartsInAnySecond(5, 1000, 10)).toBe(5);
    // With no margin, starts exactly 1,000 ms apart both sit in one closed second.
    expect(maxStartsInAnySecond(5, 1000, 0)).toBe(10);
    expect(maxStartsInAnySecond(1, 200, 10)).toBe(5);
    expect(maxStartsInAnySecond(1, 200, 0)).toBe(6);
    expect(maxStartsInAnySecond(2, 400, 10)).toBe(6);
    expect(maxStartsInAnySecond(1, 2000, 0)).toBe(1);
  });

  it('the bound holds for a simulated saturated limiter', async () => {
    for (const [limit, windowMs, marginMs] of [
      [1, 200, 10],
      [1, 200, 0],
      [2, 400, 10],
      [3, 333, 1],
    ] as const) {
      const vt = new VirtualTime();
      const limiter = vt.limiter({ limit, windowMs, marginMs });
      const { grants: starts } = await simulate(
        limiter,
        vt,
        Array.from({ length: 40 }, () => ({ asksAt: 0, answerDelay: 0, duration: 0 })),
      );
      // Closed second [t, t + 1000]: a half-open window of 1000 + ε.
      expect(mostInAnyWindow(starts, 1000.5)).toBe(maxStartsInAnySecond(limit, windowMs, marginMs));
    }
  });
});
