import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { FLOW_OUTCOMES, type Flow, type FlowOutcome } from './types';

const COLOURS: Record<FlowOutcome, string> = {
  ingested: '#2563eb',
  dry_run: '#7c3aed',
  exported: '#15803d',
  quarantined: '#c2410c',
};

const HEIGHT = 220;
/** The narrowest window the chart shows: a single busy minute still reads as a point among zeros. */
const MIN_BUCKETS = 5;
/** Up to this many minutes, each is drawn as a point too: a short run is a few dots, not a hairline. */
const POINTS_UP_TO = 180;

/** Axis steps in seconds: whole minutes up to a day. */
const TIME_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400];
const COUNT_STEPS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000];

const isoAt = (seconds: number) => new Date(seconds * 1000).toISOString();
/** Axis ticks as 24-hour UTC times, with the date at midnight. */
const tickLabel = (seconds: number) => {
  const iso = isoAt(seconds);
  return iso.slice(11, 16) === '00:00' ? iso.slice(5, 10) : iso.slice(11, 16);
};
const label = (outcome: FlowOutcome) => outcome.replace('_', ' ');

/** The minutes worth drawing and each outcome's counts over them. */
export interface FlowWindow {
  /** Bucket start times, in uPlot's seconds. */
  times: number[];
  outcomes: FlowOutcome[];
  series: number[][];
  totals: number[];
  latest: number[];
}

/**
 * The part of the server's window that holds data: from one minute before the first non-zero minute
 * to the current one (at least MIN_BUCKETS minutes), so a service that started an hour ago does not
 * show as a spike at the right edge of 24 empty hours. With no data at all, the last MIN_BUCKETS minutes.
 */
function flowWindow(flow: Flow): FlowWindow {
  const count = Math.max(0, Math.floor(flow.buckets));
  // Only the outcomes the server counts: a missing one drawn as a flat zero would read as "none happened".
  const outcomes = FLOW_OUTCOMES.filter((outcome) => Array.isArray(flow.series[outcome]));
  const full = outcomes.map((outcome) => {
    const values = flow.series[outcome] ?? [];
    return Array.from({ length: count }, (_, i) => {
      const value = Number(values[i] ?? 0);
      return Number.isFinite(value) ? value : 0;
    });
  });
  let first = count;
  for (const values of full) {
    const index = values.findIndex((v) => v !== 0);
    if (index !== -1) first = Math.min(first, index);
  }
  const start = Math.max(0, Math.min(first - 1, count - MIN_BUCKETS));
  const times = Array.from(
    { length: count - start },
    (_, i) => (flow.fromMs + (start + i) * flow.bucketMs) / 1000,
  );
  const series = full.map((values) => values.slice(start));
  return {
    times,
    outcomes,
    series,
    totals: series.map((values) => values.reduce((a, b) => a + b, 0)),
    latest: series.map((values) => values.at(-1) ?? 0),
  };
}

/** Leads per minute by outcome over the minutes that hold data: one uPlot line per outcome, times in UTC. */
export class FlowChart {
  #plot: uPlot | null = null;
  #shape = '';
  #window: FlowWindow | null = null;
  readonly #observer: ResizeObserver;

  constructor(
    private readonly container: HTMLElement,
    private readonly summary: HTMLElement,
  ) {
    // Follows the panel's width (window resize, grid reflow, phone rotation) without a resize listener.
    this.#observer = new ResizeObserver(() => this.#resize());
    this.#observer.observe(container);
  }

  update(flow: Flow): void {
    const window = flowWindow(flow);
    this.#window = window;
    const data: uPlot.AlignedData = [window.times, ...window.series];
    const shape = `${window.outcomes.join(',')}:${window.times.length <= POINTS_UP_TO}`;
    if (this.#plot === null || shape !== this.#shape) {
      this.#plot?.destroy();
      this.#plot = new uPlot(this.#options(window), data, this.container);
      this.#shape = shape;
    } else this.#plot.setData(data);
    // Away from the cursor the legend shows each outcome's total over the window (uPlot's own is "--").
    if (this.#plot.cursor.idx == null) this.#plot.setLegend({ idxs: data.map(() => null) });

    const from = window.times[0];
    const to = window.times.at(-1);
    if (from === undefined || to === undefined) {
      this.summary.textContent = 'No minutes to show.';
      return;
    }
    this.container.dataset.from = isoAt(from);
    this.container.dataset.to = isoAt(to + flow.bucketMs / 1000);
    const totals = window.outcomes.map((outcome, i) => `${label(outcome)} ${window.totals[i]}`);
    const span = `${isoAt(from).slice(0, 16).replace('T', ' ')} to ${isoAt(to + flow.bucketMs / 1000).slice(11, 16)} UTC`;
    this.summary.textContent = `${span}: ${totals.join(', ') || 'no series'}.`;
  }

  destroy(): void {
    this.#observer.disconnect();
    this.#plot?.destroy();
    this.#plot = null;
    this.#window = null;
    this.summary.textContent = '';
    delete this.container.dataset.from;
    delete this.container.dataset.to;
  }

  #width(): number {
    return Math.max(200, Math.floor(this.container.clientWidth));
  }

  #resize(): void {
    if (this.#plot === null) return;
    const width = this.#width();
    if (width !== this.#plot.width) this.#plot.setSize({ width, height: HEIGHT });
  }

  #options(window: FlowWindow): uPlot.Options {
    const showPoints = window.times.length <= POINTS_UP_TO;
    return {
      width: this.#width(),
      height: HEIGHT,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC'),
      cursor: { drag: { x: false, y: false } },
      scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [
        {
          stroke: '#555',
          grid: { stroke: '#e5e7eb' },
          ticks: { stroke: '#d1d5db' },
          // Whole minutes only: the counts are per minute, and a 30 s tick would repeat its label.
          incrs: TIME_STEPS,
          values: (_u, splits) => splits.map(tickLabel),
        },
        {
          stroke: '#555',
          grid: { stroke: '#e5e7eb' },
          ticks: { stroke: '#d1d5db' },
          label: 'leads/min',
          // Whole leads only.
          incrs: COUNT_STEPS,
        },
      ],
      series: [
        {
          label: 'UTC',
          // Away from the cursor: the window the totals cover.
          value: (_u, seconds, _s, idx) => {
            const w = this.#window;
            if (idx == null || seconds == null) {
              const from = w?.times[0];
              const to = w?.times.at(-1);
              return from === undefined || to === undefined
                ? ''
                : `${tickLabel(from)}–${tickLabel(to)} (totals)`;
            }
            return isoAt(seconds).slice(0, 16).replace('T', ' ');
          },
        },
        ...window.outcomes.map((outcome, i) => ({
          label: label(outcome),
          stroke: COLOURS[outcome],
          width: 1.5,
          points: { show: showPoints, size: 5 },
          value: (_u: uPlot, value: number | null, _s: number, idx: number | null) =>
            idx == null ? String(this.#window?.totals[i] ?? 0) : String(value ?? 0),
        })),
      ],
    };
  }
}
