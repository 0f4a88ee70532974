import { byId, formatNumber, formatPercent, h } from '../dom';
import type { Caps, ErrorRate } from '../types';

function renderGauge(id: string, used: number, limit: number, unit: string): void {
  const meter = byId<HTMLMeterElement>(id);
  const max = limit > 0 ? limit : 1;
  meter.min = 0;
  meter.max = max;
  // The browser colours a meter by these: amber from 80% of the cap, red at the cap.
  meter.low = max * 0.8;
  meter.high = max * 0.95;
  meter.optimum = 0;
  meter.value = Math.min(Math.max(used, 0), max);
  const text = `${formatNumber(used)} / ${formatNumber(limit)} ${unit} (${formatPercent(limit > 0 ? used / limit : 0, 0)})`;
  meter.textContent = text;
  meter.title = text;
  byId(`${id}-text`).textContent = text;
}

/** The cycle, day and budget caps as gauges. */
export function renderCaps(caps: Caps): void {
  renderGauge('gauge-cycle', caps.cycle.lastCycleLeads, caps.cycle.ceiling, 'leads');
  renderGauge('gauge-daily', caps.daily.used, caps.daily.limit, 'leads');
  renderGauge('gauge-budget', caps.budget.used, caps.budget.limit, 'exposure');
  byId('caps-limits').textContent =
    `leads/cycle ${caps.cycle.leadsPerCycle} (hard max ${caps.cycle.hardMax}) · ` +
    `actions/cycle ${caps.actionsPerCycle.limit} (hard max ${caps.actionsPerCycle.hardMax}) · ` +
    `${caps.ratePerSecond} requests/s`;
}

/**
 * The error rate against its rollback threshold. The bar's scale is twice the threshold (or more when
 * the rate is higher), so the threshold marker sits mid-bar and a rate near it is easy to read.
 */
export function renderErrorRate(errorRate: ErrorRate): void {
  const container = byId('error-rate');
  const { rate, lowerBound, threshold } = errorRate;
  const scale = Math.min(1, Math.max(threshold * 2, rate, lowerBound, 0.01));
  const percentOf = (value: number) => `${Math.min(100, Math.max(0, (value / scale) * 100))}%`;

  const rateFill = h('div', { class: 'rate-fill' });
  rateFill.style.width = percentOf(rate);
  const boundFill = h('div', { class: 'rate-bound' });
  boundFill.style.width = percentOf(lowerBound);
  const marker = h('div', { class: 'rate-threshold' });
  marker.style.left = percentOf(threshold);
  const bar = h('div', {
    class: 'rate-bar',
    role: 'img',
    'aria-label': `error rate ${formatPercent(rate)}, lower bound ${formatPercent(lowerBound)}, rollback line ${formatPercent(threshold, 0)}`,
  });
  bar.append(rateFill, boundFill, marker);

  container.dataset.rollback = String(errorRate.rollback);
  container.dataset.over = String(rate > threshold);
  container.replaceChildren(
    h(
      'p',
      { class: 'rate-figures' },
      h('strong', { class: 'rate-value' }, formatPercent(rate)),
      ' errors · 95% lower bound ',
      h('strong', { class: 'rate-lower-bound' }, formatPercent(lowerBound)),
      ` · rollback line ${formatPercent(threshold, 0)}`,
    ),
    bar,
    h(
      'p',
      { class: 'rate-counts' },
      `${formatNumber(errorRate.failures)} failures / ${formatNumber(errorRate.requests)} requests`,
    ),
    ...(errorRate.reason ? [h('p', { class: 'rate-reason' }, errorRate.reason)] : []),
  );
}
