/**
 * bench/cycle: the cycle's own overhead (expire, select, claim, authorize, record, audit; network
 * excluded: an in-process partner accepts at once) with N pending leads (default 1,000,000) on
 * embedded SQLite, synchronous=FULL. Prints the median and p99 of a cycle, and a raw baseline from
 * the same run: the same selection and the same state changes as prepared better-sqlite3 statements
 * in one transaction, without the guard, the outbox or the audit chain.
 *
 *   npm run bench:cycle -- [--leads 1000000] [--cycles 300]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openApp } from '../src/app/index.js';
import { ManualClock } from '../src/clock/index.js';
import { writeGoLiveAt } from '../src/guard/index.js';
import { createLogger } from '../src/log/index.js';
import { acceptingPartner, arg, benchConfig, DAY_MS, NOW, quantile, sqliteOps } from './support.js';

async function main(): Promise<void> {
  const leads = arg('--leads', 1_000_000);
  const cycles = arg('--cycles', 300);
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-cycle-'));
  try {
    const clock = new ManualClock(NOW);
    const app = await openApp({
      config: benchConfig(dir, null),
      clock,
      logger: createLogger({ level: 'silent', file: null }),
    });
    const ops = sqliteOps(app);
    const fillStart = performance.now();
    await ops.fill(leads);
    console.log(`${leads} pending leads stored in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`);
    await writeGoLiveAt(app.store.db, NOW - 7 * DAY_MS);

    // Raw baseline: the same selection and state changes, nothing else.
    const rawTimes: number[] = [];
    for (let i = 0; i < cycles; i++) {
      const t = performance.now();
      await ops.rawCycle(NOW);
      rawTimes.push(performance.now() - t);
    }

    const accepting = acceptingPartner();
    const { partner } = accepting;
    const engine = app.engine({
      partner,
      sleep: clock.sleep,
      gates: { check: async () => ({ cleared: true, reason: 'bench' }) },
    });
    const times: number[] = [];
    for (let i = 0; i < cycles; i++) {
      clock.advance(1_000);
      const t = performance.now();
      await engine.runCycle();
      times.push(performance.now() - t);
    }
    await app.close();
    rawTimes.sort((a, b) => a - b);
    times.sort((a, b) => a - b);
    const med = quantile(times, 0.5);
    const rawMed = quantile(rawTimes, 0.5);
    console.log(
      `raw baseline (select 25 + update, one transaction): median ${rawMed.toFixed(2)} ms, p99 ${quantile(rawTimes, 0.99).toFixed(2)} ms`,
    );
    console.log(
      `valhalla cycle (${cycles} cycles, ${accepting.accepted()} leads accepted): median ${med.toFixed(2)} ms, p99 ${quantile(times, 0.99).toFixed(2)} ms`,
    );
    console.log(`ratio cycle/raw (median): ${(med / rawMed).toFixed(1)}x; aim: median ≤ 5 ms`);
    if (accepting.accepted() !== cycles * 25)
      console.log(
        `note: ${accepting.accepted()} leads accepted, not ${cycles * 25}: a cap (daily, budget) bound some cycles`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
