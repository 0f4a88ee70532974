import type { Context } from './context.js';
import { writeLine } from './output.js';

/** A request still in flight this long after SIGTERM is cut and parked (resent with its key on restart). */
const SHUTDOWN_GRACE_MS = 25_000;

/** SIGTERM/SIGINT (and, for the worker, losing its supervisor) → `stop`; after the grace → `abortRequests`. */
export function shutdownSignals(ctx: Context, what: string, alsoOnDisconnect: boolean) {
  const stop = new AbortController();
  const abortRequests = new AbortController();
  const onSignal = (name: string) => {
    if (stop.signal.aborted) return;
    writeLine(
      ctx.io.stderr,
      `${name}: ${what}finishing the current work (at most ${SHUTDOWN_GRACE_MS / 1000} s), claiming nothing new`,
    );
    stop.abort();
    setTimeout(() => abortRequests.abort(), SHUTDOWN_GRACE_MS).unref();
  };
  const handlers = {
    SIGTERM: () => onSignal('SIGTERM'),
    SIGINT: () => onSignal('SIGINT'),
    disconnect: () => onSignal('supervisor gone'),
  };
  process.on('SIGTERM', handlers.SIGTERM);
  process.on('SIGINT', handlers.SIGINT);
  if (alsoOnDisconnect) process.on('disconnect', handlers.disconnect);
  return {
    stop: stop.signal,
    abortRequests: abortRequests.signal,
    release() {
      process.off('SIGTERM', handlers.SIGTERM);
      process.off('SIGINT', handlers.SIGINT);
      process.off('disconnect', handlers.disconnect);
    },
  };
}
