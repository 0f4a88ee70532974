/**
 * bench/cycle: the cycle's own overhead (expire, select, claim, authorize, record, audit; network
 * excluded: an in-process partner accepts at once) with N pending leads (default 1,000,000) on
 * embedded SQLite, synchronous=FULL. Prints the median and p99 of a cycle, and a raw baseline from
 * the same run: the same selection and the same state changes as prepared better-sqlite3 statements
 * in one transaction, without the guard, the outbox or the audit chain.
 *
 *   npm run bench:cycle -- [--leads 1000000] [--cycles 300]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openApp } from '../src/app/index.js';
import { ManualClock } from '../src/clock/index.js';
import { loadConfig } from '../src/config/index.js';
import type { PartnerPort } from '../src/engine/index.js';
import { writeGoLiveAt } from '../src/guard/index.js';
import { createLogger } from '../src/log/index.js';

const NOW = Date.parse('2026-11-20T12:00:00Z');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const leads = arg('--leads', 1_000_000);
  const cycles = arg('--cycles', 300);
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-cycle-'));
  try {
    const config = loadConfig({
      cwd: dir,
      env: {
        VALHALLA_DATA_DIR: dir,
        VALHALLA_PSEUDONYM_SECRET: 'bench-secret-0123456789abcdef0123456789abcdef',
        VALHALLA_PHASE: '4',
        VALHALLA_DRY_RUN: '0',
        VALHALLA_DISABLE_OUTBOUND: '0',
        VALHALLA_REAL_DATA_INGEST: '1',
        VALHALLA_PARTNER_URL: 'https://partner.invalid',
        VALHALLA_PARTNER_TOKEN_URL: 'https://partner.invalid/oauth/token',
        VALHALLA_PARTNER_CLIENT_ID: 'bench',
        VALHALLA_PARTNER_CLIENT_SECRET: 'bench',
      },
    });
    const clock = new ManualClock(NOW);
    const app = await openApp({ config, clock, logger: createLogger({ level: 'silent', file: null }) });
    const raw = app.store.sqlite!;
    const fillStart = performance.now();
    raw
      .prepare(
        "insert into ingest_runs (started_at, source, format, operator, status) values (?, 'bench', 'csv', 'bench', 'completed')",
      )
      .run(NOW);
    const insert = raw.prepare(
      // Values of $1-10 keep the day's budget (Σ score × value ≤ $50M) from binding: every cycle does full work.
      `insert into leads (dedup_key, name, email, score, source_ts, value, state, ingested_at, updated_at, run_id, source_line)
       values (?, 'Bench Lead', ?, ?, ?, ?, 'pending', ?, ?, 1, ?)`,
    );
    const fill = raw.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) {
        insert.run(
          randomBytes(32).toString('hex'),
          `lead${i}@example.test`,
          40 + (i % 61),
          NOW - (i % (13 * 86_400)) * 1000,
          1 + (i % 10),
          NOW,
          NOW,
          i + 2,
        );
      }
    });
    for (let i = 0; i < leads; i += 10_000) fill(i, Math.min(leads, i + 10_000));
    raw.pragma('optimize');
    console.log(`${leads} pending leads stored in ${((performance.now() - fillStart) / 1000).toFixed(1)} s`);
    await writeGoLiveAt(app.store.db, NOW - 7 * 86_400_000);

    // Raw baseline: the same selection and state changes, nothing else.
    const select = raw.prepare(
      `select id from leads where state = 'pending' and score >= 40 and source_ts >= ? order by score desc, source_ts asc, id asc limit 25`,
    );
    const mark = raw.prepare(
      `update leads set state = 'exported', exported_at = ?, updated_at = ? where id = ?`,
    );
    const rawCycle = raw.transaction((now: number) => {
      const ids = select.all(now - 14 * 86_400_000) as { id: number }[];
      for (const { id } of ids) mark.run(now, now, id);
      return ids.length;
    });
    const rawTimes: number[] = [];
    for (let i = 0; i < cycles; i++) {
      const t = performance.now();
      rawCycle(NOW);
      rawTimes.push(performance.now() - t);
    }

    let accepted = 0;
    const partner: PartnerPort = {
      health: async () => ({ ok: true, status: 200, ms: 0 }),
      ensureToken: async () => ({ kind: 'ok', expiresAtMs: Number.MAX_SAFE_INTEGER, refreshed: false }),
      sendBatch: async ({ leads: sent }) => {
        accepted += sent.length;
        return { kind: 'accepted', status: 200, body: { accepted: sent.length }, bodyIssue: null, ms: 0 };
      },
    };
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
      `valhalla cycle (${cycles} cycles, ${accepted} leads accepted): median ${med.toFixed(2)} ms, p99 ${quantile(times, 0.99).toFixed(2)} ms`,
    );
    console.log(`ratio cycle/raw (median): ${(med / rawMed).toFixed(1)}x; aim: median ≤ 5 ms`);
    if (accepted !== cycles * 25)
      console.log(
        `note: ${accepted} leads accepted, not ${cycles * 25}: a cap (daily, budget) bound some cycles`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
