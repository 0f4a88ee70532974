import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import type { AuditLog } from '../audit/index.js';
import type { Clock, Sleep } from '../clock/index.js';
import type { Logger } from '../log/index.js';
import { OutboundError, type RatePermit, type StartLimiter } from '../outbound/index.js';
import type { StoreTransaction } from '../store/index.js';
import {
  backendRules,
  databaseNow,
  grantStart,
  holds,
  isConcurrentInsert,
  isTransient,
  type LeaseAttempt,
  type LeaseRow,
  type LeaseTake,
  lockLease,
  type RunnerIdentity,
  releaseLease,
  renewLease,
  type StartLogShape,
  type Store,
  settleStart,
  tryTakeLease,
} from '../store/index.js';

/**
 * Several runners on one database: one leads, the others stand by.
 *
 * The lease lasts one heartbeat interval; the leader renews it every third of that and standbys try
 * to take it every third, so a standby leads within two heartbeats of the leader dying or being cut
 * off. The leader stops acting as soon as its own clock says the lease may have lapsed (renewals
 * failing): it aborts its cycle and any request in flight, before a standby can take over.
 *
 * Every transaction that claims, authorises or starts a request locks the lease's row and checks it
 * is still this runner's term (`holds`): a runner that lost the lease changes nothing, whatever it
 * believes, and those transactions run one at a time across runners, so the caps read in them hold.
 */
export interface LeadershipOptions {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  sleep: Sleep;
  logger: Logger;
  /** The runner's name (VALHALLA_RUNNER_NAME, default the host name). */
  name: string;
  /** How long a lease lasts without renewal: one heartbeat interval. */
  leaseMs: number;
  /**
   * After taking over an expired lease, how long to wait before recovering batches caught
   * mid-request: the old leader's last request may still be in flight (its timeout, plus margin).
   */
  takeoverWaitMs: number;
  /** The shared request-start log's shape (the policy's rate limit). */
  starts: StartLogShape;
  /** The local monotonic clock (default `performance.now`): the leader's own view of its lease. */
  monotonicNow?: () => number;
}

export interface Term {
  epoch: number;
  how: LeaseTake;
  /** Aborts when this runner may no longer act as the leader: renewals failed until the lease could lapse, or it was taken over. */
  lost: AbortSignal;
}

export interface Leadership {
  readonly me: RunnerIdentity;
  /** The current term, or null while standing by. */
  readonly term: Term | null;
  /**
   * Stand by until this runner leads (retrying through database errors), then return its term;
   * null when `signal` aborts first. `onStandby` hears who leads meanwhile.
   */
  acquire(signal: AbortSignal, onStandby?: (current: LeaseRow) => void): Promise<Term | null>;
  /** Inside a transaction: lock the lease and tell whether this runner's term still holds it. */
  holds(trx: StoreTransaction): Promise<boolean>;
  /** End the term: stop renewing and release the lease so that a standby need not wait. Safe twice. */
  resign(): Promise<void>;
  /** Every request start to the partner passes this: the shared sliding log, in this term only. */
  readonly startLimiter: StartLimiter;
  /** The shared start log's shape from the next start on (the rate limit lowered while running). */
  reshapeStarts(shape: { limit: number; windowMs: number }): void;
}

/** Thrown by a fenced step when this runner no longer holds the lease: nothing was changed. */
export class NotLeader extends Error {
  override readonly name = 'NotLeader';
}

/** A process that does not exist on this host (it cannot hold anything any more). */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** How often the shared start log is asked again while it is full (other runners' starts settle unseen). */
const START_POLL_MS = 50;
/**
 * Most a runner's clock may differ from the database's: the daily cap's day, the ramp and lead
 * freshness are read on the runner's clock, the lease and the start log on the database's.
 */
export const MAX_CLOCK_SKEW_MS = 2_000;

/** This runner's clock is too far from the database's to lead. */
export class ClockSkew extends Error {
  override readonly name = 'ClockSkew';
  constructor(readonly skewMs: number) {
    super(
      `this host's clock is ${Math.round(Math.abs(skewMs))} ms ${skewMs > 0 ? 'behind' : 'ahead of'} the database's (at most ${MAX_CLOCK_SKEW_MS} ms): fix its time synchronisation`,
    );
  }
}

/**
 * Where a pid means something: this boot of this machine and this pid namespace. Another runner
 * judges a holder's process gone only from the same space; without /proc nobody shares it.
 */
function pidSpace(): string {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const namespace = readlinkSync('/proc/self/ns/pid');
    return `${boot}/${namespace}`;
  } catch {
    return `unshared:${randomBytes(8).toString('hex')}`;
  }
}

export function createLeadership(options: LeadershipOptions): Leadership {
  const { store, audit, clock, sleep, logger, leaseMs } = options;
  // A copy: the rate limit may be lowered while the runner leads (reshapeStarts).
  const starts = { ...options.starts };
  const monotonic = options.monotonicNow ?? (() => performance.now());
  const now = () => clock.now();
  const me: RunnerIdentity = {
    // A random suffix: two runners given the same name (containers with one host name) are still two.
    holder: `${options.name}#${randomBytes(4).toString('hex')}`,
    host: hostname(),
    pid: process.pid,
    pidSpace: pidSpace(),
  };
  const every = Math.max(1, Math.floor(leaseMs / 3));
  interface Held extends Term {
    controller: AbortController;
    /** Renews every third of the lease. */
    timer: NodeJS.Timeout;
    /** Ends the term when the lease may have lapsed (local clock); moved by each renewal. */
    lapse: NodeJS.Timeout | null;
    deadline: number;
    renewing: boolean;
  }
  let term: Held | null = null;

  function endTerm(reason: string) {
    if (!term) return;
    const ending = term;
    term = null;
    clearInterval(ending.timer);
    if (ending.lapse) clearTimeout(ending.lapse);
    if (!ending.controller.signal.aborted) {
      logger.warn({ epoch: ending.epoch, reason }, 'no longer the leader: outbound stopped');
      ending.controller.abort(new NotLeader(reason));
    }
  }

  /** The lease lasts until `deadline` by this runner's clock: the term ends then unless renewed. */
  function extend(current: Held, deadline: number) {
    current.deadline = deadline;
    if (current.lapse) clearTimeout(current.lapse);
    current.lapse = setTimeout(
      () => {
        if (term === current) endTerm('the lease could not be renewed in time');
      },
      Math.max(0, deadline - monotonic()),
    );
    current.lapse.unref();
  }

  async function renew(current: Held) {
    if (term !== current || current.renewing) return;
    current.renewing = true;
    const startedAt = monotonic();
    try {
      const at = await store.db
        .transaction()
        .execute((trx) => renewLease(trx, store.dialect, me, current.epoch, leaseMs, now));
      if (term !== current) return;
      if (at === null) endTerm('the lease was taken over');
      else if (backendRules(store.dialect).remoteClock && Math.abs(at - clock.now()) > MAX_CLOCK_SKEW_MS) {
        endTerm(new ClockSkew(at - clock.now()).message);
      }
      // The database set the lease's expiry after `startedAt`: it lasts at least until then + leaseMs.
      else extend(current, startedAt + leaseMs);
    } catch (error) {
      if (term === current) logger.error({ err: error }, 'lease not renewed: the database did not answer');
    } finally {
      current.renewing = false;
    }
  }

  function startTerm(epoch: number, how: LeaseTake, renewedFrom: number): Term {
    const controller = new AbortController();
    const current: Held = {
      epoch,
      how,
      lost: controller.signal,
      controller,
      deadline: renewedFrom + leaseMs,
      renewing: false,
      lapse: null,
      timer: setInterval(() => void renew(current), every),
    };
    current.timer.unref();
    term = current;
    extend(current, renewedFrom + leaseMs);
    return current;
  }

  async function acquire(signal: AbortSignal, onStandby?: (current: LeaseRow) => void) {
    if (term) return term;
    while (!signal.aborted) {
      const startedAt = monotonic();
      let attempt: LeaseAttempt;
      try {
        attempt = await store.db.transaction().execute(async (trx) => {
          const taken = await tryTakeLease(
            trx,
            store.dialect,
            me,
            leaseMs,
            options.takeoverWaitMs,
            processGone,
            now,
          );
          if (!taken.acquired) return taken;
          // Several hosts: the caps' day and the lease's timing must agree with the database's clock.
          const skew = taken.now - clock.now();
          if (backendRules(store.dialect).remoteClock && Math.abs(skew) > MAX_CLOCK_SKEW_MS)
            throw new ClockSkew(skew);
          if (taken.how !== 'own') {
            await audit.append(trx, {
              actor: 'runner',
              action: 'runner.lead',
              subject: `runner:${me.holder}`,
              details: {
                epoch: taken.epoch,
                how: taken.how,
                at: taken.now,
                host: me.host,
                pid: me.pid,
                quietUntil: taken.quietUntil,
                previous: taken.previous && {
                  holder: taken.previous.holder,
                  host: taken.previous.host,
                  pid: taken.previous.pid,
                  epoch: taken.previous.epoch,
                  renewedAt: taken.previous.renewedAt,
                  expiresAt: taken.previous.expiresAt,
                },
              },
            });
          }
          return taken;
        });
      } catch (error) {
        // Stand by through what passes (the database gone, a lock conflict, a clock to be fixed);
        // anything else is a bug or a broken installation (a missing grant): the worker fails with it.
        // 23505: two runners inserted the very first lease at once; the other one leads.
        if (!(error instanceof ClockSkew) && !isTransient(error) && !isConcurrentInsert(error)) throw error;
        logger.error({ err: error }, `lease not taken (${(error as Error).message}); standing by`);
        await sleep(every, signal);
        continue;
      }
      if (!attempt.acquired) {
        onStandby?.(attempt.current);
        await sleep(every, signal);
        continue;
      }
      const current = startTerm(attempt.epoch, attempt.how, startedAt);
      logger.info({ epoch: attempt.epoch, how: attempt.how, runner: me.holder }, 'leading');
      const waitMs = attempt.quietUntil - attempt.now;
      if (waitMs > 0) {
        // A previous leader may be alive and cut off with its last request in flight: nothing it
        // left mid-request is recovered before that request has certainly ended.
        logger.warn(
          { waitMs, previous: attempt.previous?.holder },
          'leading: waiting out the previous leader before recovering its batches',
        );
        await sleep(waitMs, AbortSignal.any([signal, current.lost]));
        if (current.lost.aborted) continue;
        if (signal.aborted) break;
      }
      return current;
    }
    await resign();
    return null;
  }

  /** Inside a transaction: the epoch of this runner's term if it still holds the lease (row locked), else null. */
  async function fence(trx: StoreTransaction): Promise<number | null> {
    const current = term;
    if (!current || current.lost.aborted || monotonic() >= current.deadline) return null;
    const lease = await lockLease(trx, store.dialect);
    if (!holds(lease, me, current.epoch)) return null;
    if (lease!.expiresAt <= (await databaseNow(trx, store.dialect, now))) return null;
    // The term may have ended meanwhile (its lapse timer): then it no longer counts, whatever the row says.
    return term === current && !current.lost.aborted ? current.epoch : null;
  }

  async function resign() {
    const ending = term;
    if (!ending) return;
    endTerm('resigned');
    try {
      await store.db.transaction().execute((trx) => releaseLease(trx, store.dialect, me, ending.epoch));
    } catch (error) {
      logger.error({ err: error }, 'lease not released (it expires by itself)');
    }
  }

  const startLimiter: StartLimiter = {
    async acquire(signal?: AbortSignal): Promise<RatePermit> {
      for (;;) {
        if (signal?.aborted) {
          throw new OutboundError('CANCELLED', 'cancelled while waiting to start; nothing was sent', {
            cause: signal.reason,
          });
        }
        let decision: Awaited<ReturnType<typeof grantStart>> | null;
        try {
          decision = await store.db.transaction().execute(async (trx) => {
            const epoch = await fence(trx);
            if (epoch === null) return null;
            return grantStart(trx, store.dialect, me, epoch, starts, now);
          });
        } catch (cause) {
          throw new OutboundError(
            'START_NOT_GRANTED',
            `the shared start log could not be reached; nothing was sent: ${(cause as Error).message}`,
            { cause },
          );
        }
        if (decision === null) {
          throw new OutboundError('START_NOT_GRANTED', 'this runner no longer leads; nothing was sent');
        }
        if (decision.granted) return startPermit(decision.id);
        await sleep(Math.max(1, Math.min(START_POLL_MS, Math.ceil(decision.waitMs))), signal);
      }
    },
  };

  function startPermit(id: number): RatePermit {
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      // Unrecorded (database gone), the start counts until its deadline: later starts only wait longer.
      void settleStart(store.db, store.dialect, id, now).catch((error) =>
        logger.warn({ err: error }, 'request start not settled in the shared log'),
      );
    };
    return { markAnswered: settle, release: settle };
  }

  return {
    me,
    get term() {
      return term;
    },
    acquire,
    holds: async (trx) => (await fence(trx)) !== null,
    resign,
    startLimiter,
    reshapeStarts(shape) {
      starts.limit = shape.limit;
      starts.windowMs = shape.windowMs;
    },
  };
}
