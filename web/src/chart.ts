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

const isoAt = (seconds: number) => new Date(seconds * 1000).toISOString();
/** Axis ticks as 24-hour UTC times, with the date at midnight. */
const tickLabel = (seconds: number) => {
  const iso = isoAt(seconds);
  return iso.slice(11, 16) === '00:00' ? iso.slice(5, 10) : iso.slice(11, 16);
};

/** Leads per minute by outcome over the last hours: one uPlot line per outcome, times in UTC. */
export class FlowChart {
  #plot: uPlot | null = null;
  #shape = '';
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
    const count = Math.max(0, Math.floor(flow.buckets));
    // uPlot's time scale counts in seconds.
    const times = Array.from({ length: count }, (_, i) => (flow.fromMs + i * flow.bucketMs) / 1000);
    // Only the outcomes the server counts: a missing one drawn as a flat zero would read as "none happened".
    const outcomes = FLOW_OUTCOMES.filter((outcome) => Array.isArray(flow.series[outcome]));
    const series = outcomes.map((outcome) => {
      const values = flow.series[outcome] ?? [];
      return Array.from({ length: count }, (_, i) => values[i] ?? 0);
    });
    const data: uPlot.AlignedData = [times, ...series];
    const shape = outcomes.join(',');
    if (this.#plot === null || shape !== this.#shape) {
      this.#plot?.destroy();
      this.#plot = new uPlot(this.#options(outcomes), data, this.container);
      this.#shape = shape;
    } else this.#plot.setData(data);

    const totals = outcomes.map((outcome, i) => {
      const sum = (series[i] ?? []).reduce((a, b) => a + b, 0);
      return `${outcome.replace('_', ' ')} ${sum}`;
    });
    const hours = Math.round((count * flow.bucketMs) / 3_600_000);
    this.summary.textContent = `Last ${hours} h: ${totals.join(', ') || 'no series'}.`;
  }

  destroy(): void {
    this.#observer.disconnect();
    this.#plot?.destroy();
    this.#plot = null;
    this.summary.textContent = '';
  }

  #width(): number {
    return Math.max(200, Math.floor(this.container.clientWidth));
  }

  #resize(): void {
    if (this.#plot === null) return;
    const width = this.#width();
    if (width !== this.#plot.width) this.#plot.setSize({ width, height: HEIGHT });
  }

  #options(outcomes: readonly FlowOutcome[]): uPlot.Options {
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
          values: (_u, splits) => splits.map(tickLabel),
        },
        { stroke: '#555', grid: { stroke: '#e5e7eb' }, ticks: { stroke: '#d1d5db' }, label: 'leads/min' },
      ],
      series: [
        {
          label: 'UTC',
          value: (_u, seconds) => (seconds == null ? '--' : isoAt(seconds).slice(0, 16).replace('T', ' ')),
        },
        ...outcomes.map((outcome) => ({
          label: outcome,
          stroke: COLOURS[outcome],
          width: 1.5,
          points: { show: false },
        })),
      ],
    };
  }
}
