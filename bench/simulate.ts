/**
 * bench/simulate: the wall time of `valhalla simulate` (the built binary, as an operator runs it) for
 * a short and a long run of the same lead flow, so that the fixed cost (starting Node.js and the
 * product, the sandbox partner, two private installations) and the cost of each simulated hour show
 * apart. The raw baseline, measured in the same run: `node -e 0`, the floor of any command.
 *
 *   npm run bench:simulate -- [--hours 72] [--leads-per-hour 300] [--runs 3]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg } from './support.js';

const BIN = resolve(fileURLToPath(import.meta.url), '../../../bin/valhalla.js');
const hours = arg('--hours', 72);
const leadsPerHour = arg('--leads-per-hour', 300);
const runs = arg('--runs', 3);

/** The median wall time of `runs` runs of a command, in seconds. */
function wall(args: string[], cwd: string): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    execFileSync(process.execPath, args, {
      cwd,
      stdio: 'ignore',
      env: { ...process.env, VALHALLA_DATA_DIR: cwd },
    });
    times.push((performance.now() - started) / 1000);
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
}

const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-simulate-'));
try {
  const loadAtStart = loadavg()[0]!;
  const simulate = (h: number) => [
    BIN,
    'simulate',
    '--hours',
    String(h),
    '--leads-per-hour',
    String(leadsPerHour),
    '--faults',
    'healthy',
    '--seed',
    '1',
  ];
  const floor = wall(['-e', '0'], dir);
  const short = wall(simulate(1), dir);
  const long = wall(simulate(hours), dir);
  const perHour = (long - short) / (hours - 1);
  console.log(`bench/simulate: ${leadsPerHour} leads an hour, healthy partner, median of ${runs} runs each`);
  console.log(`  node -e 0 (raw baseline)     ${floor.toFixed(2)} s`);
  console.log(
    `  simulate --hours 1           ${short.toFixed(2)} s (${(short / floor).toFixed(0)}× the baseline)`,
  );
  console.log(
    `  simulate --hours ${String(hours).padEnd(11)} ${long.toFixed(2)} s (${(long / floor).toFixed(0)}× the baseline)`,
  );
  console.log(
    `  each simulated hour          ${(perHour * 1000).toFixed(0)} ms; ${(hours / long).toFixed(1)} simulated hours per second`,
  );
  console.log(
    `  load average (1 min) at start ${loadAtStart.toFixed(2)}, at end ${loadavg()[0]!.toFixed(2)}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
