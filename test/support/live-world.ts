/**
 * One installation in this process (Phase 4 by default, or Phase 3), shared by the cycle engine's
 * integration suite and the fault suite: the real app, engine, guard, store (SQLite or PostgreSQL)
 * and the real partner client built from the configuration, against a real HTTPS sandbox partner.
 * Given: the gate clearance, and time (a ManualClock whose sleep makes backoff waits instant; the
 * client's rate limiter still runs on real, monotonic time).
 *
 * By default the partner client is wrapped, never replaced: the wrapper forwards every call and lets
 * a scenario change the sandbox's faults at an exact moment (before or after the n-th batch request),
 * which the sandbox's own fault switches cannot do alone (`down` and `hang` would also fail the
 * health check). With `partner: 'app'` the engine gets no client at all and builds its own from the
 * configuration, as the service does (the hooks `beforeSend`, `afterSend` and `beforeHealth` then
 * never run).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type App, openApp } from '../../src/app/index.js';
import { createPartnerClientFromConfig } from '../../src/app/partner.js';
import { type Clock, ManualClock, type Sleep } from '../../src/clock/index.js';
import { type Config, DEFAULT_POLICY_FILE, loadConfig } from '../../src/config/index.js';
import type { CycleReport, Engine, PartnerPort, SendOutcome } from '../../src/engine/index.js';
import { writeGoLiveAt } from '../../src/guard/index.js';
import type { IngestSummary } from '../../src/ingest/index.js';
import type { PartnerBatch } from '../../src/outbound/index.js';
import {
  type SandboxPartner,
  type SandboxPartnerOptions,
  type SandboxProfile,
  startSandboxPartner,
} from '../../src/sandbox/index.js';
import type { Delivery, Lead } from '../../src/store/index.js';
import { leadFromRow } from '../../src/store/leads.js';
import { type Backend, sqliteBackend } from './backends.js';
import { testEnv } from './cli.js';
import {
  expectLedgerConsistent,
  type LedgerExpectations,
  type LedgerSummary,
  readLedgerFacts,
} from './ledger-check.js';
import { tempDir } from './tmp.js';
import { CLEARED, HOUR, NOW } from './world.js';

// One certificate for the process: every sandbox (TLS 1.1 included) serves it, every client pins it.
const certDir = tempDir('valhalla-world-cert-');
const CLIENT = { clientId: 'world-client', clientSecret: 'world-secret-0123456789' };
/** The CRM sandbox's static token (profile `crm-batch-contacts`). */
export const CRM_BEARER_TOKEN = 'world-crm-token-0123456789';

const cleanups: (() => Promise<void>)[] = [];
/** Close every app, client and sandbox opened since the last call (apps first, servers last). */
export async function closeWorlds(): Promise<void> {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
}

/** Close `close` with the next `closeWorlds()` (before anything opened earlier). */
export function closeLater(close: () => Promise<void>): void {
  cleanups.push(close);
}

/** A sandbox partner on the shared certificate and client, closed by the next `closeWorlds()`. */
export async function startSandbox(options: SandboxPartnerOptions = {}): Promise<SandboxPartner> {
  const sandbox = await startSandboxPartner({ certDir, ...CLIENT, ...options });
  cleanups.push(() => sandbox.close());
  return sandbox;
}

export interface World {
  dir: string;
  /** The configuration the app opened with (loaded again by `restart(policy)`). */
  config: Config;
  /** The app's clock (the engine's, the client's token expiry and Retry-After dates). */
  clock: ManualClock;
  sandbox: SandboxPartner;
  app: App;
  engine: Engine;
  /** Every wait the engine asked for, in order (ms). */
  sleeps: number[];
  /** Before each wait: change the partner while the engine backs off. */
  onSleep: ((ms: number, nth: number) => void | Promise<void>) | null;
  /** Before the n-th batch request (1-based, retries included) is handed to the real client. */
  beforeSend: ((batch: PartnerBatch, nth: number) => void | Promise<void>) | null;
  /** After the n-th batch request's outcome, before the engine sees it (an outcome returned replaces it). */
  afterSend: ((outcome: SendOutcome, nth: number) => unknown) | null;
  /** Before each health check the engine makes. */
  beforeHealth: ((nth: number) => void | Promise<void>) | null;
  cycle(): Promise<CycleReport>;
  /**
   * A new process on the same database: a new app, engine and partner client; with `policy`, these
   * fields of the shipped policy file replaced (a new copy) and the configuration loaded again.
   */
  restart(policy?: Record<string, unknown>): Promise<void>;
  /** Ingest one lead per spec (`emailOf(tag)`, `nameOf(tag)`): the app's summary, rejects included. */
  ingest(specs: LeadSpec[]): Promise<IngestSummary>;
  /** `ingest`, and an error unless every lead was accepted. */
  ingestAll(specs: LeadSpec[]): Promise<IngestSummary>;
  /** Every lead by its tag (the e-mail's local part up to the first dot). */
  leads(): Promise<Map<string, Lead>>;
  /** The live deliveries, in order. */
  deliveries(): Promise<Delivery[]>;
  audit(action?: string): Promise<AuditEntry[]>;
  /** The ledger check (test/support/ledger-check.ts) and the audit chain. */
  check(expectations?: LedgerExpectations): Promise<LedgerSummary>;
}

export interface AuditEntry {
  seq: number;
  actor: string;
  action: string;
  subject: string | null;
  details: Record<string, unknown>;
}

export interface WorldOptions {
  backend?: Backend;
  /**
   * The partner profile the installation speaks, and the sandbox plays: `valhalla` (the default, the
   * product's own contract, OAuth2) or `crm-batch-contacts` (a CRM's batch create, a static bearer
   * token, per-record answers).
   */
  profile?: SandboxProfile;
  /** Phase 4 (default: live, outbound on, real data) or Phase 3 (`VALHALLA_PHASE=3` alone, no go-live). */
  phase?: 3 | 4;
  /**
   * The engine's partner client: `wrapped` (default), the client built from the configuration behind
   * the hooks; `app`, none passed to `app.engine(...)`, so the app builds its own.
   */
  partner?: 'wrapped' | 'app';
  env?: Record<string, string>;
  /** Fields of the shipped policy file to replace (written to a copy, VALHALLA_POLICY_FILE). */
  policy?: Record<string, unknown>;
  sandbox?: SandboxPartnerOptions;
  /**
   * The sandbox's clock (token expiry, record times, request starts): the real clock by default, so
   * the rate limit can be checked at the partner; `app`: the app's ManualClock (the partner's records
   * then carry virtual times); or one the test moves on its own (clock skew).
   */
  sandboxClock?: Clock | 'app';
  /** Go-live this long before the start (default 30 h: the last ramp stage); null: not live yet (Phase 4). */
  goLiveAgoMs?: number | null;
  start?: number;
}

/** The e-mail and name of the lead tagged `tag` (never printed: the PII checks look for them). */
export const emailOf = (tag: string) => `${tag}.person@leads.example.test`;
export const nameOf = (tag: string) => `Person ${tag.toUpperCase()}`;

export interface LeadSpec {
  tag: string;
  score?: number;
  /** Age of the source timestamp at ingest (default 1 h). */
  ageMs?: number;
  value?: number;
}

let fileCount = 0;

export async function world(options: WorldOptions = {}): Promise<World> {
  const dir = tempDir('valhalla-world-');
  const backend = options.backend ?? sqliteBackend;
  const phase = options.phase ?? 4;
  const clock = new ManualClock(options.start ?? NOW);
  const sandboxClock = options.sandboxClock === 'app' ? clock : options.sandboxClock;
  const profile = options.profile ?? 'valhalla';
  const crm = profile === 'crm-batch-contacts';
  const sandbox = await startSandbox({
    ...(sandboxClock ? { clock: sandboxClock } : {}),
    ...(crm ? { profile, bearerToken: CRM_BEARER_TOKEN } : {}),
    ...options.sandbox,
  });
  const env: Record<string, string> = {
    ...(phase === 4
      ? {
          VALHALLA_PHASE: '4',
          VALHALLA_DRY_RUN: '0',
          VALHALLA_DISABLE_OUTBOUND: '0',
          VALHALLA_REAL_DATA_INGEST: '1',
        }
      : { VALHALLA_PHASE: '3' }),
    VALHALLA_PARTNER_URL: sandbox.url,
    ...(crm
      ? { VALHALLA_PARTNER_PROFILE: profile, VALHALLA_PARTNER_BEARER_TOKEN: sandbox.bearerToken ?? '' }
      : {
          VALHALLA_PARTNER_TOKEN_URL: sandbox.tokenUrl,
          VALHALLA_PARTNER_CLIENT_ID: sandbox.clientId,
          VALHALLA_PARTNER_CLIENT_SECRET: sandbox.clientSecret,
        }),
    VALHALLA_PARTNER_CA_FILE: sandbox.caFile ?? '',
    VALHALLA_DATABASE_URL: backend.databaseUrl(),
    VALHALLA_LOG_LEVEL: 'warn',
    ...options.env,
  };
  const configure = (changes: Record<string, unknown> | undefined): Config => {
    if (changes) {
      const policy = { ...JSON.parse(readFileSync(DEFAULT_POLICY_FILE, 'utf8')), ...changes };
      const file = join(dir, `policy-${++fileCount}.json`);
      writeFileSync(file, JSON.stringify(policy, null, 2));
      env.VALHALLA_POLICY_FILE = file;
    }
    return loadConfig({ cwd: dir, env: testEnv(dir, env) });
  };
  const config = configure(options.policy);
  const counts = { sends: 0, health: 0 };
  const w = { dir, config, clock, sandbox, sleeps: [] as number[] } as unknown as World;
  w.onSleep = null;
  w.beforeSend = null;
  w.afterSend = null;
  w.beforeHealth = null;
  const sleep: Sleep = async (ms, signal) => {
    w.sleeps.push(ms);
    await w.onSleep?.(ms, w.sleeps.length);
    await clock.sleep(ms, signal);
  };
  const open = async () => {
    const app = await openApp({ config: w.config, clock });
    w.app = app;
    if (options.partner === 'app') {
      cleanups.push(() => app.close());
      // The partner client the app builds from the configuration: `partner` is not passed.
      w.engine = app.engine({ gates: CLEARED, sleep });
      w.restart = async (policy) => {
        await app.close();
        if (policy) w.config = configure(policy);
        await open();
      };
      return;
    }
    const client = createPartnerClientFromConfig(w.config, clock);
    cleanups.push(async () => {
      await client.close();
      await app.close();
    });
    const partner: PartnerPort = {
      async health(signal) {
        await w.beforeHealth?.(++counts.health);
        return client.health(signal);
      },
      ensureToken: (validForMs, signal) => client.ensureToken(validForMs, signal),
      async sendBatch(batch, signal, holdNew) {
        const nth = ++counts.sends;
        await w.beforeSend?.(batch, nth);
        const outcome = await client.sendBatch(batch, signal, holdNew);
        const replaced = await w.afterSend?.(outcome, nth);
        return typeof replaced === 'object' && replaced !== null && 'kind' in replaced
          ? (replaced as SendOutcome)
          : outcome;
      },
    };
    w.engine = app.engine({ gates: CLEARED, partner, sleep });
    w.restart = async (policy) => {
      await client.close();
      await app.close();
      if (policy) w.config = configure(policy);
      await open();
    };
  };
  await open();
  w.cycle = () => w.engine.runCycle();
  w.ingest = async (specs) => {
    const file = join(dir, `leads-${++fileCount}.jsonl`);
    const lines = specs.map((s, i) =>
      JSON.stringify({
        name: nameOf(s.tag),
        email: emailOf(s.tag),
        phone: `+44 20 7946 ${String(1000 + i)}`,
        company: 'Example Ltd',
        score: s.score ?? 80,
        source_timestamp: new Date(clock.now() - (s.ageMs ?? HOUR)).toISOString(),
        value: s.value ?? 100,
      }),
    );
    writeFileSync(file, `${lines.join('\n')}\n`);
    return w.app.ingest({ path: file });
  };
  w.ingestAll = async (specs) => {
    const summary = await w.ingest(specs);
    if (summary.accepted !== specs.length) {
      throw new Error(`ingest accepted ${summary.accepted} of ${specs.length}: ${JSON.stringify(summary)}`);
    }
    return summary;
  };
  w.leads = async () => {
    const rows = (await w.app.store.db.selectFrom('leads').selectAll().orderBy('id').execute()).map(
      leadFromRow,
    );
    return new Map(rows.map((r) => [r.email.split('.')[0]!, r]));
  };
  w.deliveries = () =>
    w.app.store.db.selectFrom('deliveries').selectAll().where('kind', '=', 'live').orderBy('id').execute();
  w.audit = async (action) => {
    let q = w.app.store.db.selectFrom('audit_log').selectAll().orderBy('seq');
    if (action !== undefined) q = q.where('action', '=', action);
    const rows = await q.execute();
    return rows.map((r) => ({ ...r, details: JSON.parse(r.details) as Record<string, unknown> }));
  };
  w.check = async (expectations = {}) => {
    const facts = await readLedgerFacts(w.app.store.db);
    const summary = expectLedgerConsistent(facts, sandbox, {
      // A sandbox on a moved clock records virtual request starts: the rate is not measurable there.
      ...(options.sandboxClock ? { rateLimit: null } : {}),
      ...expectations,
    });
    const verified = await w.app.audit.verify();
    if (!verified.ok) throw new Error(`the audit chain does not verify: ${JSON.stringify(verified)}`);
    return summary;
  };
  if (phase === 4 && options.goLiveAgoMs !== null) {
    await writeGoLiveAt(w.app.store.db, clock.now() - (options.goLiveAgoMs ?? 30 * HOUR));
  }
  return w;
}

/** `n` fresh leads `prefix1..prefixN` with distinct scores from `top` down (best first). */
export function many(prefix: string, n: number, top = 95): LeadSpec[] {
  return Array.from({ length: n }, (_, i) => ({ tag: `${prefix}${i + 1}`, score: top - (i % 50) }));
}

/** The batch key of an audit entry's subject (`batch:<key>`). */
export const keyOf = (subject: string | null) => (subject ?? '').replace(/^batch:/, '');
