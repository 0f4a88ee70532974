import { setTimeout as delay } from 'node:timers/promises';

/** The source of time for every module; tests and `simulate` pass a virtual one. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** Waiting: real time in production, an instant jump of a virtual clock in tests and simulation. */
export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const systemClock: Clock = { now: () => Date.now() };

/** Wait `ms` of real time; resolves early (without throwing) when `signal` aborts. */
export const systemSleep: Sleep = async (ms, signal) => {
  if (ms <= 0 || signal?.aborted) return;
  await delay(ms, undefined, signal ? { signal } : {}).catch(() => undefined);
};

/** A clock that moves only when told to: for tests and simulation. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: number | string | Date) {
    this.#now = typeof start === 'number' ? start : new Date(start).getTime();
  }
  now(): number {
    return this.#now;
  }
  set(to: number | string | Date): void {
    this.#now = typeof to === 'number' ? to : new Date(to).getTime();
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  /** A sleep that moves this clock forward by `ms` at once (virtual time passes, no real time). */
  readonly sleep: Sleep = async (ms, signal) => {
    if (signal?.aborted) return;
    await Promise.resolve();
    if (ms > 0) this.#now += ms;
  };
}
