import { setTimeout as delay } from 'node:timers/promises';
import { OutboundError } from './errors.js';

/**
 * The policy's rule: never more than N requests in ANY window of W ms, and it is the
 * partner who counts them, on arrival. Measured (FACTS.md): bottleneck starts up to ~10 ms early,
 * p-queue counts fixed windows (bursts straddle the edge), a token bucket bursts by design; a sliding
 * log of start times holds the rule at our end. But arrival lags the start by a variable delay: on
 * fresh connections, under CPU load, we measured first-burst arrivals ~60 ms late (the server busy
 * with TLS handshakes) while the next burst, on warm connections, arrived at once, so a log of send
 * times let 6 requests into one second at the server. No margin that keeps ~5/s covers that.
 *
 * So each log entry is the moment the partner had *certainly* seen the request: when its answer
 * began (or, without an answer, when the request ended); until then the entry counts as "now". Every
 * arrival lies between its grant and that moment, so a grant that waits until fewer than N entries lie
 * in the last W + margin ms keeps every W-window at the partner to N arrivals, whatever the latency.
 * The price is one round trip per window (local: ~1 ms; the cycle sends ≤ 10 actions anyway).
 */
export const DEFAULT_RATE_MARGIN_MS = 5;

/**
 * Waits `ms` (of the limiter's `now` clock: a virtual sleep must move that clock); must return early,
 * resolving or rejecting, when `signal` aborts.
 */
export type LimiterSleep = (ms: number, signal: AbortSignal) => Promise<void>;

export interface SlidingWindowLimiterOptions {
  /** Starts allowed in any window of `windowMs` (a whole number ≥ 1). */
  limit: number;
  windowMs: number;
  /**
   * Added to the window when deciding (default `DEFAULT_RATE_MARGIN_MS`): keeps entries exactly a
   * window apart out of one closed window, and covers clock granularity.
   */
  marginMs?: number;
  /** A monotonic clock in ms (default `performance.now`). Never the wall clock: it can jump. */
  now?: () => number;
  sleep?: LimiterSleep;
  /**
   * Start as though the window before creation was full (default true): no state survives a restart,
   * and the previous process may have made `limit` starts just before it died. So the first start
   * comes one window after creation.
   */
  startFull?: boolean;
}

/** The right to start one request. Release it when the request is over, whatever happened. */
export interface RatePermit {
  /**
   * Records that the partner has certainly seen the request by now: its answer has begun. Until
   * this (or `release`), the request counts as arriving at any moment. Later calls are ignored.
   */
  markAnswered(): void;
  /**
   * Ends the permit. A permit never marked answered is logged as arriving now: it may have reached
   * the partner, so it counts. Safe to call twice.
   */
  release(): void;
}

/**
 * A second limiter every request start must also pass, after the client's own: several runners
 * sharing one database keep the window there (src/engine/leadership.ts). It rejects with
 * `CANCELLED` when `signal` aborts, and with `START_NOT_GRANTED` when it cannot grant (nothing sent).
 */
export interface StartLimiter {
  acquire(signal?: AbortSignal): Promise<RatePermit>;
}

interface LogEntry {
  /** When the partner had certainly seen the request; null while it may still arrive (counts as now). */
  at: number | null;
}

interface Waiter {
  resolve: (permit: RatePermit) => void;
  reject: (error: unknown) => void;
  detach: () => void;
}

const defaultSleep: LimiterSleep = (ms, signal) => delay(ms, undefined, { signal }).catch(() => undefined);

/**
 * A sliding-log rate limiter: at most `limit` starts in any window of `windowMs`, FIFO, cancellable.
 * One instance is shared by every request a partner client makes.
 */
export class SlidingWindowLimiter {
  #limit: number;
  #windowMs: number;
  readonly marginMs: number;
  readonly #now: () => number;
  readonly #sleep: LimiterSleep;
  #log: LogEntry[] = [];
  readonly #waiters: Waiter[] = [];
  #pumping = false;
  #closed = false;
  /** Aborts the current pause: a permit settled (the log changed) or the limiter closed. */
  #wake: AbortController | null = null;
  #granted = 0;

  constructor(options: SlidingWindowLimiterOptions) {
    const { limit, windowMs, marginMs = DEFAULT_RATE_MARGIN_MS } = options;
    checkShape(limit, windowMs);
    if (!Number.isFinite(marginMs) || marginMs < 0) {
      throw new OutboundError('INVALID_OPTIONS', `rate margin must be ≥ 0 ms, got ${marginMs}`);
    }
    this.#limit = limit;
    this.#windowMs = windowMs;
    this.marginMs = marginMs;
    this.#now = options.now ?? (() => performance.now());
    this.#sleep = options.sleep ?? defaultSleep;
    if (options.startFull ?? true) {
      const created = this.#now();
      this.#log = Array.from({ length: limit }, () => ({ at: created }));
    }
  }

  /** Requests waiting for a permit. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Permits granted so far. */
  get granted(): number {
    return this.#granted;
  }

  /**
   * Wait for the right to start one request (FIFO). Rejects with `CANCELLED` when `signal` aborts
   * first and with `CLIENT_CLOSED` when the limiter is closed.
   */
  acquire(signal?: AbortSignal): Promise<RatePermit> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted) return Promise.reject(cancelledError(signal));
    return new Promise<RatePermit>((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(cancelledError(signal));
      };
      const waiter: Waiter = {
        resolve,
        reject,
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      void this.#pump();
    });
  }

  /** Reject every waiting request; later `acquire` calls reject at once. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.detach();
      waiter.reject(closedError());
    }
    this.#wake?.abort();
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#closed && this.#waiters.length > 0) {
        const waitMs = this.#msUntilFree();
        if (waitMs > 0) {
          await this.#pause(waitMs);
          continue;
        }
        const waiter = this.#waiters.shift()!;
        waiter.detach();
        waiter.resolve(this.#grant());
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Starts allowed in any window of `windowMs`. */
  get limit(): number {
    return this.#limit;
  }

  get windowMs(): number {
    return this.#windowMs;
  }

  /**
   * A new shape for the starts from now on (a limit lowered while the service runs). The log of
   * earlier starts is kept and judged by the new shape: a lower limit or a longer window only makes
   * the next grant wait longer.
   */
  reshape(shape: { limit: number; windowMs: number }): void {
    checkShape(shape.limit, shape.windowMs);
    this.#limit = shape.limit;
    this.#windowMs = shape.windowMs;
    this.#wake?.abort();
  }

  /** 0 when a start is allowed now; otherwise how long until one is (Infinity: until a permit settles). */
  #msUntilFree(): number {
    const now = this.#now();
    const horizon = this.windowMs + this.marginMs;
    // A start at exactly `at + horizon` is more than a window after `at`: the entry no longer counts.
    this.#log = this.#log.filter((entry) => entry.at === null || entry.at + horizon > now);
    const excess = this.#log.length - this.limit;
    if (excess < 0) return 0;
    const settled = this.#log
      .filter((entry): entry is { at: number } => entry.at !== null)
      .map((entry) => entry.at)
      .sort((a, b) => a - b);
    // `excess + 1` entries must leave the window, oldest first; unsettled ones never leave by themselves.
    const leaving = settled[excess];
    return leaving === undefined ? Number.POSITIVE_INFINITY : leaving + horizon - now;
  }

  async #pause(waitMs: number): Promise<void> {
    const wake = new AbortController();
    this.#wake = wake;
    try {
      if (Number.isFinite(waitMs)) {
        // Timers run on a millisecond loop clock and may fire a fraction early against
        // performance.now(): the loop re-checks the log after waking, so early is never a start.
        const ms = Math.max(1, Math.ceil(waitMs));
        await Promise.resolve()
          .then(() => this.#sleep(ms, wake.signal))
          .catch(() => undefined);
      } else {
        await new Promise<void>((resolve) =>
          wake.signal.addEventListener('abort', () => resolve(), { once: true }),
        );
      }
    } finally {
      if (this.#wake === wake) this.#wake = null;
    }
  }

  #grant(): RatePermit {
    const entry: LogEntry = { at: null };
    this.#log.push(entry);
    this.#granted++;
    const settle = () => {
      if (entry.at !== null) return;
      entry.at = this.#now();
      this.#wake?.abort();
    };
    return { markAnswered: settle, release: settle };
  }
}

/**
 * The limiter's parameters for a policy rate: `ratePerWindow` starts in any window of `windowMs`.
 * A window cannot hold half a start, so a fractional rate ≥ 1 is rounded DOWN (2.5 → 2 per window):
 * rounding up, or stretching the window to fit (5 per 2 s), would let some window hold more starts
 * than the operator allowed. A rate below 1 stretches the window instead (0.5 → 1 per 2 windows),
 * which is the only way to send anything at all.
 */
function checkShape(limit: number, windowMs: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new OutboundError(
      'INVALID_OPTIONS',
      `rate limit must be a whole number ≥ 1 per window, got ${limit}`,
    );
  }
  if (!Number.isFinite(windowMs) || windowMs <= 0) {
    throw new OutboundError('INVALID_OPTIONS', `rate window must be > 0 ms, got ${windowMs}`);
  }
}

export function limiterShape(ratePerWindow: number, windowMs: number): { limit: number; windowMs: number } {
  if (!Number.isFinite(ratePerWindow) || ratePerWindow <= 0) {
    throw new OutboundError('INVALID_OPTIONS', `rate limit must be > 0, got ${ratePerWindow}`);
  }
  if (!Number.isFinite(windowMs) || windowMs <= 0) {
    throw new OutboundError('INVALID_OPTIONS', `rate window must be > 0 ms, got ${windowMs}`);
  }
  if (ratePerWindow >= 1) return { limit: Math.floor(ratePerWindow), windowMs };
  return { limit: 1, windowMs: Math.ceil(windowMs / ratePerWindow) };
}

/**
 * The most starts a limiter can let into any closed 1,000 ms interval: starts of one log slot are at
 * least `windowMs + marginMs` apart, so an interval holds at most ⌊1000 / (window + margin)⌋ + 1 of them.
 */
export function maxStartsInAnySecond(limit: number, windowMs: number, marginMs: number): number {
  return limit * (Math.floor(1000 / (windowMs + marginMs)) + 1);
}

function closedError(): OutboundError {
  return new OutboundError('CLIENT_CLOSED', 'the partner client is closed; nothing was sent');
}

function cancelledError(signal: AbortSignal | undefined): OutboundError {
  return new OutboundError('CANCELLED', 'cancelled while waiting to start; nothing was sent', {
    cause: signal?.reason,
  });
}
