/**
 * bench/kill-sweep: the real binary killed with SIGKILL at many points, then drained, and checked
 * against the partner's own ledger (README "Delivery guarantee": a process killed at any point loses
 * nothing and sends nothing under a second key).
 *
 * One SQLite installation in a temporary folder, cleared for Phase 4 the way operators clear one
 * (bench/cleared-installation.ts), sending to the in-process HTTPS sandbox partner with no faults:
 * a partner that never fails. `node bin/valhalla.js run` (supervisor and worker) is started from
 * outside in a process group of its own; each kill is SIGKILL to the whole group, so no supervisor
 * restarts or rolls back anything; then `valhalla run` starts again. Leads are topped up between runs
 * so the queue never runs dry. Kill points, chosen by the benchmark and counted by where the
 * partner's own times say they landed (bench/partner-watch.ts):
 *
 *   during    the partner has received a leads request and not answered it (the answer held by the
 *             sandbox's latency hook); after the kill the partner either answers it after all (it
 *             records the batch as accepted: the client never hears) or drops it, at random;
 *   after     within 50 ms after the partner answered a leads request;
 *   other     any other moment: a random delay after the start.
 *
 * Then a drain: `valhalla run` once more until every lead is in a final state (or 10 minutes), stopped
 * with SIGTERM. It prints the kills by place, the leads, and the check against the partner's ledger:
 * lost, a lead under two batch keys, accepted by the partner but not exported, exported but not
 * accepted, quarantined; exit 1 when any of them is not 0.
 *
 *   npm run bench:kill-sweep -- [--kills 1000]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { BIN } from '../src/app/run.js';
import { startSandboxPartner } from '../src/sandbox/index.js';
import { clearedInstallation, cli, type Installation } from './cleared-installation.js';
import { busiestWindow, compareWithPartner, readStoreFacts } from './delivery-ledger.js';
import { AFTER_ANSWER_MS, type Arm, type KillPlace, PartnerWatch } from './partner-watch.js';
import { arg, quantile } from './support.js';

/** Leads per cycle, and so per batch: small, so the day's 10,000 leads last the whole sweep. */
const LEADS_PER_CYCLE = 3;
/** The queue is topped up to keep at least this many leads pending between runs… */
const LOW_WATER = 30;
/** …by this many at a time: small, so the drain has little to send. */
const TOP_UP = 90;
/** A run that reaches no armed request within this long is killed anyway (and counted where it lands). */
const ARMED_TIMEOUT_MS = 60_000;
const DRAIN_LIMIT_MS = 10 * 60_000;
const STOP_GRACE_MS = 60_000;
/** Consecutive runs that end by themselves before the sweep gives up. */
const MAX_SELF_EXITS = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  child: ChildProcess;
  /** The supervisor's pid, which leads the process group. */
  pgid: number;
  startedAt: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  killedAt: number | null;
}

interface Kill {
  planned: KillPlace;
  landed: KillPlace;
  sinceStartMs: number;
  sinceAnswerMs: number | null;
  /** For a kill during a request: whether the partner answered it afterwards. */
  partnerAnswered: boolean | null;
}

/** Processes in `pgid` that are not yet dead (zombies count as dead). */
function groupAlive(pgid: number): boolean {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // After the command name's last ')': state, ppid, pgrp.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
    } catch {
      // Gone meanwhile.
    }
  }
  return false;
}

async function groupGone(pgid: number, timeoutMs = 20_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!groupAlive(pgid)) return true;
    await sleep(10);
  }
  return !groupAlive(pgid);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

async function main() {
  const kills = arg('--kills', 1_000);
  const targets = { during: Math.ceil(kills / 10), after: Math.ceil(kills / 50) };
  const wallStart = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-kill-sweep-'));
  const watch = new PartnerWatch();
  const partner = await startSandboxPartner({
    certDir: join(dir, 'cert'),
    // A partner that never fails: the latency fault only makes the sandbox call the hook.
    faults: { latencyMs: 1 },
    sleep: watch.sleep,
  });
  let installation: Installation | null = null;
  let current: Run | null = null;
  // Whatever happens, no `valhalla run` outlives the benchmark.
  const killCurrent = () => {
    if (current !== null) signalGroup(current.pgid, 'SIGKILL');
  };
  process.once('exit', killCurrent);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killCurrent();
      process.exit(130);
    });
  }
  let passed = false;
  try {
    console.log(
      `bench/kill-sweep: ${kills} kills of \`valhalla run\` (at least ${targets.during} during a leads request, ${targets.after} within ${AFTER_ANSWER_MS} ms after an answer), then a drain`,
    );
    console.log('installation: Phase 4 cleared the way operators clear it');
    installation = await clearedInstallation(
      dir,
      partner,
      {
        VALHALLA_CYCLE_INTERVAL_S: '1',
        VALHALLA_MAX_LEADS_PER_CYCLE: String(LEADS_PER_CYCLE),
        // Phase 4 runs with its monitoring on (the release manifest refuses it off): any free ports.
        VALHALLA_SERVER_PORT: '0',
        VALHALLA_METRICS_PORT: '0',
        VALHALLA_LOG_LEVEL: 'warn',
      },
      (line) => console.log(line),
    );
    const inst = installation;
    watch.attach(partner);
    // Every run's output, and one line per kill: kept with the installation when the check fails.
    const outputFile = join(dir, 'runs.log');
    const killsFile = join(dir, 'kills.jsonl');
    const output = openSync(outputFile, 'a', 0o600);
    const db = new SqliteDatabase(inst.dbFile, { readonly: true, fileMustExist: true });
    const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    let ingested = 0;
    const topUp = async () => {
      if (
        count(`select count(*) as n from leads where state = 'pending' and external_id like 'sweep-%'`) >=
        LOW_WATER
      )
        return;
      const at = new Date(Date.now() - 60_000).toISOString();
      const rows = ['external_id,name,email,company,score,source_timestamp,value'];
      for (let i = ingested; i < ingested + TOP_UP; i++) {
        rows.push(`sweep-${i},Sweep Person ${i},person${i}@sweep.example,Sweep Co,${40 + (i % 61)},${at},10`);
      }
      const file = join(dir, 'leads.csv');
      writeFileSync(file, `${rows.join('\n')}\n`, { mode: 0o600 });
      const result = await cli(['ingest', file, '--json'], inst);
      const accepted = result.code === 0 ? (JSON.parse(result.stdout) as { accepted: number }).accepted : -1;
      if (accepted !== TOP_UP)
        throw new Error(`ingest exited ${result.code}, accepted ${accepted}:\n${result.stderr}`);
      ingested += TOP_UP;
    };

    const startRun = (): Run => {
      const child = spawn(process.execPath, [BIN, 'run'], {
        cwd: inst.cwd,
        env: inst.env,
        detached: true,
        stdio: ['ignore', output, output],
      });
      if (child.pid === undefined) throw new Error('valhalla run did not start');
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      const run: Run = { child, pgid: child.pid, startedAt: Date.now(), exited, killedAt: null };
      current = run;
      return run;
    };

    // ---- the sweep ----
    const done: Kill[] = [];
    const landed = (place: KillPlace) => done.filter((k) => k.landed === place).length;
    const firstRequestMs: number[] = [];
    const maxRuns = 3 * kills + 50;
    const deadline = Date.now() + kills * 10_000 + 5 * 60_000;
    let selfExits = 0;
    let runs = 0;
    let incomplete: string | null = null;
    await topUp();
    const sweepStart = Date.now();
    while (done.length < kills || landed('during') < targets.during || landed('after') < targets.after) {
      if (runs >= maxRuns || Date.now() > deadline) {
        incomplete = `stopped after ${runs} runs and ${seconds(sweepStart)}: the limit of the sweep`;
        break;
      }
      await topUp();
      const planned = choosePlace(
        kills - done.length,
        targets.during - landed('during'),
        targets.after - landed('after'),
      );
      // The nth leads request of the run: mostly the first (after a kill, the batch caught mid-request).
      const nth = [1, 1, 1, 1, 2, 2, 3][randomInt(0, 7)]!;
      // Filled in by the kill, whichever of the timer and the partner's hooks fires it first.
      const trial: { run: Run | null; kill: Kill | null } = { run: null, kill: null };
      const killNow = (heldRequest: boolean): Kill | null => {
        const run = trial.run;
        if (run === null || run.killedAt !== null) return null;
        const at = Date.now();
        const placement = watch.place(at);
        signalGroup(run.pgid, 'SIGKILL');
        run.killedAt = at;
        trial.kill = {
          planned,
          landed: placement.place,
          sinceStartMs: at - run.startedAt,
          sinceAnswerMs: placement.sinceAnswerMs,
          partnerAnswered: heldRequest ? false : null,
        };
        return trial.kill;
      };
      let arm: Arm | null = null;
      if (planned === 'during') {
        arm = {
          kind: 'hold',
          nth,
          onHeld: async () => {
            const kill = killNow(true);
            if (trial.run !== null) await groupGone(trial.run.pgid);
            const answer = randomInt(0, 2) === 1;
            if (kill !== null) kill.partnerAnswered = answer;
            return answer;
          },
        };
      } else if (planned === 'after') {
        arm = {
          kind: 'after-answer',
          nth,
          onAnswered: () => setTimeout(() => killNow(false), randomInt(0, AFTER_ANSWER_MS + 1)),
        };
      }
      watch.newRun(arm);
      const run = startRun();
      trial.run = run;
      runs++;
      const delay = planned === 'other' ? randomInt(0, otherWindowMs(firstRequestMs) + 1) : ARMED_TIMEOUT_MS;
      const timer = setTimeout(() => killNow(false), delay);
      const exit = await run.exited;
      clearTimeout(timer);
      if (!(await groupGone(run.pgid))) {
        signalGroup(run.pgid, 'SIGKILL');
        await groupGone(run.pgid);
      }
      await watch.quiet();
      current = null;
      const first = watch.firstLeadsAt();
      if (first !== null) firstRequestMs.push(first - run.startedAt);
      const kill = trial.kill;
      if (kill === null) {
        selfExits++;
        console.log(
          `  run ${runs} ended by itself (exit ${exit.code ?? exit.signal}) after ${seconds(run.startedAt)}`,
        );
        if (selfExits >= MAX_SELF_EXITS) {
          incomplete = `${selfExits} runs in a row ended by themselves; the last output:\n${tail(outputFile)}`;
          break;
        }
        continue;
      }
      selfExits = 0;
      done.push(kill);
      appendFileSync(
        killsFile,
        `${JSON.stringify({ run: runs, pgid: run.pgid, killedAt: run.killedAt, ...kill })}\n`,
      );
      if (done.length % progressEvery(kills) === 0) {
        console.log(
          `  ${done.length} kills (during ${landed('during')}, after ${landed('after')}, other ${landed('other')}) in ${seconds(sweepStart)}; partner accepted ${partner.stats().leads.accepted} lead(s)`,
        );
      }
    }
    const sweepMs = Date.now() - sweepStart;

    // ---- the drain ----
    const drainStart = Date.now();
    const workLeft = () =>
      count(`select count(*) as n from leads where state in ('pending', 'in_flight')`) +
      count(
        `select count(*) as n from deliveries where kind = 'live' and state in ('queued', 'sending', 'retry_wait')`,
      );
    watch.newRun(null);
    const drain = startRun();
    let drained = false;
    let drainExit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    void drain.exited.then((e) => {
      drainExit = e;
    });
    while (Date.now() - drainStart < DRAIN_LIMIT_MS && drainExit === null) {
      if (workLeft() === 0) {
        drained = true;
        break;
      }
      await sleep(500);
    }
    signalGroup(drain.pgid, 'SIGTERM');
    const stopTimer = setTimeout(() => signalGroup(drain.pgid, 'SIGKILL'), STOP_GRACE_MS);
    const stopped = await drain.exited;
    clearTimeout(stopTimer);
    await groupGone(drain.pgid);
    current = null;
    const drainMs = Date.now() - drainStart;
    closeSync(output);
    db.close();

    // ---- the check against the partner's ledger ----
    const facts = readStoreFacts(inst.dbFile);
    const stats = partner.stats();
    const figures = compareWithPartner(facts, { records: partner.records(), stats });
    const verify = spawnSync(process.execPath, [BIN, 'audit', 'verify'], {
      cwd: inst.cwd,
      env: inst.env,
      encoding: 'utf8',
      timeout: 300_000,
    });
    const sweepLeads = facts.leads.filter((l) => l.external_id?.startsWith('sweep-')).length;
    const history = facts.leads.length - sweepLeads;
    const after = done.filter((k) => k.landed === 'after').map((k) => k.sinceAnswerMs ?? 0);
    after.sort((a, b) => a - b);
    const heldDuring = done.filter((k) => k.landed === 'during' && k.partnerAnswered !== null);
    const plannedMissed = done.filter((k) => k.planned !== k.landed).length;

    console.log('');
    console.log(
      `kills: ${done.length} in ${runs} runs of \`valhalla run\` (${(sweepMs / 1000).toFixed(0)} s)`,
    );
    console.log(
      `  during a leads request (received, unanswered): ${landed('during')}` +
        (heldDuring.length > 0
          ? `; the partner answered ${heldDuring.filter((k) => k.partnerAnswered).length} of them after the kill, dropped ${heldDuring.filter((k) => !k.partnerAnswered).length}`
          : ''),
    );
    console.log(
      `  within ${AFTER_ANSWER_MS} ms after the partner's answer: ${landed('after')}` +
        (after.length > 0
          ? ` (ms after the answer: min ${after[0]}, median ${quantile(after, 0.5)}, max ${after.at(-1)})`
          : ''),
    );
    console.log(
      `  other moments: ${landed('other')} (${plannedMissed} kill(s) landed elsewhere than planned)`,
    );
    console.log(
      `  median from start to the first leads request: ${
        firstRequestMs.length > 0
          ? `${(
              quantile(
                [...firstRequestMs].sort((a, b) => a - b),
                0.5,
              ) / 1000
            ).toFixed(1)} s`
          : 'n/a'
      }`,
    );
    if (incomplete !== null) console.log(`  INCOMPLETE: ${incomplete}`);
    console.log(
      `drain: ${drained ? 'every lead final' : 'NOT drained'} in ${(drainMs / 1000).toFixed(0)} s; valhalla run stopped with SIGTERM: exit ${stopped.code ?? stopped.signal}`,
    );
    console.log(
      `leads ingested: ${sweepLeads} (and ${history} from the Phase 3 history, expired at go-live); by state: ${Object.entries(
        figures.byState,
      )
        .map(([s, n]) => `${s} ${n}`)
        .join(', ')}`,
    );
    console.log(`exported: ${figures.exported}`);
    console.log(`lost: ${figures.lost}`);
    console.log(`a lead under two batch keys: ${figures.underTwoKeys}`);
    console.log(`accepted by the partner but not exported: ${figures.acceptedNotExported}`);
    console.log(`exported but not accepted by the partner: ${figures.exportedNotAccepted}`);
    console.log(`quarantined: ${figures.quarantined}`);
    for (const [reason, n] of Object.entries(figures.quarantineReasons)) console.log(`  ${n} × ${reason}`);
    console.log(
      `partner requests: ${stats.requests.total} (leads ${stats.requests.byPath['/api/leads'] ?? 0}, health ${stats.health.checks}, token ${stats.requests.byPath['/oauth/token'] ?? 0}); batches accepted ${stats.batches.accepted}, leads accepted ${stats.leads.accepted}, duplicates ${stats.leads.duplicates}`,
    );
    console.log(
      `replays seen by the partner: ${stats.batches.replayed} (mismatched ${stats.batches.replayMismatches}); recovery resends ${facts.audit['recovery.resend'] ?? 0}, recovery quarantines ${facts.audit['recovery.quarantined'] ?? 0}`,
    );
    console.log(
      `busiest 1 s at the partner: ${busiestWindow(stats.requestStarts, 1_000)} request start(s)${stats.requests.total > stats.requestStarts.length ? ` (last ${stats.requestStarts.length} requests)` : ''}`,
    );
    if (watch.counts.unattributed > 0) {
      console.log(
        `partner hook: ${watch.counts.unattributed} leads request(s) not attributed (counted as other)`,
      );
    }
    console.log(`valhalla audit verify: exit ${verify.status ?? verify.signal}`);
    console.log(`wall time: ${seconds(wallStart)}`);

    const failures = [
      ['lost', figures.lost],
      ['a lead under two batch keys', figures.underTwoKeys],
      ['accepted by the partner but not exported', figures.acceptedNotExported],
      ['exported but not accepted by the partner', figures.exportedNotAccepted],
      ['quarantined', figures.quarantined],
    ].filter(([, n]) => n !== 0);
    if (verify.status !== 0) failures.push(['audit verify exit', verify.status ?? -1]);
    if (incomplete !== null) failures.push(['kills short of the sweep', kills - done.length]);
    if (figures.examples.length > 0) {
      console.log('examples:');
      for (const example of figures.examples) console.log(`  ${example}`);
    }
    passed = failures.length === 0;
    console.log(
      passed
        ? '\nPASS'
        : `\nFAIL: ${failures.map(([name, n]) => `${name} ${n}`).join('; ')} (installation kept in ${dir})`,
    );
    if (!passed) process.exitCode = 1;
  } finally {
    killCurrent();
    await partner.close();
    await installation?.close();
    if (passed) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The place to aim the next kill at: what the targets still need when the kills left are just
 * enough for them, otherwise during 35 %, after 15 %, other 50 %.
 */
function choosePlace(killsLeft: number, duringNeeded: number, afterNeeded: number): KillPlace {
  const during = Math.max(0, duringNeeded);
  const after = Math.max(0, afterNeeded);
  if (during + after >= killsLeft && during + after > 0) {
    return randomInt(0, during + after) < during ? 'during' : 'after';
  }
  const draw = randomInt(0, 100);
  return draw < 35 ? 'during' : draw < 50 ? 'after' : 'other';
}

/** A random kill falls within 1.5 × the usual time to the first leads request (1-15 s): startup, recovery, the first cycles. */
function otherWindowMs(firstRequestMs: number[]): number {
  if (firstRequestMs.length === 0) return 5_000;
  const median = quantile(
    [...firstRequestMs].sort((a, b) => a - b),
    0.5,
  );
  return Math.round(Math.min(15_000, Math.max(1_000, 1.5 * median)));
}

const progressEvery = (kills: number) => (kills >= 200 ? 50 : 10);
const seconds = (since: number) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

function tail(file: string): string {
  return readFileSync(file, 'utf8').slice(-3_000);
}

await main();
