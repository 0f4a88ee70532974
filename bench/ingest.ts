/**
 * bench/ingest: N generated leads (default 1,000,000) from CSV into embedded SQLite.
 * Prints leads/s for `valhalla ingest` (parse, validate, normalise, pseudonymise, dedup, audit, record
 * outcomes), the same figure for a raw baseline measured in the same run (csv-parse + a prepared
 * better-sqlite3 INSERT … ON CONFLICT DO NOTHING of the same rows into the same schema, transactions
 * of 1,000, same pragmas), their ratio, and the peak RSS of each. Each side runs in its own process.
 *
 *   npm run bench:ingest -- [--rows 1000000]
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse';

const NOW = Date.parse('2026-11-20T12:00:00Z');
const SECRET = 'bench-secret-0123456789abcdef0123456789abcdef';
const self = fileURLToPath(import.meta.url);

interface SideResult {
  rows: number;
  accepted: number;
  seconds: number;
  peakRssMb: number;
}

async function runOurs(file: string, dir: string): Promise<SideResult> {
  const { loadConfig } = await import('../src/config/index.js');
  const { openApp } = await import('../src/app/index.js');
  const { ManualClock } = await import('../src/clock/index.js');
  const { createLogger } = await import('../src/log/index.js');
  const config = loadConfig({ env: { VALHALLA_DATA_DIR: dir, VALHALLA_PSEUDONYM_SECRET: SECRET }, cwd: dir });
  const app = await openApp({
    config,
    clock: new ManualClock(NOW),
    logger: createLogger({ level: 'silent', file: null }),
  });
  const started = performance.now();
  const summary = await app.ingest({ path: file });
  const seconds = (performance.now() - started) / 1000;
  await app.close();
  return {
    rows: summary.read,
    accepted: summary.accepted,
    seconds,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
}

async function runBaseline(file: string, dir: string): Promise<SideResult> {
  const { openStore } = await import('../src/store/index.js');
  // The same schema (indexes, triggers) as the product, created by its migrations.
  const store = await openStore({ kind: 'sqlite', path: join(dir, 'baseline.db') });
  const raw = store.sqlite!;
  raw
    .prepare(
      "insert into ingest_runs (started_at, source, format, operator, status) values (0, 'b', 'csv', 'b', 'running')",
    )
    .run();
  const insert = raw.prepare(
    `insert into leads (dedup_key, external_id, name, email, phone, company, score, source_ts, value, state, ingested_at, updated_at, run_id, source_line)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, 1, ?) on conflict (dedup_key) do nothing`,
  );
  const insertMany = raw.transaction((rows: string[][], firstLine: number) => {
    let accepted = 0;
    rows.forEach((r, i) => {
      const score = Number(r[5]);
      const ts = Date.parse(r[6] ?? '');
      accepted += insert.run(
        r[2],
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        Number.isInteger(score) && score >= 0 && score <= 100 ? score : 0,
        Number.isNaN(ts) ? 0 : ts,
        r[7] ? Number(r[7]) : null,
        NOW,
        NOW,
        firstLine + i,
      ).changes;
    });
    return accepted;
  });
  const started = performance.now();
  let rows = 0;
  let accepted = 0;
  let batch: string[][] = [];
  for await (const record of createReadStream(file).pipe(
    parse({ from_line: 2, relax_column_count: true, skip_records_with_error: true }),
  )) {
    batch.push(record as string[]);
    if (batch.length === 1000) {
      accepted += insertMany(batch, rows + 2);
      rows += batch.length;
      batch = [];
    }
  }
  accepted += insertMany(batch, rows + 2);
  rows += batch.length;
  const seconds = (performance.now() - started) / 1000;
  await store.close();
  return { rows, accepted, seconds, peakRssMb: process.resourceUsage().maxRSS / 1024 };
}

async function generate(file: string, rows: number): Promise<void> {
  const { writeGeneratedLeads } = await import('../src/synthetic/index.js');
  const out = createWriteStream(file);
  await writeGeneratedLeads(out, { count: rows, seed: 42, now: NOW, format: 'csv' });
  out.end();
  await finished(out);
}

function child(side: 'ours' | 'baseline', file: string, dir: string): SideResult {
  const output = execFileSync(process.execPath, [self, `--side=${side}`, file, dir], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(output.trim().split('\n').pop() ?? '{}') as SideResult;
}

async function main(): Promise<void> {
  const sideArg = process.argv.find((a) => a.startsWith('--side='));
  if (sideArg) {
    const [file, dir] = process.argv.slice(3);
    const result = sideArg.endsWith('ours') ? await runOurs(file!, dir!) : await runBaseline(file!, dir!);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  const rowsIndex = process.argv.indexOf('--rows');
  const rows = rowsIndex === -1 ? 1_000_000 : Number(process.argv[rowsIndex + 1]);
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-bench-ingest-'));
  try {
    const file = join(dir, 'leads.csv');
    const genStart = performance.now();
    await generate(file, rows);
    const sizeMb = statSync(file).size / 1024 / 1024;
    console.log(
      `generated ${rows} leads (${sizeMb.toFixed(0)} MB CSV) in ${((performance.now() - genStart) / 1000).toFixed(1)} s`,
    );
    const baseline = child('baseline', file, dir);
    const ours = child('ours', file, dir);
    const rate = (r: SideResult) => r.rows / r.seconds;
    console.log(
      `baseline (csv-parse + raw better-sqlite3 INSERT): ${rate(baseline).toFixed(0)} leads/s, ${baseline.seconds.toFixed(1)} s, peak RSS ${baseline.peakRssMb.toFixed(0)} MB`,
    );
    console.log(
      `valhalla ingest:                                  ${rate(ours).toFixed(0)} leads/s, ${ours.seconds.toFixed(1)} s, peak RSS ${ours.peakRssMb.toFixed(0)} MB (accepted ${ours.accepted} of ${ours.rows})`,
    );
    console.log(
      `ratio valhalla/baseline: ${(rate(ours) / rate(baseline)).toFixed(2)} (aim ≥ 0.5); peak RSS ${ours.peakRssMb.toFixed(0)} MB (aim ≤ 200 MB)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
