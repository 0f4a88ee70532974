/**
 * bench/pg: the cycle's own overhead (expire, select, claim, authorize, record, audit; network excluded:
 * an in-process partner accepts at once) with N pending leads (default 1,000,000), on embedded SQLite
 * and on PostgreSQL in the same run, by bench/cycle.ts's method: the real app with a virtual clock,
 * Phase 4 live, go-live a week back (the ramp at its last stage). Each backend also gets a raw
 * baseline from the same run: the same selection and the same state changes as raw SQL in one
 * transaction, without the guard, the outbox or the audit chain (SQLite: prepared better-sqlite3
 * statements, as bench/cycle.ts; PostgreSQL: the pg client, the 25 updates as one `id = any($2)`).
 *
 * PostgreSQL runs in a fresh schema `vb_<random hex>` of the database at BENCH_PG_URL (default
 * postgres://postgres@127.0.0.1:5432/test), dropped at the end, on failure and on Ctrl-C too.
 * Unreachable: the reason is printed and the exit code is 2.
 *
 *   npm run bench:pg -- [--leads 1000000] [--cycles 200]   (200 cycles unfenced, then 200 fenced)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type App, openApp } from '../src/app/index.js';
import { ManualClock, systemClock, systemSleep } from '../src/clock/index.js';
import { createLeadership } from '../src/engine/index.js';
import { writeGoLiveAt } from '../src/guard/index.js';
import { createLogger } from '../src/log/index.js';
import {
  acceptingPartner,
  arg,
  type BackendOps,
  benchConfig,
  DAY_MS,
  FILL_BATCH,
  leadValues,
  NOW,
  quantile,
  sqliteOps,
} from './support.js';

const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** PostgreSQL connections filling at once: Node builds the next batch while the server stores one. */
const PG_FILL_CONNECTIONS = 2;

type BackendName = 'SQLite' | 'PostgreSQL';

interface BackendResult {
  backend: BackendName;
  fillSeconds: number;
  /** Milliseconds of each raw baseline transaction, sorted. */
  raw: number[];
  /** Milliseconds of each engine cycle, sorted. */
  cycles: number[];
  /** The same, as the runner of `valhalla run` runs them: holding the lease, every claim and authorisation fenced. */
  fenced: number[];
  accepted: number;
}

/** How a backend stores the bench's leads and runs the raw baseline; the cycle itself is the app's. */

class Interrupted extends Error {
  override readonly name = 'Interrupted';
}

let interrupted = false;

function checkInterrupted(): void {
  if (interrupted) throw new Interrupted('interrupted (SIGINT/SIGTERM): cleaning up');
}

const ms = (value: number) => `${value.toFixed(2)} ms`;

function pgClient(url: string, schema: string | null): pg.Client {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: 5_000,
    ...(schema === null ? {} : { options: `-c search_path=${schema}` }),
  });
  // A connection lost mid-run fails the query in progress; the event alone must not crash the bench.
  client.on('error', () => undefined);
  return client;
}

async function postgresOps(schema: string): Promise<BackendOps> {
  const clients = Array.from({ length: PG_FILL_CONNECTIONS }, () => pgClient(PG_URL, schema));
  try {
    await Promise.all(clients.map((c) => c.connect()));
  } catch (error) {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    throw error;
  }
  const main = clients[0]!;
  return {
    async fill(leads) {
      const run = await main.query<{ id: number }>(
        "insert into ingest_runs (started_at, source, format, operator, status) values ($1, 'bench', 'csv', 'bench', 'completed') returning id",
        [NOW],
      );
      const runId = run.rows[0]!.id;
      let next = 0;
      // unnest over one array per column: one statement stores a batch (FACTS.md: ~43k rows/s).
      const worker = async (client: pg.Client) => {
        for (;;) {
          checkInterrupted();
          const from = next;
          if (from >= leads) return;
          const to = Math.min(leads, from + FILL_BATCH);
          next = to;
          const cols = {
            dedupKey: [] as string[],
            email: [] as string[],
            score: [] as number[],
            sourceTs: [] as number[],
            value: [] as number[],
            sourceLine: [] as number[],
          };
          for (let i = from; i < to; i++) {
            const l = leadValues(i);
            cols.dedupKey.push(l.dedupKey);
            cols.email.push(l.email);
            cols.score.push(l.score);
            cols.sourceTs.push(l.sourceTs);
            cols.value.push(l.value);
            cols.sourceLine.push(l.sourceLine);
          }
          await client.query(
            `insert into leads (dedup_key, name, email, score, source_ts, value, state, ingested_at, updated_at, run_id, source_line)
             select k, 'Bench Lead', e, s, t, v, 'pending', $7, $7, $8, l
             from unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::float8[], $6::bigint[]) as u(k, e, s, t, v, l)`,
            [cols.dedupKey, cols.email, cols.score, cols.sourceTs, cols.value, cols.sourceLine, NOW, runId],
          );
        }
      };
      // Settled, not all: on a failure (or Ctrl-C) no insert may still be running when the schema is dropped.
      const settled = await Promise.allSettled(clients.map(worker));
      for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
      // Fresh statistics and visibility map, and the load's WAL flushed now rather than mid-measurement.
      await main.query('vacuum analyze leads');
      await main.query('checkpoint');
    },
    async rawCycle(now) {
      await main.query('begin');
      try {
        // The constant 'pending' keeps the partial index usable (FACTS.md), as the product writes it.
        const { rows } = await main.query<{ id: number }>(
          `select id from leads where state = 'pending' and score >= 40 and source_ts >= $1
           order by score desc, source_ts asc, id asc limit 25`,
          [now - 14 * DAY_MS],
        );
        await main.query(
          `update leads set state = 'exported', exported_at = $1, updated_at = $1 where id = any($2::bigint[])`,
          [now, rows.map((r) => r.id)],
        );
        await main.query('commit');
        return rows.length;
      } catch (error) {
        await main.query('rollback').catch(() => undefined);
        throw error;
      }
    },
    async close() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    },
  };
}

/** Fill, raw baseline, then the app's cycles: one backend, by bench/cycle.ts's method. */
async function runBackend(
  backend: BackendName,
  leads: number,
  cycles: number,
  databaseUrl: string | null,
  schema: string | null,
): Promise<BackendResult> {
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-pg-'));
  const clock = new ManualClock(NOW);
  let app: App | null = null;
  let ops: BackendOps | null = null;
  // Where the backend's wall time goes, printed at its end: open, fill, raw baseline, cycles, close.
  const phases: string[] = [];
  let mark = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    phases.push(`${name} ${((now - mark) / 1000).toFixed(1)} s`);
    mark = now;
  };
  try {
    app = await openApp({
      config: benchConfig(dir, databaseUrl),
      clock,
      logger: createLogger({ level: 'silent', file: null }),
    });
    ops = schema === null ? sqliteOps(app, checkInterrupted) : await postgresOps(schema);
    lap('open');
    const fillStart = performance.now();
    await ops.fill(leads);
    const fillSeconds = (performance.now() - fillStart) / 1000;
    console.log(`[${backend}] ${leads} pending leads stored in ${fillSeconds.toFixed(1)} s`);
    await writeGoLiveAt(app.store.db, NOW - 7 * DAY_MS);
    lap('fill');

    // Raw baseline: the same selection and state changes, nothing else.
    const raw: number[] = [];
    for (let i = 0; i < cycles; i++) {
      checkInterrupted();
      const t = performance.now();
      await ops.rawCycle(NOW);
      raw.push(performance.now() - t);
    }

    lap('raw baseline');

    const accepting = acceptingPartner();
    const { partner } = accepting;
    const engine = app.engine({
      partner,
      sleep: clock.sleep,
      gates: { check: async () => ({ cleared: true, reason: 'bench' }) },
    });
    // As `valhalla run` runs them: the lease held (its clock the system's, the engine's the bench's),
    // each claim and authorisation locking the lease's row and checking it first. The two kinds
    // alternate, cycle by cycle, so that neither has the warmer caches.
    const leadership = createLeadership({
      store: app.store,
      audit: app.audit,
      clock: systemClock,
      sleep: systemSleep,
      logger: createLogger({ level: 'silent', file: null }),
      name: 'bench',
      leaseMs: 30_000,
      takeoverWaitMs: 0,
      starts: { limit: 5, windowMs: 1_000, marginMs: 5, maxRequestMs: 30_000 },
    });
    if ((await leadership.acquire(AbortSignal.timeout(10_000))) === null)
      throw new Error('the lease was not taken');
    const fencedEngine = app.engine({
      partner,
      sleep: clock.sleep,
      gates: { check: async () => ({ cleared: true, reason: 'bench' }) },
      leadership,
    });
    const times: number[] = [];
    const fenced: number[] = [];
    try {
      for (let i = 0; i < 2 * cycles; i++) {
        checkInterrupted();
        clock.advance(1_000);
        const t = performance.now();
        await (i % 2 === 0 ? engine : fencedEngine).runCycle();
        (i % 2 === 0 ? times : fenced).push(performance.now() - t);
      }
    } finally {
      await leadership.resign();
    }
    lap('cycles (unfenced and fenced, alternating)');
    times.sort((a, b) => a - b);
    fenced.sort((a, b) => a - b);
    raw.sort((a, b) => a - b);
    return { backend, fillSeconds, raw, cycles: times, fenced, accepted: accepting.accepted() };
  } finally {
    // In reverse order: the bench's own connections, then the app.
    await ops?.close();
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
    lap('close');
    console.log(`[${backend}] time: ${phases.join(', ')}`);
  }
}

function report(r: BackendResult, cycles: number): void {
  const med = quantile(r.cycles, 0.5);
  const rawMed = quantile(r.raw, 0.5);
  console.log(
    `[${r.backend}] raw baseline (select 25 + update, one transaction): median ${ms(rawMed)}, p99 ${ms(quantile(r.raw, 0.99))}`,
  );
  console.log(
    `[${r.backend}] valhalla cycle (${cycles} cycles, ${r.accepted} leads accepted): median ${ms(med)}, p99 ${ms(quantile(r.cycles, 0.99))}`,
  );
  console.log(`[${r.backend}] ratio cycle/raw (median): ${(med / rawMed).toFixed(1)}x`);
  const fencedMed = quantile(r.fenced, 0.5);
  console.log(
    `[${r.backend}] fenced cycle, as a runner among several (${cycles} cycles; the shared start log's grants are not in it: the partner is in-process): median ${ms(fencedMed)}, p99 ${ms(quantile(r.fenced, 0.99))}; ratio to raw ${(fencedMed / rawMed).toFixed(1)}x, to the unfenced cycle ${(fencedMed / med).toFixed(2)}x`,
  );
  if (r.accepted !== 2 * cycles * 25)
    console.log(
      `[${r.backend}] note: ${r.accepted} leads accepted, not ${2 * cycles * 25}: a cap (daily, budget) bound some cycles`,
    );
}

/** The machine's load around the run: other work on a 2-core machine shows in the figures. */
function loadNote(atStart: number): string {
  const cores = availableParallelism();
  const atEnd = loadavg()[0]!;
  // The bench itself keeps about two runnable (Node and the database): more than that is someone else.
  const busy = atStart > 1 || atEnd > cores + 0.5;
  return `load average (1 min) ${atStart.toFixed(1)} at start, ${atEnd.toFixed(1)} at end, ${cores} cores${busy ? ': other work was running, the figures are noisy' : ''}`;
}

/** Whether PostgreSQL answers; the reason when it does not. */
async function reachPostgres(): Promise<string | null> {
  const client = pgClient(PG_URL, null);
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Drop the bench's schema; a deadlock with a backend still winding down (a cut connection) is retried. */
async function dropSchema(schema: string): Promise<void> {
  let failure: unknown = null;
  for (let attempt = 1; attempt <= 5; attempt++) {
    const client = pgClient(PG_URL, null);
    try {
      await client.connect();
      await client.query(`drop schema if exists ${schema} cascade`);
      return;
    } catch (error) {
      failure = error;
      if ((error as { code?: string }).code !== '40P01') break; // deadlock_detected
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  console.error(`could not drop schema ${schema}: ${(failure as Error).message}; drop it by hand`);
}

async function main(): Promise<number> {
  const began = performance.now();
  const loadAtStart = loadavg()[0]!;
  const leads = arg('--leads', 1_000_000);
  // 200 unfenced and 200 fenced: 10,000 leads a backend, the daily cap; about 3 min in all at 1M.
  const cycles = arg('--cycles', 200);
  if (2 * cycles * 25 > 10_000)
    console.log('note: more than 200 cycles (twice) meet the daily cap (10,000 leads)');
  const unreachable = await reachPostgres();
  if (unreachable !== null) {
    console.error(
      `PostgreSQL is unreachable at ${PG_URL.replace(/:[^:@/]*@/, ':***@')}: ${unreachable}. ` +
        'bench:pg needs it (set BENCH_PG_URL to another server); nothing was measured.',
    );
    return 2;
  }
  const onSignal = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(
      'interrupted: stopping after the current step and dropping the bench schema (again to quit now)',
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const sqlite = await runBackend('SQLite', leads, cycles, null, null);
  report(sqlite, cycles);

  const schema = `vb_${randomBytes(6).toString('hex')}`;
  const url = new URL(PG_URL);
  url.searchParams.set('schema', schema);
  let postgres: BackendResult;
  try {
    postgres = await runBackend('PostgreSQL', leads, cycles, url.toString(), schema);
  } finally {
    await dropSchema(schema);
  }
  report(postgres, cycles);

  const pgMed = quantile(postgres.cycles, 0.5);
  const sqliteMed = quantile(sqlite.cycles, 0.5);
  console.log(
    `ratio PostgreSQL cycle / SQLite cycle: median ${(pgMed / sqliteMed).toFixed(1)}x, p99 ${(quantile(postgres.cycles, 0.99) / quantile(sqlite.cycles, 0.99)).toFixed(1)}x`,
  );
  console.log(
    `ratio PostgreSQL fenced cycle / SQLite fenced cycle: median ${(quantile(postgres.fenced, 0.5) / quantile(sqlite.fenced, 0.5)).toFixed(1)}x`,
  );
  console.log(
    `ratio PostgreSQL raw / SQLite raw (median): ${(quantile(postgres.raw, 0.5) / quantile(sqlite.raw, 0.5)).toFixed(1)}x`,
  );
  console.log(`total ${((performance.now() - began) / 1000).toFixed(1)} s`);
  console.log(loadNote(loadAtStart));
  return 0;
}

try {
  process.exitCode = await main();
} catch (error) {
  console.error(error instanceof Interrupted ? error.message : error);
  process.exitCode = error instanceof Interrupted ? 130 : 1;
}
