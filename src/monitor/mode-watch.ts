import { readMode } from '../guard/index.js';
import type { Logger } from '../log/index.js';
import type { Store } from '../store/index.js';

/** How often a worker in a live cycle looks at the mode: a rollback anywhere stops new requests within this. */
export const MODE_POLL_MS = 100;

export interface ModeWatch {
  /** Aborted as soon as the mode is seen to leave `live` (a fresh signal once it is live again). */
  signal(): AbortSignal;
  stop(): void;
}

/**
 * Watch the persisted mode so that a rollback made by another process (the CLI, the supervisor, the
 * dashboard, another runner) stops this worker's new requests within a poll, not at its next cycle.
 * The engine's guard reads the mode before every authorisation too; this covers the time between an
 * authorisation and the request's start (a token, a rate permit).
 */
export function watchMode(store: Store, logger: Logger, pollMs = MODE_POLL_MS): ModeWatch {
  let controller = new AbortController();
  let _looking: Promise<void> | null = null;
  const look = () => {
    _looking ??= readMode(store.db)
      .then((mode) => {
        if (mode !== 'live' && !controller.signal.aborted) controller.abort(new Error(`mode is ${mode}`));
        if (mode === 'live' && controller.signal.aborted) controller = new AbortController();
      })
      .catch((error: unknown) => {
        // Fail closed: a database that cannot be read is no place to send from.
        logger.error({ err: error }, 'mode not readable: holding new requests');
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
    stop: () => clearInterval(timer),
  };
}
