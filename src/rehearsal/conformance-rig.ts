// The conformance suite's words and its rig: a private Phase 4 installation sending to its own sandbox partner.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type App, createPartnerClientFromConfig, openApp } from '../app/index.js';
import { type Clock, ManualClock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { CycleReport, Engine, PartnerPort, SendOutcome } from '../engine/index.js';
import { EVIDENCE_ACTIONS } from '../gates/index.js';
import { writeGoLiveAt } from '../guard/index.js';
import type { IngestSummary } from '../ingest/index.js';
import {
  type SandboxFaultsPatch,
  type SandboxPartner,
  type SandboxPartnerOptions,
  type SandboxProfile,
  startSandboxPartner,
} from '../sandbox/index.js';
import { type LeadOutcome, leadOutcomes } from '../store/index.js';
import { conformanceProfileFor, privateGates, privatePhase4Config } from './private-install.js';

/** The partner's conformance suite (gate 2) and the dedup self-test (gate 3), in the order they run. */
export const CONFORMANCE_SCENARIOS = [
  'endpoint',
  'token_refresh',
  'failure_handling',
  'retries',
  'total_failure',
  'dedup',
  'partial_answer',
] as const;

export type ConformanceScenarioName = (typeof CONFORMANCE_SCENARIOS)[number];

export interface ConformanceCheck {
  name: string;
  ok: boolean;
  detail: string;
}

export interface ConformanceScenarioResult {
  name: ConformanceScenarioName;
  passed: boolean;
  checks: ConformanceCheck[];
}

export interface ConformanceResult {
  passed: boolean;
  startedAt: string;
  durationMs: number;
  partner: 'sandbox';
  /**
   * The installation's configured profile (VALHALLA_PARTNER_PROFILE), by name and SHA-256: what the
   * run is evidence for (the gates take it only for that profile).
   */
  profile: { name: string; sha256: string };
  /**
   * The contract the sandbox played, and whether in the configured profile's stead (a profile of the
   * operator's own, which the sandbox cannot play: the shipped one of its auth family).
   */
  played: { profile: string; standIn: boolean };
  scenarios: ConformanceScenarioResult[];
}

export interface ConformanceOptions {
  /** The installation's configuration: its policy file, operator and dedup key are the scenarios'. */
  config: Config;
}

/** What one scenario runs against. The defaults are the real thing; tests pass a broken part to see a check fail. */
export interface ScenarioSetup {
  config: Config;
  /** Where the sandbox's self-signed certificate is kept (shared, so it is made once per run). */
  certDir?: string;
  /** Starts the partner; default the in-process sandbox partner. */
  startPartner?: (options: SandboxPartnerOptions) => Promise<SandboxPartner>;
  /** Settings of the scenario's private installation (VALHALLA_* names) over the scenario's own. */
  env?: Readonly<Record<string, string>>;
}

export type ConformanceScenario = (setup: ScenarioSetup) => Promise<ConformanceCheck[]>;

/** The audit action `valhalla gates` reads: scenario X passed ⇒ item 2.X (or 3.dedup_tested) verified. */
export const CONFORMANCE_AUDIT_ACTION = EVIDENCE_ACTIONS.conformance;

export const CONFORMANCE_GATES = privateGates('conformance scenario');

export const HOUR_MS = 3_600_000;

// ---------------------------------------------------------------------------------------------
// The rig: a private Phase 4 installation sending to its own sandbox partner.

export interface SentBatch {
  /** The engine's clock when the request was made. */
  at: number;
  batchKey: string;
  leadKeys: string[];
  /** Each lead's normalised e-mail: who was sent, whatever its key. In memory only, never reported. */
  people: string[];
  outcome: SendOutcome['kind'];
  status: number | null;
}

export interface Rig {
  /** The contract the sandbox plays: the installation's configured profile. */
  profile: SandboxProfile;
  /** Where batches go under it (`POST /api/leads`, the CRM's batch create). */
  leadsPath: string;
  app: App;
  /** The engine's clock: its sleeps (the backoff) jump it at once; no real time passes. */
  clock: ManualClock;
  sandbox: SandboxPartner;
  engine: Engine;
  /** Every batch request, as the partner client made it. */
  sent: SentBatch[];
  health: { ok: boolean; status: number | null; error: string | null }[];
  ingest(rows: ConformanceLeadRow[]): Promise<IngestSummary>;
  cycle(): Promise<CycleReport>;
  leads(): Promise<LeadOutcome[]>;
}

export interface ConformanceLeadRow {
  external_id: string;
  name: string;
  email: string;
  score: number;
  source_timestamp: string;
  value: number;
}

export interface RigOptions {
  faults?: SandboxFaultsPatch;
  /** The partner's clock; by default the engine's (a token expires for both at the same moment). */
  partnerClock?: Clock;
  leadsPerCycle?: number;
}

export async function withRig<T>(
  setup: ScenarioSetup,
  options: RigOptions,
  work: (rig: Rig) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'valhalla-conformance-'));
  const clock = new ManualClock(Date.now());
  const startPartner = setup.startPartner ?? startSandboxPartner;
  const releasers: (() => Promise<unknown>)[] = [];
  const profile = conformanceProfileFor(setup.config).played;
  try {
    const sandbox = await startPartner({
      profile,
      certDir: setup.certDir ?? join(dir, 'cert'),
      clock: options.partnerClock ?? clock,
      ...(options.faults ? { faults: options.faults } : {}),
    });
    releasers.push(() => sandbox.close());
    const config = privatePhase4Config({
      dir,
      name: 'conformance',
      installation: setup.config,
      partner: sandbox,
      leadsPerCycle: options.leadsPerCycle ?? 5,
      // The installation's dedup key: the dedup self-test checks the rule this installation runs.
      env: { VALHALLA_DEDUP_KEY: setup.config.dedupKey, ...setup.env },
    });
    const app = await openApp({ config, clock });
    releasers.push(() => app.close());
    // The real partner client (TLS, token cache, rate limiter, timeouts), watched from outside.
    const client = createPartnerClientFromConfig(config, clock);
    releasers.push(() => client.close());
    const sent: SentBatch[] = [];
    const health: Rig['health'] = [];
    const watched: PartnerPort = {
      async health(signal) {
        const result = await client.health(signal);
        health.push({ ok: result.ok, status: result.status ?? null, error: result.error ?? null });
        return result;
      },
      ensureToken: (validForMs, signal) => client.ensureToken(validForMs, signal),
      async sendBatch(batch, signal, holdNew) {
        const at = clock.now();
        const outcome = await client.sendBatch(batch, signal, holdNew);
        sent.push({
          at,
          batchKey: batch.batchKey,
          leadKeys: batch.leads.map((l) => l.lead_key),
          people: batch.leads.map((l) => l.email.trim().toLowerCase()),
          outcome: outcome.kind,
          status: outcome.status ?? null,
        });
        return outcome;
      },
    };
    // Past the ramp: the scenarios exercise the partner contract, not ramp stage 1's confirmations.
    await writeGoLiveAt(app.store.db, clock.now() - 30 * HOUR_MS);
    const engine = app.engine({ gates: CONFORMANCE_GATES, partner: watched, sleep: clock.sleep });
    let files = 0;
    return await work({
      profile,
      leadsPath: config.partner.profile.profile.endpoints.leads.path,
      app,
      clock,
      sandbox,
      engine,
      sent,
      health,
      async ingest(rows) {
        const file = join(dir, `leads-${++files}.jsonl`);
        writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`, { mode: 0o600 });
        return app.ingest({ path: file });
      },
      cycle: () => engine.runCycle(),
      leads: () => leadOutcomes(app.store.db),
    });
  } finally {
    // In reverse order: the client before the app, the app before the partner it talks to.
    for (const release of releasers.reverse()) await release().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A fresh, valid, eligible lead; `.invalid` addresses can never reach anyone. */
export function leadRow(
  clock: Clock,
  id: string,
  overrides: Partial<ConformanceLeadRow> = {},
): ConformanceLeadRow {
  return {
    external_id: `conf-${id}`,
    name: `Conformance Lead ${id}`,
    email: `${id}@conformance.invalid`,
    score: 80,
    source_timestamp: new Date(clock.now() - HOUR_MS).toISOString(),
    value: 10,
    ...overrides,
  };
}

export function check(name: string, ok: boolean, detail: string): ConformanceCheck {
  return { name, ok, detail };
}

export const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && new Set(a).size === a.length && a.every((k) => b.includes(k));

/** `HTTP 503, HTTP 200` / `no response (retryable)`: a request list in words, no lead data. */
export function describeSends(sent: readonly SentBatch[]): string {
  if (sent.length === 0) return 'none';
  return sent.map((s) => (s.status === null ? `no response (${s.outcome})` : `HTTP ${s.status}`)).join(', ');
}

export const short = (key: string) => `${key.slice(0, 8)}…`;
