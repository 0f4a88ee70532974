/**
 * The supervisor of `valhalla run` with REAL child processes (test/harness/sup-worker.ts speaks the
 * worker's IPC protocol and misbehaves on purpose): a frozen worker (SIGSTOP), one past its memory
 * limit, one that crashes, one that finishes, and the daily restart under a virtual clock. The tests
 * that wire the real supervisor to the database run on SQLite and PostgreSQL.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openApp } from '../../src/app/index.js';
import { runSupervisor } from '../../src/app/run.js';
import { type Clock, ManualClock } from '../../src/clock/index.js';
import { DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import { readMode } from '../../src/guard/index.js';
import { createLogger } from '../../src/log/index.js';
import {
  createSupervisor,
  procRss,
  type Supervisor,
  type SupervisorEvent,
  type SupervisorOptions,
  type WorkerHandle,
} from '../../src/monitor/index.js';
import { startSandboxPartner } from '../../src/sandbox/index.js';
import { type Backend, backends, dropTestSchemas, PG_URL } from '../support/backends.js';
import { harnessScript, phase4Env } from '../support/cli.js';
import { tempDir } from '../support/tmp.js';
import { CLEARED, HOUR, until } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);

const WORKER = harnessScript('sup-worker');
const LIVE_RUN = harnessScript('live-run');
const logger = createLogger({ level: 'silent', file: null });
const children = new Set<ChildProcess>();
const supervisors: Supervisor[] = [];

afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stop();
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

function spawnWith(args: () => string[]): () => WorkerHandle {
  return () => {
    const child = fork(WORKER, args(), { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    children.add(child);
    child.on('exit', () => children.delete(child));
    return {
      pid: child.pid ?? -1,
      kill: (signal) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
      onMessage: (listener) => child.on('message', listener),
      onExit: (listener) => child.on('exit', listener),
    };
  };
}

function supervise(
  spawnWorker: () => WorkerHandle,
  overrides: Partial<SupervisorOptions> & { clock?: Clock } = {},
): { supervisor: Supervisor; events: SupervisorEvent[] } {
  const events: SupervisorEvent[] = [];
  const supervisor = createSupervisor({
    clock: { now: () => Date.now() },
    logger,
    spawnWorker,
    heartbeatIntervalMs: 100,
    // Out of the way unless a test is about heartbeats (those pass 400 ms): on a busy machine a
    // forked worker can take seconds to start and beat, which is no missed heartbeat of the test's.
    heartbeatGraceMs: 30_000,
    memoryLimitBytes: 512 * 1024 * 1024,
    dailyRestartUtc: '02:00',
    stopGraceMs: 2_000,
    onEvent: async (event) => {
      events.push(event);
    },
    ...overrides,
  });
  supervisors.push(supervisor);
  return { supervisor, events };
}

const kinds = (events: SupervisorEvent[]) => events.map((e) => e.kind);

/**
 * PostgreSQL's counterpart of a worker frozen mid-transaction holding SQLite's write lock (the
 * harness's `lock` mode speaks SQLite only): a session opened here takes every table of the schema
 * in EXCLUSIVE mode (as SQLite's write lock: reads pass, writes wait) and holds it until `worker`
 * exits, when it ends, as the server ends a killed worker's session and releases its locks.
 */
async function holdPostgresWriteLock(databaseUrl: string, worker: ChildProcess): Promise<void> {
  const schema = new URL(databaseUrl).searchParams.get('schema');
  const session = new pg.Client({ connectionString: PG_URL });
  session.on('error', () => undefined);
  await session.connect();
  worker.once('exit', () => void session.end().catch(() => undefined));
  await session.query('begin');
  const { rows } = await session.query<{ name: string }>(
    `select format('%I.%I', table_schema, table_name) as name from information_schema.tables
      where table_schema = $1 and table_type = 'BASE TABLE'`,
    [schema],
  );
  expect(rows.map((r) => r.name)).toContain(`${schema}.audit_log`);
  await session.query(`lock table ${rows.map((r) => r.name).join(', ')} in exclusive mode`);
}

describe('the supervisor, with real worker processes', () => {
  it('a frozen worker (SIGSTOP) misses its heartbeat: reported, killed, and a new one started', async () => {
    const { supervisor, events } = supervise(
      spawnWith(() => ['100', 'steady']),
      { heartbeatGraceMs: 400 },
    );
    supervisor.start();
    await until(() => kinds(events).includes('first_heartbeat'), { what: 'the first heartbeat' });
    const frozen = supervisor.worker()?.pid;
    expect(frozen).toBeGreaterThan(0);
    process.kill(frozen!, 'SIGSTOP');
    // The frozen worker's miss (on a busy machine a worker slow to start may have missed before).
    const missedByFrozen = () => events.findIndex((e) => e.kind === 'heartbeat_missed' && e.pid === frozen);
    await until(() => missedByFrozen() >= 0, { what: 'the missed heartbeat' });
    const missed = events[missedByFrozen()];
    expect(missed).toMatchObject({ kind: 'heartbeat_missed', pid: frozen, limitMs: 500 });
    expect(missed && 'ageMs' in missed && missed.ageMs).toBeGreaterThan(500);
    // The frozen process is gone and a fresh one beats.
    await until(() => events.slice(missedByFrozen()).some((e) => e.kind === 'first_heartbeat'), {
      what: 'a new worker',
      timeoutMs: 30_000,
    });
    const fresh = supervisor.worker()?.pid;
    expect(fresh).not.toBe(frozen);
    await until(() => procRss(frozen!) === null, { what: 'the frozen worker to be gone' });
  });

  it("the supervisor's own stall is not the worker's missed heartbeat: the healthy worker is kept", async () => {
    // A 1.5 s limit: room for a worker on a busy machine to beat in time, which this test needs.
    const { supervisor, events } = supervise(
      spawnWith(() => ['100', 'steady']),
      { heartbeatGraceMs: 1_400 },
    );
    supervisor.start();
    await until(() => kinds(events).includes('first_heartbeat'), { what: 'the first heartbeat' });
    const pid = supervisor.worker()?.pid;
    // This process is the supervisor's: block its event loop for four times the 1.5 s limit, as a
    // long synchronous task would (a 10 MB body parsed on it, once). The worker beats on meanwhile;
    // its heartbeats wait unread in the IPC channel.
    const stalledUntil = Date.now() + 6_000;
    while (Date.now() < stalledUntil) {
      // Nothing else runs.
    }
    // Three beats read after the stall, from the same worker (or it was replaced, which fails below).
    const beats = new Set<number>();
    await until(
      () => {
        const worker = supervisor.worker();
        if (worker === null || worker.pid !== pid) return true;
        if (worker.heartbeatAt !== null && worker.heartbeatAt > stalledUntil) beats.add(worker.heartbeatAt);
        return beats.size >= 3;
      },
      { what: 'heartbeats after the stall' },
    );
    expect(supervisor.worker()?.pid).toBe(pid);
    expect(kinds(events)).toEqual(['started', 'first_heartbeat']);
    // A worker that really stops beating is still caught.
    process.kill(pid!, 'SIGSTOP');
    await until(() => kinds(events).includes('heartbeat_missed'), { what: 'the missed heartbeat' });
  });

  it('a worker over its memory limit is restarted (its RSS read by the supervisor)', async () => {
    const { supervisor, events } = supervise(
      spawnWith(() => ['100', 'grow', '120']),
      {
        memoryLimitBytes: 100 * 1024 * 1024,
      },
    );
    supervisor.start();
    await until(() => kinds(events).includes('memory_exceeded'), { what: 'the memory restart' });
    const event = events.find((e) => e.kind === 'memory_exceeded');
    expect(event).toMatchObject({ limitBytes: 100 * 1024 * 1024 });
    expect(event && 'rssBytes' in event && event.rssBytes).toBeGreaterThan(100 * 1024 * 1024);
    await until(() => events.filter((e) => e.kind === 'started').length >= 2, { what: 'the restart' });
    expect(kinds(events)).not.toContain('crashed');
  });

  it('a crash is reported and the worker restarted after the backoff; a finished worker ends supervision', async () => {
    let starts = 0;
    // First a worker that crashes, then one that finishes after 3 beats.
    const { supervisor, events } = supervise(
      spawnWith(() => (++starts === 1 ? ['50', 'crash', '200'] : ['50', 'finish', '3'])),
    );
    supervisor.start();
    const result = await Promise.race([
      supervisor.done,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no end')), 50_000)),
    ]);
    expect(result).toEqual({ code: 0 });
    const crashed = events.find((e) => e.kind === 'crashed');
    expect(crashed).toMatchObject({ code: 1, restartInMs: 1000 });
    expect(kinds(events)).toEqual([
      'started',
      'first_heartbeat',
      'crashed',
      'started',
      'first_heartbeat',
      'finished',
    ]);
  });

  it('restarts the worker daily at 02:00 UTC (virtual clock), once, and schedules the next day', async () => {
    const clock = new ManualClock('2026-11-26T01:59:00Z');
    const { supervisor, events } = supervise(
      spawnWith(() => ['50', 'steady']),
      // Only the daily restart follows this clock; the heartbeat's age is elapsed time, so the jumps
      // below (a day, as an NTP step might) are not a missed heartbeat.
      { clock },
    );
    supervisor.start();
    await until(() => kinds(events).includes('first_heartbeat'), { what: 'the first heartbeat' });
    const first = supervisor.worker()?.pid;
    clock.set('2026-11-26T01:59:59Z');
    await supervisor.tick();
    expect(kinds(events)).not.toContain('daily_restart');
    clock.set('2026-11-26T02:00:01Z');
    await supervisor.tick();
    expect(events.filter((e) => e.kind === 'daily_restart')).toEqual([
      { kind: 'daily_restart', pid: first, at: '2026-11-26T02:00:00.000Z' },
    ]);
    await until(() => events.filter((e) => e.kind === 'started').length === 2, {
      what: 'the restarted worker',
    });
    expect(supervisor.worker()?.pid).not.toBe(first);
    // Not again the same day; again the next day.
    clock.set('2026-11-26T23:00:00Z');
    await supervisor.tick();
    expect(events.filter((e) => e.kind === 'daily_restart')).toHaveLength(1);
    clock.set('2026-11-27T02:00:00Z');
    await supervisor.tick();
    expect(events.filter((e) => e.kind === 'daily_restart')).toHaveLength(2);
    expect(kinds(events)).not.toContain('crashed');
    expect(kinds(events)).not.toContain('heartbeat_missed');
  });

  it('stop() ends the worker with SIGTERM and is safe twice', async () => {
    const { supervisor, events } = supervise(spawnWith(() => ['50', 'steady']));
    supervisor.start();
    await until(() => kinds(events).includes('first_heartbeat'), { what: 'the first heartbeat' });
    const pid = supervisor.worker()?.pid;
    await supervisor.stop();
    await supervisor.stop();
    expect(await supervisor.done).toEqual({ code: 0 });
    expect(procRss(pid!)).toBeNull();
    expect(kinds(events)).not.toContain('crashed');
  });
});

/** Workers without a process: the test sends their heartbeats; a kill ends them at once. */
function fakeWorkers() {
  const workers: { pid: number; beat(): void }[] = [];
  const spawn = (): WorkerHandle => {
    const onMessage: ((message: unknown) => void)[] = [];
    const onExit: ((code: number | null, signal: NodeJS.Signals | null) => void)[] = [];
    const pid = 4_000_001 + workers.length;
    let alive = true;
    workers.push({
      pid,
      beat: () => {
        for (const listener of onMessage) {
          listener({ type: 'heartbeat', at: 0, rssBytes: 1, heapUsedBytes: 1, state: 'idle', cycleId: null });
        }
      },
    });
    return {
      pid,
      kill: (signal) => {
        if (!alive || (signal !== 'SIGKILL' && signal !== 'SIGTERM')) return;
        alive = false;
        queueMicrotask(() => {
          for (const listener of onExit) listener(null, signal);
        });
      },
      onMessage: (listener) => onMessage.push(listener),
      onExit: (listener) => onExit.push(listener),
    };
  };
  return { spawn, workers };
}

describe("the supervisor's heartbeat age for the metrics", () => {
  it('counts from the first start until a beat, then from the last beat; a replacement worker does not reset it', async () => {
    const clock = new ManualClock('2026-11-26T10:00:00Z');
    const start = clock.now();
    let elapsed = 0;
    const fake = fakeWorkers();
    const { supervisor, events } = supervise(fake.spawn, {
      heartbeatGraceMs: 400,
      clock,
      monotonicNow: () => elapsed,
      readRss: () => null,
    });
    expect(supervisor.heartbeatSince()).toBeNull();
    supervisor.start();
    // Started, no beat yet: the age counts from the start (a worker that never beats ages from it).
    expect(supervisor.heartbeatSince()).toBe(start);
    clock.advance(300);
    elapsed += 300;
    fake.workers[0]!.beat();
    expect(supervisor.heartbeatSince()).toBe(start + 300);
    // The worker freezes: past the 500 ms limit it is killed and replaced; the age goes on.
    clock.advance(600);
    elapsed += 600;
    await supervisor.tick();
    expect(kinds(events)).toEqual(['started', 'first_heartbeat', 'heartbeat_missed', 'started']);
    expect(supervisor.worker()?.pid).toBe(fake.workers[1]!.pid);
    expect(supervisor.heartbeatSince()).toBe(start + 300);
    // The replacement never beats either: killed at its own limit, the age still from the same beat.
    clock.advance(600);
    elapsed += 600;
    await supervisor.tick();
    expect(fake.workers).toHaveLength(3);
    expect(supervisor.heartbeatSince()).toBe(start + 300);
    // Its first beat ends it.
    clock.advance(100);
    fake.workers[2]!.beat();
    expect(supervisor.heartbeatSince()).toBe(start + 1_600);
  });
});

describe.each(list)('the supervisor wired to the database, on $name', (backend: Backend) => {
  it('a worker frozen while holding the database write lock: killed first, then the rollback commits, then a new worker (the real supervisor wiring)', async () => {
    const dir = tempDir();
    const policy = {
      ...JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')),
      // A 5 s limit: room for a worker starting on a loaded machine to beat and take the lock.
      heartbeatIntervalSeconds: 2,
      heartbeatGraceSeconds: 3,
    };
    writeFileSync(join(dir, 'policy.json'), JSON.stringify(policy));
    const databaseUrl = backend.databaseUrl();
    const config = loadConfig({
      cwd: dir,
      env: phase4Env(
        dir,
        {
          url: 'https://127.0.0.1:9',
          tokenUrl: 'https://127.0.0.1:9/token',
          clientId: 'c',
          clientSecret: 's'.repeat(32),
          caFile: null,
        },
        {
          VALHALLA_DATABASE_URL: databaseUrl,
          VALHALLA_POLICY_FILE: join(dir, 'policy.json'),
          VALHALLA_METRICS_PORT: 'off',
          VALHALLA_LOG_LEVEL: 'silent',
        },
      ),
    });
    const app = await openApp({ config });
    const stop = new AbortController();
    let starts = 0;
    const out = new PassThrough();
    out.resume();
    const running = runSupervisor(app, {
      stop: stop.signal,
      workerArgs: [],
      gates: CLEARED,
      spawnWorker: (execArgv) => {
        // SQLite: the first worker takes the write lock itself (the harness speaks SQLite only).
        const lockItself = ++starts === 1 && backend.name === 'sqlite';
        const child = fork(WORKER, lockItself ? ['100', 'lock', databaseUrl] : ['100', 'steady'], {
          execArgv,
          stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        });
        children.add(child);
        return child;
      },
      stdout: out,
      stderr: out,
      print: () => undefined,
    });
    try {
      await until(() => starts === 1, { what: 'the first worker' });
      const first = [...children][0]!;
      if (backend.name === 'sqlite') {
        // Let it take the lock (it says so), then freeze it there.
        let said = '';
        first.stdout!.on('data', (chunk: Buffer) => {
          said += chunk;
        });
        await until(() => said.includes('holding the write lock'), {
          what: 'the first worker holding the lock',
          timeoutMs: 20_000,
        });
      } else {
        await holdPostgresWriteLock(databaseUrl, first);
      }
      first.kill('SIGSTOP');
      await until(() => starts === 2, { what: 'the replacement worker', timeoutMs: 20_000 });
      let actions: { action: string; actor: string }[] = [];
      for (let i = 0; i < 100 && actions.length < 4; i++) {
        actions = await app.store.db
          .selectFrom('audit_log')
          .select(['action', 'actor'])
          .where('action', 'in', ['worker.heartbeat_missed', 'mode.rollback', 'worker.started'])
          .orderBy('seq')
          .execute();
        await new Promise((r) => setTimeout(r, 50));
      }
      // Killed, then audited and rolled back (the lock was free again), and only then the next worker.
      expect(actions).toEqual([
        { action: 'worker.started', actor: 'supervisor' },
        { action: 'worker.heartbeat_missed', actor: 'supervisor' },
        { action: 'mode.rollback', actor: 'supervisor' },
        { action: 'worker.started', actor: 'supervisor' },
      ]);
      expect(await readMode(app.store.db)).toBe('rolled_back');
    } finally {
      stop.abort();
      await running;
      await app.close();
    }
  });

  it('the daily restart at 02:00 UTC with the real Phase 4 worker: the worker finishes its work, the next one carries on; nothing lost, nothing sent twice', async () => {
    const dir = tempDir();
    const partner = await startSandboxPartner({ certDir: join(dir, 'cert'), faults: { latencyMs: 50 } });
    const env = phase4Env(dir, partner, {
      VALHALLA_DATABASE_URL: backend.databaseUrl(),
      VALHALLA_METRICS_PORT: 'off',
      VALHALLA_LOG_LEVEL: 'silent',
      VALHALLA_CYCLE_INTERVAL_S: '1',
      VALHALLA_MAX_LEADS_PER_CYCLE: '3',
    });
    // The supervisor's clock is virtual (it decides when 02:00 is); the workers run on real time.
    const clock = new ManualClock('2026-11-26T01:59:00Z');
    const app = await openApp({ config: loadConfig({ cwd: dir, env }), clock });
    const file = join(dir, 'leads.jsonl');
    writeFileSync(
      file,
      Array.from({ length: 30 }, (_, i) =>
        JSON.stringify({
          name: `Daily Person ${i}`,
          email: `daily.${i}@example.org`,
          score: 90 - i,
          // Before both the virtual clock (ingest) and the real one (the workers).
          source_timestamp: new Date(clock.now() - HOUR).toISOString(),
          value: 10,
        }),
      ).join('\n'),
    );
    await app.ingest({ path: file });
    const stop = new AbortController();
    const out = new PassThrough();
    let output = '';
    out.on('data', (c: Buffer) => {
      output += c;
    });
    const running = runSupervisor(app, {
      stop: stop.signal,
      workerArgs: [],
      gates: CLEARED,
      spawnWorker: (execArgv) => {
        const child = fork(LIVE_RUN, ['worker'], {
          execArgv,
          env: { PATH: process.env.PATH, ...env },
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        });
        children.add(child);
        return child;
      },
      stdout: out,
      stderr: out,
      print: () => undefined,
    });
    const audited = (action: string) =>
      app.store.db.selectFrom('audit_log').select('details').where('action', '=', action).execute();
    try {
      await until(async () => partner.stats().batches.accepted >= 2, {
        what: `two batches from the first worker: ${output}`,
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${output}`);
      });
      clock.set('2026-11-26T02:00:01Z');
      await until(async () => (await audited('worker.daily_restart')).length === 1, {
        what: 'the daily restart',
      });
      await until(async () => (await audited('worker.started')).length === 2, {
        what: 'the next worker',
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${output.slice(-1500)}`);
      });
      const before = partner.stats().batches.accepted;
      await until(async () => partner.stats().batches.accepted >= before + 2, {
        what: 'the next worker sending',
      });
    } finally {
      stop.abort();
      await running;
    }
    const [restart] = await audited('worker.daily_restart');
    expect(JSON.parse(restart!.details)).toMatchObject({ scheduled: '2026-11-26T02:00:00.000Z' });
    expect(await audited('worker.crashed')).toEqual([]);
    // Nothing sent twice, nothing left mid-request, every lead the partner holds exported once.
    const records = partner.records();
    expect(Object.values(records.leadBatches).filter((b) => b.length > 1)).toEqual([]);
    const states = await app.store.db.selectFrom('leads').select('state').execute();
    expect(states).toHaveLength(30);
    const exported = states.filter((l) => l.state === 'exported').length;
    expect(exported).toBe(Object.keys(records.leadBatches).length);
    expect(states.every((l) => ['exported', 'pending', 'in_flight'].includes(l.state))).toBe(true);
    const sending = await app.store.db
      .selectFrom('deliveries')
      .select('id')
      .where('state', '=', 'sending')
      .execute();
    expect(sending).toEqual([]);
    expect((await app.audit.verify()).ok).toBe(true);
    await app.close();
    await partner.close();
  });
});
