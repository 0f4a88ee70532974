/**
 * A simulated Phase 3 run written as the worker, the supervisor, the engine and the guard write it: a
 * heartbeat every 30 s, the daily restart (audited, a 75 s gap, a new worker), a dry-run cycle every
 * 5 minutes recording 3 leads of one stable score distribution. For the stability check (gate 9) and
 * the gates' happy path; seeded, so every run is the same.
 */
import type { Transaction } from 'kysely';
import type { App } from '../../src/app/index.js';
import type { ManualClock } from '../../src/clock/index.js';
import { nextDailyRestart } from '../../src/policy/index.js';
import {
  createCycle,
  createDelivery,
  createIngestRun,
  type Database,
  insertLeadsSkippingDuplicates,
  type NewLead,
  recordHeartbeat,
} from '../../src/store/index.js';
import { HOUR, MINUTE, SECOND } from './world.js';

const MB = 1024 * 1024;
const LEADS_PER_CYCLE = 3;
const iso = (ms: number) => new Date(ms).toISOString();

/** A seeded generator of numbers in [0, 1) (mulberry32): the same run every time. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export type Trx = Transaction<Database>;
type Event =
  | { at: number; kind: 'beat'; pid: number; startedAt: number; rss: number }
  | { at: number; kind: 'start'; pid: number }
  | { at: number; kind: 'restart'; pid: number; scheduled: number }
  | { at: number; kind: 'cycle'; n: number };

/** What the worker, supervisor and engine would write over [START, END], in time order. */
function simulatedRun(dailyRestartUtc: string, START: number, END: number): Event[] {
  const next = random(42);
  const events: Event[] = [];
  let pid = 5001;
  let startedAt = START;
  events.push({ at: START, kind: 'start', pid });
  let restart = nextDailyRestart(dailyRestartUtc, START);
  for (let at = START; at <= END; ) {
    if (at > restart) {
      // The supervisor stops the worker at the scheduled time; the next one beats 75 s after the last beat.
      const last = events.findLast((e) => e.kind === 'beat')!;
      events.push({ at: restart, kind: 'restart', pid, scheduled: restart });
      pid += 1;
      startedAt = last.at + 70 * SECOND;
      events.push({ at: startedAt, kind: 'start', pid });
      at = last.at + 75 * SECOND;
      restart = nextDailyRestart(dailyRestartUtc, restart);
      continue;
    }
    // A healthy worker: ~120 MB, a few MB of GC noise, no trend.
    events.push({ at, kind: 'beat', pid, startedAt, rss: Math.round((118 + next() * 5) * MB) });
    at += 30 * SECOND;
  }
  let n = 0;
  for (let at = START + 7 * SECOND; at <= END; at += 5 * MINUTE) events.push({ at, kind: 'cycle', n: n++ });
  return events.sort((a, b) => a.at - b.at);
}

/**
 * Write a Phase 3 run over [start, end] into the app's store; `clock` is the app's (moved along as the
 * events are written, so audit entries carry their times).
 */
export async function seedPhase3Run(
  app: App,
  clock: ManualClock,
  window: { start: number; end: number },
  /** When the recorded leads were made (default 2 hours before the run). */
  options: { leadsSourceTs?: number } = {},
): Promise<void> {
  const { store, audit, config } = app;
  const START = window.start;
  const END = window.end;
  const events = simulatedRun(config.policy.dailyRestartUtc, START, END);
  const cycles = events.filter((e) => e.kind === 'cycle').length;
  // The leads the dry runs will record, ingested before the run; scores from one fixed distribution.
  const next = random(7);
  const runId = await createIngestRun(store.db, {
    startedAt: START - HOUR,
    source: 'stability-sim.csv',
    format: 'csv',
    operator: 'test',
  });
  // Keyed as ingest keys them (the installation's secret; the dedup rule email): a lead arriving
  // later under either identity is a duplicate of these.
  const keys = app.pseudonymizer();
  const leads: NewLead[] = Array.from({ length: cycles * LEADS_PER_CYCLE }, (_, i) => ({
    dedup_key: keys.dedupKey('email', `lead${i}@example.com`),
    email_key: keys.dedupKey('email', `lead${i}@example.com`),
    external_id_key: keys.dedupKey('external_id', `ext-${i}`),
    external_id: `ext-${i}`,
    name: `Lead ${i}`,
    email: `lead${i}@example.com`,
    phone: null,
    company: null,
    score: 40 + Math.floor(((next() + next() + next()) / 3) * 61),
    source_ts: options.leadsSourceTs ?? START - 2 * HOUR,
    value: 100,
    state: 'pending',
    state_reason: null,
    ingested_at: START - HOUR,
    updated_at: START - HOUR,
    exported_at: null,
    run_id: runId,
    source_line: i + 1,
  }));
  const ids = [...(await insertLeadsSkippingDuplicates(store, leads)).values()];

  // Written in chunks, each in one transaction: ~8,700 heartbeats and ~870 cycles stay quick.
  for (let i = 0; i < events.length; i += 1_000) {
    await store.db.transaction().execute(async (trx) => {
      for (const event of events.slice(i, i + 1_000)) {
        clock.set(event.at);
        switch (event.kind) {
          case 'beat':
            await recordHeartbeat(trx, {
              at: event.at,
              runner: `sim-host:${event.pid}`,
              pid: event.pid,
              worker_started_at: event.startedAt,
              phase: 3,
              rss_bytes: event.rss,
              heap_used_bytes: Math.round(event.rss / 2),
              heap_limit_bytes: 512 * MB,
              state: 'idle',
              cycle_id: null,
            });
            break;
          case 'start':
            await audit.append(trx, {
              actor: 'supervisor',
              action: 'worker.started',
              details: { pid: event.pid },
            });
            break;
          case 'restart':
            await audit.append(trx, {
              actor: 'supervisor',
              action: 'worker.daily_restart',
              details: { pid: event.pid, scheduled: iso(event.scheduled) },
            });
            break;
          case 'cycle': {
            const cycleId = await createCycle(trx, {
              startedAt: event.at,
              phase: 3,
              kind: 'dry_run',
              rampStage: null,
              ceiling: 25,
              limitedBy: 'leads_per_cycle',
            });
            const batch = ids.slice(event.n * LEADS_PER_CYCLE, (event.n + 1) * LEADS_PER_CYCLE);
            await audit.append(trx, {
              actor: 'guard',
              action: 'guard.dry_run',
              subject: `batch:sim-${event.n}`,
              details: { cycle: cycleId, code: 'DRY_RUN' },
            });
            await createDelivery(
              trx,
              {
                batchKey: `sim-${event.n}`,
                cycleId,
                kind: 'dry_run',
                payloadSha256: 'x'.repeat(64),
                now: event.at,
              },
              batch.map((id) => ({ id, leadKey: `lead-${id}`, exposure: 0 })),
            );
            break;
          }
        }
      }
    });
  }
}
