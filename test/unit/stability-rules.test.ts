/**
 * Gate 9's pure rules: score bins and PSI, least-squares slopes (pooled per worker life), heartbeat gap
 * analysis around daily restarts, and overlapping worker processes.
 */
import { describe, expect, it } from 'vitest';
import {
  analyseGaps,
  binScores,
  DEFAULT_GAP_RULES,
  MAX_RESTART_GAP_MS,
  MIN_LEADS_PER_SIDE,
  overlappingProcesses,
  PSI_LIMIT,
  pooledSlope,
  psi,
  RSS_SLOPE_LIMIT_MB_PER_HOUR,
  rssSlopeMbPerHour,
  SCORE_BINS,
  slope,
} from '../../src/policy/stability.js';
import { HOUR, MINUTE, SECOND } from '../support/world.js';

const MB = 1024 * 1024;
const RULES = { ...DEFAULT_GAP_RULES, edgeMs: 45 * SECOND };

/** Beat times every `step` ms in [from, to]. */
function beatsEvery(from: number, to: number, step = 30 * SECOND): number[] {
  const out: number[] = [];
  for (let t = from; t <= to; t += step) out.push(t);
  return out;
}

/** A seeded generator of numbers in [0, 1) (mulberry32): the same run every time. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe('score bins', () => {
  it('bins by whole points, inclusive at both ends, 90–100 one bin, below 40 kept', () => {
    expect(SCORE_BINS.map((b) => b.label)).toEqual([
      '0–39',
      '40–49',
      '50–59',
      '60–69',
      '70–79',
      '80–89',
      '90–100',
    ]);
    expect(binScores([0, 39, 40, 49, 50, 59, 60, 79, 80, 89, 90, 99, 100])).toEqual([2, 2, 2, 1, 1, 2, 3]);
    expect(binScores([101, -1])).toEqual([0, 0, 0, 0, 0, 0, 0]);
  });
});

describe('psi', () => {
  it('is 0 for the same shares whatever the sample sizes, and symmetric', () => {
    expect(psi([10, 20, 30], [100, 200, 300])).toBeCloseTo(0, 12);
    expect(psi([50, 50], [25, 75])).toBeCloseTo(psi([25, 75], [50, 50]), 12);
  });

  it('computes Σ (b − a) ln(b / a) over the shares', () => {
    // (0.25 − 0.5) ln(0.5) + (0.75 − 0.5) ln(1.5) = 0.17329 + 0.10137
    expect(psi([50, 50], [25, 75])).toBeCloseTo(0.274653, 5);
  });

  it('takes an empty bin as epsilon: finite, and large when the other side is not empty', () => {
    const index = psi([0, 100], [50, 50]);
    expect(Number.isFinite(index)).toBe(true);
    expect(index).toBeCloseTo((0.5 - 1e-4) * Math.log(0.5 / 1e-4) + (0.5 - 1) * Math.log(0.5), 6);
    expect(psi([0, 100], [0, 100])).toBe(0);
  });

  it('refuses samples of different bins or an empty sample', () => {
    expect(() => psi([1, 2], [1, 2, 3])).toThrow(RangeError);
    expect(() => psi([0, 0], [1, 2])).toThrow(/empty/);
  });

  it(`the minimum of ${MIN_LEADS_PER_SIDE} leads a side keeps sampling noise under the limit; 50 would not`, () => {
    // The same distribution on both sides: any PSI is noise.
    const next = random(7);
    const draw = (n: number) =>
      binScores(Array.from({ length: n }, () => 40 + Math.floor(((next() + next() + next()) / 3) * 61)));
    const trials = (n: number) => Array.from({ length: 200 }, () => psi(draw(n), draw(n)));
    const atMinimum = trials(MIN_LEADS_PER_SIDE);
    expect(Math.max(...atMinimum)).toBeLessThan(PSI_LIMIT);
    const atFifty = trials(50);
    expect(atFifty.filter((x) => x >= PSI_LIMIT).length).toBeGreaterThan(40);
  });
});

describe('slopes', () => {
  it('fits a line by least squares', () => {
    expect(slope([0, 1, 2, 3].map((x) => ({ x, y: 2 * x + 1 })))).toBeCloseTo(2, 12);
    expect(
      slope([
        { x: 0, y: 0 },
        { x: 1, y: 2 },
        { x: 2, y: 1 },
      ]),
    ).toBeCloseTo(0.5, 12);
  });

  it('is null without two distinct x', () => {
    expect(slope([])).toBeNull();
    expect(slope([{ x: 1, y: 5 }])).toBeNull();
    expect(
      slope([
        { x: 1, y: 5 },
        { x: 1, y: 7 },
      ]),
    ).toBeNull();
  });

  it('pools groups with their own intercepts', () => {
    const a = [0, 1, 2].map((x) => ({ x, y: 100 + 3 * x }));
    const b = [3, 4, 5].map((x) => ({ x, y: 10 + 3 * x }));
    expect(pooledSlope([a, b])).toBeCloseTo(3, 12);
    // One line through both is falling: the drop between the groups hides their growth.
    expect(slope([...a, ...b])!).toBeLessThan(0);
  });

  it('finds a leak that daily restarts hide from one line through three days', () => {
    // Three workers of 24 h each, RSS 100 MB at start, +5 MB/h: a sawtooth.
    const beats = [0, 1, 2].flatMap((day) =>
      beatsEvery(day * 24 * HOUR, (day + 1) * 24 * HOUR - 30 * SECOND, 5 * MINUTE).map((at) => ({
        at,
        process: `host:${100 + day}@${day * 24 * HOUR}`,
        rssBytes: (100 + ((at - day * 24 * HOUR) / HOUR) * 5) * MB,
      })),
    );
    expect(rssSlopeMbPerHour(beats)).toBeCloseTo(5, 6);
    // One line through the sawtooth would pass the check.
    const oneLine = slope(beats.map((b) => ({ x: b.at / HOUR, y: b.rssBytes / MB })))!;
    expect(Math.abs(oneLine)).toBeLessThan(RSS_SLOPE_LIMIT_MB_PER_HOUR);
  });

  it("a short worker's warm-up weighs little against full days", () => {
    const day = (p: string, from: number, hours: number, warm: number) =>
      beatsEvery(from, from + hours * HOUR, MINUTE).map((at) => ({
        at,
        process: p,
        rssBytes: (at - from < 10 * MINUTE ? 100 : 100 + warm) * MB,
      }));
    // A 1-hour worker that grew 20 MB in its first 10 minutes, and two flat 24-hour workers.
    const beats = [...day('a', 0, 24, 0), ...day('b', 24 * HOUR, 1, 20), ...day('c', 25 * HOUR, 24, 0)];
    expect(rssSlopeMbPerHour(beats)!).toBeLessThan(0.1);
  });
});

describe('heartbeat gaps', () => {
  const from = Date.parse('2026-03-01T00:00:00Z');
  const until = from + 72 * HOUR;

  it('beats every 30 s over the window: no violation, largest gap 30 s', () => {
    const result = analyseGaps(beatsEvery(from + 10 * SECOND, until), { from, until }, [], RULES);
    expect(result.violations).toEqual([]);
    expect(result.largest?.ms).toBe(30 * SECOND);
  });

  it('a 5-minute gap is named with its start and end', () => {
    const gapFrom = from + 30 * HOUR;
    const beats = [...beatsEvery(from, gapFrom), ...beatsEvery(gapFrom + 5 * MINUTE, until)];
    const result = analyseGaps(beats, { from, until }, [], RULES);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toMatchObject({ kind: 'gap', from: gapFrom, to: gapFrom + 5 * MINUTE });
    expect(result.violations[0]!.reason).toBe('a heartbeat gap of 300 s (limit 60 s)');
    expect(result.largest).toMatchObject({ from: gapFrom, ms: 5 * MINUTE });
  });

  it('61 s is a gap, 60 s is not', () => {
    const at = from + HOUR;
    const just = analyseGaps(
      [...beatsEvery(from, at), ...beatsEvery(at + 60 * SECOND, until)],
      { from, until },
      [],
      RULES,
    );
    expect(just.violations).toEqual([]);
    const over = analyseGaps(
      [...beatsEvery(from, at), ...beatsEvery(at + 61 * SECOND, until)],
      { from, until },
      [],
      RULES,
    );
    expect(over.violations.map((v) => v.kind)).toEqual(['gap']);
  });

  it('a gap around a recorded daily restart is explained, up to 5 minutes', () => {
    const restart = from + 26 * HOUR;
    const beats = (gapMs: number) => [
      ...beatsEvery(from + 20 * SECOND, restart - 10 * SECOND),
      ...beatsEvery(restart - 10 * SECOND + gapMs, until),
    ];
    const short = analyseGaps(beats(75 * SECOND), { from, until }, [restart], RULES);
    expect(short.violations).toEqual([]);
    expect(short.restartGaps).toEqual([
      { from: restart - 10 * SECOND, to: restart + 65 * SECOND, ms: 75 * SECOND },
    ]);
    expect(short.largest?.ms).toBe(30 * SECOND);
    // The same gap with no restart recorded is an interruption.
    expect(analyseGaps(beats(75 * SECOND), { from, until }, [], RULES).violations.map((v) => v.kind)).toEqual(
      ['gap'],
    );
    // A restart recorded elsewhere does not explain it.
    expect(
      analyseGaps(beats(75 * SECOND), { from, until }, [restart + HOUR], RULES).violations.map((v) => v.kind),
    ).toEqual(['gap']);
    const long = analyseGaps(beats(MAX_RESTART_GAP_MS + SECOND), { from, until }, [restart], RULES);
    expect(long.violations).toHaveLength(1);
    expect(long.violations[0]).toMatchObject({ kind: 'restart_too_long', from: restart - 10 * SECOND });
  });

  it('the old worker beating just after the scheduled restart still counts as that restart', () => {
    const restart = from + 26 * HOUR;
    const beats = [
      ...beatsEvery(from, restart + 20 * SECOND, 10 * SECOND),
      ...beatsEvery(restart + 100 * SECOND, until),
    ];
    expect(analyseGaps(beats, { from, until }, [restart], RULES).violations).toEqual([]);
  });

  it('the window must be covered at both ends, within interval + grace', () => {
    const late = analyseGaps(
      beatsEvery(from + 50 * SECOND, until - 50 * SECOND, 10 * SECOND),
      { from, until },
      [],
      RULES,
    );
    expect(late.violations.map((v) => [v.kind, v.from, v.to])).toEqual([
      ['start', from, from + 50 * SECOND],
      ['end', until - 50 * SECOND, until],
    ]);
    expect(analyseGaps(beatsEvery(from + 45 * SECOND, until), { from, until }, [], RULES).violations).toEqual(
      [],
    );
  });

  it('no heartbeat at all is one violation over the whole window', () => {
    const result = analyseGaps([], { from, until }, [], RULES);
    expect(result.violations).toEqual([
      { kind: 'no_heartbeats', from, to: until, ms: 72 * HOUR, reason: 'no heartbeat' },
    ]);
    expect(result.largest).toBeNull();
  });
});

describe('overlapping processes', () => {
  it('one worker after another does not overlap; two at once do, from the second one’s first beat', () => {
    const seq = [
      ...beatsEvery(0, HOUR).map((at) => ({ at, process: 'h:1@0' })),
      ...beatsEvery(HOUR + 75 * SECOND, 2 * HOUR).map((at) => ({ at, process: 'h:2@1' })),
    ];
    expect(overlappingProcesses(seq)).toEqual([]);
    const orphan = beatsEvery(30 * MINUTE, 3 * HOUR).map((at) => ({ at, process: 'h:9@2' }));
    expect(overlappingProcesses([...seq, ...orphan])).toEqual([
      { first: 'h:1@0', second: 'h:9@2', from: 30 * MINUTE, to: HOUR },
      { first: 'h:9@2', second: 'h:2@1', from: HOUR + 75 * SECOND, to: 2 * HOUR - 15 * SECOND },
    ]);
  });
});
