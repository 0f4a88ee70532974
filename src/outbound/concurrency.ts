import { OutboundError } from './errors.js';

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (error: unknown) => void;
  detach: () => void;
}

/**
 * At most `max` requests in flight (policy §2: 5 concurrent), FIFO, cancellable. The partner client
 * takes a slot before a rate permit, so a granted start is never left waiting for a slot.
 */
export class ConcurrencyGate {
  readonly max: number;
  #inFlight = 0;
  readonly #waiters: Waiter[] = [];
  #closed = false;

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new OutboundError('INVALID_OPTIONS', `maxConcurrent must be a whole number ≥ 1, got ${max}`);
    }
    this.max = max;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Wait for a slot; resolves with its release function (safe to call twice). */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.#closed) return Promise.reject(closedError());
    if (signal?.aborted) return Promise.reject(cancelledError(signal));
    if (this.#inFlight < this.max) return Promise.resolve(this.#take());
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(cancelledError(signal));
      };
      const waiter: Waiter = { resolve, reject, detach: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Reject every waiter; slots already taken stay taken until released. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.detach();
      waiter.reject(closedError());
    }
  }

  #take(): () => void {
    this.#inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#closed ? undefined : this.#waiters.shift();
      if (next) {
        // The slot passes straight to the next waiter: in flight stays the same.
        next.detach();
        this.#inFlight--;
        next.resolve(this.#take());
      } else {
        this.#inFlight--;
      }
    };
  }
}

function closedError(): OutboundError {
  return new OutboundError('CLIENT_CLOSED', 'the partner client is closed; nothing was sent');
}

function cancelledError(signal: AbortSignal | undefined): OutboundError {
  return new OutboundError('CANCELLED', 'cancelled while waiting for a request slot; nothing was sent', {
    cause: signal?.reason,
  });
}
