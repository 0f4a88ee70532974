import { WORKER_STOPPED } from '../store/index.js';

/**
 * What a worker reports doing in each heartbeat: `starting` until it first asks for the lease,
 * `standby` while another runner leads, `cycle` during a cycle, `idle` between cycles, and
 * `stopped` in its final beat (readers then no longer count it as running).
 */
export const WORKER_STATES = ['starting', 'standby', 'cycle', 'idle', WORKER_STOPPED] as const;

export type WorkerState = (typeof WORKER_STATES)[number];

const KNOWN: ReadonlySet<string> = new Set(WORKER_STATES);

/** Whether a state read back from a heartbeat row is one this release writes. */
export function isWorkerState(value: string): value is WorkerState {
  return KNOWN.has(value);
}
