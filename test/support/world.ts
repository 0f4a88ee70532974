/**
 * What every suite shares: where the virtual clocks start, time in milliseconds, waiting for a
 * condition, and the gate clearance given. No state: importing it starts nothing.
 */
import type { PartnerPort, SendOutcome } from '../../src/engine/index.js';
import type { GateClearance } from '../../src/guard/index.js';

/** Where the suites' virtual clocks (ManualClock) start: one fixed instant, so dates in assertions hold. */
export const NOW = Date.parse('2026-11-20T12:00:00Z');

export const SECOND = 1_000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/**
 * The nine gates cleared, for tests (and the test harness) that exercise sending rather than the
 * gates; the real clearance is tested in the gates' own suites.
 */
export const CLEARED: GateClearance = { check: async () => ({ cleared: true, reason: 'test: gates given' }) };

type NotYet = undefined | null | false;

export interface WaitOptions {
  /**
   * How long to wait at most. A bound, not an expectation: the wait ends as soon as the condition
   * holds, and on a machine loaded at several times its cores real processes start many times slower.
   */
  timeoutMs?: number;
  /** How long between two looks (0: as soon as the event loop is free). */
  everyMs?: number;
}

export interface UntilOptions extends WaitOptions {
  /** What is awaited, for the failure: "timed out after 120 s waiting for <what>". */
  what: string;
  /** More to say on a failure (a process's output so far); read only then. */
  detail?: () => string;
  /** Why the condition can no longer hold (a process has exited), or false: ends the wait at once. */
  giveUp?: () => string | false;
}

const DEFAULT_TIMEOUT_MS = 120_000;
const DEFAULT_EVERY_MS = 50;

const pause = (ms: number) =>
  new Promise<void>((resolve) => (ms > 0 ? setTimeout(resolve, ms) : setImmediate(resolve)));

/**
 * Wait until `condition` returns a truthy value (it may be async), and return that value; fail naming
 * `what` when `timeoutMs` has passed or `giveUp` gives a reason.
 */
export async function until<T>(
  condition: () => T | NotYet | Promise<T | NotYet>,
  options: UntilOptions,
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    const reason = options.giveUp?.();
    const failure = reason
      ? `gave up waiting for ${options.what}: ${reason}`
      : Date.now() > deadline
        ? `timed out after ${timeoutMs / SECOND} s waiting for ${options.what}`
        : null;
    if (failure !== null) {
      throw new Error(options.detail ? `${failure}\n${options.detail()}` : failure);
    }
    await pause(options.everyMs ?? DEFAULT_EVERY_MS);
  }
}

/** Whether `condition` holds within `timeoutMs` (looked at once more at the end), without failing. */
export async function holdsWithin(
  condition: () => boolean | Promise<boolean>,
  options: WaitOptions = {},
): Promise<boolean> {
  const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await pause(options.everyMs ?? DEFAULT_EVERY_MS);
  }
  return condition();
}

/** A child process as the waits see it (test/support/processes.ts's Spawned is one). */
export interface RunningProcess {
  child: { exitCode: number | null; signalCode: NodeJS.Signals | null };
  out(): string;
}

/** For `until` on a child process: its output on a failure, and no waiting on once it has exited. */
export function whileRunning(run: RunningProcess): Pick<UntilOptions, 'detail' | 'giveUp'> {
  return {
    detail: () => run.out(),
    giveUp: () =>
      run.child.exitCode !== null || run.child.signalCode !== null
        ? `the process ended (${run.child.exitCode ?? run.child.signalCode})`
        : false,
  };
}

/** Wait until a running process's output includes `text` (or matches it), as `until` does. */
export function untilOutput(run: RunningProcess, text: string | RegExp, what: string): Promise<true> {
  const shown = () => (typeof text === 'string' ? run.out().includes(text) : text.test(run.out()));
  return until(() => shown() || undefined, { what, ...whileRunning(run) });
}

/**
 * A partner stub that answers every batch the same: `accept` (200) or `refuse` (422, a permanent
 * refusal); its health check and token always pass. For tests whose point is not the partner.
 */
export function answeringPartner(outcome: 'accept' | 'refuse'): PartnerPort {
  const answer: SendOutcome =
    outcome === 'accept'
      ? { kind: 'accepted', status: 200, body: null, bodyIssue: null, ms: 1 }
      : { kind: 'permanent', status: 422, message: 'unprocessable', stage: 'batch', ms: 1 };
  return {
    health: async () => ({ ok: true, status: 200, ms: 1 }),
    ensureToken: async () => ({ kind: 'ok', expiresAtMs: Number.MAX_SAFE_INTEGER, refreshed: false }),
    sendBatch: async () => answer,
  };
}
