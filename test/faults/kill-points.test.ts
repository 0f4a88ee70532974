/**
 * kill -9 at every state transition of a delivery (README "Delivery guarantee": "a process killed at
 * any point leaves each batch queued, sending or finished; on restart a sending batch is resent under
 * its own key; an unanswered request spends no retry"). For each point a Phase 4
 * worker (test/harness/fault-worker.ts: the real app, engine, guard, partner client and store) is
 * killed with SIGKILL exactly there, the state it left is checked, a new worker runs to completion,
 * and the end is checked against the sandbox partner's own ledger (test/support/ledger-check.ts):
 * every lead exported once or quarantined with a reason, none sent twice or unqueued, the audit chain
 * verifies, at most 5 requests in any second at the partner, restarts included.
 *
 * The worker is built to dist-test/ by `npm run build:test` (`npx tsc -p tsconfig.test-build.json`).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type SandboxFaultsPatch,
  type SandboxPartner,
  type SandboxProfile,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import { harnessScript, phase4Env, runInProcess } from '../support/cli.js';
import {
  describeLedger,
  expectLedgerConsistent,
  type LedgerExpectations,
  readLedgerFacts,
  withSqliteFile,
} from '../support/ledger-check.js';
import { query } from '../support/sqlite.js';
import { tempDir } from '../support/tmp.js';
import { holdsWithin } from '../support/world.js';
import { expectLeadLedgerConsistent } from './lead-ledger.js';

const WORKER = harnessScript('fault-worker');
/** Leads per cycle: a batch is at most this big. */
const CEILING = 3;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const certDir = tempDir('valhalla-kill-cert-');
const children = new Set<ChildProcess>();
const sandboxes: SandboxPartner[] = [];
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const sandbox of sandboxes) await sandbox.close();
});

beforeAll(() => {
  expect(existsSync(WORKER), `${WORKER} is missing: run \`npm run build:test\` first`).toBe(true);
});

interface Site {
  cwd: string;
  env: Record<string, string>;
  dbFile: string;
  sandbox: SandboxPartner;
  /** Leads ingested so far. */
  leads: number;
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The worker's last words at its kill point, when it reached one. */
  killed: Record<string, unknown> & { killedAt?: string };
}

/** The CRM sandbox's static token (profile `crm-batch-contacts`). */
const CRM_TOKEN = 'kill-crm-token-0123456789';

/**
 * A fresh installation (its own data folder and sandbox partner) with `leads` eligible leads; with
 * `profile`, the installation speaks it and the sandbox plays it (the CRM's: a static bearer token).
 */
async function site(
  leads: number,
  faults: SandboxFaultsPatch = {},
  profile: SandboxProfile = 'valhalla',
): Promise<Site> {
  const cwd = tempDir('valhalla-kill-');
  const crm = profile === 'crm-batch-contacts';
  const sandbox = await startSandboxPartner({
    certDir,
    clientId: 'kill-client',
    clientSecret: 'kill-secret-0123456789',
    faults: { seed: 11, ...faults },
    ...(crm ? { profile, bearerToken: CRM_TOKEN } : {}),
  });
  sandboxes.push(sandbox);
  const env = phase4Env(join(cwd, 'data'), sandbox, {
    VALHALLA_MAX_LEADS_PER_CYCLE: String(CEILING),
    VALHALLA_LOG_LEVEL: 'warn',
    ...(crm ? { VALHALLA_PARTNER_PROFILE: profile, VALHALLA_PARTNER_BEARER_TOKEN: CRM_TOKEN } : {}),
  });
  const init = await runInProcess(['init'], { cwd, env });
  expect(init.code, init.stderr).toBe(0);
  const s: Site = { cwd, env, dbFile: join(cwd, 'data', 'valhalla.db'), sandbox, leads: 0 };
  await ingest(s, leads);
  return s;
}

/** Ingest `count` more fresh, eligible leads (while no worker runs). */
async function ingest(s: Site, count: number): Promise<void> {
  const rows = ['external_id,name,email,phone,company,score,source_timestamp,value'];
  const now = Date.now();
  for (let i = s.leads; i < s.leads + count; i++) {
    const ts = new Date(now - 60_000 * (5 + i)).toISOString();
    rows.push(`kill-${i},Person ${i},person${i}@kill.example,,Kill Co,${90 - i},${ts},${100 + i}`);
  }
  const file = `leads-${s.leads}.csv`;
  writeFileSync(join(s.cwd, file), `${rows.join('\n')}\n`);
  const result = await runInProcess(['ingest', file, '--json'], { cwd: s.cwd, env: s.env });
  expect(result.code, result.stderr).toBe(0);
  expect(JSON.parse(result.stdout).accepted).toBe(count);
  s.leads += count;
}

interface WorkerOptions {
  killAt?: string;
  /** Extra VALHALLA_TEST_* settings of the harness. */
  harness?: Record<string, string>;
  cycles?: number;
  /** The guard timer: SIGKILL after this long whatever happens (the test then fails on the missing marker). */
  guardMs?: number;
}

function startWorker(s: Site, options: WorkerOptions): { child: ChildProcess; exited: Promise<Exit> } {
  const harness: Record<string, string> = {
    VALHALLA_TEST_INTERVAL_MS: '20',
    ...(options.killAt ? { VALHALLA_TEST_KILL_AT: options.killAt } : { VALHALLA_TEST_UNTIL_DONE: '1' }),
    ...options.harness,
  };
  const child = spawn(process.execPath, [WORKER, String(options.cycles ?? 200)], {
    cwd: s.cwd,
    env: { PATH: process.env.PATH, ...s.env, ...harness },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (c: Buffer) => out.push(c));
  child.stderr?.on('data', (c: Buffer) => err.push(c));
  const guard = setTimeout(() => child.kill('SIGKILL'), options.guardMs ?? 20_000);
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      children.delete(child);
      const stdout = Buffer.concat(out).toString('utf8');
      const last = stdout.split('\n').find((line) => line.startsWith('{"killedAt"'));
      resolve({
        code,
        signal,
        stdout,
        stderr: Buffer.concat(err).toString('utf8'),
        killed: last ? JSON.parse(last) : {},
      });
    });
  });
  return { child, exited };
}

/** Run a worker that must die by SIGKILL at `killAt`; returns its last words. */
async function killedAt(s: Site, killAt: string, harness: Record<string, string> = {}): Promise<Exit> {
  const exit = await startWorker(s, { killAt, harness }).exited;
  expect(exit.signal, `the worker ended by itself: ${exit.stderr}`).toBe('SIGKILL');
  expect(exit.killed.killedAt, `the kill point ${killAt} was never reached: ${exit.stderr}`).toBe(killAt);
  return exit;
}

/** Clear the faults and restart until nothing is left to send (at most 3 workers). */
async function finishUntilDone(s: Site): Promise<void> {
  s.sandbox.setFaults({
    latencyMs: 0,
    failNext: 0,
    rateLimit: null,
    permanentStatus: null,
    reject401: false,
    down: false,
    hang: false,
  });
  for (let run = 0; run < 3 && workLeft(s) > 0; run++) {
    const exit = await startWorker(s, { guardMs: 30_000 }).exited;
    expect(exit.code, `completion run ${run + 1}: ${exit.signal ?? ''} ${exit.stderr}`).toBe(0);
  }
  expect(workLeft(s), 'leads or batches still waiting after the completion runs').toBe(0);
}

/** Restart until nothing is left to send (at most 3 workers), then check everything against the ledger. */
async function finishAndCheck(s: Site, expectations: LedgerExpectations = {}) {
  await finishUntilDone(s);
  const facts = await withSqliteFile(s.dbFile, readLedgerFacts);
  const summary = expectLedgerConsistent(facts, s.sandbox, { leadCount: s.leads, ...expectations });
  const verify = await runInProcess(['audit', 'verify'], { cwd: s.cwd, env: s.env });
  expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  return { facts, summary };
}

function workLeft(s: Site): number {
  const [leads] = query<{ n: number }>(
    s.dbFile,
    `select count(*) as n from leads where state in ('pending', 'in_flight')`,
  );
  const [batches] = query<{ n: number }>(
    s.dbFile,
    `select count(*) as n from deliveries where kind = 'live' and state in ('queued', 'sending', 'retry_wait')`,
  );
  return leads!.n + batches!.n;
}

interface DeliveryRow {
  id: number;
  batch_key: string;
  state: string;
  attempts: number;
  next_attempt_at: number | null;
  last_status: number | null;
  last_outcome: string | null;
  updated_at: number;
}

function delivery(s: Site, batchKey: string): DeliveryRow {
  const [row] = query<DeliveryRow>(s.dbFile, 'select * from deliveries where batch_key = ?', batchKey);
  expect(row, `no delivery ${batchKey}`).toBeDefined();
  return row!;
}

function leadKeysOf(s: Site, batchKey: string): string[] {
  return query<{ lead_key: string }>(
    s.dbFile,
    `select dl.lead_key from delivery_leads dl join deliveries d on d.id = dl.delivery_id where d.batch_key = ?`,
    batchKey,
  ).map((r) => r.lead_key);
}

function leadStatesOf(s: Site, batchKey: string): { state: string; state_reason: string | null }[] {
  return query(
    s.dbFile,
    `select l.state, l.state_reason from leads l join delivery_leads dl on dl.lead_id = l.id
       join deliveries d on d.id = dl.delivery_id where d.batch_key = ?`,
    batchKey,
  );
}

function auditCount(s: Site, action: string, batchKey: string): number {
  const [row] = query<{ n: number }>(
    s.dbFile,
    'select count(*) as n from audit_log where action = ? and subject = ?',
    action,
    `batch:${batchKey}`,
  );
  return row!.n;
}

/** The lead keys of `batchKey` the partner holds, under any batch key. */
function atPartner(s: Site, batchKey: string): string[] {
  const held = s.sandbox.records().leadBatches;
  return leadKeysOf(s, batchKey).filter((k) => held[k] !== undefined);
}

const log = (point: string, text: string) => console.log(`kill at ${point}: ${text}`);

describe('kill -9 at every state transition of a delivery, then run to completion', () => {
  it('after the batch is committed `queued` (a due retry goes first): the queued batch never reached the partner; sent once after the restart', async () => {
    // A one-lead batch waits for its retry; more leads arrive; the next cycle claims a second batch
    // (committed queued) and sends the due retry first. The kill lands before that request starts.
    const s = await site(1, { failNext: 1 });
    await killedAt(s, 'retry_wait');
    const [retrying] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'retry_wait'`);
    await ingest(s, 4);
    s.sandbox.setFaults({ failNext: 0 });
    await sleep(1_100); // the retry (1 s backoff) is due when the next worker claims
    const exit = await killedAt(s, 'queued');
    const [queued] = exit.killed.queued as string[];
    expect(delivery(s, queued!)).toMatchObject({ state: 'queued', attempts: 0 });
    expect(leadKeysOf(s, queued!)).toHaveLength(CEILING - 1);
    // The request about to start was the due retry's, which goes first.
    expect(exit.killed.batchKey).toBe(retrying!.batch_key);
    expect(atPartner(s, queued!), 'the queued batch reached the partner').toEqual([]);
    expect(auditCount(s, 'batch.queued', queued!)).toBe(1);
    expect(auditCount(s, 'guard.allowed', queued!)).toBe(0);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(delivery(s, queued!)).toMatchObject({ state: 'accepted', attempts: 1 });
    expect(summary.exported).toBe(5);
    log('queued', describeLedger(summary));
  });

  it('after the batch is committed `sending` (guard decision audited), before its request: resent under its key, accepted once', async () => {
    const s = await site(7);
    const exit = await killedAt(s, 'sending');
    const key = String(exit.killed.batchKey);
    expect(delivery(s, key)).toMatchObject({ state: 'sending', attempts: 1 });
    expect(auditCount(s, 'guard.allowed', key)).toBe(1);
    expect(s.sandbox.stats().batches.received, 'the request started before the kill').toBe(0);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(auditCount(s, 'recovery.resend', key)).toBe(1);
    // The interrupted attempt counts: the resend is attempt 2, under the same key, not a replay.
    expect(delivery(s, key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary.replays).toBe(0);
    expect(summary.exported).toBe(7);
    log('sending', describeLedger(summary));
  });

  it('while the request is in flight at the partner: cut unanswered, resent under its key, accepted once', async () => {
    const s = await site(7, { latencyMs: 600 });
    const { child, exited } = startWorker(s, {});
    const arrived = await holdsWithin(() => s.sandbox.stats().batches.received > 0, {
      timeoutMs: 15_000,
      everyMs: 0,
    });
    expect(arrived, 'no batch reached the partner').toBe(true);
    child.kill('SIGKILL');
    const exit = await exited;
    expect(exit.signal).toBe('SIGKILL');
    await sleep(700); // the sandbox's latency passes: the cut request is never answered
    const stats = s.sandbox.stats();
    expect(stats.batches).toMatchObject({ received: 1, accepted: 0, replayed: 0 });
    const [sending] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'sending'`);
    expect(sending, 'the batch in flight is not left sending').toBeDefined();
    expect(sending!.attempts).toBe(1);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(delivery(s, sending!.batch_key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary.replays, 'the cut request was accepted after all').toBe(0);
    log('in flight', describeLedger(summary));
  });

  it('after the partner answered, before the outcome commits (the answer is lost): the resend is a replay, no lead accepted twice', async () => {
    const s = await site(7);
    const exit = await killedAt(s, 'answered');
    const key = String(exit.killed.batchKey);
    expect(exit.killed.outcome).toBe('accepted');
    expect(delivery(s, key)).toMatchObject({ state: 'sending', attempts: 1 });
    expect(s.sandbox.records().batches.map((b) => b.batchKey)).toEqual([key]);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(delivery(s, key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary.replays).toBe(1);
    expect(summary.exported).toBe(7);
    log('answered', describeLedger(summary));
  });

  it('CRM profile (no batch key): after the partner answered, before the outcome commits: the resend meets a CONFLICT per record, read as duplicates at the partner; each lead held once', async () => {
    const s = await site(7, {}, 'crm-batch-contacts');
    const exit = await killedAt(s, 'answered');
    const key = String(exit.killed.batchKey);
    expect(exit.killed.outcome).toBe('accepted');
    expect(delivery(s, key)).toMatchObject({ state: 'sending', attempts: 1 });
    const keys = leadKeysOf(s, key);
    const created = s.sandbox.leads();
    expect(keys.map((k) => created[k]?.acceptedAt !== null && created[k]?.received === 1)).toEqual(
      keys.map(() => true),
    );

    await finishUntilDone(s);
    const facts = await withSqliteFile(s.dbFile, readLedgerFacts);
    const summary = expectLeadLedgerConsistent(facts, s.sandbox.leads(), {
      finalStates: ['exported'],
      leadCount: s.leads,
    });
    // The resend of the lost answer's batch: every record a CONFLICT on its lead key, nothing created twice.
    expect(delivery(s, key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary).toMatchObject({ exported: 7, receivedAgain: keys.length, refusedAtPartner: 0 });
    for (const lead of leadStatesOf(s, key)) {
      expect(lead).toMatchObject({ state: 'exported' });
      expect(lead.state_reason).toMatch(/^duplicate at partner: /);
    }
    expect(s.sandbox.stats().leads).toEqual({ accepted: 7, duplicates: keys.length });
    const verify = await runInProcess(['audit', 'verify'], { cwd: s.cwd, env: s.env });
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    log('answered (CRM)', JSON.stringify(summary));
  });

  it('CRM profile (no batch key): while the request is in flight, cut unanswered: the restart sends it again; each lead created once in the CRM', async () => {
    const s = await site(7, { latencyMs: 600 }, 'crm-batch-contacts');
    const { child, exited } = startWorker(s, {});
    const arrived = await holdsWithin(() => s.sandbox.stats().batches.received > 0, {
      timeoutMs: 15_000,
      everyMs: 0,
    });
    expect(arrived, 'no batch reached the CRM').toBe(true);
    child.kill('SIGKILL');
    expect((await exited).signal).toBe('SIGKILL');
    await sleep(700); // the sandbox's latency passes: the cut request is never answered
    const [sending] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'sending'`);
    expect(sending, 'the batch in flight is not left sending').toBeDefined();

    await finishUntilDone(s);
    const facts = await withSqliteFile(s.dbFile, readLedgerFacts);
    const summary = expectLeadLedgerConsistent(facts, s.sandbox.leads(), {
      finalStates: ['exported'],
      leadCount: s.leads,
    });
    expect(delivery(s, sending!.batch_key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary).toMatchObject({ exported: 7, refusedAtPartner: 0 });
    // Created once each: the cut request created nothing, or its records came back as conflicts.
    expect(s.sandbox.stats().leads.accepted).toBe(7);
    log('in flight (CRM)', JSON.stringify(summary));
  });

  it('CRM profile: after a partial answer commits (every 3rd lead refused): the refused leads stay quarantined with the reason, never sent again; the rest exported once', async () => {
    const s = await site(
      7,
      { refuseLeads: { every: 3, reason: 'Property values were not valid' } },
      'crm-batch-contacts',
    );
    const exit = await killedAt(s, 'accepted');
    expect(exit.killed.cycle).toBeTypeOf('number');
    const [done] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'accepted'`);
    const answered = leadStatesOf(s, done!.batch_key);
    expect(answered.filter((l) => l.state === 'quarantined').map((l) => l.state_reason)).toEqual(
      answered
        .filter((l) => l.state === 'quarantined')
        .map(() => 'refused by the partner: Property values were not valid'),
    );

    s.sandbox.setFaults({ refuseLeads: null });
    await finishUntilDone(s);
    const facts = await withSqliteFile(s.dbFile, readLedgerFacts);
    const summary = expectLeadLedgerConsistent(facts, s.sandbox.leads(), { leadCount: s.leads });
    expect(summary.refusedAtPartner).toBe(answered.filter((l) => l.state === 'quarantined').length);
    expect(summary.refusedAtPartner).toBeGreaterThan(0);
    expect(summary.exported + summary.quarantined).toBe(7);
    log('partial answer (CRM)', JSON.stringify(summary));
  });

  it('after `accepted` commits: the batch is never sent again; the rest follow in new batches', async () => {
    const s = await site(7);
    const exit = await killedAt(s, 'accepted');
    const [done] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'accepted'`);
    expect(done).toBeDefined();
    expect(exit.killed.cycle).toBeTypeOf('number');
    expect(leadStatesOf(s, done!.batch_key).map((l) => l.state)).toEqual([
      'exported',
      'exported',
      'exported',
    ]);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(summary.replays).toBe(0);
    expect(summary.resends).toBe(0);
    expect(delivery(s, done!.batch_key)).toMatchObject({ state: 'accepted', attempts: 1 });
    expect(summary.exported).toBe(7);
    log('accepted', describeLedger(summary));
  });

  it('after `retry_wait` commits (503): the retry goes out after the restart under the same key', async () => {
    const s = await site(7, { failNext: 1 });
    const exit = await killedAt(s, 'retry_wait');
    // The wait asked for is what is left of the 1 s backoff when the sleep starts (never more).
    expect(exit.killed.waitMs).toBeLessThanOrEqual(1_000);
    const [waiting] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'retry_wait'`);
    expect(waiting).toMatchObject({ attempts: 1, last_status: 503, last_outcome: 'retryable' });
    expect(waiting!.next_attempt_at! - waiting!.updated_at).toBe(1_000);
    expect(s.sandbox.stats().batches).toMatchObject({ received: 1, failedByFault: 1, accepted: 0 });

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(delivery(s, waiting!.batch_key)).toMatchObject({ state: 'accepted', attempts: 2 });
    expect(summary.resends).toBe(0);
    log('retry_wait', describeLedger(summary));
  });

  it('during the retry backoff (429, Retry-After 3 s): the restart waits out the partner’s time, then resends under the same key', async () => {
    const s = await site(7, { rateLimit: { retryAfter: 3, every: 1 } });
    const exit = await killedAt(s, 'backoff', { VALHALLA_TEST_KILL_AFTER_MS: '1000' });
    expect(exit.killed.killedAfterMs).toBe(1_000);
    expect(exit.killed.waitMs).toBeLessThanOrEqual(3_000);
    const [waiting] = query<DeliveryRow>(s.dbFile, `select * from deliveries where state = 'retry_wait'`);
    expect(waiting).toMatchObject({ attempts: 1, last_status: 429 });
    const dueAt = waiting!.next_attempt_at!;
    expect(dueAt - waiting!.updated_at).toBe(3_000);

    const { summary } = await finishAndCheck(s, { finalStates: ['exported'] });
    expect(delivery(s, waiting!.batch_key)).toMatchObject({ state: 'accepted', attempts: 2 });
    // The resend did not jump the partner's Retry-After: it arrived after the batch was due.
    const batch = s.sandbox.records().batches.find((b) => b.batchKey === waiting!.batch_key)!;
    expect(batch.receivedAt).toBeGreaterThanOrEqual(dueAt);
    log('backoff', describeLedger(summary));
  });

  it('after `quarantined` commits (422): the leads stay quarantined with a reason and an alert, never resent', async () => {
    const s = await site(7, { permanentStatus: 422 });
    await killedAt(s, 'quarantined');
    const [quarantined] = query<DeliveryRow>(
      s.dbFile,
      `select * from deliveries where state = 'quarantined'`,
    );
    expect(quarantined).toMatchObject({ attempts: 1, last_status: 422 });
    for (const lead of leadStatesOf(s, quarantined!.batch_key)) {
      expect(lead.state).toBe('quarantined');
      expect(lead.state_reason).toMatch(/HTTP 422/);
    }
    const alerts = query<{ event: string }>(s.dbFile, `select event from alerts where event = 'quarantine'`);
    expect(alerts).toHaveLength(1);

    const { summary } = await finishAndCheck(s);
    expect(atPartner(s, quarantined!.batch_key), 'a quarantined lead was sent again').toEqual([]);
    expect(summary.byState).toEqual({ exported: 4, quarantined: 3 });
    expect(summary.resends).toBe(0);
    log('quarantined', describeLedger(summary));
  });

  it('after the partner accepted the 3rd attempt (two failed answers before), before it commits: the restart asks the partner again under the key, which replays it; exported once, no retry spent', async () => {
    // Two 503s (two failed answers, retried 1 s and 2 s later), then the partner accepts the batch and
    // the process dies before recording it: the answer is lost, the partner has the leads.
    const s = await site(3, { failNext: 2 });
    const exit = await killedAt(s, 'answered', { VALHALLA_TEST_KILL_MIN_ATTEMPT: '3' });
    const key = String(exit.killed.batchKey);
    expect(exit.killed).toMatchObject({ attempts: 3, outcome: 'accepted', status: 200 });
    expect(delivery(s, key)).toMatchObject({ state: 'sending', attempts: 3 });
    expect(s.sandbox.stats().batches).toMatchObject({ received: 3, accepted: 1 });

    const { summary } = await finishAndCheck(s);
    // One more request under the same key, answered as a replay: accepted by the partner ⇒ exported.
    expect(s.sandbox.stats().batches).toMatchObject({ received: 4, accepted: 1, replayed: 1 });
    expect(delivery(s, key)).toMatchObject({ state: 'accepted', attempts: 4 });
    const [counts] = query<{ failed_answers: number; unanswered: number }>(
      s.dbFile,
      `select failed_answers, unanswered from deliveries where batch_key = '${key}'`,
    );
    expect(counts).toEqual({ failed_answers: 2, unanswered: 1 });
    for (const lead of leadStatesOf(s, key)) expect(lead.state).toBe('exported');
    expect(summary.byState).toEqual({ exported: 3 });
    log('accepted, answer lost', describeLedger(summary));
  });
});
