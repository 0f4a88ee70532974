import { readFileSync } from 'node:fs';
import type { Clock } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import { nextDailyRestart } from '../policy/index.js';
import type { WorkerState } from './worker-state.js';

/** What the worker tells the supervisor over IPC. */
export interface HeartbeatMessage {
  type: 'heartbeat';
  at: number;
  rssBytes: number;
  heapUsedBytes: number;
  state: WorkerState;
  cycleId: number | null;
}

/** A running worker process, as the supervisor sees it. */
export interface WorkerHandle {
  readonly pid: number;
  kill(signal: NodeJS.Signals): void;
  onMessage(listener: (message: unknown) => void): void;
  onExit(listener: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

export type SupervisorEvent =
  | { kind: 'started'; pid: number; start: number }
  | { kind: 'first_heartbeat'; pid: number }
  | { kind: 'heartbeat_missed'; pid: number; ageMs: number; limitMs: number }
  | { kind: 'memory_exceeded'; pid: number; rssBytes: number; limitBytes: number }
  | { kind: 'daily_restart'; pid: number; at: string }
  | { kind: 'crashed'; pid: number; code: number | null; signal: string | null; restartInMs: number }
  | { kind: 'finished'; pid: number; code: number };

export interface SupervisorOptions {
  /** Wall-clock time: when 02:00 UTC is, and the times reported. */
  clock: Clock;
  /**
   * Elapsed time (default `performance.now`): heartbeat age, backoff, run length. Never the wall
   * clock, which an NTP step can move by minutes: that must not look like a missed heartbeat.
   */
  monotonicNow?: () => number;
  logger: Logger;
  spawnWorker: () => WorkerHandle;
  /** The worker's resident memory, read by the supervisor itself (a frozen worker reports nothing). */
  readRss?: (pid: number) => number | null;
  heartbeatIntervalMs: number;
  heartbeatGraceMs: number;
  memoryLimitBytes: number;
  /** `HH:MM` UTC. */
  dailyRestartUtc: string;
  /** After SIGTERM, a worker still running this long later is killed. */
  stopGraceMs: number;
  /**
   * Audit, alert, roll back: the caller's. Awaited before the supervisor acts on the event (the
   * audit entry precedes its effect); an error in it is logged and does not stop the supervision,
   * except for a missed heartbeat: no new worker starts until that event is handled (the rollback
   * committed), retried every second.
   */
  onEvent: (event: SupervisorEvent) => Promise<void>;
  /** Exit codes after which the worker is not restarted (it refused to start, e.g. gates not cleared). */
  fatalExitCodes?: readonly number[];
}

export interface Supervisor {
  start(): void;
  /** Run the checks now (the interval calls it; tests with a virtual clock call it themselves). */
  tick(): Promise<void>;
  /** Stop the worker (SIGTERM, then SIGKILL after the grace) and the checks. Safe twice. */
  stop(): Promise<void>;
  /** Resolves when supervision ends: stopped, the worker finished (exit 0 on its own), or a fatal exit. */
  readonly done: Promise<{ code: number }>;
  /** The current worker's pid and what it last reported (no heartbeat time before its first), for the metrics. */
  worker(): { pid: number; rssBytes: number | null; heartbeatAt: number | null } | null;
  /**
   * Wall-clock ms the heartbeat age counts from, for the metrics: the last heartbeat of any worker this
   * supervisor started; before the first one, when it started its first worker (null before start).
   * Not reset when a worker is replaced: a worker that never beats, replaced by another that never
   * beats either, ages on, so the age crosses the limit and stays over it (a replacement's first beat
   * ends it).
   */
  heartbeatSince(): number | null;
}

/** Crash restarts back off 1 s, 2 s, 4 s … up to a minute; a worker that ran 10 minutes resets it. */
export function crashBackoffMs(consecutiveCrashes: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, consecutiveCrashes - 1));
}
const HEALTHY_RUN_MS = 10 * 60_000;
/** How often the checks run. */
const CHECK_INTERVAL_MS = 250;
/**
 * A check this late was held up by the supervisor's own event loop (a long synchronous task in its
 * process), not by the worker. The worker's heartbeats of that time wait unread in the IPC channel,
 * and Node.js runs due timers before it reads I/O: judged at once, a healthy worker would be blamed
 * (and killed, and in Phase 4 rolled back) for the supervisor's stall. So a late check leaves the
 * heartbeat to the next one, after the channel has been read. A frozen worker is still caught, one
 * check later.
 */
export const SUPERVISOR_STALL_MS = 1_000;
/** Tries of an event's handler before it is given up (logged); a missed heartbeat is retried until handled. */
const EVENT_ATTEMPTS = 5;

/** Read VmRSS from /proc (Linux); null where there is no /proc or the process is gone. */
export function procRss(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

interface Running {
  handle: WorkerHandle;
  /** Monotonic ms. */
  startedAt: number;
  /** Monotonic ms. */
  lastBeatAt: number;
  /** Wall-clock ms of the last heartbeat (for the metrics). */
  lastBeatWallAt: number | null;
  beats: number;
  reportedRss: number | null;
  /**
   * Set when the supervisor itself stops the worker: its exit is expected. `restart`: start the next
   * one (after `restartDelayMs`); `held`: the check that killed it starts the next; `shutdown`: none.
   */
  stopping: 'restart' | 'held' | 'shutdown' | null;
  restartDelayMs: number;
  killTimer: NodeJS.Timeout | null;
  exited: Promise<void>;
}

/**
 * The supervisor of `valhalla run`: starts the worker, watches its heartbeat and its
 * memory, restarts it daily, after a crash (with backoff) and when it grows past its limit. What
 * each event means for the product (audit, alert, rollback) is the caller's `onEvent`.
 */
export function createSupervisor(options: SupervisorOptions): Supervisor {
  const { clock, logger, onEvent } = options;
  const readRss = options.readRss ?? procRss;
  const elapsed = options.monotonicNow ?? (() => performance.now());
  const fatal = new Set(options.fatalExitCodes ?? []);
  let current: Running | null = null;
  /** Wall-clock ms: see `heartbeatSince`. */
  let lastSignOfLife: number | null = null;
  let restartAt: number | null = null;
  let crashes = 0;
  let memoryRestarts = 0;
  let nextRestart = nextDailyRestart(options.dailyRestartUtc, clock.now());
  let interval: NodeJS.Timeout | null = null;
  /** Real time (the event loop's own, never a virtual clock) of the interval's last run. */
  let lastIntervalAt = 0;
  let skippedLast = false;
  let stopped = false;
  let ticking: Promise<void> | null = null;
  let resolveDone!: (result: { code: number }) => void;
  const done = new Promise<{ code: number }>((resolve) => {
    resolveDone = resolve;
  });

  /**
   * Hand an event to the caller's handler; a failure (the database busy for longer than its
   * timeout, say) is retried a few times a second apart, then logged: the audit entry or the
   * recovery alert it carries is not dropped on the first transient error.
   */
  async function emit(event: SupervisorEvent) {
    for (let attempt = 1; ; attempt++) {
      try {
        await onEvent(event);
        return;
      } catch (error) {
        if (attempt >= EVENT_ATTEMPTS || stopped) {
          logger.error({ err: error, event: event.kind, attempt }, 'supervisor event handler failed');
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  /** Until the handler succeeds (every second), or the supervisor stops. */
  async function emitUntilHandled(event: SupervisorEvent) {
    for (let attempt = 1; !stopped; attempt++) {
      try {
        await onEvent(event);
        return;
      } catch (error) {
        logger.error(
          { err: error, event: event.kind, attempt },
          'supervisor event not handled yet: retrying',
        );
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  }

  function spawn() {
    restartAt = null;
    const handle = options.spawnWorker();
    const now = elapsed();
    let resolveExit!: () => void;
    const running: Running = {
      handle,
      startedAt: now,
      lastBeatAt: now,
      lastBeatWallAt: null,
      beats: 0,
      reportedRss: null,
      stopping: null,
      restartDelayMs: 0,
      killTimer: null,
      exited: new Promise<void>((resolve) => {
        resolveExit = resolve;
      }),
    };
    current = running;
    handle.onMessage((message) => {
      if (!isHeartbeat(message)) return;
      running.lastBeatAt = elapsed();
      running.lastBeatWallAt = clock.now();
      lastSignOfLife = running.lastBeatWallAt;
      running.reportedRss = message.rssBytes;
      running.beats++;
      if (running.beats === 1) void emit({ kind: 'first_heartbeat', pid: handle.pid });
    });
    handle.onExit((code, signal) => {
      if (running.killTimer) clearTimeout(running.killTimer);
      if (current === running) current = null;
      void onExit(running, code, signal).finally(resolveExit);
    });
    void emit({ kind: 'started', pid: handle.pid, start: now });
  }

  async function onExit(running: Running, code: number | null, signal: NodeJS.Signals | null) {
    const pid = running.handle.pid;
    if (stopped || running.stopping === 'shutdown' || running.stopping === 'held') return;
    if (running.stopping === 'restart') {
      if (running.restartDelayMs > 0) restartAt = elapsed() + running.restartDelayMs;
      else spawn();
      return;
    }
    if (code === 0) {
      await emit({ kind: 'finished', pid, code: 0 });
      finish(0);
      return;
    }
    if (code !== null && fatal.has(code)) {
      await emit({ kind: 'finished', pid, code });
      finish(code);
      return;
    }
    const ranMs = elapsed() - running.startedAt;
    crashes = ranMs >= HEALTHY_RUN_MS ? 1 : crashes + 1;
    const restartInMs = crashBackoffMs(crashes);
    await emit({ kind: 'crashed', pid, code, signal, restartInMs });
    restartAt = elapsed() + restartInMs;
  }

  function finish(code: number) {
    stopped = true;
    if (interval) clearInterval(interval);
    interval = null;
    resolveDone({ code });
  }

  /** SIGTERM, then SIGKILL after the grace (a frozen process ignores SIGTERM until it thaws). */
  function terminate(
    running: Running,
    why: 'restart' | 'held' | 'shutdown',
    signal: NodeJS.Signals = 'SIGTERM',
  ) {
    running.stopping = why;
    running.handle.kill(signal);
    if (signal !== 'SIGKILL') {
      running.killTimer = setTimeout(() => running.handle.kill('SIGKILL'), options.stopGraceMs);
      running.killTimer.unref();
    }
  }

  async function check(judgeHeartbeat = true) {
    if (stopped) return;
    const now = elapsed();
    if (current === null) {
      if (restartAt !== null && now >= restartAt) spawn();
      return;
    }
    const running = current;
    if (running.stopping) return;
    const pid = running.handle.pid;
    const ageMs = now - running.lastBeatAt;
    const limitMs = options.heartbeatIntervalMs + options.heartbeatGraceMs;
    if (judgeHeartbeat && ageMs > limitMs) {
      // Killed first: a frozen process cannot be asked to stop, and it may hold a database lock
      // (SQLite's write lock, PostgreSQL's audit lock) that the rollback below needs. SIGKILL, and
      // SIGCONT in case it was stopped; its death releases the locks.
      terminate(running, 'held', 'SIGKILL');
      running.handle.kill('SIGCONT');
      await running.exited;
      // Then the audit, the alert and (Phase 4) the rollback, retried until they commit: no new
      // worker starts before, so none can start live after a missed heartbeat.
      await emitUntilHandled({ kind: 'heartbeat_missed', pid, ageMs, limitMs });
      if (!stopped) spawn();
      return;
    }
    const rss = readRss(pid) ?? running.reportedRss;
    if (rss !== null && rss > options.memoryLimitBytes) {
      await emit({ kind: 'memory_exceeded', pid, rssBytes: rss, limitBytes: options.memoryLimitBytes });
      // A worker that outgrows its limit again soon backs off like a crash (no restart loop).
      memoryRestarts = now - running.startedAt >= HEALTHY_RUN_MS ? 1 : memoryRestarts + 1;
      running.restartDelayMs = memoryRestarts > 1 ? crashBackoffMs(memoryRestarts - 1) : 0;
      terminate(running, 'restart');
      return;
    }
    const wallNow = clock.now();
    if (wallNow >= nextRestart) {
      await emit({ kind: 'daily_restart', pid, at: new Date(nextRestart).toISOString() });
      nextRestart = nextDailyRestart(options.dailyRestartUtc, wallNow);
      terminate(running, 'restart');
    }
  }

  return {
    done,
    start() {
      if (interval || stopped) return;
      lastSignOfLife = clock.now();
      spawn();
      lastIntervalAt = performance.now();
      interval = setInterval(() => {
        const at = performance.now();
        const lateMs = at - lastIntervalAt - CHECK_INTERVAL_MS;
        lastIntervalAt = at;
        // Skipped once at most: by the next run the loop has read the channel (its poll phase came
        // between), so a supervisor stalled again and again still catches a frozen worker.
        const judge = lateMs <= SUPERVISOR_STALL_MS || skippedLast;
        skippedLast = !judge;
        if (!judge) {
          logger.warn(
            { lateMs: Math.round(lateMs) },
            "the supervisor's event loop stalled: the heartbeat is judged on the next check",
          );
        }
        ticking ??= check(judge).finally(() => {
          ticking = null;
        });
      }, CHECK_INTERVAL_MS);
    },
    async tick() {
      await (ticking ?? Promise.resolve());
      await check();
    },
    async stop() {
      if (stopped) {
        await current?.exited;
        return;
      }
      stopped = true;
      if (interval) clearInterval(interval);
      interval = null;
      await ticking;
      const running = current;
      if (running) {
        if (running.stopping === null) terminate(running, 'shutdown');
        else running.stopping = 'shutdown';
        await running.exited;
      }
      resolveDone({ code: 0 });
    },
    worker() {
      if (!current) return null;
      return {
        pid: current.handle.pid,
        rssBytes: readRss(current.handle.pid) ?? current.reportedRss,
        heartbeatAt: current.lastBeatWallAt,
      };
    },
    heartbeatSince: () => lastSignOfLife,
  };
}

function isHeartbeat(message: unknown): message is HeartbeatMessage {
  return (
    typeof message === 'object' &&
    message !== null &&
    (message as { type?: unknown }).type === 'heartbeat' &&
    typeof (message as { rssBytes?: unknown }).rssBytes === 'number'
  );
}
