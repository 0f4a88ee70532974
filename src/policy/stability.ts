/**
 * The pure rules of gate 9's 72-hour Phase 3 stability test (the policy's `verify_phase3_stability`):
 * score bins and their population stability index, least-squares slopes of memory, heartbeat gaps
 * and overlapping worker processes. No I/O: `gates/stability.ts` reads the evidence and calls these.
 */

const MB = 1024 * 1024;
const HOUR_MS = 3_600_000;

/**
 * A gap of more than two heartbeat intervals (policy: 30 s) between consecutive beats is an
 * interruption: one late beat (a long synchronous step, a slow database write) is tolerated, a
 * missing one is not.
 */
export const MAX_HEARTBEAT_GAP_MS = 60_000;

/**
 * The daily restart (02:00 UTC) stops one worker and starts the next: the gap around it is expected,
 * but a restart that takes over 5 minutes is an outage, not a restart (the policy's rollback time).
 */
export const MAX_RESTART_GAP_MS = 5 * 60_000;

/**
 * The old worker may beat once more after the scheduled restart while it finishes its cycle (the
 * supervisor gives it 30 s to stop): a restart this long before a gap's start still explains the gap.
 */
export const RESTART_STOP_TOLERANCE_MS = 60_000;

/**
 * PSI below 0.1 is the usual reading of "no significant shift" (0.1–0.25 moderate, above 0.25 major).
 */
export const PSI_LIMIT = 0.1;

/** Stands in for an empty bin's share, so an empty bin on one side gives a large but finite term. */
export const PSI_EPSILON = 1e-4;

/**
 * Leads needed on each side (first and last 24 h) before the PSI means anything. With no drift at all,
 * PSI between two samples of n leads over k bins is about (2/n)·χ²(k−1): 6 populated bins at n = 50
 * average 0.2 (above the limit by chance alone); at n = 500 the chance that noise alone reaches 0.1
 * is about 1 in 7,000 (χ²(5) > 25).
 */
export const MIN_LEADS_PER_SIDE = 500;

/** The spans compared for export quality: the window's first and last 24 hours. */
export const COMPARE_HOURS = 24;

/**
 * The RSS growth (MB per hour, within one worker's life) above which memory is said to grow. A worker
 * lives at most a day (the daily restart), so 2 MB/h is under 50 MB per life, far inside the 512 MB
 * limit, yet well above the noise of a healthy worker (GC swings of a few MB and its warm-up fit a slope
 * of well under 0.5 MB/h over a day); a real leak of a few MB/h would reach the limit in days.
 */
export const RSS_SLOPE_LIMIT_MB_PER_HOUR = 2;

/** A score bin, inclusive at both ends (scores are whole numbers 0–100). */
export interface ScoreBin {
  label: string;
  min: number;
  max: number;
}

/**
 * Fixed bins of ten points above the minimum export score. Below 40 nothing should be dry-run at all,
 * but if anything is it lands in its own bin and shows as drift instead of being dropped.
 */
export const SCORE_BINS: readonly ScoreBin[] = [
  { label: '0–39', min: 0, max: 39 },
  { label: '40–49', min: 40, max: 49 },
  { label: '50–59', min: 50, max: 59 },
  { label: '60–69', min: 60, max: 69 },
  { label: '70–79', min: 70, max: 79 },
  { label: '80–89', min: 80, max: 89 },
  { label: '90–100', min: 90, max: 100 },
];

/** How many scores fall in each bin (a score outside every bin is counted in none). */
export function binScores(scores: Iterable<number>, bins: readonly ScoreBin[] = SCORE_BINS): number[] {
  const counts = bins.map(() => 0);
  for (const score of scores) {
    const i = bins.findIndex((bin) => score >= bin.min && score <= bin.max);
    if (i >= 0) counts[i]! += 1;
  }
  return counts;
}

/**
 * The population stability index between two binned samples (counts per bin, same bins):
 * Σ (b − a) · ln(b / a) over the bins' shares, an empty bin's share taken as `epsilon`.
 * Symmetric, 0 for identical shares. Both samples must hold at least one item.
 */
export function psi(binsA: readonly number[], binsB: readonly number[], epsilon = PSI_EPSILON): number {
  if (binsA.length !== binsB.length) throw new RangeError('psi: the two samples have different bins');
  const totalA = binsA.reduce((sum, n) => sum + n, 0);
  const totalB = binsB.reduce((sum, n) => sum + n, 0);
  if (totalA === 0 || totalB === 0) throw new RangeError('psi: a sample is empty');
  let index = 0;
  for (let i = 0; i < binsA.length; i++) {
    const a = Math.max(binsA[i]! / totalA, epsilon);
    const b = Math.max(binsB[i]! / totalB, epsilon);
    index += (b - a) * Math.log(b / a);
  }
  return index;
}

export interface Point {
  x: number;
  y: number;
}

/** The ordinary least-squares slope of y on x; null with fewer than two distinct x. */
export function slope(points: readonly Point[]): number | null {
  return pooledSlope([points]);
}

/**
 * The least-squares slope shared by several groups, each with its own intercept (the "within" or
 * fixed-effects estimator): Σ (x − x̄ₖ)(y − ȳₖ) / Σ (x − x̄ₖ)² over every group k. For memory, a group is
 * one worker process: the daily restart resets RSS, so one line through three days of a leaking
 * worker's sawtooth is nearly flat, while the slope within each worker's life shows the leak. A short
 * life weighs little (its x spread is small), so a restart's warm-up does not pass for a leak.
 * Null with fewer than two distinct x in every group.
 */
export function pooledSlope(groups: readonly (readonly Point[])[]): number | null {
  let sxy = 0;
  let sxx = 0;
  for (const points of groups) {
    if (points.length < 2) continue;
    let mx = 0;
    let my = 0;
    for (const p of points) {
      mx += p.x;
      my += p.y;
    }
    mx /= points.length;
    my /= points.length;
    for (const p of points) {
      sxy += (p.x - mx) * (p.y - my);
      sxx += (p.x - mx) ** 2;
    }
  }
  return sxx === 0 ? null : sxy / sxx;
}

/** One heartbeat as the memory and process rules see it. */
export interface BeatSample {
  at: number;
  /** One worker process: runner (host:pid) and its start time (a pid can be reused). */
  process: string;
  rssBytes: number;
}

/** RSS growth in MB per hour within each worker's life, pooled (see `pooledSlope`). */
export function rssSlopeMbPerHour(beats: readonly BeatSample[]): number | null {
  const groups = new Map<string, Point[]>();
  for (const beat of beats) {
    const points = groups.get(beat.process) ?? [];
    if (points.length === 0) groups.set(beat.process, points);
    points.push({ x: beat.at / HOUR_MS, y: beat.rssBytes / MB });
  }
  return pooledSlope([...groups.values()]);
}

export interface Gap {
  from: number;
  to: number;
  ms: number;
}

export interface GapViolation extends Gap {
  kind: 'no_heartbeats' | 'start' | 'end' | 'gap' | 'restart_too_long';
  reason: string;
}

export interface GapAnalysis {
  beats: number;
  /** The largest gap between consecutive beats that no daily restart explains. */
  largest: Gap | null;
  /** Gaps explained by a recorded daily restart. */
  restartGaps: Gap[];
  /** Everything that breaks "uninterrupted", oldest first. */
  violations: GapViolation[];
}

export interface GapRules {
  /** Consecutive beats further apart than this are an interruption. */
  maxGapMs: number;
  /** The first beat within this of the window's start, the last within this of its end (interval + grace). */
  edgeMs: number;
  maxRestartGapMs: number;
  restartStopToleranceMs: number;
}

export const DEFAULT_GAP_RULES: Omit<GapRules, 'edgeMs'> = {
  maxGapMs: MAX_HEARTBEAT_GAP_MS,
  maxRestartGapMs: MAX_RESTART_GAP_MS,
  restartStopToleranceMs: RESTART_STOP_TOLERANCE_MS,
};

/**
 * Do the heartbeats cover the window without interruption? `beats` are the beats' times in the window,
 * oldest first; `restarts` the scheduled times of the audited daily restarts. A gap is explained by a
 * restart scheduled inside it (or just before it: the old worker's last beat while stopping), if it
 * is no longer than `maxRestartGapMs`; a longer one is a violation of its own kind.
 */
export function analyseGaps(
  beats: readonly number[],
  window: { from: number; until: number },
  restarts: readonly number[],
  rules: GapRules,
): GapAnalysis {
  const violations: GapViolation[] = [];
  const restartGaps: Gap[] = [];
  if (beats.length === 0) {
    const ms = window.until - window.from;
    return {
      beats: 0,
      largest: null,
      restartGaps,
      violations: [
        { kind: 'no_heartbeats', from: window.from, to: window.until, ms, reason: 'no heartbeat' },
      ],
    };
  }
  const restartIn = (gap: Gap) =>
    restarts.some((r) => r <= gap.to && r >= gap.from - rules.restartStopToleranceMs);
  /** Sorts a gap: fine, explained by a restart, or a violation. */
  const judge = (gap: Gap, limit: number, kind: 'start' | 'end' | 'gap', what: string): boolean => {
    if (gap.ms <= limit) return false;
    if (restartIn(gap)) {
      if (gap.ms <= rules.maxRestartGapMs) {
        restartGaps.push(gap);
        return true;
      }
      violations.push({
        ...gap,
        kind: 'restart_too_long',
        reason: `${what} around a daily restart lasted ${seconds(gap.ms)} s (limit ${seconds(rules.maxRestartGapMs)} s)`,
      });
      return true;
    }
    violations.push({ ...gap, kind, reason: `${what} of ${seconds(gap.ms)} s (limit ${seconds(limit)} s)` });
    return false;
  };

  const first = beats[0]!;
  const last = beats[beats.length - 1]!;
  judge(
    { from: window.from, to: first, ms: first - window.from },
    rules.edgeMs,
    'start',
    'no heartbeat after the window started',
  );
  let largest: Gap | null = null;
  for (let i = 1; i < beats.length; i++) {
    const gap = { from: beats[i - 1]!, to: beats[i]!, ms: beats[i]! - beats[i - 1]! };
    const explained = judge(gap, rules.maxGapMs, 'gap', 'a heartbeat gap');
    if (!explained && (largest === null || gap.ms > largest.ms)) largest = gap;
  }
  judge(
    { from: last, to: window.until, ms: window.until - last },
    rules.edgeMs,
    'end',
    'no heartbeat before the window ended',
  );
  violations.sort((a, b) => a.from - b.from);
  return { beats: beats.length, largest, restartGaps, violations };
}

export interface ProcessOverlap {
  first: string;
  second: string;
  /** When both were beating: from the second's first beat to the earlier of their last beats. */
  from: number;
  to: number;
}

/**
 * Two worker processes heartbeating at the same time (their first-to-last beat spans overlap) mean an
 * orphan: a worker that was replaced but never stopped, or a second runner on the same database.
 * Returns every overlapping pair, oldest first.
 */
export function overlappingProcesses(beats: readonly Pick<BeatSample, 'at' | 'process'>[]): ProcessOverlap[] {
  const spans = new Map<string, { process: string; from: number; to: number }>();
  for (const beat of beats) {
    const span = spans.get(beat.process);
    if (!span) spans.set(beat.process, { process: beat.process, from: beat.at, to: beat.at });
    else {
      span.from = Math.min(span.from, beat.at);
      span.to = Math.max(span.to, beat.at);
    }
  }
  const ordered = [...spans.values()].sort((a, b) => a.from - b.from);
  const overlaps: ProcessOverlap[] = [];
  for (let i = 0; i < ordered.length; i++) {
    for (let j = i + 1; j < ordered.length; j++) {
      const a = ordered[i]!;
      const b = ordered[j]!;
      if (b.from > a.to) break;
      overlaps.push({ first: a.process, second: b.process, from: b.from, to: Math.min(a.to, b.to) });
    }
  }
  return overlaps.sort((x, y) => x.from - y.from);
}

function seconds(ms: number): number {
  return Math.round(ms / 1000);
}
