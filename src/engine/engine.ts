import { createEngineContext, type EngineDeps } from './context.js';
import { type CycleOptions, runCycle } from './cycle.js';
import { recover } from './recover.js';
import type { CycleReport } from './report.js';

export type { EngineDeps } from './context.js';

export interface Engine {
  /** After a crash: batches caught mid-request are resent with their own key. */
  recover(): Promise<{ resumed: number; quarantined: number }>;
  /**
   * One cycle. `stop` (SIGTERM): claim nothing more, start no new request. `abortRequests`: cut a
   * request in flight (its batch stays `sending` and is resent with its key on the next start).
   * `holdNew` (the mode left `live`): start no new request; one already sent finishes and is recorded.
   */
  runCycle(options?: CycleOptions): Promise<CycleReport>;
}

/**
 * The engine: recovery after a crash and the cycle. Each step lives in its own file and is handed
 * the engine's context first: plan.ts (the ramp clock, which leads to claim), claim.ts (claiming,
 * dry run), partner-check.ts (health, token, the partner's wait, TLS), send.ts (authorising and
 * sending), outcome.ts (what an answer does to its batch), recover.ts; cycle.ts runs them in order.
 */
export function createEngine(deps: EngineDeps): Engine {
  const ctx = createEngineContext(deps);
  return {
    recover: () => recover(ctx),
    runCycle: (options: CycleOptions = {}) => runCycle(ctx, options),
  };
}
