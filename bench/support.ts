/**
 * What the benchmarks share: their arguments, quantiles, a partner that accepts at once, and the
 * cycle benchmarks' installation (Phase 4, a virtual clock) with its leads and raw baseline on SQLite.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { App } from '../src/app/index.js';
import { loadConfig } from '../src/config/index.js';
import type { PartnerPort } from '../src/engine/index.js';

/** The cycle benchmarks' virtual now. */
export const NOW = Date.parse('2026-11-20T12:00:00Z');
export const DAY_MS = 86_400_000;
/** Rows per bulk statement or transaction while filling. */
export const FILL_BATCH = 10_000;

/** `--name N` from the command line: a whole number > 0 (fractions too with `fractions`), else the fallback. */
export function arg(name: string, fallback: number, options: { fractions?: boolean } = {}): number {
  const i = process.argv.indexOf(name);
  const value = i === -1 ? fallback : Number(process.argv[i + 1]);
  const ok = options.fractions ? Number.isFinite(value) : Number.isSafeInteger(value);
  if (!ok || value <= 0) {
    throw new Error(`${name} must be ${options.fractions ? 'a number' : 'a whole number'} > 0`);
  }
  return value;
}

/** The q-quantile of ascending `sorted` values (NaN when empty). */
export function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** An in-process partner that accepts every batch at once (network excluded), counting the leads. */
export function acceptingPartner(): { partner: PartnerPort; accepted(): number } {
  let accepted = 0;
  return {
    partner: {
      health: async () => ({ ok: true, status: 200, ms: 0 }),
      ensureToken: async () => ({ kind: 'ok', expiresAtMs: Number.MAX_SAFE_INTEGER, refreshed: false }),
      sendBatch: async ({ leads }) => {
        accepted += leads.length;
        return {
          kind: 'accepted',
          status: 200,
          body: { accepted: leads.length },
          bodyIssue: null,
          leads: null,
          answerProblems: [],
          ms: 0,
        };
      },
    },
    accepted: () => accepted,
  };
}

/** How a benchmark fills a backend with pending leads and runs its raw baseline. */
export interface BackendOps {
  fill(leads: number): Promise<void>;
  /** One raw cycle at `now`: select the 25 best eligible, mark them exported, one transaction. */
  rawCycle(now: number): Promise<number>;
  close(): Promise<void>;
}

/** The i-th bench lead: fresh, eligible, spread over 13 days and scores 40-100. */
export function leadValues(i: number) {
  return {
    dedupKey: randomBytes(32).toString('hex'),
    email: `lead${i}@example.test`,
    score: 40 + (i % 61),
    sourceTs: NOW - (i % (13 * 86_400)) * 1000,
    // Values of $1-10 keep the day's budget (Σ score × value ≤ $50M) from binding: every cycle does full work.
    value: 1 + (i % 10),
    sourceLine: i + 2,
  };
}

/** A Phase 4 installation in `dir` (SQLite there, or `databaseUrl`), sending to a partner never called. */
export function benchConfig(dir: string, databaseUrl: string | null) {
  return loadConfig({
    cwd: dir,
    env: {
      VALHALLA_DATA_DIR: dir,
      ...(databaseUrl === null ? {} : { VALHALLA_DATABASE_URL: databaseUrl }),
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
}

/** SQLite's fill and raw baseline: prepared better-sqlite3 statements in big transactions. */
export function sqliteOps(app: App, checkInterrupted: () => void = () => undefined): BackendOps {
  const raw = app.store.sqlite;
  if (raw === null) throw new Error('expected the SQLite store');
  const select = raw.prepare(
    `select id from leads where state = 'pending' and score >= 40 and source_ts >= ? order by score desc, source_ts asc, id asc limit 25`,
  );
  const mark = raw.prepare(
    `update leads set state = 'exported', exported_at = ?, updated_at = ? where id = ?`,
  );
  const rawCycle = raw.transaction((now: number) => {
    const ids = select.all(now - 14 * DAY_MS) as { id: number }[];
    for (const { id } of ids) mark.run(now, now, id);
    return ids.length;
  });
  return {
    async fill(leads) {
      raw
        .prepare(
          "insert into ingest_runs (started_at, source, format, operator, status) values (?, 'bench', 'csv', 'bench', 'completed')",
        )
        .run(NOW);
      const insert = raw.prepare(
        `insert into leads (dedup_key, name, email, score, source_ts, value, state, ingested_at, updated_at, run_id, source_line)
         values (?, 'Bench Lead', ?, ?, ?, ?, 'pending', ?, ?, 1, ?)`,
      );
      const fill = raw.transaction((from: number, to: number) => {
        for (let i = from; i < to; i++) {
          const l = leadValues(i);
          insert.run(l.dedupKey, l.email, l.score, l.sourceTs, l.value, NOW, NOW, l.sourceLine);
        }
      });
      for (let i = 0; i < leads; i += FILL_BATCH) {
        checkInterrupted();
        fill(i, Math.min(leads, i + FILL_BATCH));
      }
      raw.pragma('optimize');
    },
    async rawCycle(now) {
      return rawCycle(now);
    },
    async close() {},
  };
}

/** VmRSS of `pid` and of every process under it (the worker; any child it starts). */
export function serviceRss(root: number): number {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: the fields after its last ')' are fixed.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
    } catch {
      // Gone meanwhile.
    }
  }
  let total = 0;
  const queue = [root];
  for (let i = 0; i < queue.length && i < 10_000; i++) {
    const pid = queue[i]!;
    try {
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      total += match ? Number(match[1]) * 1024 : 0;
    } catch {
      // Gone meanwhile.
    }
    queue.push(...(children.get(pid) ?? []));
  }
  return total;
}
