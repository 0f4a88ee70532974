import type { Clock, Sleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { type Mode, readModeChange } from '../guard/index.js';
import { modeAcksFor, runningWorkers, type Store } from '../store/index.js';

/** How long a mode command waits for the running workers' acknowledgement by default. */
export const MODE_ACK_WAIT_MS = 5_000;
/** How often it looks while waiting. */
const ACK_POLL_MS = 25;

export interface WorkerAck {
  runner: string;
  pid: number;
  /** From the change's commit to the worker having applied it. */
  latencyMs: number;
  ackedAt: string;
}

/**
 * Did the running service take a mode change?
 * - `acknowledged`: every worker that looks alive (a heartbeat within the policy's interval + grace,
 *   not stopped) acknowledged it;
 * - `no_worker`: none looks alive: the change is recorded, and a worker that starts takes it;
 * - `not_acknowledged`: a worker that looks alive did not acknowledge it within the wait (stuck,
 *   killed without a word, or cut off from the database): the operator must look.
 */
export type ModeAcknowledgement =
  | { kind: 'acknowledged'; changeSeq: number; mode: Mode; workers: WorkerAck[] }
  | { kind: 'no_worker'; changeSeq: number | null; mode: Mode; heartbeatLimitSeconds: number }
  | {
      kind: 'not_acknowledged';
      changeSeq: number;
      mode: Mode;
      waitedMs: number;
      workers: WorkerAck[];
      silent: { runner: string; pid: number; lastHeartbeatAgeSeconds: number }[];
    };

/** Wait (bounded by `waitMs`) for the running workers to acknowledge change `changeSeq` (the latest when null). */
export async function awaitModeAck(
  deps: { store: Store; clock: Clock; sleep: Sleep; config: Config },
  request: { changeSeq?: number; waitMs?: number } = {},
): Promise<ModeAcknowledgement> {
  const { store, clock, config } = deps;
  const current = await readModeChange(store.db);
  const changeSeq = request.changeSeq ?? current.changeSeq;
  const limitSeconds = config.policy.heartbeatIntervalSeconds + config.policy.heartbeatGraceSeconds;
  const started = clock.now();
  const waitMs = request.waitMs ?? MODE_ACK_WAIT_MS;
  const deadline = started + waitMs;
  // Bounded by the clock, and by the number of looks too (a virtual clock may stand still).
  for (let look = 0, looks = Math.ceil(waitMs / ACK_POLL_MS); ; look++) {
    const now = clock.now();
    const alive = await runningWorkers(store.db, now - limitSeconds * 1000);
    if (changeSeq === null) {
      // No change was ever made: the mode is the default, and every worker has it from its start.
      return { kind: 'no_worker', changeSeq, mode: current.mode, heartbeatLimitSeconds: limitSeconds };
    }
    // Only a worker that is running now counts: one that took the change and stopped since does not.
    const acks = (await modeAcksFor(store.db, changeSeq)).filter((a) =>
      alive.some((w) => a.runner === w.runner && a.worker_started_at === w.worker_started_at),
    );
    const workers = acks.map((a) => ({
      runner: a.runner,
      pid: a.pid,
      latencyMs: Math.max(0, a.acked_at - a.changed_at),
      ackedAt: new Date(a.acked_at).toISOString(),
    }));
    const mode = (acks.at(-1)?.mode as Mode | undefined) ?? current.mode;
    const silent = alive.filter(
      (w) => !acks.some((a) => a.runner === w.runner && a.worker_started_at === w.worker_started_at),
    );
    if (silent.length === 0) {
      return acks.length > 0
        ? { kind: 'acknowledged', changeSeq, mode, workers }
        : { kind: 'no_worker', changeSeq, mode, heartbeatLimitSeconds: limitSeconds };
    }
    if (now >= deadline || look >= looks) {
      return {
        kind: 'not_acknowledged',
        changeSeq,
        mode,
        waitedMs: now - started,
        workers,
        silent: silent.map((w) => ({
          runner: w.runner,
          pid: w.pid,
          lastHeartbeatAgeSeconds: Math.round((now - w.at) / 1000),
        })),
      };
    }
    await deps.sleep(ACK_POLL_MS);
  }
}

/** The acknowledgement in one line, as every mode command (CLI, API, dashboard) says it. */
export function describeModeAck(ack: ModeAcknowledgement): string {
  switch (ack.kind) {
    case 'acknowledged':
      return `acknowledged by the running service: ${ack.workers
        .map((w) => `worker pid ${w.pid} (${w.runner}) took it ${w.latencyMs} ms after the change`)
        .join('; ')}`;
    case 'no_worker':
      return `NOT acknowledged: no worker of this installation is running (no heartbeat in the last ${ack.heartbeatLimitSeconds} s); the change is recorded and a worker that starts takes it`;
    case 'not_acknowledged':
      return `NOT acknowledged within ${(ack.waitedMs / 1000).toFixed(1)} s by ${ack.silent
        .map((w) => `worker pid ${w.pid} (${w.runner}, last heartbeat ${w.lastHeartbeatAgeSeconds} s ago)`)
        .join(
          ', ',
        )}: it may be stuck, gone or cut off from the database; check \`valhalla status\` and the service${
        ack.workers.length > 0
          ? ` (acknowledged by ${ack.workers.map((w) => `pid ${w.pid}`).join(', ')})`
          : ''
      }`;
    default: {
      const never: never = ack;
      return never;
    }
  }
}
