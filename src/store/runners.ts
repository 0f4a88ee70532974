import { type Selectable, sql } from 'kysely';
import type { Dialect } from './dialect.js';
import type { Executor, StoreTransaction } from './executor.js';
import type { Database } from './schema.js';

/** The one lease of leadership: its holder runs cycles and talks to the partner (migration 0009). */
export const LEADER_LEASE = 'leader';

/**
 * Who a runner is: its name (unique per process), its host, its process, and the space its pid is
 * meaningful in (the machine's boot and the pid namespace): another runner may judge the holder's
 * process gone only from the same space.
 */
export interface RunnerIdentity {
  holder: string;
  host: string;
  pid: number;
  pidSpace: string;
}

export interface LeaseRow {
  holder: string;
  host: string;
  pid: number;
  pidSpace: string;
  epoch: number;
  renewedAt: number;
  expiresAt: number;
  /** No batch caught mid-request may be recovered before this (a request of an earlier leader may be in flight). */
  quietUntil: number;
}

/** How a runner came to lead: the lease was new, released, its own, expired, or held by a dead process it can see. */
export type LeaseTake = 'new' | 'released' | 'own' | 'expired' | 'dead';

export type LeaseAttempt =
  | {
      acquired: true;
      epoch: number;
      how: LeaseTake;
      previous: LeaseRow | null;
      now: number;
      /** Recover batches caught mid-request only from then (database clock). */
      quietUntil: number;
    }
  | { acquired: false; current: LeaseRow; now: number };

/** A released lease has expired at 0: whoever comes next waits only for its `quiet_until`. */
const RELEASED = 0;

/**
 * The database's clock (PostgreSQL), shared by every runner whatever its host; on SQLite (one host)
 * the runner's own. Milliseconds since the epoch.
 */
export async function databaseNow(db: Executor, dialect: Dialect, local: () => number): Promise<number> {
  if (dialect !== 'postgres') return local();
  const { rows } = await sql<{
    now: number;
  }>`select floor(extract(epoch from clock_timestamp()) * 1000)::bigint as now`.execute(db);
  return Number(rows[0]!.now);
}

/**
 * Lock the lease's row for the rest of the transaction and read it. On PostgreSQL `FOR UPDATE`
 * makes every fenced transaction (claims, authorisations, request starts, takeovers) wait for the
 * one before it; on SQLite the write lock taken first does the same.
 */
export async function lockLease(trx: StoreTransaction, dialect: Dialect): Promise<LeaseRow | null> {
  if (dialect === 'sqlite') {
    // Take the write lock now, not at the first write: a read under a shared lock could go stale.
    await trx.updateTable('runner_lease').set({ name: LEADER_LEASE }).where(sql<boolean>`0`).execute();
  }
  let query = trx.selectFrom('runner_lease').selectAll().where('name', '=', LEADER_LEASE);
  if (dialect === 'postgres') query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row ? toLease(row) : null;
}

function toLease(row: Selectable<Database['runner_lease']>): LeaseRow {
  return {
    holder: row.holder,
    host: row.host,
    pid: Number(row.pid),
    pidSpace: row.pid_space,
    epoch: Number(row.epoch),
    renewedAt: Number(row.renewed_at),
    expiresAt: Number(row.expires_at),
    quietUntil: Number(row.quiet_until),
  };
}

/**
 * Take the lease if it is free, released, this runner's, held by a process of this pid space that no
 * longer exists (`processGone`), or expired; otherwise report who holds it. A takeover raises the
 * epoch. Taking over an expired lease, whose holder may be alive and cut off with a request in flight,
 * sets `quiet_until` `takeoverWaitMs` ahead; a quiet period already running is inherited whatever the
 * way in.
 */
export async function tryTakeLease(
  trx: StoreTransaction,
  dialect: Dialect,
  me: RunnerIdentity,
  ttlMs: number,
  takeoverWaitMs: number,
  processGone: (pid: number) => boolean,
  local: () => number,
): Promise<LeaseAttempt> {
  const current = await lockLease(trx, dialect);
  const now = await databaseNow(trx, dialect, local);
  const lease = {
    holder: me.holder,
    host: me.host,
    pid: me.pid,
    pid_space: me.pidSpace,
    renewed_at: now,
    expires_at: now + ttlMs,
  };
  if (current === null) {
    await trx
      .insertInto('runner_lease')
      .values({ name: LEADER_LEASE, epoch: 1, acquired_at: now, quiet_until: 0, ...lease })
      .execute();
    return { acquired: true, epoch: 1, how: 'new', previous: null, now, quietUntil: 0 };
  }
  let how: LeaseTake | null = null;
  if (current.holder === me.holder && current.pidSpace === me.pidSpace && current.pid === me.pid) how = 'own';
  else if (current.expiresAt === RELEASED) how = 'released';
  // Before expiry: a holder known dead needs no waiting out, expired or not.
  else if (current.pidSpace === me.pidSpace && processGone(current.pid)) how = 'dead';
  else if (current.expiresAt <= now) how = 'expired';
  if (how === null) return { acquired: false, current, now };
  const epoch = how === 'own' ? current.epoch : current.epoch + 1;
  const quietUntil =
    how === 'expired' ? Math.max(current.quietUntil, now + takeoverWaitMs) : current.quietUntil;
  await trx
    .updateTable('runner_lease')
    .set({ epoch, quiet_until: quietUntil, ...(how === 'own' ? {} : { acquired_at: now }), ...lease })
    .where('name', '=', LEADER_LEASE)
    .execute();
  return { acquired: true, epoch, how, previous: current, now, quietUntil };
}

/**
 * Extend this runner's lease of `epoch`; null when it is no longer this runner's (taken over),
 * else the database's time of the renewal.
 */
export async function renewLease(
  trx: StoreTransaction,
  dialect: Dialect,
  me: RunnerIdentity,
  epoch: number,
  ttlMs: number,
  local: () => number,
): Promise<number | null> {
  const current = await lockLease(trx, dialect);
  if (!holds(current, me, epoch)) return null;
  const now = await databaseNow(trx, dialect, local);
  await trx
    .updateTable('runner_lease')
    .set({ renewed_at: now, expires_at: now + ttlMs })
    .where('name', '=', LEADER_LEASE)
    .execute();
  return now;
}

/**
 * Give the lease up (clean shutdown): the next runner takes it at once. A request start of this
 * runner's still unsettled (cut, its answer never seen) may be in flight until its deadline: the
 * next runner recovers nothing before then.
 */
export async function releaseLease(
  trx: StoreTransaction,
  dialect: Dialect,
  me: RunnerIdentity,
  epoch: number,
): Promise<boolean> {
  const current = await lockLease(trx, dialect);
  if (!holds(current, me, epoch)) return false;
  const open = await trx
    .selectFrom('rate_starts')
    .select((eb) => eb.fn.max('expires_at').as('until'))
    .where('holder', '=', me.holder)
    .where('settled_at', 'is', null)
    .executeTakeFirst();
  const until = open?.until === null || open?.until === undefined ? 0 : Number(open.until);
  await trx
    .updateTable('runner_lease')
    .set({ expires_at: RELEASED, quiet_until: Math.max(current!.quietUntil, until) })
    .where('name', '=', LEADER_LEASE)
    .execute();
  return true;
}

/** The lease as it stands (status, dashboard), without locking it. */
export async function readLease(db: Executor): Promise<LeaseRow | null> {
  const row = await db
    .selectFrom('runner_lease')
    .selectAll()
    .where('name', '=', LEADER_LEASE)
    .executeTakeFirst();
  return row ? toLease(row) : null;
}

/** Whether `lease` is `me`'s lease of `epoch` (expiry aside). */
export function holds(lease: LeaseRow | null, me: RunnerIdentity, epoch: number): boolean {
  return (
    lease !== null &&
    lease.holder === me.holder &&
    lease.pidSpace === me.pidSpace &&
    lease.pid === me.pid &&
    lease.epoch === epoch &&
    lease.expiresAt !== RELEASED
  );
}

export interface StartLogShape {
  /** Starts allowed in any window. */
  limit: number;
  windowMs: number;
  marginMs: number;
  /** The longest a request can last: an unsettled start stops counting as "now" after this. */
  maxRequestMs: number;
}

export type StartDecision = { granted: true; id: number; at: number } | { granted: false; waitMs: number };

/**
 * Inside a fenced transaction (the lease's row locked): grant one request start if fewer than
 * `limit` starts lie in the last window plus margin, counting each start at the moment the partner
 * had certainly seen it (`settled_at`), or as "now" while unsettled and not past its deadline.
 */
export async function grantStart(
  trx: StoreTransaction,
  dialect: Dialect,
  me: RunnerIdentity,
  epoch: number,
  shape: StartLogShape,
  local: () => number,
): Promise<StartDecision> {
  const now = await databaseNow(trx, dialect, local);
  const horizon = shape.windowMs + shape.marginMs;
  // A start settles at the latest at its deadline: anything granted before this has left every window.
  const oldest = now - horizon - shape.maxRequestMs;
  await trx
    .deleteFrom('rate_starts')
    .where('granted_at', '<', oldest - 60_000)
    .execute();
  const rows = await trx
    .selectFrom('rate_starts')
    .select(['settled_at', 'expires_at'])
    .where('granted_at', '>=', oldest)
    .execute();
  const counted: (number | null)[] = [];
  for (const row of rows) {
    const settled = row.settled_at === null ? null : Number(row.settled_at);
    const deadline = Number(row.expires_at);
    const at = settled ?? (deadline > now ? null : deadline);
    if (at === null || at + horizon > now) counted.push(at);
  }
  const excess = counted.length - shape.limit;
  if (excess < 0) {
    const row = await trx
      .insertInto('rate_starts')
      .values({
        holder: me.holder,
        epoch,
        granted_at: now,
        settled_at: null,
        expires_at: now + shape.maxRequestMs,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return { granted: true, id: Number(row.id), at: now };
  }
  const settled = counted.filter((at): at is number => at !== null).sort((a, b) => a - b);
  const leaving = settled[excess];
  return {
    granted: false,
    waitMs: leaving === undefined ? Number.POSITIVE_INFINITY : leaving + horizon - now,
  };
}

/** The partner has certainly seen start `id` by now (its answer began, or the request ended). */
export async function settleStart(
  db: Executor,
  dialect: Dialect,
  id: number,
  local: () => number,
): Promise<void> {
  const now = await databaseNow(db, dialect, local);
  await db
    .updateTable('rate_starts')
    .set({ settled_at: now })
    .where('id', '=', id)
    .where('settled_at', 'is', null)
    .execute();
}

/** Request starts granted in [from, to), oldest first (tests, the dashboard). */
export async function startsBetween(
  db: Executor,
  from: number,
  to: number,
): Promise<{ holder: string; granted_at: number; settled_at: number | null }[]> {
  const rows = await db
    .selectFrom('rate_starts')
    .select(['holder', 'granted_at', 'settled_at'])
    .where('granted_at', '>=', from)
    .where('granted_at', '<', to)
    .orderBy('granted_at')
    .execute();
  return rows.map((r) => ({
    holder: r.holder,
    granted_at: Number(r.granted_at),
    settled_at: r.settled_at === null ? null : Number(r.settled_at),
  }));
}
