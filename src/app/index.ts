import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { finished } from 'node:stream/promises';
import {
  type AlertChannel,
  type AlertRecorder,
  configuredChannels,
  createAlertChannels,
  createAlertDispatcher,
  createAlertRecorder,
  sendTestAlert,
} from '../alerts/index.js';
import { type AuditLog, createAuditLog } from '../audit/index.js';
import { type Clock, type Sleep, systemClock, systemSleep } from '../clock/index.js';
import {
  type Config,
  loadConfig,
  loadPolicyFile,
  MANIFEST_LIMIT_FIELDS,
  policyHash,
} from '../config/index.js';
import {
  createEngine,
  createLeadership,
  createOperatorActions,
  type Engine,
  type Leadership,
  type OperatorActions,
  type PartnerPort,
} from '../engine/index.js';
import { createPrivateWriteStream, ensurePrivateDir, PRIVATE_DIR_MODE } from '../files/index.js';
import {
  approvedLimits,
  buildGatesBundle,
  buildManifest,
  createGateClearance,
  describeLimits,
  evaluateGates,
  type GatesReport,
  limitsAbove,
  type ReleaseManifest,
  validSignatures,
} from '../gates/index.js';
import {
  changeMode,
  createGuard,
  type GateClearance,
  type Mode,
  readGoLiveAt,
  readMode,
  readModeChangedAt,
} from '../guard/index.js';
import { type IngestDeps, type IngestOptions, type IngestSummary, ingestFile } from '../ingest/index.js';
import { createLogger, type Logger } from '../log/index.js';
import { createRequestMonitor, type RequestMonitor } from '../monitor/index.js';
import { DEFAULT_RATE_MARGIN_MS, limiterShape } from '../outbound/index.js';
import {
  createPseudonymizer,
  maskCompany,
  maskEmail,
  maskName,
  maskPhone,
  type Pseudonymizer,
  REASON_WITHHELD,
  refuseContactData,
} from '../pii/index.js';
import {
  canonicalJson,
  type LeadState,
  type ModeChange,
  type ModeCommand,
  rampPosition,
} from '../policy/index.js';
import {
  type Alert,
  type AlertDelivery,
  alertDeliveries,
  archiveSyntheticLeads,
  claimInstallationId,
  countAuditEntries,
  countLeadsByState,
  databaseNow,
  ERASED_MARKER,
  getRuntimeValue,
  heartbeatsBetween,
  INITIALIZED_KEY,
  type InstallationProbe,
  ingestTotals,
  latestHeartbeat,
  listLeads,
  openStore,
  probeInstallation,
  readInstallationId,
  readLease,
  recentAlerts,
  recentCycles,
  type Store,
  setRuntimeValue,
} from '../store/index.js';
import { checkDedupRule } from './dedup-rule.js';
import { AppError } from './errors.js';
import { fillIdentityKeysIfPending } from './identity-keys.js';
import { ingestDepsOf } from './ingest-deps.js';

/**
 * A runner that takes over an expired lease waits the request timeout plus this before resending
 * the old leader's batches caught mid-request: its last request may still have been in flight.
 */
const TAKEOVER_MARGIN_MS = 5_000;
/** Added to the request timeout for an unanswered start's deadline in the shared start log. */
const START_DEADLINE_SLACK_MS = 1_000;

import { awaitModeAck, type ModeAcknowledgement } from './mode-ack.js';
import { createPartnerClientFromConfig, type PartnerClient } from './partner.js';
import { readServiceView, type ServiceView } from './service-view.js';
import { createUploadIngester, type UploadIngest, type UploadIngester } from './upload-ingest.js';

export {
  type CycleReview,
  confirmReviewedCycle,
  type ReviewedBatch,
  type ReviewedLead,
  reviewCycle,
} from './cycle-review.js';
export {
  type AuditEntryView,
  alertView,
  createDashboard,
  type Dashboard,
  type DashboardStatus,
  FLOW_OUTCOMES,
  type FlowOutcome,
  type LeadFlow,
  type UploadResult,
} from './dashboard.js';
export {
  checkDashboard,
  type DashboardCheck,
  type DashboardCheckResult,
} from './dashboard-check.js';
export { AppError, type AppErrorCode, isAppError } from './errors.js';
export {
  describeModeAck,
  MODE_ACK_WAIT_MS,
  type ModeAcknowledgement,
  type WorkerAck,
} from './mode-ack.js';
export type { ServiceLimits, ServiceView } from './service-view.js';

const FINGERPRINT_KEY = 'pseudonym.fingerprint';
/** The policy hash the installation last ran with: a different one voids the sign-offs. */
const POLICY_HASH_KEY = 'policy.hash';

/** A lead as anyone but the partner may see it: masked. */
export interface MaskedLead {
  id: number;
  pseudonym: string;
  name: string;
  email: string;
  phone: string;
  company: string;
  score: number;
  sourceTimestamp: string;
  value: number | null;
  state: LeadState;
  reason: string | null;
  /** The person's data was erased (`leads erase`, `archive`): name and e-mail read `(erased)`. */
  erased: boolean;
  erasedAt: string | null;
}

export interface StatusReport {
  phase: 3 | 4;
  policyHash: string;
  database: 'sqlite' | 'postgres';
  leads: Record<LeadState, number> & { total: number };
  ingest: Awaited<ReturnType<typeof ingestTotals>>;
  auditEntries: number;
}

export interface App {
  readonly config: Config;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly store: Store;
  readonly audit: AuditLog;
  ingest(options: IngestOptions): Promise<IngestSummary>;
  /**
   * An upload to the admin API: the same ingest in the upload thread (upload-ingest.ts), off this
   * process's event loop, stopped early past the reject bound (UPLOAD_REJECT_BOUND).
   */
  ingestUpload(upload: UploadIngest): Promise<IngestSummary>;
  status(): Promise<StatusReport>;
  listLeads(options: { state?: LeadState; limit: number; beforeId?: number }): Promise<MaskedLead[]>;
  /**
   * The cycle engine. In production the gates are those of the gates module and the partner client
   * is built from the configuration (none in Phase 3); tests and the drill may pass their own.
   */
  engine(options?: {
    gates?: GateClearance;
    partner?: PartnerPort | null;
    sleep?: Sleep;
    /** Several runners: fence every claim and authorisation, and start requests through the shared log. */
    leadership?: Leadership;
  }): Engine;
  /** This process's place among the runners sharing the database (one per app, built on first use). */
  leadership(): Leadership;
  /** The keyed pseudonyms and dedup keys (needs the secret: `valhalla init`). */
  pseudonymizer(): Pseudonymizer;
  /** Queue actions (confirm, release, drop), audited under `actor` (the configured operator by default). */
  operatorActions(actor?: string): OperatorActions;
  /** Whether the go-live gates are cleared: every item verified or signed, and the CEO's activation. */
  readonly gates: GateClearance & { report(): Promise<GatesReport> };
  /** Every gate, item by item, with its evidence or signer: `valhalla gates status|verify|report`. */
  gatesReport(): Promise<GatesReport>;
  /** The same with the signed documents, keys and evidence entries, for `valhalla gates report`. */
  gatesBundle(): ReturnType<typeof buildGatesBundle>;
  /** The release manifest Phase 4 would run with here; null when the store has no installation id. */
  releaseManifest(): Promise<ReleaseManifest | null>;
  /**
   * The main job's start in Phase 3: with real data off and nothing ever ingested, generate and
   * ingest `count` synthetic leads (seed 1) from `<data dir>/synthetic-leads.csv`; null otherwise.
   */
  loadSyntheticLeadsIfEmpty(count: number): Promise<IngestSummary | null>;
  /** Archive the synthetic leads still waiting (a Phase 4 start), audited; returns how many. */
  archiveSyntheticLeads(): Promise<number>;
  /** The mode, the ramp stage and the latest cycles, for `status`. */
  runState(): Promise<RunState>;
  /** Alerts are recorded with their event and sent by the dispatcher (DESIGN.md: only `alerts` talks to Slack/SMTP). */
  readonly alerts: AlertRecorder;
  /** The configured alert channels (created on first use). */
  alertChannels(): readonly AlertChannel[];
  /** Send the alerts that are due, once (the supervisor runs this on an interval). */
  dispatchAlerts(): Promise<{ sent: number; retrying: number; failed: number }>;
  /** A test alert to every channel, recorded and audited (gate 5's evidence). */
  sendTestAlert(): ReturnType<typeof sendTestAlert>;
  recentAlerts(limit: number): Promise<(Alert & { deliveries: AlertDelivery[] })[]>;
  readonly requestMonitor: RequestMonitor;
  /**
   * pause / resume / rollback / rearm, audited and alerted. `rearm` also needs Phase 4, the gates
   * cleared, and no worker left running from before the rollback (it must have been restarted).
   */
  changeMode(
    command: ModeCommand,
    request: { actor?: string; reason: string; gates?: GateClearance },
  ): Promise<ModeChange & { reasonWithheld?: string; changeSeq?: number }>;
  /**
   * Whether the running workers took a mode change (the latest by default), waiting at most `waitMs`
   * for their acknowledgement: what every mode command reports (DESIGN.md §3.12).
   */
  awaitModeAck(request?: { changeSeq?: number; waitMs?: number }): Promise<ModeAcknowledgement>;
  /**
   * Has the policy changed since it was last recorded (this process's, or the file on disk now)? A
   * change voids every sign-off made against the old hash: audited, alerted (gate voided), and in
   * Phase 4 outbound stops (rolled back). An unreadable or invalid file on disk counts as a change.
   */
  checkPolicy(
    source: 'config' | 'disk',
  ): Promise<{ changed: boolean; from: string | null; to: string | null }>;
  /** The limits in force in this process now: the configuration's, or lower ones taken while running. */
  limitsInForce(): Config['limits'];
  /**
   * Read the limits again from `load` (the environment, `.env` and the policy file as they are now):
   * a lowering (or a return up to the approved limits) is taken from the next cycle, audited
   * (`limits.changed`) and alerted; a raise above the approved limits is refused (`limits.refused`,
   * alerted once per wanted value) and the limits in force are kept.
   */
  reloadLimits(load: () => Config): Promise<LimitsReload>;
  close(): Promise<void>;
}

export type LimitsReload =
  | { kind: 'unchanged' }
  | { kind: 'applied'; from: Config['limits']; to: Config['limits']; message: string }
  | { kind: 'refused'; message: string };

export interface RunState {
  mode: Mode;
  /** The running service's phase, mode, limits and policy (its worker's heartbeat), and how they differ from this process's. */
  service: ServiceView;
  /** The worker's latest heartbeat, or null when none was ever recorded. */
  heartbeat: { at: string; ageSeconds: number; pid: number; rssMb: number; state: string } | null;
  /**
   * The runner that leads (several may share the database), or null when none ever led. `lapsed`:
   * its lease ran out unrenewed (a standby takes over); `released`: it stopped cleanly.
   */
  leader: {
    holder: string;
    host: string;
    pid: number;
    epoch: number;
    lease: 'held' | 'lapsed' | 'released';
    /** Seconds the lease still runs (held), or since it ran out (lapsed). */
    seconds: number;
  } | null;
  /** The error-rate rule over its current window. */
  errorRate: {
    requests: number;
    failures: number;
    rate: number;
    lowerBound: number;
    rollback: boolean;
    reason: string;
  };
  goLiveAt: string | null;
  ramp: { stage: number; ceiling: number; confirmEachCycle: boolean; nextStageAt: string | null } | null;
  lastCycles: {
    id: number;
    kind: string;
    startedAt: string;
    /** Leads claimed for sending (live) or recorded as a dry run. */
    leads: number;
    actions: number;
    confirmed: boolean;
  }[];
}

export interface OpenAppOptions {
  config: Config;
  clock?: Clock;
  logger?: Logger;
  /**
   * For a stop (pause, rollback): never held up by this process's settings. Another dedup rule than
   * the installation's is logged, not refused (a stop touches no lead).
   */
  stopOnly?: boolean;
}

/**
 * The installation the configuration names: its store made by `valhalla init`, or why there is none.
 * Creates nothing (no folder, file or schema): every command but `init` asks this before `openApp`.
 */
export function findInstallation(config: Config): Promise<InstallationProbe> {
  return probeInstallation(config.database);
}

/** Load the configuration from this process's environment and working directory. */
export function configFromProcess(): Config {
  return loadConfig({ env: process.env, cwd: process.cwd() });
}

/**
 * Create what a fresh installation needs: the data folder, a pseudonym secret (mode 0600) when none
 * is configured, and the database with its schema. Safe to run again: it changes nothing that exists.
 */
export async function initialize(
  config: Config,
  options: { clock?: Clock; logger?: Logger } = {},
): Promise<{ createdSecret: boolean; app: App }> {
  ensurePrivateDir(config.dataDir);
  let createdSecret = false;
  let effective = config;
  if (config.pseudonymSecret === null) {
    // loadConfig found no secret and no file: write a fresh one, readable by this user only.
    const secret = randomBytes(32).toString('hex');
    // Missing folders are made private; an existing one named by the operator is left as it is.
    mkdirSync(dirname(config.pseudonymSecretFile), { recursive: true, mode: PRIVATE_DIR_MODE });
    writeFileSync(config.pseudonymSecretFile, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    createdSecret = true;
    effective = Object.freeze({ ...config, pseudonymSecret: secret });
  }
  const app = await openApp({ config: effective, ...options });
  const initializedAt = await getRuntimeValue(app.store.db, 'initialized_at');
  if (initializedAt === undefined) {
    await app.store.db.transaction().execute(async (trx) => {
      const { id: installationId } = await claimInstallationId(trx, randomUUID(), app.clock.now());
      await app.audit.append(trx, {
        actor: app.config.operator,
        action: 'system.initialized',
        details: {
          phase: app.config.phase,
          policyHash: app.config.policyHash,
          database: app.store.dialect,
          installationId,
          // Recorded as the store opened (checkDedupRule): every later command must run with it.
          dedupRule: app.config.dedupKey,
        },
      });
      await setRuntimeValue(trx, 'initialized_at', new Date(app.clock.now()).toISOString(), app.clock.now());
    });
  }
  return { createdSecret, app };
}

/** Build the object graph from the configuration: the only place that knows every module. */
export async function openApp(options: OpenAppOptions): Promise<App> {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ level: config.logLevel, file: config.logFile });
  // The data folder holds PII (the database, rejects files): 0700, tightened if an older release or a
  // loose umask left it open; the database's own files are tightened as the store opens.
  const tightened = existsSync(config.dataDir) ? [ensurePrivateDir(config.dataDir)] : [];
  const store = await openStore(config.database);
  for (const note of [...tightened, ...store.tightened]) {
    if (note !== null) logger.warn({ note }, 'a file or folder open to other users was made private');
  }
  const audit = createAuditLog(store, clock);
  let pseudonymizer: Pseudonymizer | null = null;
  try {
    if (config.pseudonymSecret !== null) {
      pseudonymizer = createPseudonymizer(config.pseudonymSecret);
      await checkSecretFingerprint(store, pseudonymizer, clock);
    }
    await identifyInstallation(store, audit, clock, config.operator);
    // The dedup rule is the installation's: a command run with another is refused here, before it
    // does anything (every command, `run` and the admin API's uploads open the app this way).
    await checkDedupRule({ store, audit, clock, logger, config }).catch((error: unknown) => {
      if (!(options.stopOnly && error instanceof AppError && error.code === 'DEDUP_RULE_CHANGED'))
        throw error;
      logger.warn({ err: error }, 'another dedup rule than the installation’s: noted, the stop goes ahead');
    });
    if (pseudonymizer !== null) {
      await fillIdentityKeysIfPending({
        store,
        audit,
        clock,
        logger,
        pseudonymizer,
        operator: config.operator,
        rule: config.dedupKey,
      });
    }
  } catch (error) {
    await store.close();
    throw error;
  }

  const requirePseudonymizer = (): Pseudonymizer => {
    if (pseudonymizer) return pseudonymizer;
    throw new AppError(
      'NOT_INITIALIZED',
      `no pseudonym secret: run \`valhalla init\` (creates ${config.pseudonymSecretFile}) or set VALHALLA_PSEUDONYM_SECRET`,
    );
  };

  const ingestDeps = (): IngestDeps =>
    ingestDepsOf(config, { store, audit, clock, logger, pseudonymizer: requirePseudonymizer() });

  let partnerClient: PartnerClient | null = null;
  /** The client whose every start also passes the shared start log (a runner among several). */
  let ledPartnerClient: PartnerClient | null = null;
  /** Phase 4 only: in Phase 3 no partner client exists, so no socket to the partner can be opened. */
  const partnerFromConfig = (led?: Leadership): PartnerPort | null => {
    if (config.phase !== 4) return null;
    if (led) {
      ledPartnerClient ??= createPartnerClientFromConfig(config, clock, {}, led.startLimiter);
      return ledPartnerClient;
    }
    partnerClient ??= createPartnerClientFromConfig(config, clock);
    return partnerClient;
  };
  let runnerLeadership: Leadership | null = null;

  const alerts = createAlertRecorder({
    clock,
    channels: configuredChannels(config.alerts),
    dedupWindowMs: config.policy.alertDedupMinutes * 60_000,
  });
  const requestMonitor = createRequestMonitor({ config, audit, alerts, clock });
  let channels: AlertChannel[] | null = null;
  const alertChannels = (): AlertChannel[] => {
    if (channels !== null) return channels;
    const created = createAlertChannels(config.alerts);
    channels = created;
    return created;
  };
  let limitsInForce: Config['limits'] = config.limits;
  let lastRefusal: string | null = null;
  async function reloadLimits(load: () => Config): Promise<LimitsReload> {
    let wanted: Config['limits'];
    let sources: Config['sources'];
    try {
      ({ limits: wanted, sources } = load());
    } catch (error) {
      const message = `the configuration on disk can no longer be read (${(error as Error).message.split('\n')[0]}): the limits in force are kept`;
      if (lastRefusal === message) return { kind: 'unchanged' };
      lastRefusal = message;
      return { kind: 'refused', message };
    }
    const from = limitsInForce;
    if (canonicalJson(wanted) === canonicalJson(from)) {
      lastRefusal = null;
      return { kind: 'unchanged' };
    }
    const key = canonicalJson(wanted);
    // What may run: the limits the valid documents approve, else those the gates cleared at start.
    const id = await readInstallationId(store.db);
    const valid = id === undefined ? [] : (await validSignatures(store.db, buildManifest(config, id))).valid;
    const approved = approvedLimits(valid)?.limits ?? config.limits;
    // Each limit on its own: a lowering is taken even when another limit's raise is refused.
    const taken = { ...from };
    for (const field of MANIFEST_LIMIT_FIELDS)
      if (wanted[field] <= approved[field]) taken[field] = wanted[field];
    const above = limitsAbove(wanted, approved, sources);
    const changed = canonicalJson(taken) !== canonicalJson(from);
    // A raise already refused is said once, not every cycle while the file stays as it is (an
    // amendment recorded meanwhile lets it in at the next read).
    const repeat = above.length > 0 && lastRefusal === key;
    if (repeat && !changed) return { kind: 'unchanged' };
    const changedMessage = `limits in force from the next cycle: ${describeLimits(taken)} (were ${describeLimits(from)})`;
    const refusedMessage = `limits on disk above those approved (${above.join('; ')}): kept ${describeLimits(taken)}; a raise needs the CFO's amendment (valhalla amend), then it is taken at the next cycle`;
    // Recorded first: a change that cannot be audited is not made.
    await store.db.transaction().execute(async (trx) => {
      if (changed) {
        await audit.append(trx, {
          actor: config.operator,
          action: 'limits.changed',
          details: { from, to: taken, approved, source: 'the configuration on disk' },
        });
        await alerts.raise(trx, {
          event: 'limits_changed',
          dedupKey: `limits.changed:${canonicalJson(taken)}`,
          message: changedMessage,
        });
      }
      if (above.length > 0 && !repeat) {
        await audit.append(trx, {
          actor: config.operator,
          action: 'limits.refused',
          details: { inForce: taken, wanted, approved, above },
        });
        await alerts.raise(trx, {
          event: 'limits_refused',
          dedupKey: `limits.refused:${key}`,
          message: refusedMessage,
        });
      }
    });
    lastRefusal = above.length > 0 ? key : null;
    if (changed) {
      partnerClient?.setRateLimit(taken.rateLimitPerSecond);
      ledPartnerClient?.setRateLimit(taken.rateLimitPerSecond);
      runnerLeadership?.reshapeStarts(limiterShape(taken.rateLimitPerSecond, config.policy.rateWindowMs));
      limitsInForce = taken;
    }
    if (above.length > 0) {
      return { kind: 'refused', message: changed ? `${changedMessage}; ${refusedMessage}` : refusedMessage };
    }
    return { kind: 'applied', from, to: taken, message: changedMessage };
  }

  async function checkPolicy(source: 'config' | 'disk') {
    let to: string | null = config.policyHash;
    let problem: string | null = null;
    if (source === 'disk') {
      try {
        to = policyHash(loadPolicyFile(config.policyFile));
      } catch (error) {
        to = null;
        problem = `the policy file can no longer be read or is invalid: ${(error as Error).message}`;
      }
    }
    const from = (await getRuntimeValue(store.db, POLICY_HASH_KEY)) ?? null;
    if (from === null && to !== null) {
      await setRuntimeValue(store.db, POLICY_HASH_KEY, to, clock.now());
      return { changed: false, from, to };
    }
    if (from === to) return { changed: false, from, to };
    const reason =
      problem ??
      `the policy changed (hash ${from?.slice(0, 12)}… → ${to?.slice(0, 12)}…): every sign-off made against the old policy is void`;
    await store.db.transaction().execute(async (trx) => {
      await audit.append(trx, {
        actor: 'policy',
        action: 'policy.changed',
        details: { from, to, file: config.policyFile, reason },
      });
      await alerts.raise(trx, {
        event: 'gate_voided',
        dedupKey: `policy:${to}`,
        message: `gates voided: ${reason}${config.phase === 4 ? '; outbound stopped (rolled back)' : ''}`,
        details: { from, to },
      });
      if (config.phase === 4) {
        await changeMode(trx, { audit, alerts, clock }, { command: 'rollback', actor: 'policy', reason });
      }
      if (to !== null) await setRuntimeValue(trx, POLICY_HASH_KEY, to, clock.now());
    });
    return { changed: true, from, to };
  }

  /** Why a re-arm is not allowed now, or null. */
  async function rearmRefusal(clearance: GateClearance): Promise<string | null> {
    if (config.phase !== 4)
      return `this process is Phase ${config.phase}: re-arm from a Phase 4 configuration`;
    const checked = await clearance.check();
    if (!checked.cleared) return `the gates are not verified: ${checked.reason}`;
    const rolledBackAt = (await readModeChangedAt(store.db)) ?? 0;
    const now = clock.now();
    const windowS = 2 * config.policy.heartbeatIntervalSeconds;
    const recent = await heartbeatsBetween(store.db, now - windowS * 1000, now + 1);
    // Positive evidence of the restart: a worker started after the rollback (its start verified the
    // gates in Phase 4) beats now; and no worker from before the rollback has beaten since it started.
    const fresh = recent.filter((h) => h.worker_started_at > rolledBackAt);
    const freshSince = fresh.length === 0 ? 0 : Math.min(...fresh.map((h) => h.worker_started_at));
    const stale = recent.find((h) => h.worker_started_at <= rolledBackAt && h.at >= freshSince);
    if (stale) {
      return `the worker running at the rollback (pid ${stale.pid}, started ${new Date(stale.worker_started_at).toISOString()}) is still running: restart \`valhalla run\` in Phase 4 first`;
    }
    if (fresh.length === 0) {
      return `no worker started since the rollback has reported a heartbeat in the last ${windowS} s: restart \`valhalla run\` in Phase 4 (its start verifies the gates), then re-arm`;
    }
    return null;
  }

  const dispatcher = () => createAlertDispatcher({ store, clock, logger, channels: alertChannels() });
  // The gates module's answer, from the evidence and the signatures; there is no bypass.
  // The gates judge the limits this process runs with now (a worker's may have changed since start).
  const gates = createGateClearance({
    store,
    config,
    audit,
    clock,
    ...(config.phase === 4 ? { limits: () => limitsInForce } : {}),
  });

  let uploads: UploadIngester | null = null;
  let closed = false;
  return {
    config,
    clock,
    logger,
    store,
    audit,
    ingest: (ingestOptions) => ingestFile(ingestDeps(), ingestOptions),
    ingestUpload(upload) {
      requirePseudonymizer();
      uploads ??= createUploadIngester({ config, clock, logger });
      return uploads.ingest(upload);
    },
    async status() {
      const [byState, ingest, audited] = await Promise.all([
        countLeadsByState(store.db),
        ingestTotals(store.db),
        countAuditEntries(store.db),
      ]);
      const leads = {
        pending: 0,
        in_flight: 0,
        exported: 0,
        below_threshold: 0,
        expired: 0,
        quarantined: 0,
        archived: 0,
        ...byState,
        total: 0,
      };
      leads.total = Object.values(byState).reduce((a, b) => a + b, 0);
      return {
        phase: config.phase,
        policyHash: config.policyHash,
        database: store.dialect,
        leads,
        ingest,
        auditEntries: audited,
      };
    },
    async listLeads(listOptions) {
      const p = requirePseudonymizer();
      const rows = await listLeads(store.db, listOptions);
      return rows.map((lead) => ({
        id: lead.id,
        pseudonym: p.pseudonym(lead.dedup_key),
        ...(lead.erased_at === null
          ? {
              name: maskName(lead.name),
              email: maskEmail(lead.email),
              phone: maskPhone(lead.phone),
              company: maskCompany(lead.company),
            }
          : { name: ERASED_MARKER, email: ERASED_MARKER, phone: '', company: '' }),
        score: lead.score,
        sourceTimestamp: new Date(lead.source_ts).toISOString(),
        value: lead.value,
        state: lead.state,
        reason: lead.state_reason,
        erased: lead.erased_at !== null,
        erasedAt: lead.erased_at === null ? null : new Date(lead.erased_at).toISOString(),
      }));
    },
    engine(engineOptions = {}) {
      const p = requirePseudonymizer();
      const partner =
        engineOptions.partner !== undefined
          ? engineOptions.partner
          : partnerFromConfig(engineOptions.leadership);
      const guard = createGuard({
        config,
        audit,
        clock,
        pseudonymizer: p,
        gates: engineOptions.gates ?? gates,
        limits: () => limitsInForce,
      });
      return createEngine({
        config,
        store,
        audit,
        clock,
        sleep: engineOptions.sleep ?? systemSleep,
        logger,
        pseudonymizer: p,
        guard,
        partner,
        alerts,
        monitor: requestMonitor,
        leadership: engineOptions.leadership ?? null,
        limits: () => limitsInForce,
      });
    },
    leadership() {
      runnerLeadership ??= createLeadership({
        store,
        audit,
        clock,
        sleep: systemSleep,
        logger,
        name: config.runnerName,
        leaseMs: config.policy.heartbeatIntervalSeconds * 1000,
        takeoverWaitMs: config.policy.apiTimeoutSeconds * 1000 + TAKEOVER_MARGIN_MS,
        starts: {
          ...limiterShape(config.limits.rateLimitPerSecond, config.policy.rateWindowMs),
          marginMs: DEFAULT_RATE_MARGIN_MS,
          // The request's own deadline starts a moment after its grant commits: a second of slack.
          maxRequestMs: config.policy.apiTimeoutSeconds * 1000 + START_DEADLINE_SLACK_MS,
        },
      });
      return runnerLeadership;
    },
    gates,
    gatesReport: () => evaluateGates({ store, config, audit, clock }),
    gatesBundle: () => buildGatesBundle({ store, config, audit, clock }),
    async releaseManifest() {
      const id = await readInstallationId(store.db);
      return id === undefined ? null : buildManifest(config, id);
    },
    alerts,
    alertChannels,
    dispatchAlerts: () => dispatcher().dispatchDue(),
    sendTestAlert: () =>
      sendTestAlert({ store, audit, clock, channels: alertChannels(), operator: config.operator }),
    async recentAlerts(limit) {
      const rows = await recentAlerts(store.db, limit);
      return Promise.all(
        rows.map(async (a) => ({ ...a, deliveries: await alertDeliveries(store.db, a.id) })),
      );
    },
    requestMonitor,
    checkPolicy,
    limitsInForce: () => limitsInForce,
    reloadLimits,
    async changeMode(command, request) {
      const actor = request.actor ?? config.operator;
      // The reason is kept for good in the audit chain. A stop (pause, rollback) is never held up by
      // its wording: it is made with the reason withheld, and the caller is told. Anything else is refused.
      const contactData = refuseContactData(request.reason, 'the reason');
      let reason = request.reason;
      if (contactData !== null) {
        if (command !== 'pause' && command !== 'rollback') {
          return { kind: 'refused', mode: await readMode(store.db), reason: contactData };
        }
        reason = REASON_WITHHELD;
      }
      if (command === 'rearm') {
        const refusal = await rearmRefusal(request.gates ?? gates);
        if (refusal !== null) {
          await audit.record({ actor, action: 'mode.rearm_refused', details: { reason: refusal } });
          return { kind: 'refused', mode: await readMode(store.db), reason: refusal };
        }
      }
      const commit = () =>
        store.db
          .transaction()
          .execute((trx) => changeMode(trx, { audit, alerts, clock }, { command, actor, reason }));
      // Ahead of an upload being stored in this process (upload-ingest.ts): a stop never queues behind it.
      const change = await (uploads ? uploads.ahead(commit) : commit());
      return contactData === null ? change : { ...change, reasonWithheld: contactData };
    },
    pseudonymizer: requirePseudonymizer,
    awaitModeAck: (request) => awaitModeAck({ store, clock, sleep: systemSleep, config }, request),
    async archiveSyntheticLeads() {
      return store.db.transaction().execute(async (trx) => {
        const reason = 'a synthetic lead: never sent live (archived at a Phase 4 start)';
        const ids = await archiveSyntheticLeads(trx, clock.now(), reason);
        if (ids.length > 0) {
          await audit.append(trx, {
            actor: config.operator,
            action: 'leads.synthetic_archived',
            details: { count: ids.length, leadIds: ids, reason },
          });
        }
        return ids.length;
      });
    },
    async loadSyntheticLeadsIfEmpty(count) {
      if (config.realDataIngest || config.phase !== 3) return null;
      const totals = await ingestTotals(store.db);
      if (totals.read > 0) return null;
      // Loaded here only: faker is large, and only this path and `leads generate` need it.
      const { writeGeneratedLeads } = await import('../synthetic/index.js');
      const file = join(config.dataDir, 'synthetic-leads.csv');
      ensurePrivateDir(config.dataDir);
      // The product's own file in its own folder: replaced on a new load, never through a link.
      const stream = createPrivateWriteStream(file, { overwrite: true });
      await writeGeneratedLeads(stream, { count, seed: 1, now: clock.now(), format: 'csv' });
      stream.end();
      await finished(stream);
      return ingestFile(ingestDeps(), { path: file });
    },
    operatorActions(actor) {
      return createOperatorActions({
        store,
        audit,
        clock,
        operator: actor ?? config.operator,
        pseudonymizer: requirePseudonymizer(),
      });
    },
    async runState() {
      const [mode, goLiveAt, cycles, beat, errorRate, lease, dbNow, service] = await Promise.all([
        readMode(store.db),
        readGoLiveAt(store.db),
        recentCycles(store.db, 5),
        latestHeartbeat(store.db),
        requestMonitor.current(store.db),
        readLease(store.db),
        databaseNow(store.db, store.dialect, () => clock.now()),
        readServiceView({ store, clock, config }),
      ]);
      // The ramp is the running service's: its phase when one runs, else this process's.
      const phase = service.phase ?? config.phase;
      const ramp =
        phase === 4
          ? rampPosition(
              config.policy.rampStages,
              goLiveAt,
              clock.now(),
              service.limits?.leadsPerCycle ?? config.limits.leadsPerCycle,
            )
          : null;
      return {
        mode,
        service,
        heartbeat: beat
          ? {
              at: new Date(beat.at).toISOString(),
              ageSeconds: Math.round((clock.now() - beat.at) / 1000),
              pid: beat.pid,
              rssMb: Math.round(beat.rss_bytes / (1024 * 1024)),
              state: beat.state,
            }
          : null,
        leader: lease && {
          holder: lease.holder,
          host: lease.host,
          pid: lease.pid,
          epoch: lease.epoch,
          lease: lease.expiresAt === 0 ? 'released' : lease.expiresAt > dbNow ? 'held' : 'lapsed',
          seconds: lease.expiresAt === 0 ? 0 : Math.round(Math.abs(lease.expiresAt - dbNow) / 1000),
        },
        errorRate: {
          requests: errorRate.requests,
          failures: errorRate.failures,
          rate: errorRate.rate,
          lowerBound: errorRate.lowerBound,
          rollback: errorRate.rollback,
          reason: errorRate.reason,
        },
        goLiveAt: goLiveAt === null ? null : new Date(goLiveAt).toISOString(),
        ramp: ramp && {
          stage: ramp.stage,
          ceiling: ramp.ceiling,
          confirmEachCycle: ramp.confirmEachCycle,
          nextStageAt: ramp.nextStageAt === null ? null : new Date(ramp.nextStageAt).toISOString(),
        },
        lastCycles: cycles.map((c) => ({
          id: c.id,
          kind: c.kind,
          startedAt: new Date(c.started_at).toISOString(),
          leads: c.kind === 'dry_run' ? dryRunCount(c.summary) : c.claimed,
          actions: c.actions,
          confirmed: c.confirmed_at !== null,
        })),
      };
    },
    async close() {
      await uploads?.close().catch(() => undefined);
      await partnerClient?.close().catch(() => undefined);
      await ledPartnerClient?.close().catch(() => undefined);
      for (const channel of channels ?? []) await channel.close().catch(() => undefined);
      channels = null;
      if (closed) return;
      closed = true;
      await store.close();
      logger.flush();
    },
  };
}

function dryRunCount(summary: string | null): number {
  if (summary === null) return 0;
  const parsed = JSON.parse(summary) as { dryRunRecorded?: unknown };
  return typeof parsed.dryRunRecorded === 'number' ? parsed.dryRunRecorded : 0;
}

/**
 * An installation made by a release before installation ids gets its id the first time this release
 * opens it (audited `installation.identified`); a new one gets it from `valhalla init`. A store never
 * initialised has none: the signed documents name one, so nothing can be signed for it.
 */
async function identifyInstallation(
  store: Store,
  audit: AuditLog,
  clock: Clock,
  actor: string,
): Promise<void> {
  if ((await readInstallationId(store.db)) !== undefined) return;
  if ((await getRuntimeValue(store.db, INITIALIZED_KEY)) === undefined) return;
  await store.db.transaction().execute(async (trx) => {
    const { id, claimed } = await claimInstallationId(trx, randomUUID(), clock.now());
    if (!claimed) return;
    await audit.append(trx, {
      actor,
      action: 'installation.identified',
      details: { installationId: id, why: 'installed by a release without installation ids' },
    });
  });
}

/** The secret keys every dedup key: a different secret would let every stored lead be ingested again. */
async function checkSecretFingerprint(
  store: Store,
  pseudonymizer: Pseudonymizer,
  clock: Clock,
): Promise<void> {
  const stored = await getRuntimeValue(store.db, FINGERPRINT_KEY);
  if (stored === undefined) {
    await setRuntimeValue(store.db, FINGERPRINT_KEY, pseudonymizer.fingerprint, clock.now());
  } else if (stored !== pseudonymizer.fingerprint) {
    throw new AppError(
      'SECRET_CHANGED',
      'the pseudonym secret is not the one this database was written with: dedup keys and pseudonyms would not match. Restore the original secret.',
    );
  }
}
