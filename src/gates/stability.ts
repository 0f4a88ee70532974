import type { AuditEntry, AuditLog } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import {
  type AuditAction,
  analyseGaps,
  type BeatSample,
  binScores,
  COMPARE_HOURS,
  DEFAULT_GAP_RULES,
  MIN_LEADS_PER_SIDE,
  overlappingProcesses,
  PSI_LIMIT,
  psi,
  RSS_SLOPE_LIMIT_MB_PER_HOUR,
  rssSlopeMbPerHour,
  SCORE_BINS,
} from '../policy/index.js';
import {
  auditEntriesBetween,
  auditEntriesNotAfter,
  countAuditActionBetween,
  dryRunScoresBetween,
  heartbeatsBetween,
  requestsBetween,
  type Store,
} from '../store/index.js';
import { EVIDENCE_ACTIONS } from './catalogue.js';

/**
 * Gate 9: the policy's `verify_phase3_stability`. Over the window [until − hours, until] it checks,
 * from what the worker, the supervisor, the engine and the guard recorded, that Phase 3 ran without
 * interruption, exported a stable score distribution, did not grow in memory, never had two workers
 * at once, and never made an outbound request. The rules are pure, in `policy/stability.ts`.
 */

export type StabilityCheckName =
  | 'this installation'
  | 'uninterrupted'
  | 'export quality'
  | 'memory'
  | 'orphaned processes'
  | 'guard';

export interface StabilityCheck {
  name: StabilityCheckName;
  passed: boolean;
  /** The measured figure, e.g. `PSI 0.012 (limit < 0.1)`. */
  figure: string;
  detail: string;
  /** On failure: when (ISO), where there is a time to name. */
  at?: string;
}

export interface StabilityBin {
  label: string;
  /** Leads dry-run in the window's first 24 hours with a score in this bin. */
  first: number;
  /** The same, in the last 24 hours. */
  last: number;
}

export interface StabilityResult {
  passed: boolean;
  from: string;
  until: string;
  hours: number;
  checks: StabilityCheck[];
  /** First 24 h vs last 24 h; null when either side had too few leads. */
  psi: number | null;
  bins: StabilityBin[];
  /** RSS growth within each worker's life, pooled; null with too few heartbeats. */
  rssSlopeMbPerHour: number | null;
  /** The largest gap between consecutive heartbeats that no daily restart explains. */
  largestGapSeconds: number | null;
}

export interface StabilityDeps {
  store: Store;
  clock: Clock;
  config: Config;
}

const HOUR_MS = 3_600_000;
/** The audit entry that holds a verification's result: gate 9's evidence (the latest one counts). */
export const STABILITY_VERIFIED = EVIDENCE_ACTIONS.stability;

/** Run every check over the window ending at `until` (default: now). Reads only. */
export async function verifyStability(
  deps: StabilityDeps,
  options: { hours: number; until?: number },
): Promise<StabilityResult> {
  const { store, clock, config } = deps;
  if (!Number.isFinite(options.hours) || options.hours <= 0) {
    throw new RangeError(`stability: hours must be a positive number, not ${options.hours}`);
  }
  const until = options.until ?? clock.now();
  const from = until - options.hours * HOUR_MS;
  const compareMs = Math.min(COMPARE_HOURS * HOUR_MS, (until - from) / 2);

  const [heartbeats, events, requests, dryRunDecisions, firstScores, lastScores] = await Promise.all([
    heartbeatsBetween(store.db, from, until + 1),
    supervisionEvents(store, from, until),
    requestsBetween(store.db, from, until),
    countAuditActionBetween(store.db, 'guard.dry_run' satisfies AuditAction, from, until),
    dryRunScoresBetween(store.db, from, from + compareMs),
    dryRunScoresBetween(store.db, until - compareMs, until + 1),
  ]);
  const beats: BeatSample[] = heartbeats.map((h) => ({
    at: h.at,
    process: `${h.runner}@${h.worker_started_at}`,
    rssBytes: h.rss_bytes,
  }));
  const inWindow = (e: Event) => e.at >= from && e.at <= until;

  // ---- uninterrupted ----
  const intervalMs = config.policy.heartbeatIntervalSeconds * 1000;
  const edgeMs = intervalMs + config.policy.heartbeatGraceSeconds * 1000;
  const restarts = events.filter((e) => e.action === 'worker.daily_restart').map((e) => e.scheduled ?? e.at);
  const gaps = analyseGaps(
    beats.map((b) => b.at),
    { from, until },
    restarts,
    { ...DEFAULT_GAP_RULES, edgeMs },
  );
  const missed = events.filter((e) => e.action === 'worker.heartbeat_missed' && inWindow(e));
  const largestGapSeconds = gaps.largest === null ? null : gaps.largest.ms / 1000;
  const longestRestart = Math.max(0, ...gaps.restartGaps.map((g) => g.ms));
  const uninterruptedProblems = [
    ...gaps.violations.map((v) => ({ at: v.from, text: `${v.reason}, from ${iso(v.from)} to ${iso(v.to)}` })),
    ...missed.map((e) => ({ at: e.at, text: `the supervisor recorded a missed heartbeat at ${iso(e.at)}` })),
  ].sort((a, b) => a.at - b.at);
  const uninterrupted = check(
    'uninterrupted',
    `${gaps.beats} heartbeats, largest gap ${largestGapSeconds ?? '—'} s; ${gaps.restartGaps.length} daily restart(s), longest ${Math.round(longestRestart / 1000)} s`,
    uninterruptedProblems,
    gaps.largest === null
      ? 'no two heartbeats to compare'
      : `largest gap ${iso(gaps.largest.from)} → ${iso(gaps.largest.to)}; gaps up to ${DEFAULT_GAP_RULES.maxGapMs / 1000} s allowed, up to ${DEFAULT_GAP_RULES.maxRestartGapMs / 1000} s around a recorded daily restart`,
  );

  // ---- export quality ----
  const firstBins = binScores(firstScores);
  const lastBins = binScores(lastScores);
  const bins = SCORE_BINS.map((bin, i) => ({ label: bin.label, first: firstBins[i]!, last: lastBins[i]! }));
  const enough = firstScores.length >= MIN_LEADS_PER_SIDE && lastScores.length >= MIN_LEADS_PER_SIDE;
  const index = enough ? psi(firstBins, lastBins) : null;
  const spanHours = Math.round((compareMs / HOUR_MS) * 10) / 10;
  const tables = `first ${spanHours} h: ${binTable(firstBins)}; last ${spanHours} h: ${binTable(lastBins)}`;
  const quality: StabilityCheck =
    index === null
      ? {
          name: 'export quality',
          passed: false,
          figure: `${firstScores.length} / ${lastScores.length} leads dry-run (minimum ${MIN_LEADS_PER_SIDE} each)`,
          detail: `too few leads dry-run to compare score distributions (first ${spanHours} h: ${firstScores.length}, last ${spanHours} h: ${lastScores.length}; minimum ${MIN_LEADS_PER_SIDE} each)`,
          at: iso(firstScores.length < MIN_LEADS_PER_SIDE ? from : until - compareMs),
        }
      : check(
          'export quality',
          `PSI ${index.toFixed(4)} (limit < ${PSI_LIMIT})`,
          index < PSI_LIMIT
            ? []
            : [
                {
                  at: until - compareMs,
                  text: `score distribution drifted: PSI ${index.toFixed(4)} ≥ ${PSI_LIMIT}; ${tables}`,
                },
              ],
          tables,
        );

  // ---- memory ----
  const rssSlope = rssSlopeMbPerHour(beats);
  const memoryEvents = events.filter(
    (e) => (e.action === 'worker.memory_restart' || e.action === 'worker.crashed') && inWindow(e),
  );
  const peak = beats.reduce<BeatSample | null>(
    (max, b) => (max === null || b.rssBytes > max.rssBytes ? b : max),
    null,
  );
  const memoryProblems = memoryEvents.map((e) => ({
    at: e.at,
    text: `${e.action} at ${iso(e.at)}${e.summary}`,
  }));
  if (rssSlope === null) memoryProblems.push({ at: from, text: 'too few heartbeats to measure RSS' });
  else if (rssSlope >= RSS_SLOPE_LIMIT_MB_PER_HOUR && peak) {
    memoryProblems.push({
      at: peak.at,
      text: `RSS grows ${rssSlope.toFixed(2)} MB/h within a worker's life (limit ${RSS_SLOPE_LIMIT_MB_PER_HOUR} MB/h); peak ${mb(peak.rssBytes)} MB at ${iso(peak.at)}`,
    });
  }
  memoryProblems.sort((a, b) => a.at - b.at);
  const count = (action: AuditAction) => memoryEvents.filter((e) => e.action === action).length;
  const memory = check(
    'memory',
    `RSS ${rssSlope === null ? '—' : `${rssSlope >= 0 ? '+' : ''}${rssSlope.toFixed(2)}`} MB/h (limit < ${RSS_SLOPE_LIMIT_MB_PER_HOUR}), ${count('worker.memory_restart')} memory restart(s), ${count('worker.crashed')} crash(es)`,
    memoryProblems,
    peak === null ? 'no heartbeats' : `peak RSS ${mb(peak.rssBytes)} MB at ${iso(peak.at)}`,
  );

  // ---- orphaned processes ----
  const processes = new Set(beats.map((b) => b.process)).size;
  const overlaps = overlappingProcesses(beats);
  const orphans = check(
    'orphaned processes',
    `${processes} worker process(es), ${overlaps.length} overlapping`,
    overlaps.map((o) => ({
      at: o.from,
      text: `${o.first} and ${o.second} both heartbeating from ${iso(o.from)} to ${iso(o.to)}`,
    })),
    'one worker at a time: each daily restart replaced the worker before the next beat',
  );

  // ---- guard ----
  const allowed = events.filter((e) => e.action === 'guard.allowed' && inWindow(e));
  const notPhase3 = heartbeats.filter((h) => h.phase !== 3);
  const guardProblems = [
    ...(requests.length > 0
      ? [
          {
            at: requests[0]!.at,
            text: `${requests.length} outbound request(s) recorded, the first to ${requests[0]!.endpoint} at ${iso(requests[0]!.at)}`,
          },
        ]
      : []),
    ...(allowed.length > 0
      ? [
          {
            at: allowed[0]!.at,
            text: `the guard allowed ${allowed.length} live request(s), the first at ${iso(allowed[0]!.at)}`,
          },
        ]
      : []),
    ...(notPhase3.length > 0
      ? [
          {
            at: notPhase3[0]!.at,
            text: `${notPhase3.length} heartbeat(s) from a Phase ${notPhase3[0]!.phase} worker, the first at ${iso(notPhase3[0]!.at)}`,
          },
        ]
      : []),
  ].sort((a, b) => a.at - b.at);
  const guard = check(
    'guard',
    `${requests.length} request(s), ${allowed.length} guard.allowed, ${dryRunDecisions} guard.dry_run; ${heartbeats.length - notPhase3.length}/${heartbeats.length} heartbeats Phase 3`,
    guardProblems,
    'no outbound request: every batch stopped at the guard as a dry run',
  );

  const own = await provenance(store, heartbeats, { from, until });
  const checks = [own, uninterrupted, quality, memory, orphans, guard];
  return {
    passed: checks.every((c) => c.passed),
    from: iso(from),
    until: iso(until),
    hours: options.hours,
    checks,
    psi: index,
    bins,
    rssSlopeMbPerHour: rssSlope,
    largestGapSeconds,
  };
}

/** How long before its own start the supervisor's `worker.started` entry may be (a slow start, synthetic leads loaded). */
const START_ENTRY_BEFORE_MS = 15 * 60_000;
/** …and how long after it (the entry is written while the worker starts). */
const START_ENTRY_AFTER_MS = 60_000;

/**
 * Gate 9's evidence must be this installation's own: heartbeats and entries written after its
 * `system.initialized` entry (none dated before it, none before it in the chain), by workers whose
 * start the supervisor recorded in the chain. History written in afterwards, or brought from elsewhere,
 * fails here with the reason.
 */
async function provenance(
  store: Store,
  heartbeats: { at: number; pid: number; runner: string; worker_started_at: number }[],
  window: { from: number; until: number },
): Promise<StabilityCheck> {
  const [init] = await auditEntriesBetween(
    store.db,
    ['system.initialized'] satisfies AuditAction[],
    0,
    Number.MAX_SAFE_INTEGER,
  );
  if (init === undefined) {
    return check(
      'this installation',
      'no system.initialized entry',
      [
        {
          at: window.from,
          text: 'the audit chain has no system.initialized entry: this is no installation made by `valhalla init`',
        },
      ],
      '',
    );
  }
  const problems: { at: number; text: string }[] = [];
  const early = heartbeats.filter((h) => h.at < init.at);
  if (early.length > 0) {
    problems.push({
      at: early[0]!.at,
      text: `${early.length} heartbeat(s) dated before this installation's initialisation (${iso(init.at)}), the first at ${iso(early[0]!.at)}`,
    });
  }
  const foreign = await auditEntriesNotAfter(store.db, window, init);
  if (foreign.n > 0) {
    problems.push({
      at: foreign.first ?? window.from,
      text: `${foreign.n} audit entr${foreign.n === 1 ? 'y' : 'ies'} in the window dated before this installation's initialisation (${iso(init.at)}) or before it in the chain`,
    });
  }
  const starts = (
    await auditEntriesBetween(
      store.db,
      ['worker.started'] satisfies AuditAction[],
      init.at,
      window.until + START_ENTRY_AFTER_MS,
    )
  )
    .filter((e) => e.seq > init.seq)
    .map((e) => ({ at: e.at, pid: parseDetails(e.details).pid }));
  const workers = new Map<string, { pid: number; startedAt: number; firstBeat: number }>();
  for (const h of heartbeats) {
    const key = `${h.runner}@${h.worker_started_at}`;
    if (!workers.has(key)) workers.set(key, { pid: h.pid, startedAt: h.worker_started_at, firstBeat: h.at });
  }
  const unstarted = [...workers.values()].filter(
    (w) =>
      !starts.some(
        (s) =>
          s.pid === w.pid &&
          s.at >= w.startedAt - START_ENTRY_BEFORE_MS &&
          s.at <= w.startedAt + START_ENTRY_AFTER_MS,
      ),
  );
  for (const w of unstarted) {
    problems.push({
      at: w.firstBeat,
      text: `heartbeats from worker pid ${w.pid} (started ${iso(w.startedAt)}) whose start is not in the audit chain (no worker.started entry by the supervisor)`,
    });
  }
  problems.sort((a, b) => a.at - b.at);
  return check(
    'this installation',
    `initialised ${iso(init.at)}; ${workers.size} worker(s), ${workers.size - unstarted.length} started in the chain`,
    problems,
    `every heartbeat and entry written after this installation's initialisation (${iso(init.at)}), by workers whose start is in the chain`,
  );
}

/** Record a verification in the audit chain: gate 9's evidence (the gates module reads the latest). */
export async function recordStability(
  audit: AuditLog,
  result: StabilityResult,
  actor: string,
): Promise<AuditEntry> {
  const [entry] = await audit.record({
    actor,
    action: STABILITY_VERIFIED,
    subject: `${result.from}/${result.until}`,
    details: { ...result },
  });
  return entry!;
}

/** A passed check, or a failed one naming each problem (at most five) and the first one's time. */
function check(
  name: StabilityCheckName,
  figure: string,
  problems: { at: number; text: string }[],
  passDetail: string,
): StabilityCheck {
  if (problems.length === 0) return { name, passed: true, figure, detail: passDetail };
  const shown = problems.slice(0, 5).map((p) => p.text);
  if (problems.length > 5) shown.push(`and ${problems.length - 5} more`);
  return { name, passed: false, figure, detail: shown.join('; '), at: iso(problems[0]!.at) };
}

function binTable(counts: readonly number[]): string {
  const total = counts.reduce((sum, n) => sum + n, 0);
  return SCORE_BINS.map((bin, i) => {
    const n = counts[i]!;
    return `${bin.label} ${n}${total > 0 ? ` (${((n / total) * 100).toFixed(1)}%)` : ''}`;
  }).join(', ');
}

const iso = (ms: number) => new Date(ms).toISOString();
const mb = (bytes: number) => Math.round(bytes / (1024 * 1024));

// ---- evidence queries (read only) ----

interface Event {
  seq: number;
  at: number;
  action: AuditAction;
  /** A daily restart's scheduled time (details.scheduled). */
  scheduled: number | null;
  /** `(pid …, code …)` from the details, for the report; empty when there are none. */
  summary: string;
}

const EVENT_ACTIONS: readonly AuditAction[] = [
  'worker.daily_restart',
  'worker.crashed',
  'worker.memory_restart',
  'worker.heartbeat_missed',
  'guard.allowed',
];

/**
 * The supervisor's and the guard's entries that bear on stability. Restarts are read from a little
 * before the window: one scheduled just before it can explain the gap at its start.
 */
async function supervisionEvents(store: Store, from: number, until: number): Promise<Event[]> {
  const rows = await auditEntriesBetween(
    store.db,
    EVENT_ACTIONS,
    from - DEFAULT_GAP_RULES.maxRestartGapMs,
    until + DEFAULT_GAP_RULES.maxRestartGapMs,
  );
  return rows.map((row) => {
    const details = parseDetails(row.details);
    const scheduled = typeof details.scheduled === 'string' ? Date.parse(details.scheduled) : Number.NaN;
    const parts = ['pid', 'code', 'signal', 'rssBytes']
      .filter((key) => details[key] !== undefined && details[key] !== null)
      .map((key) => `${key} ${String(details[key])}`);
    return {
      seq: row.seq,
      at: row.at,
      action: row.action,
      scheduled: Number.isNaN(scheduled) ? null : scheduled,
      summary: parts.length > 0 ? ` (${parts.join(', ')})` : '',
    };
  });
}

function parseDetails(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
