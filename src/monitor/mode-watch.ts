import type { Clock } from '../clock/index.js';
import { type Mode, readModeChange } from '../guard/index.js';
import type { Logger } from '../log/index.js';
import { recordModeAck, type Store } from '../store/index.js';

/** How often a worker looks at the mode: a rollback anywhere stops new requests within this. */
export const MODE_POLL_MS = 100;

export interface ModeWatch {
  /** Aborted as soon as the mode is seen to leave `live` (a fresh signal once it is live again). */
  signal(): AbortSignal;
  /** The mode last seen (null before the first look, or while the mode cannot be read). */
  mode(): Mode | null;
  stop(): void;
}

/** Who acknowledges the changes this watch sees: the worker, as its heartbeats name it. */
export interface ModeAcknowledger {
  clock: Clock;
  runner: string;
  pid: number;
  workerStartedAt: number;
}

/**
 * Watch the persisted mode so that a rollback made by another process (the CLI, the supervisor, the
 * dashboard, another runner) stops this worker's new requests within a poll, not at its next cycle.
 * The engine's guard reads the mode before every authorisation too; this covers the time between an
 * authorisation and the request's start (a token, a rate permit).
 *
 * With an acknowledger, each change seen is acknowledged in `mode_acks` once it has been applied
 * (the signal aborted or renewed): the command that made it can then tell the operator that the
 * running service took it, and how long that took.
 */
export function watchMode(
  store: Store,
  logger: Logger,
  options: { pollMs?: number; acknowledge?: ModeAcknowledger } = {},
): ModeWatch {
  const pollMs = options.pollMs ?? MODE_POLL_MS;
  let controller = new AbortController();
  let seen: Mode | null = null;
  let acknowledged: number | null = null;
  let _looking: Promise<void> | null = null;
  const look = () => {
    _looking ??= readModeChange(store.db)
      .then(async ({ mode, changeSeq, changedAt }) => {
        if (mode !== 'live' && !controller.signal.aborted) controller.abort(new Error(`mode is ${mode}`));
        if (mode === 'live' && controller.signal.aborted) controller = new AbortController();
        seen = mode;
        const ack = options.acknowledge;
        if (ack && changeSeq !== null && changeSeq !== acknowledged) {
          // Applied above; a failed write is tried again at the next look (the change stays applied).
          await recordModeAck(store.db, {
            change_seq: changeSeq,
            mode,
            runner: ack.runner,
            pid: ack.pid,
            worker_started_at: ack.workerStartedAt,
            changed_at: changedAt ?? ack.clock.now(),
            acked_at: ack.clock.now(),
          }).then(
            () => {
              acknowledged = changeSeq;
            },
            (error: unknown) =>
              logger.warn({ err: error }, 'mode change applied, acknowledgement not recorded'),
          );
        }
      })
      .catch((error: unknown) => {
        // Fail closed: a database that cannot be read is no place to send from.
        logger.error({ err: error }, 'mode not readable: holding new requests');
        seen = null;
        if (!controller.signal.aborted) controller.abort(new Error('mode not readable'));
      })
      .finally(() => {
        _looking = null;
      });
  };
  look();
  const timer = setInterval(look, pollMs);
  timer.unref();
  return {
    signal: () => controller.signal,
    mode: () => seen,
    stop: () => clearInterval(timer),
  };
}
