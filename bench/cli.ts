/**
 * The CLI's start-up: wall time and peak RSS of `valhalla --help`, `--version` and `status` (on an
 * installation with no leads and on one with 1,000,000) against `node -e 0` measured in the same run,
 * each the median of `--runs N` (default 7). Needs `npm run build` (the real binary) and
 * /usr/bin/time (GNU time, for the peak RSS). `node dist-test/bench/cli.js [--runs N] [--leads N]`
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { arg, quantile } from './support.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin', 'valhalla.js');
const TIME = '/usr/bin/time';
const runs = arg('--runs', 7);
const leads = arg('--leads', 1_000_000);

interface Sample {
  wallMs: number;
  peakRssMb: number;
}

/** One run of `node <args>` in `cwd`: wall time and peak RSS (wall time measured here, peak RSS from GNU time's %M). */
function once(args: string[], cwd: string, env: NodeJS.ProcessEnv): Sample {
  // The wall time from here (GNU time's own is in hundredths); the peak RSS from GNU time (%M, KB).
  const started = performance.now();
  const result = spawnSync(TIME, ['-f', '%M', process.execPath, ...args], { cwd, env, encoding: 'utf8' });
  const wallMs = performance.now() - started;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${result.stderr}`);
  const rss = Number(result.stderr.trim().split('\n').at(-1));
  return { wallMs, peakRssMb: rss / 1024 };
}

function median(args: string[], cwd: string, env: NodeJS.ProcessEnv): Sample {
  once(args, cwd, env); // warm the file cache
  const samples = Array.from({ length: runs }, () => once(args, cwd, env));
  const wall = samples.map((s) => s.wallMs).sort((a, b) => a - b);
  const rss = samples.map((s) => s.peakRssMb).sort((a, b) => a - b);
  return { wallMs: quantile(wall, 0.5), peakRssMb: quantile(rss, 0.5) };
}

/** An installation made by the real `valhalla init`, then `count` pending leads inserted in SQL. */
function installation(count: number): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(tmpdir(), 'valhalla-bench-cli-'));
  const env = {
    PATH: process.env.PATH,
    VALHALLA_DATA_DIR: join(cwd, 'data'),
    VALHALLA_PSEUDONYM_SECRET: 'bench-secret-bench-secret-bench-secret-0123',
    VALHALLA_LOG_FILE: join(cwd, 'valhalla.log'),
  };
  execFileSync(process.execPath, [BIN, 'init'], { cwd, env, stdio: 'ignore' });
  if (count > 0) {
    // The schema is the one `init` migrated; one statement fills it (a generated series), fast.
    const db = new Database(join(cwd, 'data', 'valhalla.db'));
    const now = Date.now();
    db.exec(`insert into ingest_runs (id, source, format, started_at, finished_at, operator, status, rows_read, accepted)
             values (1, 'bench', 'csv', ${now}, ${now}, 'bench', 'completed', ${count}, ${count})
             on conflict do nothing`);
    db.prepare(
      `with recursive n(i) as (select 1 union all select i + 1 from n where i < ?)
       insert into leads (dedup_key, name, email, score, source_ts, state, ingested_at, updated_at, run_id, source_line)
       select printf('%064x', i), 'Bench ' || i, 'bench' || i || '@example.test', 40 + (i % 61),
              ? - (i % 86400000), 'pending', ?, ?, 1, i from n`,
    ).run(count, now, now, now);
    db.close();
  }
  return { cwd, env };
}

if (!existsSync(TIME)) throw new Error(`${TIME} (GNU time) is needed for the peak RSS`);
const small = installation(0);
const started = performance.now();
const large = installation(leads);
const fillS = (performance.now() - started) / 1000;

const rows: [string, Sample][] = [
  ['node -e 0', median(['-e', '0'], small.cwd, small.env)],
  ['valhalla --help', median([BIN, '--help'], small.cwd, small.env)],
  ['valhalla --version', median([BIN, '--version'], small.cwd, small.env)],
  ['valhalla status (0 leads)', median([BIN, 'status'], small.cwd, small.env)],
  [`valhalla status (${leads.toLocaleString('en-US')} leads)`, median([BIN, 'status'], large.cwd, large.env)],
];
const base = rows[0]?.[1] as Sample;
console.log(
  `CLI start-up, median of ${runs} runs; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
console.log(`(the ${leads.toLocaleString('en-US')}-lead installation filled in ${fillS.toFixed(1)} s)`);
for (const [name, s] of rows) {
  console.log(
    `${name.padEnd(34)} ${s.wallMs.toFixed(0).padStart(6)} ms (${(s.wallMs / base.wallMs).toFixed(1)}× node)  peak ${s.peakRssMb.toFixed(0).padStart(4)} MB (${(s.peakRssMb / base.peakRssMb).toFixed(1)}× node)`,
  );
}
// The targets: --help within 150 ms, status within 300 ms at 1,000,000 leads (wall, on this machine).
const TARGETS: [string, number][] = [
  ['valhalla --help', 150],
  [rows[4]![0], 300],
];
let missed = 0;
for (const [name, limitMs] of TARGETS) {
  const sample = rows.find(([n]) => n === name)![1];
  const ok = sample.wallMs <= limitMs;
  if (!ok) missed += 1;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${sample.wallMs.toFixed(0)} ms (target ≤ ${limitMs} ms)`);
}
rmSync(small.cwd, { recursive: true, force: true });
rmSync(large.cwd, { recursive: true, force: true });
if (missed > 0) process.exitCode = 1;
