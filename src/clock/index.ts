/** The source of time for every module; tests and `simulate` pass a virtual one. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

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
}
