/**
 * Several runners on one database, in one process: each runner is its own store
 * connection and its own Leadership, on a real SQLite file or a real PostgreSQL schema.
 *
 * - one leads, the others stand by and see who leads; fencing: only the lease's holder passes `holds`;
 * - a released lease is taken at once; an expired one (a holder on another host that stopped
 *   renewing) is taken after its expiry, and the taker waits out the old leader's last request; a
 *   lease held by a dead process on this host is taken at once, expired or not;
 * - the shared start log: every request start of the leader is granted in the database, so no
 *   window of the policy's 1,000 ms holds more than 5 starts, across a change of leader too, and a
 *   runner that does not lead is refused any start (nothing sent).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { createAuditLog } from '../../src/audit/index.js';
import { type Clock, systemClock, systemSleep } from '../../src/clock/index.js';
import { loadConfig } from '../../src/config/index.js';
import type { PartnerPort } from '../../src/engine/index.js';
import { createLeadership, type Leadership } from '../../src/engine/index.js';
import { writeGoLiveAt } from '../../src/guard/index.js';
import { createLogger } from '../../src/log/index.js';
import { isOutboundError } from '../../src/outbound/index.js';
import {
  databaseNow,
  openStore,
  readLease,
  type Store,
  startsBetween,
  tryTakeLease,
} from '../../src/store/index.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { phase4Env, policyFileWith, recentLeadsCsv, UNCALLED_PARTNER } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { CLEARED, DAY, HOUR } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const WINDOW_MS = 1_000;
const LIMIT = 5;

/** One database, and a way to open runners on it (each with its own connection). */
async function database(backend: Backend) {
  const target = backend.target();
  const first = await openStore(target);
  cleanups.push(() => first.close());
  const logger = createLogger({ level: 'silent', file: join(tempDir(), 'runners.log') });
  async function runner(
    name: string,
    options: { leaseMs?: number; takeoverWaitMs?: number; clock?: Clock } = {},
  ) {
    const store = await openStore(target);
    cleanups.push(() => store.close());
    const leadership = createLeadership({
      store,
      audit: createAuditLog(store, systemClock),
      clock: options.clock ?? systemClock,
      sleep: systemSleep,
      logger,
      name,
      leaseMs: options.leaseMs ?? 3_000,
      takeoverWaitMs: options.takeoverWaitMs ?? 100,
      starts: { limit: LIMIT, windowMs: WINDOW_MS, marginMs: 5, maxRequestMs: 2_000 },
    });
    cleanups.push(() => leadership.resign());
    return { store, leadership };
  }
  return { store: first, runner };
}

async function holds(runner: { store: Store; leadership: Leadership }): Promise<boolean> {
  return runner.store.db.transaction().execute((trx) => runner.leadership.holds(trx));
}

/** Most grants in any window of WINDOW_MS (a grant exactly a window after another is outside it). */
function busiestWindow(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= WINDOW_MS) j++;
    most = Math.max(most, i - j + 1);
  }
  return most;
}

/** A pid that no process on this host has (a child that has exited and been reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout.toString());
}

describe.each(list)('several runners on $name', (backend) => {
  it('one leads and the others stand by; only the holder passes the fence; a released lease is taken at once', async () => {
    const db = await database(backend);
    const a = await db.runner('alpha');
    const b = await db.runner('beta');
    const c = await db.runner('gamma');
    const termA = await a.leadership.acquire(AbortSignal.timeout(5_000));
    expect(termA).toMatchObject({ epoch: 1, how: 'new' });

    const seen: string[] = [];
    const standby = new AbortController();
    const waiting = b.leadership.acquire(standby.signal, (current) => {
      seen.push(current.holder);
      standby.abort();
    });
    expect(await waiting).toBeNull();
    expect(seen).toEqual([a.leadership.me.holder]);
    expect(await holds(a)).toBe(true);
    expect(await holds(b)).toBe(false);
    expect(await holds(c)).toBe(false);

    await a.leadership.resign();
    expect(termA!.lost.aborted).toBe(true);
    expect(await holds(a)).toBe(false);
    const termC = await c.leadership.acquire(AbortSignal.timeout(5_000));
    expect(termC).toMatchObject({ epoch: 2, how: 'released' });
    expect(await holds(c)).toBe(true);
    expect(await holds(a)).toBe(false);
    const lease = await readLease(db.store.db);
    expect(lease).toMatchObject({ holder: c.leadership.me.holder, epoch: 2 });

    // Every change of leader is in the audit chain, with the lease it replaced.
    const entries = await db.store.db
      .selectFrom('audit_log')
      .select(['action', 'subject', 'details'])
      .where('action', '=', 'runner.lead')
      .orderBy('seq')
      .execute();
    expect(entries.map((e) => e.subject)).toEqual([
      `runner:${a.leadership.me.holder}`,
      `runner:${c.leadership.me.holder}`,
    ]);
    expect(JSON.parse(entries[1]!.details)).toMatchObject({
      epoch: 2,
      how: 'released',
      previous: { holder: a.leadership.me.holder, epoch: 1 },
    });
  });

  it('an expired lease (its holder on another host stopped renewing) is taken after its expiry, within two lease periods', async () => {
    const db = await database(backend);
    const leaseMs = 600;
    const other = {
      holder: 'elsewhere#00000000',
      host: 'another-host.invalid',
      pid: 4242,
      pidSpace: 'elsewhere',
    };
    const taken = await db.store.db
      .transaction()
      .execute((trx) => tryTakeLease(trx, db.store.dialect, other, leaseMs, 0, () => false, systemClock.now));
    expect(taken).toMatchObject({ acquired: true, how: 'new' });

    const b = await db.runner('beta', { leaseMs, takeoverWaitMs: 300 });
    const term = await b.leadership.acquire(AbortSignal.timeout(10_000));
    expect(term).toMatchObject({ epoch: 2, how: 'expired' });
    const [entry] = await db.store.db
      .selectFrom('audit_log')
      .select('details')
      .where('action', '=', 'runner.lead')
      .where('subject', '=', `runner:${b.leadership.me.holder}`)
      .execute();
    const details = JSON.parse(entry!.details) as {
      at: number;
      quietUntil: number;
      previous: { holder: string; renewedAt: number; expiresAt: number };
    };
    // The old holder may be alive with a request in flight: the term starts after the quiet period.
    expect(details.quietUntil).toBe(details.at + 300);
    expect(await readNow(db.store)).toBeGreaterThanOrEqual(details.quietUntil);
    expect(details.previous.holder).toBe(other.holder);
    // Taken after the old lease expired, and within two lease periods of its last renewal (the
    // database's own times, not this test's clock).
    expect(details.at).toBeGreaterThanOrEqual(details.previous.expiresAt);
    expect(details.at - details.previous.renewedAt).toBeLessThanOrEqual(2 * leaseMs);
    expect(await holds(b)).toBe(true);
  });

  it('a lease held by a process of this host that no longer exists is taken at once, unexpired', async () => {
    const db = await database(backend);
    const me = await db.runner('beta', { leaseMs: 60_000 });
    const gone = { ...me.leadership.me, holder: 'crashed#00000000', pid: deadPid() };
    await db.store.db
      .transaction()
      .execute((trx) => tryTakeLease(trx, db.store.dialect, gone, 60_000, 0, () => false, systemClock.now));
    const alive = { ...me.leadership.me, holder: 'alive#00000000', pid: process.ppid };
    const c = await db.runner('gamma', { leaseMs: 60_000 });
    // First a live holder on this host (this process's parent): not taken.
    await db.store.db.transaction().execute(async (trx) => {
      await trx.updateTable('runner_lease').set({ holder: alive.holder, pid: alive.pid }).execute();
    });
    const standby = new AbortController();
    const holder: string[] = [];
    expect(
      await c.leadership.acquire(standby.signal, (current) => {
        holder.push(current.holder);
        standby.abort();
      }),
    ).toBeNull();
    expect(holder).toEqual([alive.holder]);
    // Then the dead one: taken at once although its lease runs for another minute.
    await db.store.db.transaction().execute(async (trx) => {
      await trx.updateTable('runner_lease').set({ holder: gone.holder, pid: gone.pid }).execute();
    });
    expect(await me.leadership.acquire(AbortSignal.timeout(5_000))).toMatchObject({ how: 'dead' });
    expect(await holds(me)).toBe(true);
  });

  it('a dead pid seen from another pid space (another machine, another container) is not taken before the lease expires', async () => {
    const db = await database(backend);
    const c = await db.runner('gamma', { leaseMs: 60_000 });
    const foreign = {
      holder: 'foreign#00000000',
      host: c.leadership.me.host,
      pid: deadPid(),
      pidSpace: 'another-boot/pid:[1]',
    };
    await db.store.db
      .transaction()
      .execute((trx) => tryTakeLease(trx, db.store.dialect, foreign, 60_000, 0, () => true, systemClock.now));
    const standby = new AbortController();
    const seen: string[] = [];
    expect(
      await c.leadership.acquire(standby.signal, (current) => {
        seen.push(current.holder);
        standby.abort();
      }),
    ).toBeNull();
    expect(seen).toEqual([foreign.holder]);
  });

  it('a leader that resigns with a request start unanswered passes on a quiet period: the next one recovers nothing before the deadline of that start', async () => {
    const db = await database(backend);
    const a = await db.runner('alpha');
    const b = await db.runner('beta');
    expect(await a.leadership.acquire(AbortSignal.timeout(5_000))).not.toBeNull();
    const permit = await a.leadership.startLimiter.acquire(AbortSignal.timeout(5_000));
    const [start] = await startsBetween(db.store.db, 0, Number.MAX_SAFE_INTEGER);
    await a.leadership.resign();
    const term = await b.leadership.acquire(AbortSignal.timeout(10_000));
    expect(term).toMatchObject({ how: 'released' });
    // maxRequestMs is 2,000 here: the unanswered start may arrive until granted_at + 2,000.
    expect(await readNow(db.store)).toBeGreaterThanOrEqual(start!.granted_at + 2_000);
    permit.release();
  });

  it("a runner whose clock is an hour off the database does not lead on PostgreSQL (the caps' day would be wrong); on SQLite the database has no clock of its own", async () => {
    const db = await database(backend);
    const off = await db.runner('skewed', { clock: { now: () => Date.now() - HOUR } });
    const term = await off.leadership.acquire(AbortSignal.timeout(1_500));
    if (backend.name === 'postgres') {
      expect(term).toBeNull();
      expect(await readLease(db.store.db)).toBeNull();
    } else {
      expect(term).toMatchObject({ how: 'new' });
    }
  });

  it('the shared start log holds 5 starts per 1,000 ms across runners and a change of leader; a runner that does not lead starts nothing', async () => {
    const db = await database(backend);
    const a = await db.runner('alpha');
    const b = await db.runner('beta');
    expect(await a.leadership.acquire(AbortSignal.timeout(5_000))).not.toBeNull();
    const from = (await readNow(db.store)) - 1;

    // The non-leader is refused: no grant, no row.
    await expect(b.leadership.startLimiter.acquire()).rejects.toSatisfy((error) =>
      isOutboundError(error, 'START_NOT_GRANTED'),
    );

    // The leader's client asks for 9 starts at once (its requests answered after 20 ms).
    const request = async (leadership: Leadership) => {
      const permit = await leadership.startLimiter.acquire(AbortSignal.timeout(20_000));
      await systemSleep(20);
      permit.markAnswered();
      permit.release();
    };
    await Promise.all(Array.from({ length: 9 }, () => request(a.leadership)));
    // A new leader at once (released): its starts continue the same window, no fresh burst.
    await a.leadership.resign();
    expect(await b.leadership.acquire(AbortSignal.timeout(5_000))).toMatchObject({ how: 'released' });
    await Promise.all(Array.from({ length: 7 }, () => request(b.leadership)));

    // A start is settled in the background once its answer began: give the last ones a moment.
    let starts = await startsBetween(db.store.db, from, Number.MAX_SAFE_INTEGER);
    for (let i = 0; i < 100 && starts.some((s) => s.settled_at === null); i++) {
      await systemSleep(20);
      starts = await startsBetween(db.store.db, from, Number.MAX_SAFE_INTEGER);
    }
    expect(starts).toHaveLength(16);
    expect(new Set(starts.map((s) => s.holder))).toEqual(
      new Set([a.leadership.me.holder, b.leadership.me.holder]),
    );
    expect(busiestWindow(starts.map((s) => s.granted_at))).toBe(LIMIT);
    // Settled: each start's answer was recorded.
    expect(starts.every((s) => s.settled_at !== null && s.settled_at >= s.granted_at)).toBe(true);
  });

  it('two runners at once on one database: the one that does not lead claims and sends nothing, and the daily cap (30 here) holds whatever the interleaving', async () => {
    const dir = tempDir();
    const env = phase4Env(dir, UNCALLED_PARTNER, {
      VALHALLA_DATABASE_URL: backend.databaseUrl(),
      VALHALLA_MAX_LEADS_PER_CYCLE: '25',
      VALHALLA_POLICY_FILE: policyFileWith(dir, { dailyLeads: 30 }),
    });
    const open = async () => {
      const app = await openApp({ config: loadConfig({ cwd: dir, env }) });
      cleanups.push(() => app.close());
      return app;
    };
    const [a, b] = [await open(), await open()];
    await writeGoLiveAt(a.store.db, Date.now() - 7 * DAY);
    const file = join(dir, 'leads.csv');
    recentLeadsCsv(file, 60, { name: 'Mary Jackson', email: 'mary', top: 95, spread: 50, value: 10 });
    expect(await a.ingest({ path: file })).toMatchObject({ accepted: 60 });

    const sent: string[] = [];
    const partner = (who: string): PartnerPort => ({
      health: async () => ({ ok: true, status: 200, ms: 1 }),
      ensureToken: async () => ({ kind: 'ok', expiresAtMs: Number.MAX_SAFE_INTEGER, refreshed: false }),
      sendBatch: async ({ leads }) => {
        sent.push(...leads.map(() => who));
        return { kind: 'accepted', status: 200, body: null, bodyIssue: null, ms: 1 };
      },
    });
    const [leaderA, leaderB] = [a.leadership(), b.leadership()];
    cleanups.push(() => leaderA.resign());
    cleanups.push(() => leaderB.resign());
    expect(await leaderA.acquire(AbortSignal.timeout(5_000))).not.toBeNull();
    const standby = new AbortController();
    expect(await leaderB.acquire(standby.signal, () => standby.abort())).toBeNull();
    const engineA = a.engine({ gates: CLEARED, partner: partner('a'), leadership: leaderA });
    const engineB = b.engine({ gates: CLEARED, partner: partner('b'), leadership: leaderB });

    // Both cycle at once, twice: only the leader's cycles do anything.
    for (let round = 0; round < 2; round++) {
      const [ofA, ofB] = await Promise.allSettled([engineA.runCycle(), engineB.runCycle()]);
      expect(ofA.status).toBe('fulfilled');
      expect(ofB).toMatchObject({ status: 'rejected', reason: { name: 'NotLeader' } });
    }
    expect(sent.filter((who) => who === 'b')).toEqual([]);
    // The day's cap: 25, then the 5 left of 30; nothing more in a third cycle.
    expect(sent).toHaveLength(30);
    expect(await engineA.runCycle()).toMatchObject({ claimed: 0, limitedBy: 'daily_cap' });
    const usage = await a.store.db.selectFrom('daily_usage').select('leads').execute();
    expect(usage.reduce((sum, u) => sum + Number(u.leads), 0)).toBe(30);
    const live = await a.store.db
      .selectFrom('deliveries')
      .select('state')
      .where('kind', '=', 'live')
      .execute();
    expect(live.every((d) => d.state === 'accepted')).toBe(true);
  });
});

async function readNow(store: Store): Promise<number> {
  return databaseNow(store.db, store.dialect, systemClock.now);
}
