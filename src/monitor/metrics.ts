import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import { readGoLiveAt, readMode } from '../guard/index.js';
import {
  type ErrorRateDecision,
  type ErrorRateRule,
  LEAD_STATES,
  type LeadState,
  MODES,
  type Mode,
  rampPosition,
  workerRestartRssBytes,
} from '../policy/index.js';
import {
  countLeadsByState,
  dailyUsage,
  lastLiveCycle,
  latestHeartbeat,
  type RequestClass,
  type RequestOutcome,
  type RequestRow,
  readConsistently,
  requestTotals,
  type Store,
  type StoreTransaction,
} from '../store/index.js';
import { currentErrorRate, errorRateRule } from './request-monitor.js';

/**
 * What the supervisor knows of its worker right now (null: none known). `pid` and `rssBytes` are the
 * worker running now (null between workers); `heartbeatSince` is what the heartbeat age counts from:
 * the last heartbeat of any of the supervisor's workers, else when it started the first one.
 */
export type WorkerProbe = () => {
  pid: number | null;
  rssBytes: number | null;
  heartbeatSince: number | null;
} | null;

/**
 * prom-client's default gauges named `*_total`: Prometheus keeps that suffix for counters, and
 * `promtool check metrics` flags these three. Each is the sum of the per-type gauge of the same name
 * without the suffix (`sum(valhalla_nodejs_active_handles)`), so they are dropped, not renamed.
 */
const TOTAL_NAMED_DEFAULT_GAUGES = [
  'valhalla_nodejs_active_handles_total',
  'valhalla_nodejs_active_requests_total',
  'valhalla_nodejs_active_resources_total',
] as const;

/** What a scrape endpoint needs: the text, read at call time, and its content type. */
export interface MetricsExposition {
  render(): Promise<string>;
  readonly contentType: string;
}

export interface Metrics extends MetricsExposition {
  /** The private registry (never prom-client's global one): several stores in one process stay apart. */
  readonly registry: Registry;
}

type RequestEndpoint = RequestRow['endpoint'];
interface RequestSeries {
  endpoint: RequestEndpoint;
  outcome: RequestOutcome;
  class: RequestClass;
}

/**
 * The leads endpoint's outcome × class pairs (a 429 is the only excluded request): each is exposed
 * from the start, at 0, so `rate()` sees the first request of a kind instead of a series appearing
 * at 1. The health and token endpoints' series appear with their first request.
 */
const REQUEST_SERIES: readonly RequestSeries[] = [
  { endpoint: 'leads', outcome: 'accepted', class: 'success' },
  // Answered, but the partner refused (or did not clearly answer) some of its leads.
  { endpoint: 'leads', outcome: 'accepted', class: 'failure' },
  { endpoint: 'leads', outcome: 'retryable', class: 'failure' },
  { endpoint: 'leads', outcome: 'retryable', class: 'excluded' },
  { endpoint: 'leads', outcome: 'auth', class: 'failure' },
  { endpoint: 'leads', outcome: 'permanent', class: 'failure' },
];

const CAPS = ['cycle', 'day', 'budget'] as const;
type CapName = (typeof CAPS)[number];

/** Everything one scrape shows, read in one pass so the metrics of a scrape agree with each other. */
interface Snapshot {
  leads: Partial<Record<LeadState, number>>;
  requests: (RequestSeries & { n: number })[];
  errorRate: ErrorRateDecision;
  mode: Mode;
  /** The ramp stage's leads/cycle ceiling; null in Phase 3 (there is no ramp). */
  rampCeiling: number | null;
  caps: Record<CapName, { used: number; limit: number }>;
  /**
   * What the heartbeat age counts from: the freshest heartbeat known (database or supervisor), or the
   * supervisor's start before the first; null with neither (no supervisor here, no heartbeat ever).
   */
  heartbeatAt: number | null;
  rssBytes: number | null;
  now: number;
}

/**
 * The Prometheus metrics of Valhalla. Every value is read from the database when scraped, not kept
 * in this process: any process (supervisor, dashboard, a standby runner) can serve them, and several
 * runners on one PostgreSQL database report the same numbers. One scrape costs nine small queries
 * (eight in Phase 3), shared by all the metrics of that scrape. Labels hold only fixed words (lead
 * state, endpoint, outcome, class, mode, cap): never anything from a lead.
 *
 * Create it once per process: prom-client's default process metrics (prefixed `valhalla_`, about the
 * serving process, not the worker) install their own observers each time.
 */
export function createMetrics(deps: {
  store: Store;
  config: Config;
  clock: Clock;
  worker?: WorkerProbe;
}): Metrics {
  const { config } = deps;
  const rule = errorRateRule(config);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'valhalla_' });
  for (const name of TOTAL_NAMED_DEFAULT_GAUGES) registry.removeSingleMetric(name);

  // Concurrent collect() calls of one scrape (prom-client starts them together) share one read.
  let pending: Promise<Snapshot> | null = null;
  const snapshot = (): Promise<Snapshot> => {
    pending ??= readSnapshot(deps, rule).finally(() => {
      pending = null;
    });
    return pending;
  };

  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (metric: Gauge<L>, s: Snapshot) => void,
  ): Gauge<L> =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        fill(this, s);
      },
    });

  gauge('valhalla_leads', 'Leads stored, by state (every state, 0 included).', ['state'], (m, s) => {
    for (const state of LEAD_STATES) m.set({ state }, s.leads[state] ?? 0);
  });

  new Counter<'endpoint' | 'outcome' | 'class'>({
    name: 'valhalla_requests_total',
    help: 'Outbound requests to the partner since the database was created, by endpoint (leads, health, token), outcome and how they count for the error rate (excluded: 429).',
    labelNames: ['endpoint', 'outcome', 'class'],
    registers: [registry],
    async collect() {
      const s = await snapshot();
      // The database holds the total; the counter is set to it (reset, then one increment per series).
      this.reset();
      for (const { n, ...labels } of s.requests) this.inc(labels, n);
    },
  });

  gauge(
    'valhalla_error_rate',
    'Failed / counted requests (429 excluded) over the error-rate window; 0 with no requests.',
    [],
    (m, s) => m.set(s.errorRate.rate),
  );
  gauge(
    'valhalla_error_rate_lower_bound',
    'One-sided 95% Wilson lower bound of the failure rate over the window (how sure the rate is; the rollback compares the rate itself).',
    [],
    (m, s) => m.set(s.errorRate.lowerBound),
  );
  gauge(
    'valhalla_error_rate_window_seconds',
    'Length of the error-rate window (it starts later for a while after a re-arm).',
    [],
    (m) => m.set(rule.windowMs / 1000),
  );
  gauge(
    'valhalla_error_rate_window_requests',
    'Counted requests (429 excluded) in the error-rate window.',
    [],
    (m, s) => m.set(s.errorRate.requests),
  );
  gauge('valhalla_error_rate_window_failures', 'Failed requests in the error-rate window.', [], (m, s) =>
    m.set(s.errorRate.failures),
  );
  gauge(
    'valhalla_error_rate_consecutive_failures',
    'Failed requests in a row at the end of the window.',
    [],
    (m, s) => m.set(s.errorRate.consecutiveFailures),
  );
  gauge(
    'valhalla_error_rate_rollback',
    'The error-rate rule applied to the window now: 1 = it calls for a rollback, 0 = not.',
    [],
    (m, s) => m.set(s.errorRate.rollback ? 1 : 0),
  );
  gauge(
    'valhalla_error_rate_tolerance',
    `The tolerated failure rate of the policy file (${rule.tolerance}).`,
    [],
    (m) => m.set(rule.tolerance),
  );

  gauge(
    'valhalla_mode',
    'The persisted mode: 1 for the mode in force, 0 for the others.',
    ['mode'],
    (m, s) => {
      for (const mode of MODES) m.set({ mode }, mode === s.mode ? 1 : 0);
    },
  );
  gauge('valhalla_phase', 'The phase this process runs in: 3 (DRY-RUN) or 4 (LIVE).', [], (m) =>
    m.set(config.phase),
  );
  gauge(
    'valhalla_ramp_stage',
    'Leads/cycle ceiling of the current ramp stage (1, 5, 10, then the configured cap); -1 in Phase 3, which has no ramp.',
    [],
    (m, s) => m.set(s.rampCeiling ?? -1),
  );
  gauge(
    'valhalla_cap_usage',
    'Use of a hard cap: cycle = leads claimed by the last live cycle, day = leads claimed today (UTC), budget = exposure (score x value) claimed today.',
    ['cap'],
    (m, s) => {
      for (const cap of CAPS) m.set({ cap }, s.caps[cap].used);
    },
  );
  gauge(
    'valhalla_cap_limit',
    `The limit of each cap: cycle = that cycle's ceiling, day = daily leads (${config.policy.dailyLeads}), budget = daily budget exposure (${config.policy.budgetExposure}).`,
    ['cap'],
    (m, s) => {
      for (const cap of CAPS) m.set({ cap }, s.caps[cap].limit);
    },
  );
  gauge(
    'valhalla_heartbeat_age_seconds',
    "Seconds since the worker's last heartbeat; before the first, since the supervisor started its first worker (absent only where no supervisor runs and no heartbeat was ever recorded).",
    [],
    (m, s) => {
      if (s.heartbeatAt === null) m.remove();
      else m.set(Math.max(0, (s.now - s.heartbeatAt) / 1000));
    },
  );
  gauge(
    'valhalla_heartbeat_limit_seconds',
    `Heartbeat age past which the supervisor counts the heartbeat missed (kills and replaces the worker, alerts, rolls back in Phase 4): the policy file's interval + grace (${config.policy.heartbeatIntervalSeconds} + ${config.policy.heartbeatGraceSeconds} s).`,
    [],
    (m) => m.set(config.policy.heartbeatIntervalSeconds + config.policy.heartbeatGraceSeconds),
  );
  gauge(
    'valhalla_worker_rss_bytes',
    "Resident memory of the worker (the supervisor's reading, else the last heartbeat's); absent until known.",
    [],
    (m, s) => {
      if (s.rssBytes === null) m.remove();
      else m.set(s.rssBytes);
    },
  );
  gauge(
    'valhalla_memory_limit_bytes',
    `Memory limit per process of the policy file (${config.policy.memoryPerProcessMb} MB): the worker's V8 heap limit (--max-old-space-size) and the service's memory limit.`,
    [],
    (m) => m.set(config.policy.memoryPerProcessMb * 1024 * 1024),
  );
  gauge(
    'valhalla_worker_rss_restart_bytes',
    "Worker RSS past which the supervisor restarts the worker: 70% of the memory limit per process, leaving the rest of the service's limit to the supervisor.",
    [],
    (m) => m.set(workerRestartRssBytes(config.policy.memoryPerProcessMb)),
  );

  return {
    registry,
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

async function readSnapshot(
  deps: { store: Store; config: Config; clock: Clock; worker?: WorkerProbe },
  rule: ErrorRateRule,
): Promise<Snapshot> {
  const { store, clock } = deps;
  const now = clock.now();
  // One snapshot for every figure of a scrape: a rollback committed between two reads would show the
  // mode rolled back beside the error rate from before the request that caused it.
  return readConsistently(store, (db) => snapshotAt(db, deps, rule, now));
}

async function snapshotAt(
  db: StoreTransaction,
  deps: { config: Config; worker?: WorkerProbe },
  rule: ErrorRateRule,
  now: number,
): Promise<Snapshot> {
  const { config } = deps;
  const leads = await countLeadsByState(db);
  const requests = sumRequestTotals(await requestTotals(db));
  const errorRate = await currentErrorRate(db, rule, now);
  const mode = await readMode(db);
  const rampCeiling =
    config.phase === 4
      ? rampPosition(config.policy.rampStages, await readGoLiveAt(db), now, config.limits.leadsPerCycle)
          .ceiling
      : null;
  const lastCycle = await lastLiveCycle(db);
  const today = await dailyUsage(db, now);
  const beat = await latestHeartbeat(db);

  const worker = deps.worker?.() ?? null;
  const workerRunning = worker !== null && worker.pid !== null;
  // The supervisor's time counts whether or not a worker runs right now: between a dead worker and
  // its replacement (a crash backoff, say) the heartbeat ages on.
  const beats = [beat?.at, worker?.heartbeatSince].filter((at): at is number => typeof at === 'number');
  return {
    leads,
    requests,
    errorRate,
    mode,
    rampCeiling,
    caps: {
      // No live cycle yet: nothing used of the ceiling the next one would have.
      cycle: lastCycle
        ? { used: lastCycle.claimed, limit: lastCycle.ceiling }
        : { used: 0, limit: rampCeiling ?? config.limits.leadsPerCycle },
      day: { used: today.leads, limit: config.policy.dailyLeads },
      budget: { used: today.exposure, limit: config.policy.budgetExposure },
    },
    heartbeatAt: beats.length === 0 ? null : Math.max(...beats),
    rssBytes: workerRunning ? worker.rssBytes : (beat?.rss_bytes ?? null),
    now,
  };
}

/** The store's totals are also per HTTP status; the metric is not (the status is in the logs). */
function sumRequestTotals(rows: readonly (RequestSeries & { n: number })[]): Snapshot['requests'] {
  const key = (s: RequestSeries) => `${s.endpoint}/${s.outcome}/${s.class}`;
  const sums = new Map<string, RequestSeries & { n: number }>();
  for (const series of REQUEST_SERIES) sums.set(key(series), { ...series, n: 0 });
  for (const row of rows) {
    const sum = sums.get(key(row)) ?? {
      endpoint: row.endpoint,
      outcome: row.outcome,
      class: row.class,
      n: 0,
    };
    sum.n += row.n;
    sums.set(key(row), sum);
  }
  return [...sums.values()];
}
