/**
 * bench/ingest: N generated leads (default 1,000,000) from CSV into embedded SQLite, six sides in their
 * own processes, one after another, on the same file:
 *
 * - raw, no index: csv-parse + an HMAC-SHA-256 key (64 hex) per row + a prepared better-sqlite3 INSERT
 *   of the row into a plain table, WAL, synchronous=FULL, transactions of 1,000 rows;
 * - raw, one unique index: the same with a UNIQUE index on the HMAC key (`ON CONFLICT DO NOTHING`):
 *   the cost of deduplicating in the database on one identity;
 * - raw, two unique indexes: a second HMAC key (of the external id) with its own UNIQUE index: what
 *   deduplicating on both identities (a lead is the same lead when its e-mail OR its external id
 *   matches) costs in the plainest layout;
 * - raw, valhalla's layout: the same plain loop (no validation, no outcomes, no chain) writing into the
 *   tables and indexes `valhalla init` makes, with the reference's connection settings: each lead's
 *   two identity keys in `lead_identities` (checked first, as a lead is a duplicate under either), the
 *   lead into `leads` (its selection index when pending, the kept counts' trigger);
 * - raw, valhalla's layout at the ingest's settings: the same loop on a connection set as the product's
 *   is during an ingest (secure_delete, an 8 MB page cache, statement journals in memory, log folds
 *   every 256 MiB, commits without a flush each): what this layout allows at 1,000 rows a transaction;
 * - `valhalla ingest`, the built binary in its own process (parse, validate, normalise, two keyed
 *   identities and a pseudonym, dedup on both identities in the database, per-row outcomes, the audit
 *   chain, the kept counts by state).
 *
 * Every side keys with the same HMAC key object, prepared once. Prints rows/s of each, the ratios of
 * ours to the references and of the layout's loops to the one-index reference, the peak RSS of each process, and the
 * database's size (WAL checkpointed into it) against the CSV's, with the largest tables and indexes.
 *
 *   npm run bench:ingest -- [--rows 1000000]
 */
import { execFileSync } from 'node:child_process';
import { createHmac, createSecretKey } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { parse } from 'csv-parse';

/**
 * The generated leads' "now": the time of the run, as `valhalla ingest` (the binary, on the real clock)
 * judges their age; the same share of them is fresh, stale or below the threshold in every run.
 */
const NOW = Date.now();
const SECRET = 'bench-secret-0123456789abcdef0123456789abcdef';
/** The HMAC key, prepared once, as `valhalla`'s pseudonymizer prepares its own. */
const KEY = createSecretKey(Buffer.from(SECRET, 'utf8'));
const self = fileURLToPath(import.meta.url);

type Side =
  | 'ours'
  | 'raw-no-index'
  | 'raw-unique-index'
  | 'raw-two-unique-indexes'
  | 'raw-layout'
  | 'raw-layout-ingest-settings';

interface SideResult {
  rows: number;
  accepted: number;
  seconds: number;
  peakRssMb: number;
  /** The database file after a checkpoint that empties the WAL into it, in bytes. */
  dbBytes: number;
  /** Ours: the status view's read (kept counts), and a count of the leads by state row by row, ms. */
  statusMs?: number;
  scanMs?: number;
  /** The largest tables and indexes (SQLite's dbstat), MB. */
  largest: { name: string; mb: number }[];
}

/** Checkpoint the WAL into the database, then its size and largest objects. */
function measureDatabase(path: string): Pick<SideResult, 'dbBytes' | 'largest'> {
  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  let largest: { name: string; mb: number }[] = [];
  try {
    largest = (
      db
        .prepare('select name, sum(pgsize) as bytes from dbstat group by name order by bytes desc limit 6')
        .all() as { name: string; bytes: number }[]
    ).map((r) => ({ name: r.name, mb: r.bytes / 1048576 }));
  } catch {
    // dbstat is a compile-time option of SQLite: without it, the total only.
  }
  db.close();
  const size = (file: string) => {
    try {
      return statSync(file).size;
    } catch {
      return 0;
    }
  };
  return { dbBytes: size(path) + size(`${path}-wal`), largest };
}

/**
 * Ours: the `valhalla ingest` binary as an operator runs it (the built bundle, its own process), on an
 * installation made by `valhalla init`. Its time includes starting the command (a few tenths of a second
 * in a minute and more); its peak RSS is the ingest process's own, written by a preload as it exits.
 */
async function runOurs(file: string, dir: string): Promise<SideResult> {
  const bin = fileURLToPath(new URL('../../bin/valhalla.js', import.meta.url));
  const rssFile = join(dir, 'ingest-rss.txt');
  const preload = join(dir, 'rss-preload.mjs');
  writeFileSync(
    preload,
    `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(rssFile)}, String(process.resourceUsage().maxRSS)));\n`,
  );
  const env = {
    ...process.env,
    VALHALLA_DATA_DIR: join(dir, 'data'),
    VALHALLA_PSEUDONYM_SECRET: SECRET,
    VALHALLA_LOG_LEVEL: 'warn',
  };
  execFileSync(process.execPath, [bin, 'init'], { env, cwd: dir, stdio: 'ignore' });
  const started = performance.now();
  execFileSync(process.execPath, [bin, 'ingest', file], {
    env: { ...env, NODE_OPTIONS: `--import=${pathToFileURL(preload).href}` },
    cwd: dir,
    stdio: 'ignore',
  });
  const seconds = (performance.now() - started) / 1000;
  const peakRssMb = Number(readFileSync(rssFile, 'utf8')) / 1024;

  // What `status` reads (the kept counts by state), against counting the rows as it did before.
  const { loadConfig } = await import('../src/config/index.js');
  const { openApp } = await import('../src/app/index.js');
  const { createLogger } = await import('../src/log/index.js');
  const { scanLeadsByState } = await import('../src/store/index.js');
  const config = loadConfig({ env, cwd: dir });
  const app = await openApp({ config, logger: createLogger({ level: 'silent', file: null }) });
  const statusStarted = performance.now();
  await app.status();
  const statusMs = performance.now() - statusStarted;
  const scanStarted = performance.now();
  await scanLeadsByState(app.store.db);
  const scanMs = performance.now() - scanStarted;
  const run = await app.store.db
    .selectFrom('ingest_runs')
    .select(['rows_read', 'accepted'])
    .executeTakeFirstOrThrow();
  await app.close();
  const target = config.database;
  const path = target.kind === 'sqlite' ? target.path : join(dir, 'data', 'valhalla.db');
  return {
    rows: Number(run.rows_read),
    accepted: Number(run.accepted),
    seconds,
    peakRssMb,
    statusMs,
    scanMs,
    ...measureDatabase(path),
  };
}

/** The raw reference: what parsing, keying and storing the rows costs with nothing else around it. */
async function runRaw(file: string, dir: string, uniqueIndexes: 0 | 1 | 2): Promise<SideResult> {
  const path = join(dir, `raw-${uniqueIndexes}-unique-indexes.db`);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`create table leads (id integer primary key, key text not null, external_id_key text, external_id text,
    name text not null, email text not null, phone text, company text, score integer not null,
    source_ts integer not null, value real, source_line integer not null)`);
  if (uniqueIndexes >= 1) db.exec('create unique index leads_key on leads (key)');
  if (uniqueIndexes === 2) db.exec('create unique index leads_external_id_key on leads (external_id_key)');
  const insert = db.prepare(
    `insert into leads (key, external_id_key, external_id, name, email, phone, company, score, source_ts, value, source_line)
     values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing`,
  );
  const insertMany = db.transaction((rows: string[][], firstLine: number) => {
    let accepted = 0;
    rows.forEach((r, i) => {
      const email = (r[2] ?? '').trim().toLowerCase();
      const key = createHmac('sha256', KEY).update(email).digest('hex');
      const externalIdKey =
        uniqueIndexes === 2 && r[0]
          ? createHmac('sha256', KEY).update(`external_id:${r[0]}`).digest('hex')
          : null;
      const score = Number(r[5]);
      const ts = Date.parse(r[6] ?? '');
      accepted += insert.run(
        key,
        externalIdKey,
        r[0] || null,
        r[1] ?? '',
        email,
        r[3] || null,
        r[4] || null,
        Number.isInteger(score) && score >= 0 && score <= 100 ? score : 0,
        Number.isNaN(ts) ? 0 : ts,
        r[7] ? Number(r[7]) : null,
        firstLine + i,
      ).changes;
    });
    return accepted;
  });
  const { rows, accepted, seconds } = await readInTransactions(file, insertMany);
  db.close();
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  return { rows, accepted, seconds, peakRssMb, ...measureDatabase(path) };
}

/**
 * The raw loop on valhalla's own layout: the schema of a migrated installation (made by the product's
 * migrations), written with prepared statements and nothing else, at the reference's settings (WAL,
 * synchronous=FULL, the default page cache and log folds, 1,000 rows a transaction).
 */
async function runRawLayout(file: string, dir: string, ingestSettings: boolean): Promise<SideResult> {
  const path = join(dir, ingestSettings ? 'raw-layout-ingest-settings.db' : 'raw-layout.db');
  const { openStore } = await import('../src/store/index.js');
  const { HARD_CAPS, initialLeadState } = await import('../src/policy/index.js');
  const { INGEST_LOG_FOLD_PAGES, INGEST_PAGE_CACHE_MIB } = await import('../src/ingest/index.js');
  await (await openStore({ kind: 'sqlite', path })).close();
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  if (ingestSettings) {
    // As the product's connection (src/store/open.ts) and an ingest on it (src/ingest/ingest.ts) set it.
    db.pragma('secure_delete = ON');
    db.pragma('recursive_triggers = ON');
    db.pragma(`cache_size = ${-INGEST_PAGE_CACHE_MIB * 1024}`);
    db.pragma(`wal_autocheckpoint = ${INGEST_LOG_FOLD_PAGES}`);
    db.pragma('temp_store = MEMORY');
    db.pragma('synchronous = NORMAL');
  }
  const runId = Number(
    db
      .prepare(
        "insert into ingest_runs (started_at, source, format, operator, status) values (?, 'bench.csv', 'csv', 'bench', 'running')",
      )
      .run(NOW).lastInsertRowid,
  );
  const held = db.prepare('select 1 from lead_identities where key = ?').pluck();
  const insertLead = db.prepare(
    `insert into leads (dedup_key, external_id, name, email, phone, company, score, source_ts, value, state,
       state_reason, ingested_at, updated_at, run_id, source_line) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const insertIdentity = db.prepare('insert into lead_identities (key, lead_id) values (?, ?)');
  const rules = { minLeadScore: HARD_CAPS.minLeadScoreFloor, maxLeadAgeDays: HARD_CAPS.maxLeadAgeDays };
  const keyOf = (text: string) => createHmac('sha256', KEY).update(text).digest().subarray(0, 16);
  const insertMany = db.transaction((rows: string[][], firstLine: number) => {
    let accepted = 0;
    rows.forEach((r, i) => {
      const email = (r[2] ?? '').trim().toLowerCase();
      const score = Number(r[5]);
      const sourceTs = Date.parse(r[6] ?? '');
      const value = r[7] ? Number(r[7]) : null;
      // The table's own checks, met the plainest way: a row they would refuse is passed over.
      if (!Number.isInteger(score) || score < 0 || score > 100 || Number.isNaN(sourceTs)) return;
      if (value !== null && !(value >= 0)) return;
      const emailKey = keyOf(`email:${email}`);
      const externalIdKey = r[0] ? keyOf(`external_id:${r[0]}`) : null;
      if (held.get(emailKey.subarray(0, 12)) !== undefined) return;
      if (externalIdKey !== null && held.get(externalIdKey.subarray(0, 12)) !== undefined) return;
      const { state, reason } = initialLeadState({ score, sourceTs }, rules, NOW);
      const id = insertLead.run(
        emailKey,
        r[0] || null,
        r[1] ?? '',
        email,
        r[3] || null,
        r[4] || null,
        score,
        sourceTs,
        value,
        state,
        reason,
        NOW,
        NOW,
        runId,
        firstLine + i,
      ).lastInsertRowid;
      insertIdentity.run(emailKey.subarray(0, 12), id);
      if (externalIdKey !== null) insertIdentity.run(externalIdKey.subarray(0, 12), id);
      accepted++;
    });
    return accepted;
  });
  const { rows, accepted, seconds } = await readInTransactions(file, insertMany);
  // At the ingest's settings, the run ends as an ingest does: its last commit flushes the log.
  if (ingestSettings) {
    db.pragma('synchronous = FULL');
    db.prepare('update ingest_runs set status = ? where id = ?').run('completed', runId);
  }
  db.close();
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  return { rows, accepted, seconds, peakRssMb, ...measureDatabase(path) };
}

/** Parse the file with csv-parse and hand it to `insertMany` 1,000 rows at a time; the time it all took. */
async function readInTransactions(
  file: string,
  insertMany: (rows: string[][], firstLine: number) => number,
): Promise<{ rows: number; accepted: number; seconds: number }> {
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
  return { rows, accepted, seconds: (performance.now() - started) / 1000 };
}

async function generate(file: string, rows: number): Promise<void> {
  const { writeGeneratedLeads } = await import('../src/synthetic/index.js');
  const out = createWriteStream(file);
  await writeGeneratedLeads(out, { count: rows, seed: 42, now: NOW, format: 'csv' });
  out.end();
  await finished(out);
}

function child(side: Side, file: string, dir: string): SideResult {
  const output = execFileSync(process.execPath, [self, `--side=${side}`, file, dir], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(output.trim().split('\n').pop() ?? '{}') as SideResult;
}

async function main(): Promise<void> {
  const sideArg = process.argv.find((a) => a.startsWith('--side='));
  if (sideArg) {
    const side = sideArg.slice('--side='.length) as Side;
    const [file, dir] = process.argv.slice(3);
    const indexes = { 'raw-no-index': 0, 'raw-unique-index': 1, 'raw-two-unique-indexes': 2 } as const;
    const result =
      side === 'ours'
        ? await runOurs(file!, dir!)
        : side === 'raw-layout' || side === 'raw-layout-ingest-settings'
          ? await runRawLayout(file!, dir!, side === 'raw-layout-ingest-settings')
          : await runRaw(file!, dir!, indexes[side]);
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
    const csvBytes = statSync(file).size;
    const mb = (bytes: number) => (bytes / 1048576).toFixed(0);
    console.log(
      `generated ${rows} leads (${mb(csvBytes)} MB CSV) in ${((performance.now() - genStart) / 1000).toFixed(1)} s`,
    );
    const rawPlain = child('raw-no-index', file, dir);
    const rawIndexed = child('raw-unique-index', file, dir);
    const rawTwo = child('raw-two-unique-indexes', file, dir);
    const rawLayout = child('raw-layout', file, dir);
    const rawLayoutTuned = child('raw-layout-ingest-settings', file, dir);
    const ours = child('ours', file, dir);
    const rate = (r: SideResult) => r.rows / r.seconds;
    const line = (label: string, r: SideResult) =>
      console.log(
        `${label.padEnd(44)} ${rate(r).toFixed(0).padStart(7)} rows/s, ${r.seconds.toFixed(1).padStart(6)} s, peak RSS ${r.peakRssMb.toFixed(0)} MB, database ${mb(r.dbBytes)} MB (${(r.dbBytes / csvBytes).toFixed(2)}× the CSV)`,
      );
    line('raw, no index (csv-parse + HMAC + INSERT):', rawPlain);
    line('raw, one unique index on the HMAC key:', rawIndexed);
    line('raw, two unique indexes (e-mail, external id):', rawTwo);
    line("raw, valhalla's layout (two identities, index):", rawLayout);
    line("raw, valhalla's layout at the ingest's settings:", rawLayoutTuned);
    line(`valhalla ingest (accepted ${ours.accepted} of ${ours.rows}):`, ours);
    console.log(
      `ratio valhalla / raw with one unique index: ${(rate(ours) / rate(rawIndexed)).toFixed(2)} (aim ≥ 1.0); ` +
        `valhalla / raw with two unique indexes (both identities, as valhalla dedups): ${(rate(ours) / rate(rawTwo)).toFixed(2)}; ` +
        `valhalla / raw with no index: ${(rate(ours) / rate(rawPlain)).toFixed(2)}`,
    );
    console.log(
      `raw loop on valhalla's layout / raw with one unique index: ${(rate(rawLayout) / rate(rawIndexed)).toFixed(2)} at the reference's settings, ` +
        `${(rate(rawLayoutTuned) / rate(rawIndexed)).toFixed(2)} at the ingest's (the layout's own limit at 1,000 rows a transaction); ` +
        `valhalla / raw loop on its layout at the same settings: ${(rate(ours) / rate(rawLayoutTuned)).toFixed(2)}`,
    );
    console.log(
      `valhalla peak RSS ${ours.peakRssMb.toFixed(0)} MB (aim ≤ 200 MB); database ${mb(ours.dbBytes)} MB for a ${mb(csvBytes)} MB CSV: ${(ours.dbBytes / csvBytes).toFixed(2)}× (aim ≤ 2×, audit chain included, WAL checkpointed)`,
    );
    console.log(
      `status view after the ingest: ${ours.statusMs?.toFixed(1)} ms (kept counts by state); counting the leads by state row by row: ${ours.scanMs?.toFixed(0)} ms`,
    );
    if (ours.largest.length > 0) {
      console.log(
        `largest in valhalla's database: ${ours.largest.map((o) => `${o.name} ${o.mb.toFixed(0)} MB`).join(', ')}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
