import { SIMULATED_STABILITY_CHECKS } from './simulate-phase3.js';
import type { SimulationResult } from './simulate-result.js';

const number = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 2 });

/** The simulation as text: what Phase 4 would do, day by day, and the verdicts. */
export function formatSimulation(r: SimulationResult): string[] {
  const o = r.options;
  const lines = [
    `Simulated ${o.hours} h from ${o.start} (virtual time, ${number(r.runMs / 1000)} s real): ${number(o.leadsPerHour)} leads/hour, partner: ${o.faults} (${r.faultsDescribed}), seed ${o.seed}; partner profile ${r.profile.name} (sha256 ${r.profile.sha256.slice(0, 12)}…)`,
    `Limits: ${r.limits.leadsPerCycle} leads/cycle, ${r.limits.actionsPerCycle} actions/cycle, ${r.limits.rateLimitPerSecond} requests/s, a cycle every ${r.limits.cycleIntervalSeconds} s, ${number(r.limits.dailyLeads)} leads/day, budget ${number(r.limits.budget)}/day`,
    `Most actions in a cycle: ${Math.max(0, ...r.cycles.map((c) => c.actions))} of ${r.limits.actionsPerCycle}`,
    '',
    'Ramp (first live cycle of each stage):',
    ...r.ramp.map(
      (s) =>
        `  stage ${s.stage} from hour ${number(s.hour)} (${s.firstAt}): ceiling ${s.ceiling}, most claimed in a cycle ${s.maxClaimed}${s.maxClaimed > s.ceiling ? '  ← OVER THE CEILING' : ''}`,
    ),
    ...(r.ramp.length === 0 ? ['  no live cycle ran'] : []),
    '',
    'Per UTC day:',
    ...r.days.map(
      (d) =>
        `  ${d.day}: exported ${number(d.exported)} (the partner's record: ${number(d.atPartner)}), claimed ${number(d.claimed)} of ${number(r.limits.dailyLeads)}, exposure ${number(d.exposure)} — ${d.dailyCapHeld ? 'caps held' : 'CAP EXCEEDED'}`,
    ),
    '',
    r.rollbacks.length === 0 ? 'Rollbacks: none' : `Rollbacks: ${r.rollbacks.length}`,
    ...r.rollbacks.map((b) => `  hour ${number(b.hour)} (${b.at}): ${b.reason}`),
    ...(r.pauses.length === 0
      ? []
      : [
          `Paused by the product: ${r.pauses.length} (nobody resumes in a simulation)`,
          ...r.pauses.map((p) => `  hour ${number(p.hour)} (${p.at}): ${p.reason}`),
        ]),
    '',
    `Totals: ingested ${number(r.totals.ingested)}, exported ${number(r.totals.exported)}, quarantined ${number(r.totals.quarantined)}, partner requests ${number(r.totals.requests)} (${number(r.totals.failedRequests)} failed, ${number(r.totals.rateLimited)} answered 429), tokens issued ${number(r.totals.tokensIssued)}`,
    `Leads by state: ${Object.entries(r.totals.leadsByState)
      .map(([state, n]) => `${state} ${number(n)}`)
      .join(', ')}`,
    `Against the partner's own record: ${r.reconciliation.ok ? 'OK' : 'PROBLEM'} — sent twice ${r.reconciliation.sentTwice}, unexpected at the partner ${r.reconciliation.unexpected}, exported but not at the partner ${r.reconciliation.exportedNotAtPartner}, lost ${r.reconciliation.lost}, replays with other leads ${r.reconciliation.replayMismatches}, most requests in any 1 s ${r.reconciliation.mostRequestsInAnySecond} (over the last ${number(r.reconciliation.rateCheckedRequests)} of ${number(r.totals.requests)} requests)`,
    '',
    `Stability a ${o.hours} h Phase 3 would get: ${r.stability.passed ? 'PASSED' : 'FAILED'}`,
    ...r.stability.checks.map(
      (c) =>
        `  ${c.passed ? 'ok  ' : 'FAIL'} ${c.name}: ${c.figure}${c.passed ? '' : ` — ${c.detail}`}${SIMULATED_STABILITY_CHECKS.includes(c.name) ? '  (simulated: holds by construction)' : ''}`,
    ),
    `  (${SIMULATED_STABILITY_CHECKS.join(', ')}: the simulation writes their heartbeats itself; only a real run, \`valhalla stability verify\`, measures them)`,
  ];
  return lines;
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** One line of a chart. Drawn in the order given: a later series is painted over an earlier one. */
interface ChartSeries {
  name: string;
  colour: string;
  points: [number, number][];
  step?: boolean;
  /** An SVG dash pattern: a series that often equals another is dashed and drawn over it, so both show. */
  dash?: string;
  dashOffset?: number;
  width?: number;
}

/** The dash length of lines that share the baseline. */
const FLAT_DASH = 8;

/** Hours between axis ticks: about six ticks whatever the length of the run. */
function tickStep(hours: number): number {
  return [1, 2, 3, 6, 12, 24, 48, 168].find((step) => hours / step <= 8) ?? Math.ceil(hours / 8);
}

const swatch = (s: ChartSeries) =>
  `<svg class="swatch" viewBox="0 0 24 8" aria-hidden="true"><line x1="0" x2="24" y1="4" y2="4" stroke="${s.colour}" stroke-width="${s.width ?? 1.5}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/></svg>`;

/** A line chart of series over the simulated hours, as inline SVG (the report loads nothing). */
function lineChart(
  title: string,
  hours: number,
  series: ChartSeries[],
  markers: { hour: number; label: string }[],
): string {
  // The right margin holds the last tick's label whole.
  const [w, h, left, right, bottom, top] = [900, 240, 48, 24, 28, 10];
  const maxY = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (hour: number) => left + (hour / hours) * (w - left - right);
  const y = (v: number) => top + (1 - v / maxY) * (h - top - bottom);
  // Lines at zero all along lie on one another: they share the baseline in turns (interleaved dashes),
  // so each shows, and the legend says they stayed at zero.
  const flat = series.filter((s) => s.points.every(([, v]) => v === 0));
  const drawn = series.map((s) => {
    const turn = flat.indexOf(s);
    if (turn === -1 || flat.length < 2) return s;
    return { ...s, dash: `${FLAT_DASH} ${FLAT_DASH * (flat.length - 1)}`, dashOffset: -turn * FLAT_DASH };
  });
  const paths = drawn.map((s) => {
    const d = s.points
      .map(([hx, v], i) => {
        if (i === 0) return `M${x(hx).toFixed(1)},${y(v).toFixed(1)}`;
        return s.step ? `H${x(hx).toFixed(1)}V${y(v).toFixed(1)}` : `L${x(hx).toFixed(1)},${y(v).toFixed(1)}`;
      })
      .join('');
    const dash = `${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}${s.dashOffset ? ` stroke-dashoffset="${s.dashOffset}"` : ''}`;
    return `<path data-series="${escapeHtml(s.name)}" d="${d}" fill="none" stroke="${s.colour}" stroke-width="${s.width ?? 1.5}"${dash}><title>${escapeHtml(s.name)}</title></path>`;
  });
  const step = tickStep(hours);
  const tickHours = Array.from({ length: Math.floor(hours / step) + 1 }, (_, i) => i * step);
  if (tickHours.at(-1) !== hours) tickHours.push(hours);
  const ticks = tickHours.map((hx, i) => {
    // The first and last labels lean inwards, so neither is cut at the edge.
    const anchor = i === 0 ? 'start' : hx === hours ? 'end' : 'middle';
    return `<line x1="${x(hx)}" x2="${x(hx)}" y1="${top}" y2="${h - bottom}" stroke="#e5e7eb"/><text x="${x(hx)}" y="${h - 8}" text-anchor="${anchor}">${number(hx)} h</text>`;
  });
  const marks = markers.map((m) => {
    const nearEnd = x(m.hour) > w - right - 80;
    return `<line x1="${x(m.hour)}" x2="${x(m.hour)}" y1="${top}" y2="${h - bottom}" stroke="#b91c1c" stroke-dasharray="4 3"/><text x="${x(m.hour) + (nearEnd ? -4 : 4)}" y="${top + 12}" fill="#b91c1c" text-anchor="${nearEnd ? 'end' : 'start'}">${escapeHtml(m.label)}</text>`;
  });
  const legend = series
    .map(
      (s) =>
        `<li data-series="${escapeHtml(s.name)}">${swatch(s)} ${escapeHtml(s.name)}${flat.includes(s) ? ' <span class="muted">(0 throughout)</span>' : ''}</li>`,
    )
    .join('');
  return `<figure><figcaption>${escapeHtml(title)}</figcaption><svg class="chart" viewBox="0 0 ${w} ${h}" role="img" aria-label="${escapeHtml(title)}">${ticks.join('')}<text x="4" y="${top + 10}">${number(maxY)}</text><text x="4" y="${h - bottom}">0</text>${paths.join('')}${marks.join('')}</svg><ul class="legend">${legend}</ul></figure>`;
}

/** A table cell's text: a number as the report writes numbers, any text escaped. */
const text = (c: string | number) => escapeHtml(typeof c === 'number' ? number(c) : c);

/**
 * A table; on a narrow screen each row becomes a block of labelled lines (each cell carries its
 * column's name), so no column is cut or hidden behind a sideways scroll.
 */
function table(head: string[], rows: (string | number)[][]): string {
  return `<div class="table-wrap"><table><thead><tr>${head.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (r) =>
        `<tr>${r.map((c, i) => `<td data-label="${escapeHtml(head[i] ?? '')}">${text(c)}</td>`).join('')}</tr>`,
    )
    .join('')}</tbody></table></div>`;
}

/** A single row of figures as name/value lines: it fits a phone, where five columns side by side do not. */
function figures(pairs: [string, string | number][]): string {
  return `<table class="figures"><tbody>${pairs
    .map(([name, value]) => `<tr><th scope="row">${escapeHtml(name)}</th><td>${text(value)}</td></tr>`)
    .join('')}</tbody></table>`;
}

/** The stability checks; a detail column only when a check failed (a passed one has nothing to add). */
function stabilityTable(checks: SimulationResult['stability']['checks']): string {
  const anyFailed = checks.some((c) => !c.passed);
  return table(
    anyFailed ? ['check', 'result', 'figure', 'detail'] : ['check', 'result', 'figure'],
    checks.map((c) => {
      const row = [
        SIMULATED_STABILITY_CHECKS.includes(c.name) ? `${c.name} (simulated)` : c.name,
        c.passed ? 'ok' : 'FAILED',
        c.figure,
      ];
      return anyFailed ? [...row, c.passed ? '' : c.detail] : row;
    }),
  );
}

/** The report as one self-contained HTML page (inline CSS and SVG; no script, nothing fetched). */
export function simulationHtml(r: SimulationResult): string {
  const o = r.options;
  const live = r.cycles.filter((c) => c.kind === 'live');
  const perHour = new Map<
    number,
    { claimed: number; accepted: number; quarantined: number; dryRun: number }
  >();
  for (const c of r.cycles) {
    const hour = Math.floor(c.hour);
    const bucket = perHour.get(hour) ?? { claimed: 0, accepted: 0, quarantined: 0, dryRun: 0 };
    bucket.claimed += c.claimed;
    bucket.accepted += c.accepted;
    bucket.quarantined += c.quarantined;
    bucket.dryRun += c.dryRun;
    perHour.set(hour, bucket);
  }
  const hourly = [...perHour.entries()].sort((a, b) => a[0] - b[0]);
  const markers = r.rollbacks.map((b) => ({ hour: b.hour, label: 'rollback' }));
  const charts = [
    lineChart(
      'Leads claimed per live cycle, against the cycle ceiling (ramp stages)',
      o.hours,
      // Claimed often equals the ceiling: the ceiling is drawn over it, dashed, so both lines show.
      [
        { name: 'claimed', colour: '#1d4ed8', points: live.map((c) => [c.hour, c.claimed]), width: 2 },
        {
          name: 'ceiling',
          colour: '#d97706',
          points: live.map((c) => [c.hour, c.ceiling]),
          step: true,
          dash: '8 6',
          width: 2,
        },
      ],
      markers,
    ),
    lineChart(
      'Leads per hour by outcome',
      o.hours,
      [
        { name: 'exported', colour: '#15803d', points: hourly.map(([hx, b]) => [hx, b.accepted]) },
        { name: 'quarantined', colour: '#b45309', points: hourly.map(([hx, b]) => [hx, b.quarantined]) },
        {
          name: 'dry run (after a rollback)',
          colour: '#7c3aed',
          points: hourly.map(([hx, b]) => [hx, b.dryRun]),
        },
      ],
      markers,
    ),
  ];
  const verdict = r.reconciliation.ok ? 'ok' : 'problem';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Valhalla simulation: ${escapeHtml(`${o.hours} h, ${o.faults}`)}</title>
<style>
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;padding:0 12px;color:#111827;overflow-wrap:anywhere}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
.table-wrap{max-width:100%;overflow-x:auto}table{border-collapse:collapse;margin:8px 0}
@media (max-width:600px){.table-wrap table,.table-wrap tbody,.table-wrap tr,.table-wrap td{display:block;width:100%}.table-wrap thead{display:none}.table-wrap tr{margin:0 0 8px;border:1px solid #e5e7eb}.table-wrap td{border:0;border-bottom:1px solid #f3f4f6;display:flex;gap:8px;overflow-wrap:anywhere}.table-wrap td::before{content:attr(data-label);flex:0 0 45%;color:#4b5563}}
td,th{border:1px solid #e5e7eb;padding:3px 8px;text-align:left;vertical-align:top;overflow-wrap:normal}th{background:#f3f4f6}
.figures th{font-weight:400}.figures td{font-variant-numeric:tabular-nums}
figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:4px}svg.chart{display:block;width:100%;height:auto;font-size:11px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;list-style:none;margin:4px 0 0;padding:0}.swatch{width:24px;height:8px;vertical-align:middle}
.ok{color:#15803d;font-weight:600}.problem{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
</style></head><body>
<h1>Valhalla simulation: what Phase 4 would do</h1>
<p>${escapeHtml(`${o.hours} h of policy time from ${o.start}, ${number(o.leadsPerHour)} leads an hour, partner: ${o.faults} (${r.faultsDescribed}), seed ${o.seed}. The real engine under a virtual clock against the in-process sandbox partner playing the partner profile ${r.profile.name} (sha256 ${r.profile.sha256}); ${number(r.runMs / 1000)} s of real time.`)}</p>
<p>${escapeHtml(`Limits: ${r.limits.leadsPerCycle} leads/cycle, ${r.limits.actionsPerCycle} actions/cycle, a cycle every ${r.limits.cycleIntervalSeconds} s, ${number(r.limits.dailyLeads)} leads/day, budget ${number(r.limits.budget)}/day.`)}</p>
<h2>Against the partner's own record: <span class="${verdict}">${verdict === 'ok' ? 'OK' : 'PROBLEM'}</span></h2>
${figures([
  ['sent twice', r.reconciliation.sentTwice],
  ['unexpected at the partner', r.reconciliation.unexpected],
  ['exported, not at the partner', r.reconciliation.exportedNotAtPartner],
  ['lost', r.reconciliation.lost],
  ['most requests in any 1 s', r.reconciliation.mostRequestsInAnySecond],
])}
${charts.join('\n')}
<h2>Ramp stages</h2>
${table(
  ['stage', 'from hour', 'first cycle', 'ceiling', 'most claimed in a cycle'],
  r.ramp.map((s) => [s.stage, s.hour, s.firstAt, s.ceiling, s.maxClaimed]),
)}
<h2>Per UTC day</h2>
${table(
  ['day', 'exported', 'accepted at the partner', 'claimed', 'daily cap', 'exposure', 'caps'],
  r.days.map((d) => [
    d.day,
    d.exported,
    d.atPartner,
    d.claimed,
    r.limits.dailyLeads,
    d.exposure,
    d.dailyCapHeld ? 'held' : 'EXCEEDED',
  ]),
)}
<h2>Rollbacks</h2>
${
  r.rollbacks.length === 0
    ? '<p>None.</p>'
    : table(
        ['hour', 'at', 'reason'],
        r.rollbacks.map((b) => [b.hour, b.at, b.reason]),
      )
}
<h2>Totals</h2>
${figures([
  ['ingested', r.totals.ingested],
  ['exported', r.totals.exported],
  ['quarantined', r.totals.quarantined],
  ['partner requests', r.totals.requests],
  ['failed requests', r.totals.failedRequests],
])}
<h3>Leads by state</h3>
${figures(Object.entries(r.totals.leadsByState))}
<h2>Stability a ${o.hours} h Phase 3 would get: <span class="${r.stability.passed ? 'ok' : 'problem'}">${r.stability.passed ? 'PASSED' : 'FAILED'}</span></h2>
${stabilityTable(r.stability.checks)}
<p class="muted">${escapeHtml(SIMULATED_STABILITY_CHECKS.join(', '))}: the simulation writes their heartbeats itself, so they hold by construction; only a real run (valhalla stability verify) measures them.</p>
</body></html>
`;
}
