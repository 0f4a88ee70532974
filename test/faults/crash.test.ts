/**
 * Crash safety: a Phase 4 worker is killed with SIGKILL again
 * and again — during start-up and recovery, while it sends, and while a batch request is in flight at
 * the partner — and then run to completion. Checked against the partner's own ledger (a real HTTPS
 * sandbox in this process) and the database (test/support/ledger-check.ts): no lead sent twice or
 * lost, nothing sent that was never queued, the audit chain intact, and the rate limit held across
 * restarts. test/faults/kill-points.test.ts kills at each named state transition instead.
 *
 * The worker is test/harness/live-worker.ts, built to dist-test/ by `npm run build:test` (which `npm test`
 * runs first): the real app, engine, guard, partner client and store, with the gate clearance given.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type SandboxPartner,
  type SandboxStats,
  seededRandom,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { harnessScript, phase4Env, runInProcess } from '../support/cli.js';
import { expectLedgerConsistent, readLedgerFacts, withSqliteFile } from '../support/ledger-check.js';
import { tempDir } from '../support/tmp.js';
import { holdsWithin } from '../support/world.js';

const WORKER = harnessScript('live-worker');
const LEADS = 150;
const ROUNDS = 12;
/** The bound on each wait for a round's moment: met at once on a quiet machine, room on a busy one. */
const WAIT_MS = 30_000;
const SEED = 0x5eed_c0de;
/** The sandbox's latency in the rounds meant to kill a request in flight (kills land 0–100 ms in). */
const LATENCY_MS = 250;
/** The policy's rate: requests that may start in any 1,000 ms window. */
const RATE_LIMIT = 5;
/** The last runs to completion: this many cycles each, at most this many runs. */
const FINAL_CYCLES = 40;
const FINAL_RUNS = 3;

/** mulberry32 (the sandbox's own): the same seed gives the same delays, so a failing run can be replayed. */
const prng = seededRandom;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();
let partner: SandboxPartner | undefined;
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await partner?.close();
});

/** Start the worker; `exited` settles when it is gone. A guard timer SIGKILLs it after `guardMs`. */
function startWorker(
  env: Record<string, string>,
  cwd: string,
  args: string[],
  guardMs: number,
): { child: ChildProcess; exited: Promise<Exit> } {
  const child = spawn(process.execPath, [WORKER, ...args], {
    cwd,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  const guard = setTimeout(() => child.kill('SIGKILL'), guardMs);
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      children.delete(child);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
  return { child, exited };
}

/** Partner requests that arrived and have had no answer yet. */
function requestsInFlight(s: SandboxStats): number {
  const answered = Object.values(s.requests.byStatus).reduce((a, b) => a + b, 0);
  return s.requests.total - answered - s.requests.dropped - s.requests.hung;
}

/** `POST /api/leads` requests that arrived and have had no outcome yet. */
function batchesInFlight(s: SandboxStats): number {
  const b = s.batches;
  return b.received - b.accepted - b.replayed - b.failedByFault - b.refused;
}

function leadFile(path: string, count: number, now: number): void {
  const rows = ['external_id,name,email,phone,company,score,source_timestamp,value'];
  for (let i = 0; i < count; i++) {
    // Fresh (minutes to a day old) and at or above the threshold: every one is eligible.
    const ts = new Date(now - 60_000 * (5 + i * 7)).toISOString();
    rows.push(
      `crash-${i},Person ${i},person${i}@crash.example,,Crash Co ${i % 7},${40 + (i % 61)},${ts},${100 + i}`,
    );
  }
  writeFileSync(path, `${rows.join('\n')}\n`);
}

/** Batches the partner accepted whose answer the worker never recorded (still `sending` in the database). */
function acceptedButUnrecorded(dbFile: string, sandbox: SandboxPartner): string[] {
  const accepted = new Set(sandbox.records().batches.map((b) => b.batchKey));
  const db = new SqliteDatabase(dbFile, { fileMustExist: true });
  try {
    const sending = db.prepare(`select batch_key from deliveries where state = 'sending'`).all() as {
      batch_key: string;
    }[];
    return sending.filter((d) => accepted.has(d.batch_key)).map((d) => d.batch_key);
  } finally {
    db.close();
  }
}

type RoundKind = 'startup' | 'sending' | 'burst' | 'mid-batch' | 'after-accept';

/**
 * startup:      kill 30–600 ms after the spawn: during start-up, recovery, or the limiter's first
 *               window (a new worker waits one window before its first request).
 * sending:      kill 30–600 ms after this worker's first request reached the partner.
 * burst:        kill as soon as the worker has made its first window's 5 requests; the next worker
 *               starts at once, so its first requests would fall within a second of these if it did
 *               not wait one window first.
 * mid-batch:    latency 250 ms; kill 0–100 ms after a batch arrived: the request is in flight.
 * after-accept: the answer lost: latency 250 ms; when a batch arrives the worker is frozen (SIGSTOP),
 *               the partner accepts it and answers into the frozen socket, then SIGKILL. The worker
 *               never read the answer, so the next one must resend the batch with its key (a replay).
 */
const SCHEDULE: { kind: RoundKind; latencyMs: number }[] = [
  { kind: 'startup', latencyMs: 0 },
  { kind: 'sending', latencyMs: LATENCY_MS },
  { kind: 'mid-batch', latencyMs: LATENCY_MS },
  { kind: 'after-accept', latencyMs: LATENCY_MS },
  { kind: 'burst', latencyMs: 0 },
  { kind: 'mid-batch', latencyMs: LATENCY_MS },
  { kind: 'startup', latencyMs: 0 },
  { kind: 'sending', latencyMs: 0 },
  { kind: 'after-accept', latencyMs: LATENCY_MS },
  { kind: 'burst', latencyMs: 0 },
  { kind: 'mid-batch', latencyMs: LATENCY_MS },
  { kind: 'after-accept', latencyMs: LATENCY_MS },
];

interface RoundResult {
  round: number;
  kind: RoundKind;
  latencyMs: number;
  delayMs: number;
  /** Whether the trigger (first request, first batch) was seen before the kill. */
  triggered: boolean;
  requestsInFlightAtKill: number;
  batchesInFlightAtKill: number;
  /** Batches the partner accepted that the database still has as `sending` after the kill. */
  answersLost: number;
  cycles: number;
}

describe('kill -9 (SIGKILL) of a live worker, again and again', () => {
  let cwd: string;
  /** The product's environment (Phase 4); the CLI refuses VALHALLA_TEST_* names. */
  let env: Record<string, string>;
  let workerEnv: Record<string, string>;
  let dbFile: string;

  beforeAll(async () => {
    expect(existsSync(WORKER), `${WORKER} is missing: run \`npm run build:test\` first`).toBe(true);
    cwd = tempDir('valhalla-crash-');
    partner = await startSandboxPartner({
      certDir: join(cwd, 'cert'),
      clientId: 'crash-client',
      clientSecret: 'crash-secret-0123456789',
      faults: { seed: 7 },
    });
    env = phase4Env(join(cwd, 'data'), partner, {
      VALHALLA_MAX_LEADS_PER_CYCLE: '10',
      VALHALLA_LOG_LEVEL: 'warn',
    });
    workerEnv = { ...env, VALHALLA_TEST_INTERVAL_MS: '10' };
    dbFile = join(cwd, 'data', 'valhalla.db');
    const init = await runInProcess(['init'], { cwd, env });
    expect(init.code, init.stderr).toBe(0);
    leadFile(join(cwd, 'leads.csv'), LEADS, Date.now());
    const ingest = await runInProcess(['ingest', 'leads.csv', '--json'], { cwd, env });
    expect(ingest.code, ingest.stderr).toBe(0);
    const summary = JSON.parse(ingest.stdout);
    expect(summary.accepted).toBe(LEADS);
  });

  it('loses nothing, sends nothing twice, sends nothing unqueued, and keeps the chain and the rate', async () => {
    const sandbox = partner!;
    const random = prng(SEED);
    const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
    const rounds: RoundResult[] = [];

    for (let round = 0; round < ROUNDS; round++) {
      const { kind, latencyMs } = SCHEDULE[round % SCHEDULE.length]!;
      sandbox.setFaults({ latencyMs });
      const delayMs =
        kind === 'startup' || kind === 'sending'
          ? between(30, 600)
          : kind === 'mid-batch'
            ? between(0, 100)
            : 0;
      const before = sandbox.stats();
      const { child, exited } = startWorker(workerEnv, cwd, [], 90_000);
      let triggered = true;
      if (kind === 'sending') {
        triggered = await holdsWithin(() => sandbox.stats().requests.total > before.requests.total, {
          timeoutMs: WAIT_MS,
          everyMs: 2,
        });
      } else if (kind === 'burst') {
        const full = before.requests.total + RATE_LIMIT;
        triggered = await holdsWithin(() => sandbox.stats().requests.total >= full, {
          timeoutMs: WAIT_MS,
          everyMs: 0,
        });
      } else if (kind === 'mid-batch') {
        triggered = await holdsWithin(() => sandbox.stats().batches.received > before.batches.received, {
          timeoutMs: WAIT_MS,
          everyMs: 2,
        });
      } else if (kind === 'after-accept') {
        triggered = await holdsWithin(() => sandbox.stats().batches.received > before.batches.received, {
          timeoutMs: WAIT_MS,
          everyMs: 0,
        });
        if (triggered) {
          child.kill('SIGSTOP');
          const answered = (s: SandboxStats) => s.batches.accepted + s.batches.replayed;
          const atStop = answered(before);
          triggered = await holdsWithin(() => answered(sandbox.stats()) > atStop, {
            timeoutMs: WAIT_MS,
            everyMs: 2,
          });
        }
      }
      if (delayMs > 0) await sleep(delayMs);
      const atKill = sandbox.stats();
      child.kill('SIGKILL');
      const exit = await exited;
      expect(exit.signal, `round ${round} ended by itself: ${exit.stderr}`).toBe('SIGKILL');
      // A worker sends one batch at a time, after recovering those a crash left `sending`: after an
      // answer-lost kill, the one `sending` batch is the frozen one, and the partner has accepted it.
      const answersLost = kind === 'after-accept' ? acceptedButUnrecorded(dbFile, sandbox).length : 0;
      if (kind === 'burst')
        expect(triggered, `round ${round}: no burst of ${RATE_LIMIT} requests`).toBe(true);
      if (kind === 'after-accept') {
        expect(triggered, `round ${round}: the partner never answered the frozen batch`).toBe(true);
        expect(answersLost, `round ${round}: the frozen batch is not left sending`).toBe(1);
      }
      rounds.push({
        round,
        kind,
        latencyMs,
        delayMs,
        triggered,
        // Requests cut by earlier kills are never answered: count this round's only.
        requestsInFlightAtKill: requestsInFlight(atKill) - requestsInFlight(before),
        batchesInFlightAtKill: batchesInFlight(atKill) - batchesInFlight(before),
        answersLost,
        cycles: exit.stdout.split('\n').filter((l) => l.startsWith('{')).length,
      });
      // Let the sandbox see the connection end (an unanswered request is then never answered).
      await sleep(latencyMs > 0 ? LATENCY_MS + 20 : 20);
    }

    sandbox.setFaults({ latencyMs: 0 });
    const acceptedDuringRounds = sandbox.stats().leads.accepted;
    const finalRuns: Exit[] = [];
    const unfinished = () => {
      const db = new SqliteDatabase(dbFile, { readonly: true, fileMustExist: true });
      try {
        const leads = db
          .prepare(`select count(*) as n from leads where state in ('pending', 'in_flight')`)
          .get() as { n: number };
        const deliveries = db
          .prepare(
            `select count(*) as n from deliveries where kind = 'live' and state in ('queued', 'sending', 'retry_wait')`,
          )
          .get() as { n: number };
        return leads.n + deliveries.n;
      } finally {
        db.close();
      }
    };
    while (finalRuns.length < FINAL_RUNS && (finalRuns.length === 0 || unfinished() > 0)) {
      const { exited } = startWorker(workerEnv, cwd, [String(FINAL_CYCLES)], 180_000);
      const exit = await exited;
      expect(exit.code, `final run ${finalRuns.length + 1}: ${exit.signal ?? ''} ${exit.stderr}`).toBe(0);
      finalRuns.push(exit);
    }
    expect(unfinished(), 'leads or batches still pending after the final runs').toBe(0);

    // ---- the figures ----
    const stats = sandbox.stats();
    const facts = await withSqliteFile(dbFile, readLedgerFacts);
    const midBatchKills = rounds.filter((r) => r.batchesInFlightAtKill > 0).length;
    const midRequestKills = rounds.filter((r) => r.requestsInFlightAtKill > 0).length;
    const answersLost = rounds.reduce((sum, r) => sum + r.answersLost, 0);
    const byState = new Map<string, number>();
    for (const lead of facts.leads) byState.set(lead.state, (byState.get(lead.state) ?? 0) + 1);
    console.log(
      [
        `crash test: ${ROUNDS} SIGKILL rounds (seed ${SEED.toString(16)}), ${finalRuns.length} final run(s)`,
        ...rounds.map(
          (r) =>
            `  round ${String(r.round).padStart(2)} ${r.kind.padEnd(12)} latency ${String(r.latencyMs).padStart(3)} ms, kill +${String(r.delayMs).padStart(3)} ms${r.triggered ? '' : ' (trigger not seen)'}: ${r.cycles} cycle(s) finished, in flight at kill: ${r.requestsInFlightAtKill} request(s), ${r.batchesInFlightAtKill} batch(es)${r.answersLost > 0 ? `, ${r.answersLost} accepted batch(es) unrecorded` : ''}`,
        ),
        `  kills mid-request: ${midRequestKills} (mid-batch: ${midBatchKills}); accepted batches whose answer was lost: ${answersLost}`,
        `  leads accepted by the partner during the kill rounds: ${acceptedDuringRounds}, after: ${stats.leads.accepted - acceptedDuringRounds}`,
        `  leads by state: ${[...byState].map(([state, n]) => `${state} ${n}`).join(', ')}`,
        `  partner: ${stats.requests.total} requests, ${stats.batches.received} batch requests, ${stats.batches.accepted} batches / ${stats.leads.accepted} leads accepted, ${stats.batches.replayed} replays, ${stats.leads.duplicates} duplicate leads; recovery resends ${facts.resends}`,
      ].join('\n'),
    );

    // The scenario happened as designed: kills landed on batches in flight, and some work was sent.
    expect(midBatchKills, 'no kill landed while a batch was in flight').toBeGreaterThanOrEqual(2);
    expect(facts.resends, 'fewer recoveries than batches cut').toBeGreaterThanOrEqual(midBatchKills);

    // Invariants 2, 4 and 8 against the partner's own ledger (test/support/ledger-check.ts): every lead
    // exported or quarantined with a reason, each in one live delivery, none left mid-way; each lead key
    // accepted under the one batch key the database queued it under, no duplicate, no replay of other
    // leads; exported = accepted by the partner; at most 5 request starts in any 1 s, restarts included
    // (a new worker waits one window before its first request, since it cannot know what the dead one sent).
    expectLedgerConsistent(facts, sandbox, { leadCount: LEADS, rateLimit: RATE_LIMIT });
    // A replay is the resend of a batch whose answer a crash lost: each such batch is resent with its
    // own key (at least one replay each), and there is no replay without a recovery resend.
    expect(stats.batches.replayed).toBeGreaterThanOrEqual(answersLost);
    expect(stats.batches.replayed).toBeLessThanOrEqual(facts.resends);

    // Invariant 6: the chain verifies after all those crashes.
    const verify = await runInProcess(['audit', 'verify'], { cwd, env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  }, 900_000);
});
