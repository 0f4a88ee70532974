import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock/index.js';
import { type Config, loadConfig } from '../../src/config/index.js';
import { ERROR_WINDOW_SINCE_KEY, writeGoLiveAt, writeMode } from '../../src/guard/index.js';
import {
  createMetrics,
  type MetricsServer,
  startMetricsServer,
  type WorkerProbe,
} from '../../src/monitor/index.js';
import { LEAD_STATES, type LeadState, wilsonLowerBound } from '../../src/policy/index.js';
import {
  createCycle,
  createDelivery,
  createIngestRun,
  finishCycle,
  insertLeadsSkippingDuplicates,
  type NewLead,
  openStore,
  type RequestClass,
  type RequestOutcome,
  recordHeartbeat,
  recordRequest,
  type Store,
  setRuntimeValue,
} from '../../src/store/index.js';
import { keyHex } from '../../src/store/leads.js';
import { type Backend, backends, dropTestSchemas } from '../support/backends.js';
import { testKey } from '../support/keys.js';
import { tempDir } from '../support/tmp.js';
import { HOUR, NOW } from '../support/world.js';

const list = await backends();
afterAll(dropTestSchemas);
const MB = 1024 * 1024;

const LIVE_ENV = {
  VALHALLA_PHASE: '4',
  VALHALLA_REAL_DATA_INGEST: '1',
  VALHALLA_DRY_RUN: '0',
  VALHALLA_DISABLE_OUTBOUND: '0',
  VALHALLA_PARTNER_URL: 'https://partner.example.test',
  VALHALLA_PARTNER_TOKEN_URL: 'https://partner.example.test/oauth/token',
  VALHALLA_PARTNER_CLIENT_ID: 'valhalla',
  VALHALLA_PARTNER_CLIENT_SECRET: 'partner-client-secret-value',
};

/** Recognisable PII: none of it may reach the exposition. */
const PEOPLE = [
  {
    name: 'Astrid Lindqvist',
    email: 'astrid.lindqvist@nordlys.example',
    phone: '+46701234567',
    company: 'Nordlys AB',
  },
  {
    name: 'Bartholomew Quince',
    email: 'b.quince@quince-bakery.example',
    phone: '+442071234567',
    company: 'Quince Bakery',
  },
  {
    name: 'Chiara Bellandi',
    email: 'chiara@bellandi-studio.example',
    phone: '+390612345678',
    company: 'Bellandi Studio',
  },
];

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format, as far as Valhalla's metrics use it. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key!] = value!;
    }
    const raw = match[3]!;
    samples.push({ name: match[1]!, labels, value: /^nan$/i.test(raw) ? Number.NaN : Number(raw) });
  }
  return samples;
}

class Scrape {
  readonly samples: Sample[];
  constructor(readonly text: string) {
    this.samples = parseExposition(text);
  }
  /** The one sample of `name` with exactly these labels. */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.samples.filter(
      (s) =>
        s.name === name &&
        Object.keys(s.labels).length === Object.keys(labels).length &&
        Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    if (found.length !== 1) throw new Error(`${found.length} samples of ${name}${JSON.stringify(labels)}`);
    return found[0]!.value;
  }
  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

describe.each(list)('metrics on $name', (backend: Backend) => {
  const releasers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const release of releasers.splice(0).reverse()) await release();
  });

  async function world(options: { phase?: 3 | 4; worker?: WorkerProbe } = {}) {
    const config: Config = loadConfig({
      cwd: tempDir(),
      env: {
        VALHALLA_LOG_LEVEL: 'silent',
        ...((options.phase ?? 4) === 4 ? LIVE_ENV : { VALHALLA_PHASE: '3' }),
      },
    });
    const store = await openStore(backend.target());
    releasers.push(() => store.close());
    const clock = new ManualClock(NOW);
    const metrics = createMetrics({
      store,
      config,
      clock,
      ...(options.worker ? { worker: options.worker } : {}),
    });
    const server = await startMetricsServer({
      render: metrics.render,
      contentType: metrics.contentType,
      port: 0,
    });
    releasers.push(() => server.close());
    const scrape = async (): Promise<Scrape> => {
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(metrics.contentType);
      return new Scrape(await response.text());
    };
    return { config, store, clock, server, scrape };
  }

  /** Leads in the given states, with recognisable PII; returns their ids in order. */
  async function seedLeads(store: Store, states: LeadState[]): Promise<number[]> {
    const runId = await createIngestRun(store.db, {
      startedAt: NOW - HOUR,
      source: 'people.csv',
      format: 'csv',
      operator: 'test',
    });
    const rows: NewLead[] = states.map((state, i) => {
      const person = PEOPLE[i % PEOPLE.length]!;
      const email = `${i}.${person.email}`;
      const externalId = `crm-${person.name.replace(' ', '-')}-${i}`;
      return {
        dedup_key: testKey(email),
        email_key: testKey(email),
        external_id_key: testKey(externalId),
        external_id: externalId,
        name: person.name,
        email,
        phone: person.phone,
        company: person.company,
        score: 80,
        source_ts: NOW - 2 * HOUR,
        value: 1_000,
        state,
        state_reason: null,
        ingested_at: NOW - HOUR,
        updated_at: NOW - HOUR,
        exported_at: state === 'exported' ? NOW - HOUR : null,
        run_id: runId,
        source_line: i + 1,
      };
    });
    const inserted = await insertLeadsSkippingDuplicates(store, rows);
    return rows.map((r) => inserted.get(r.dedup_key)!);
  }

  /** A finished live cycle (ceiling 5) that claimed these leads into one delivery; returns the delivery. */
  async function liveCycle(store: Store, leadIds: number[]): Promise<number> {
    const cycleId = await createCycle(store.db, {
      startedAt: NOW - 10 * 60_000,
      phase: 4,
      kind: 'live',
      rampStage: 2,
      ceiling: 5,
      limitedBy: 'ramp_stage',
    });
    const deliveryId = await store.db.transaction().execute((trx) =>
      createDelivery(
        trx,
        {
          batchKey: `batch-${cycleId}`,
          cycleId,
          kind: 'live',
          payloadSha256: '0'.repeat(64),
          now: NOW - 10 * 60_000,
        },
        leadIds.map((id) => ({ id, leadKey: `lead-${id}`, exposure: 80 * 1_000 })),
      ),
    );
    await finishCycle(store.db, cycleId, {
      finishedAt: NOW - 9 * 60_000,
      claimed: leadIds.length,
      actions: 1,
      summary: {},
    });
    return deliveryId;
  }

  async function requests(
    store: Store,
    deliveryId: number,
    at: number,
    outcomes: [RequestOutcome, RequestClass, number | null][],
  ): Promise<void> {
    let attempt = 0;
    for (const [outcome, klass, status] of outcomes) {
      await recordRequest(store.db, {
        at: at + attempt * 1_000,
        endpoint: 'leads',
        deliveryId,
        attempt: ++attempt,
        outcome,
        status,
        class: klass,
        ms: 120,
      });
    }
  }

  const accepted = (n: number): [RequestOutcome, RequestClass, number | null][] =>
    Array.from({ length: n }, () => ['accepted', 'success', 200]);

  it('shows the database: leads per state, requests by outcome, the error rate, mode, ramp, caps, heartbeat', async () => {
    const { store, clock, scrape } = await world();
    const ids = await seedLeads(store, [
      'pending',
      'pending',
      'pending',
      'pending',
      'exported',
      'exported',
      'quarantined',
      'below_threshold',
      'expired',
    ]);
    const deliveryId = await liveCycle(store, ids.slice(0, 2));
    // Outside the window (2 h ago): in the totals, not in the rate.
    await requests(store, deliveryId, NOW - 2 * HOUR, [
      ['retryable', 'failure', 503],
      ['retryable', 'failure', 503],
      ['retryable', 'failure', null],
      ['auth', 'failure', 401],
      ['permanent', 'failure', 400],
    ]);
    // The health check and the token endpoint have series of their own.
    await recordRequest(store.db, {
      at: NOW - 2 * HOUR,
      endpoint: 'health',
      deliveryId: null,
      attempt: null,
      outcome: 'retryable',
      status: 503,
      class: 'failure',
      ms: 30,
    });
    await recordRequest(store.db, {
      at: NOW - 2 * HOUR,
      endpoint: 'token',
      deliveryId: null,
      attempt: null,
      outcome: 'accepted',
      status: 200,
      class: 'success',
      ms: 40,
    });
    // In the window: 1 failure in 20 counted requests, plus two 429s that do not count.
    await requests(store, deliveryId, NOW - 30 * 60_000, [
      ...accepted(10),
      ['retryable', 'failure', 503],
      ['retryable', 'excluded', 429],
      ['retryable', 'excluded', 429],
      ...accepted(9),
    ]);
    await writeMode(store.db, 'paused', NOW);
    await writeGoLiveAt(store.db, NOW - 3 * HOUR);
    await recordHeartbeat(store.db, {
      at: NOW - 12_000,
      runner: 'host-a:4242',
      pid: 4242,
      worker_started_at: NOW - HOUR,
      phase: 4,
      rss_bytes: 200 * MB,
      heap_used_bytes: 90 * MB,
      state: 'idle',
      cycle_id: null,
    });

    const s = await scrape();
    const expected: Record<LeadState, number> = {
      pending: 2,
      in_flight: 2,
      exported: 2,
      below_threshold: 1,
      expired: 1,
      quarantined: 1,
      archived: 0,
    };
    for (const state of LEAD_STATES)
      expect(s.value('valhalla_leads', { state }), state).toBe(expected[state]);

    expect(
      s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'accepted', class: 'success' }),
    ).toBe(19);
    expect(
      s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'retryable', class: 'failure' }),
    ).toBe(4);
    expect(
      s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'retryable', class: 'excluded' }),
    ).toBe(2);
    expect(s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'auth', class: 'failure' })).toBe(
      1,
    );
    expect(
      s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'permanent', class: 'failure' }),
    ).toBe(1);
    expect(
      s.value('valhalla_requests_total', { endpoint: 'health', outcome: 'retryable', class: 'failure' }),
    ).toBe(1);
    expect(
      s.value('valhalla_requests_total', { endpoint: 'token', outcome: 'accepted', class: 'success' }),
    ).toBe(1);
    // Answered, but the partner did not take every lead: its own series, at 0 until the first.
    expect(
      s.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'accepted', class: 'failure' }),
    ).toBe(0);
    // Only the leads endpoint's series are there before their first request.
    expect(s.samples.filter((x) => x.name === 'valhalla_requests_total')).toHaveLength(8);

    expect(s.value('valhalla_error_rate_window_requests')).toBe(20);
    expect(s.value('valhalla_error_rate_window_failures')).toBe(1);
    expect(s.value('valhalla_error_rate')).toBeCloseTo(0.05, 10);
    expect(s.value('valhalla_error_rate_lower_bound')).toBeCloseTo(wilsonLowerBound(1, 20), 10);
    expect(s.value('valhalla_error_rate_consecutive_failures')).toBe(0);
    expect(s.value('valhalla_error_rate_rollback')).toBe(0);
    expect(s.value('valhalla_error_rate_tolerance')).toBe(0.1);
    expect(s.value('valhalla_error_rate_window_seconds')).toBe(3600);

    expect(s.value('valhalla_mode', { mode: 'live' })).toBe(0);
    expect(s.value('valhalla_mode', { mode: 'paused' })).toBe(1);
    expect(s.value('valhalla_mode', { mode: 'rolled_back' })).toBe(0);
    expect(s.value('valhalla_phase')).toBe(4);
    // 3 h after go-live: stage 2 (hours 2–6), 5 leads per cycle.
    expect(s.value('valhalla_ramp_stage')).toBe(5);

    expect(s.value('valhalla_cap_usage', { cap: 'cycle' })).toBe(2);
    expect(s.value('valhalla_cap_limit', { cap: 'cycle' })).toBe(5);
    expect(s.value('valhalla_cap_usage', { cap: 'day' })).toBe(2);
    expect(s.value('valhalla_cap_limit', { cap: 'day' })).toBe(10_000);
    expect(s.value('valhalla_cap_usage', { cap: 'budget' })).toBe(2 * 80 * 1_000);
    expect(s.value('valhalla_cap_limit', { cap: 'budget' })).toBe(50_000_000);

    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(12);
    expect(s.value('valhalla_worker_rss_bytes')).toBe(200 * MB);
    expect(s.value('valhalla_memory_limit_bytes')).toBe(512 * MB);
    // prom-client's process metrics, on the same private registry, with the prefix.
    expect(s.has('valhalla_process_resident_memory_bytes')).toBe(true);
    expect(s.has('process_resident_memory_bytes')).toBe(false);

    // Read at scrape time: the next scrape sees the clock and the database as they are then.
    clock.advance(22 * HOUR);
    await writeMode(store.db, 'rolled_back', clock.now());
    const later = await scrape();
    expect(later.value('valhalla_heartbeat_age_seconds')).toBe(12 + 22 * 3600);
    // 25 h after go-live: the last stage, the configured cap.
    expect(later.value('valhalla_ramp_stage')).toBe(25);
    expect(later.value('valhalla_mode', { mode: 'rolled_back' })).toBe(1);
    expect(later.value('valhalla_mode', { mode: 'paused' })).toBe(0);
    // A new UTC day: nothing used of the daily caps yet; the last live cycle is still the last one.
    expect(later.value('valhalla_cap_usage', { cap: 'day' })).toBe(0);
    expect(later.value('valhalla_cap_usage', { cap: 'budget' })).toBe(0);
    expect(later.value('valhalla_cap_usage', { cap: 'cycle' })).toBe(2);
    // The window has moved past every request; the totals keep them.
    expect(later.value('valhalla_error_rate_window_requests')).toBe(0);
    expect(later.value('valhalla_error_rate')).toBe(0);
    expect(
      later.value('valhalla_requests_total', { endpoint: 'leads', outcome: 'accepted', class: 'success' }),
    ).toBe(19);
  });

  it('three failed requests in a row call for a rollback; 1 failure in 20 does not; a re-arm starts a fresh window', async () => {
    const { store, clock, scrape } = await world();
    const ids = await seedLeads(store, ['pending']);
    const deliveryId = await liveCycle(store, ids);

    await requests(store, deliveryId, NOW - 20 * 60_000, [...accepted(19), ['retryable', 'failure', 503]]);
    let s = await scrape();
    expect(s.value('valhalla_error_rate_window_requests')).toBe(20);
    expect(s.value('valhalla_error_rate_consecutive_failures')).toBe(1);
    expect(s.value('valhalla_error_rate_rollback')).toBe(0);

    await requests(store, deliveryId, NOW - 60_000, [
      ['retryable', 'failure', null],
      ['auth', 'failure', 401],
    ]);
    s = await scrape();
    expect(s.value('valhalla_error_rate_window_requests')).toBe(22);
    expect(s.value('valhalla_error_rate_window_failures')).toBe(3);
    expect(s.value('valhalla_error_rate_consecutive_failures')).toBe(3);
    expect(s.value('valhalla_error_rate')).toBeCloseTo(3 / 22, 10);
    // The rate's lower bound is below 10%: it is the run of three that rolls back.
    expect(s.value('valhalla_error_rate_lower_bound')).toBeLessThan(0.1);
    expect(s.value('valhalla_error_rate_rollback')).toBe(1);

    // After a re-arm the window starts at the re-arm: the old failures no longer count.
    clock.advance(60_000);
    await setRuntimeValue(store.db, ERROR_WINDOW_SINCE_KEY, String(clock.now()), clock.now());
    s = await scrape();
    expect(s.value('valhalla_error_rate_window_requests')).toBe(0);
    expect(s.value('valhalla_error_rate_rollback')).toBe(0);
  });

  it('Phase 3: phase 3, ramp stage -1, mode live by default, no heartbeat yet, cycle cap from leads/cycle', async () => {
    const { store, scrape } = await world({ phase: 3 });
    await seedLeads(store, ['pending', 'pending', 'archived']);
    const s = await scrape();
    expect(s.value('valhalla_phase')).toBe(3);
    expect(s.value('valhalla_ramp_stage')).toBe(-1);
    expect(s.value('valhalla_mode', { mode: 'live' })).toBe(1);
    expect(s.value('valhalla_leads', { state: 'pending' })).toBe(2);
    expect(s.value('valhalla_leads', { state: 'archived' })).toBe(1);
    expect(s.value('valhalla_leads', { state: 'exported' })).toBe(0);
    for (const series of [
      { outcome: 'accepted', class: 'success' },
      { outcome: 'accepted', class: 'failure' },
      { outcome: 'retryable', class: 'failure' },
      { outcome: 'retryable', class: 'excluded' },
      { outcome: 'auth', class: 'failure' },
      { outcome: 'permanent', class: 'failure' },
    ]) {
      expect(s.value('valhalla_requests_total', { endpoint: 'leads', ...series })).toBe(0);
    }
    expect(s.value('valhalla_cap_usage', { cap: 'cycle' })).toBe(0);
    expect(s.value('valhalla_cap_limit', { cap: 'cycle' })).toBe(25);
    // Never a heartbeat and no supervisor (a dashboard's scrape): absent, not a reassuring 0.
    expect(s.has('valhalla_heartbeat_age_seconds')).toBe(false);
    expect(s.has('valhalla_worker_rss_bytes')).toBe(false);
    expect(s.value('valhalla_memory_limit_bytes')).toBe(512 * MB);
    // The supervisor's restart line: 70% of the policy's 512 MB.
    expect(s.value('valhalla_worker_rss_restart_bytes')).toBe(Math.floor(512 * MB * 0.7));
    expect(s.value('valhalla_heartbeat_limit_seconds')).toBe(30 + 15);
    // Only counters end in _total (prom-client's three *_total gauges are dropped); the per-type gauges stay.
    for (const [, name, type] of s.text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      if (name!.endsWith('_total')) expect(type, name).toBe('counter');
    }
    expect(s.has('valhalla_nodejs_active_handles')).toBe(true);
  });

  it("the supervisor's worker probe wins when its heartbeat is fresher; a probe without a worker falls back to the database", async () => {
    let probe: ReturnType<WorkerProbe> = { rssBytes: 300 * MB, heartbeatSince: NOW - 2_000, pid: 777 };
    const { store, clock, scrape } = await world({ worker: () => probe });
    await recordHeartbeat(store.db, {
      at: NOW - 25_000,
      runner: 'host-a:777',
      pid: 777,
      worker_started_at: NOW - HOUR,
      phase: 4,
      rss_bytes: 150 * MB,
      heap_used_bytes: 80 * MB,
      state: 'cycle',
      cycle_id: null,
    });
    let s = await scrape();
    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(2);
    expect(s.value('valhalla_worker_rss_bytes')).toBe(300 * MB);

    probe = null;
    clock.advance(50_000);
    s = await scrape();
    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(75);
    expect(s.value('valhalla_worker_rss_bytes')).toBe(150 * MB);

    probe = { rssBytes: null, heartbeatSince: null, pid: null };
    s = await scrape();
    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(75);
    expect(s.value('valhalla_worker_rss_bytes')).toBe(150 * MB);
  });

  it('with a supervisor the heartbeat age is there from its start, before any heartbeat, and ages on between workers', async () => {
    // The supervisor started its first worker 10 s ago; it has not beaten (yet).
    let probe: ReturnType<WorkerProbe> = { rssBytes: 90 * MB, heartbeatSince: NOW - 10_000, pid: 777 };
    const { clock, scrape } = await world({ phase: 3, worker: () => probe });
    let s = await scrape();
    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(10);
    expect(s.value('valhalla_heartbeat_limit_seconds')).toBe(45);
    expect(s.value('valhalla_worker_rss_bytes')).toBe(90 * MB);
    // Killed for it and between workers (no pid): no RSS, and the age goes on from the same point.
    probe = { rssBytes: null, heartbeatSince: NOW - 10_000, pid: null };
    clock.advance(50_000);
    s = await scrape();
    expect(s.value('valhalla_heartbeat_age_seconds')).toBe(60);
    expect(s.has('valhalla_worker_rss_bytes')).toBe(false);
  });

  it('no PII in the exposition: every label value is from a fixed vocabulary, no lead field appears anywhere', async () => {
    const { store, scrape } = await world();
    const ids = await seedLeads(store, [
      'pending',
      'pending',
      'exported',
      'quarantined',
      'pending',
      'expired',
    ]);
    const deliveryId = await liveCycle(store, ids.slice(0, 1));
    await requests(store, deliveryId, NOW - 60_000, [...accepted(3), ['permanent', 'failure', 422]]);
    const s = await scrape();

    const leads = await store.db.selectFrom('leads').selectAll().execute();
    expect(leads).toHaveLength(6);
    const secrets = leads.flatMap((l) => [
      l.name,
      l.email,
      l.phone,
      l.company,
      keyHex(l.dedup_key),
      l.external_id,
    ]);
    for (const secret of secrets) {
      expect(secret).toBeTruthy();
      expect(s.text).not.toContain(secret!);
      expect(s.text.toLowerCase()).not.toContain(secret!.toLowerCase());
    }
    expect(s.text).not.toContain('@');

    const vocabulary: Record<string, readonly string[]> = {
      state: LEAD_STATES,
      endpoint: ['leads', 'health', 'token'],
      outcome: ['accepted', 'retryable', 'auth', 'permanent'],
      class: ['success', 'failure', 'excluded'],
      mode: ['live', 'paused', 'rolled_back'],
      cap: ['cycle', 'day', 'budget'],
    };
    const own = s.samples.filter(
      (x) => !x.name.startsWith('valhalla_process_') && !x.name.startsWith('valhalla_nodejs_'),
    );
    expect(own.length).toBeGreaterThan(25);
    for (const sample of own) {
      for (const [key, value] of Object.entries(sample.labels)) {
        expect(vocabulary[key], `${sample.name}: label ${key}`).toBeDefined();
        expect(vocabulary[key], `${sample.name}{${key}="${value}"}`).toContain(value);
      }
    }
  });

  it('404 for any other path or method; a failing scrape is a short 500; close() twice; idle keep-alive does not hold it', async () => {
    const { store, server } = await world();
    for (const [path, method] of [
      ['/', 'GET'],
      ['/metrics/', 'GET'],
      ['/metricsx', 'GET'],
      ['/healthz', 'GET'],
      ['/metrics', 'POST'],
      ['/metrics', 'DELETE'],
    ] as const) {
      const response = await fetch(new URL(path, server.url), { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      await response.text();
    }
    // A query string is still the metrics.
    const withQuery = await fetch(`${server.url}?name[]=valhalla_leads`);
    expect(withQuery.status).toBe(200);
    expect(await withQuery.text()).toContain('valhalla_leads{state="pending"}');

    // The database gone: the scrape fails, the reply says so in a line, without the error or a stack.
    await store.close();
    const failed = await fetch(server.url);
    expect(failed.status).toBe(500);
    const body = await failed.text();
    expect(body).toBe('metrics unavailable: the scrape failed\n');

    // fetch keeps its connection alive: close() must not wait for the idle socket.
    await closesPromptly(server);
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
  });
});

describe('metrics server', () => {
  it('binds to 127.0.0.1 by default and tells onError of a failed scrape', async () => {
    const errors: unknown[] = [];
    const server = await startMetricsServer({
      render: async () => {
        throw new Error('connection to postgres://valhalla:hunter2@db.internal failed');
      },
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      port: 0,
      onError: (error) => errors.push(error),
    });
    try {
      expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
      expect(server.port).toBeGreaterThan(0);
      const response = await fetch(server.url);
      expect(response.status).toBe(500);
      const body = await response.text();
      expect(body).not.toContain('hunter2');
      expect(body).not.toContain('    at ');
      expect(errors).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('a port in use is refused with a clear error', async () => {
    const first = await startMetricsServer({ render: async () => '', contentType: 'text/plain', port: 0 });
    try {
      await expect(
        startMetricsServer({ render: async () => '', contentType: 'text/plain', port: first.port }),
      ).rejects.toThrow(`cannot serve metrics on 127.0.0.1:${first.port}`);
    } finally {
      await first.close();
    }
  });
});

async function closesPromptly(server: MetricsServer): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    server.close().then(() => 'closed'),
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('still open after 2 s'), 2_000);
    }),
  ]);
  clearTimeout(timer);
  expect(outcome).toBe('closed');
}
