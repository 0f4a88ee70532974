/**
 * An idle `valhalla run` (supervisor with the dashboard and /metrics, and its worker) on a fresh
 * Phase 3 installation: the RSS of each process, summed, against two bare Node.js processes measured
 * in the same run. Waits for the dashboard and the first cycles, lets it settle `--settle S` seconds
 * (default 20), samples `--samples N` times (default 5, one a second) and prints the medians.
 * Needs `npm run build` (the real binary). `node dist-test/bench/service-memory.js`
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { arg } from './support.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'valhalla.js');
const settleS = arg('--settle', 20);
const samples = arg('--samples', 5);

/** A process's resident set in MB, from /proc (0 when it has gone). */
function rssMb(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:'));
    return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: the command may hold spaces, so read after its closing parenthesis.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return children;
}

/** The median of `samples` readings, one a second, of the summed RSS of `pids()`. */
async function sampleRss(pids: () => number[]): Promise<{ total: number; each: number[] }> {
  const readings: { total: number; each: number[] }[] = [];
  for (let i = 0; i < samples; i++) {
    const each = pids().map(rssMb);
    readings.push({ total: each.reduce((a, b) => a + b, 0), each });
    await sleep(1_000);
  }
  readings.sort((a, b) => a.total - b.total);
  return readings[Math.floor(readings.length / 2)] as { total: number; each: number[] };
}

function waitFor(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${seen}`)),
      timeoutMs,
    );
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString('utf8');
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

// The baseline: two bare Node.js processes, idle, as the service is two processes.
const bare = [0, 1].map(() => spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)']));
await sleep(1_000);
const baseline = await sampleRss(() => bare.map((p) => p.pid ?? -1));
for (const p of bare) p.kill();

const cwd = mkdtempSync(join(tmpdir(), 'valhalla-bench-memory-'));
const env = {
  PATH: process.env.PATH,
  VALHALLA_DATA_DIR: join(cwd, 'data'),
  VALHALLA_PSEUDONYM_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
  VALHALLA_LOG_FILE: join(cwd, 'valhalla.log'),
  VALHALLA_CYCLE_INTERVAL_S: '5',
  VALHALLA_SERVER_PORT: '0',
  VALHALLA_METRICS_PORT: '0',
};
execFileSync(process.execPath, [BIN, 'init'], { cwd, env, stdio: 'ignore' });
const run = spawn(process.execPath, [BIN, 'run'], { cwd, env, stdio: ['ignore', 'pipe', 'inherit'] });
const supervisor = run.pid ?? -1;
try {
  await waitFor(run, /dashboard: http[\s\S]*^cycle 2 /m, 180_000);
  await sleep(settleS * 1000);
  const service = await sampleRss(() => [supervisor, ...childrenOf(supervisor)]);
  const [sup = 0, ...workers] = service.each;
  console.log(
    `Idle valhalla run (Phase 3, dashboard and /metrics on), median of ${samples} samples after ${settleS} s; load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(`two bare node processes        ${baseline.total.toFixed(0).padStart(4)} MB RSS`);
  console.log(
    `supervisor + worker            ${service.total.toFixed(0).padStart(4)} MB RSS (${(service.total / baseline.total).toFixed(1)}× bare; supervisor ${sup.toFixed(0)} MB, worker ${workers.map((w) => w.toFixed(0)).join(' + ')} MB)`,
  );
  // The target: the idle service (supervisor, dashboard and worker together) within 200 MB RSS.
  const ok = service.total <= 200;
  console.log(`${ok ? 'PASS' : 'FAIL'} idle service ${service.total.toFixed(0)} MB RSS (target ≤ 200 MB)`);
  if (!ok) process.exitCode = 1;
} finally {
  run.kill('SIGTERM');
  await exited(run);
  rmSync(cwd, { recursive: true, force: true });
}
