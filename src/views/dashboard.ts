import type { AuditLog, AuditVerification } from '../audit/index.js';
import type { Clock } from '../clock/index.js';
import type { Config } from '../config/index.js';
import {
  isSigningError,
  listSigners,
  parseSignedDocument,
  type ReleaseManifest,
  recordSignature,
} from '../gates/index.js';
import type { GateClearance } from '../guard/index.js';
import type { IngestSummary, SourceFormat } from '../ingest/index.js';
import type { Logger } from '../log/index.js';
import { cycleCeiling, HARD_CAPS } from '../policy/index.js';
import {
  type Alert,
  type AlertDelivery,
  type AuditRow,
  auditAfter,
  auditPage,
  batchLeadsPerMinute,
  type DeliveryState,
  dailyUsage,
  exportedLeadsPerMinute,
  latestAuditSeq,
  listDeliveries,
  recentCycles,
  rejectedRowsOf,
  type Store,
} from '../store/index.js';
import type { RunState } from './run-state.js';
import type { StatusReport } from './status.js';

/** What the dashboard reads through: the app (src/app) gives it, whole. */
export interface DashboardSource {
  readonly store: Store;
  readonly config: Config;
  readonly clock: Clock;
  readonly audit: AuditLog;
  readonly logger: Logger;
  readonly gates: Pick<GateClearance, 'check'>;
  status(): Promise<StatusReport>;
  runState(): Promise<RunState>;
  releaseManifest(): Promise<ReleaseManifest | null>;
  /** An upload, ingested off the server's event loop (the app's upload thread). */
  ingestUpload(upload: {
    body: AsyncIterable<Buffer | string>;
    format: SourceFormat;
    jsonArray: boolean;
    sourceName: string;
    operator: string;
  }): Promise<IngestSummary>;
}

/** What the dashboard's header, counts and gauges show: one read of everything that moves. */
export interface DashboardStatus {
  at: string;
  phase: 3 | 4;
  mode: RunState['mode'];
  policyHash: string;
  database: StatusReport['database'];
  leads: StatusReport['leads'];
  ramp: RunState['ramp'];
  goLiveAt: string | null;
  caps: {
    /** The next cycle's ceiling as the engine computes it, what limits it, and the last cycle's leads. */
    cycle: {
      ceiling: number;
      limitedBy: string;
      leadsPerCycle: number;
      hardMax: number;
      lastCycleLeads: number;
    };
    actionsPerCycle: { limit: number; hardMax: number };
    ratePerSecond: number;
    daily: { used: number; limit: number };
    budget: { used: number; limit: number };
  };
  errorRate: RunState['errorRate'] & { threshold: number };
  heartbeat: (NonNullable<RunState['heartbeat']> & { limitSeconds: number }) | null;
  /** Which runner leads (several may share the database), or null when none ever did. */
  leader: RunState['leader'];
  gates: { cleared: boolean; reason: string };
  lastCycles: RunState['lastCycles'];
  /**
   * The running service's own phase, mode, limits and policy, and where this server's configuration
   * differs from it. `phase`, `policyHash` and the caps above are the running service's when one runs.
   */
  service: RunState['service'];
}

export const FLOW_OUTCOMES = ['dry_run', 'exported', 'quarantined'] as const;
export type FlowOutcome = (typeof FLOW_OUTCOMES)[number];

/** Leads per minute by outcome, oldest minute first, one number per minute (dense, for a chart). */
export interface LeadFlow {
  from: string;
  fromMs: number;
  bucketMs: number;
  buckets: number;
  series: Record<FlowOutcome, number[]>;
}

/** An audit entry as the API shows it: the chain holds pseudonyms and masked values only (invariant 7). */
export interface AuditEntryView {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string | null;
  details: unknown;
}

export interface UploadResult extends Omit<IngestSummary, 'rejectsFile'> {
  /** The first rejected rows: line, field and reason (never the row's values). */
  rejects: { line: number; field: string | null; reason: string }[];
}

const MINUTE_MS = 60_000;
const UPLOAD_REJECTS_SHOWN = 100;

/** The read model and the few writes of the admin API and dashboard (`src/server`). */
export interface Dashboard {
  status(): Promise<DashboardStatus>;
  flow(hours: number): Promise<LeadFlow>;
  cycles(limit: number): Promise<ReturnType<typeof cycleView>[]>;
  deliveries(options: {
    state?: DeliveryState;
    limit: number;
    beforeId?: number;
  }): Promise<ReturnType<typeof deliveryView>[]>;
  auditPage(limit: number, beforeSeq?: number): Promise<AuditEntryView[]>;
  /** Entries after `seq` in chain order: what the live event stream has not sent yet. */
  auditAfter(seq: number, limit: number): Promise<AuditEntryView[]>;
  latestAuditSeq(): Promise<number>;
  verifyAudit(): Promise<AuditVerification>;
  signers(): Promise<
    { id: number; role: string; name: string; keyId: string; addedAt: string; revokedAt: string | null }[]
  >;
  /** Record a signed document (`valhalla signoff --out FILE`), as `signoff submit` does. */
  submitSignedDocument(
    document: unknown,
    actor: string,
  ): Promise<{ ok: true; id: number } | { ok: false; reason: string }>;
  /** Ingest an uploaded body with the CLI's validation and row outcomes. */
  ingestUpload(upload: {
    body: AsyncIterable<Buffer | string>;
    format: SourceFormat;
    /** The body is one JSON array of lead objects. */
    jsonArray?: boolean;
    actor: string;
  }): Promise<UploadResult>;
}

export function createDashboard(app: DashboardSource): Dashboard {
  const { store, config, clock } = app;
  const iso = (at: number) => new Date(at).toISOString();
  return {
    async status() {
      const now = clock.now();
      const [report, run, today, gates] = await Promise.all([
        app.status(),
        app.runState(),
        dailyUsage(store.db, now),
        app.gates.check(),
      ]);
      const limitSeconds = config.policy.heartbeatIntervalSeconds + config.policy.heartbeatGraceSeconds;
      // What the running service runs with (its heartbeat), as `valhalla status` says it.
      const phase = run.service.phase ?? report.phase;
      const limits = run.service.limits ?? config.limits;
      const leadsPerCycle = limits.leadsPerCycle;
      // As the engine's cycle does: the ramp and the day's leads left count only when sending live.
      const live = phase === 4 && run.mode === 'live';
      const next = cycleCeiling({
        leadsPerCycle,
        rampCeiling: live ? (run.ramp?.ceiling ?? leadsPerCycle) : leadsPerCycle,
        leadsLeftToday: live ? config.policy.dailyLeads - today.leads : Number.POSITIVE_INFINITY,
      });
      return {
        at: iso(now),
        phase,
        mode: run.mode,
        policyHash: run.service.policyHash ?? report.policyHash,
        database: report.database,
        leads: report.leads,
        ramp: run.ramp,
        goLiveAt: run.goLiveAt,
        caps: {
          cycle: {
            ceiling: next.ceiling,
            limitedBy: next.limitedBy,
            leadsPerCycle,
            hardMax: HARD_CAPS.leadsPerCycle,
            lastCycleLeads: run.lastCycles.find((c) => c.kind !== 'idle')?.leads ?? 0,
          },
          actionsPerCycle: { limit: limits.actionsPerCycle, hardMax: HARD_CAPS.actionsPerCycle },
          ratePerSecond: limits.rateLimitPerSecond,
          daily: { used: today.leads, limit: config.policy.dailyLeads },
          budget: { used: today.exposure, limit: config.policy.budgetExposure },
        },
        errorRate: { ...run.errorRate, threshold: config.policy.errorRateTolerance },
        heartbeat: run.heartbeat && { ...run.heartbeat, limitSeconds },
        leader: run.leader,
        gates,
        lastCycles: run.lastCycles,
        service: run.service,
      };
    },
    async flow(hours) {
      const now = clock.now();
      const toMinute = Math.floor(now / MINUTE_MS) + 1;
      const buckets = Math.round(hours * 60);
      const fromMinute = toMinute - buckets;
      const [from, to] = [fromMinute * MINUTE_MS, toMinute * MINUTE_MS];
      const [dryRun, exported, quarantined] = await Promise.all([
        batchLeadsPerMinute(store.db, 'dry_run', from, to),
        exportedLeadsPerMinute(store.db, from, to),
        batchLeadsPerMinute(store.db, 'quarantined', from, to),
      ]);
      const dense = (counts: Map<number, number>) =>
        Array.from({ length: buckets }, (_, i) => counts.get(fromMinute + i) ?? 0);
      return {
        from: iso(from),
        fromMs: from,
        bucketMs: MINUTE_MS,
        buckets,
        series: { dry_run: dense(dryRun), exported: dense(exported), quarantined: dense(quarantined) },
      };
    },
    async cycles(limit) {
      return (await recentCycles(store.db, limit)).map(cycleView);
    },
    async deliveries(options) {
      return (await listDeliveries(store.db, options)).map(deliveryView);
    },
    async auditPage(limit, beforeSeq) {
      return (await auditPage(store.db, limit, beforeSeq)).map(auditView);
    },
    async auditAfter(seq, limit) {
      return (await auditAfter(store.db, seq, limit)).map(auditView);
    },
    latestAuditSeq: () => latestAuditSeq(store.db),
    verifyAudit: () => app.audit.verify(),
    async signers() {
      return (await listSigners(store.db)).map((s) => ({
        id: s.id,
        role: s.role,
        name: s.name,
        keyId: s.key_id,
        addedAt: iso(s.added_at),
        revokedAt: s.revoked_at === null ? null : iso(s.revoked_at),
      }));
    },
    async submitSignedDocument(document, actor) {
      let parsed: ReturnType<typeof parseSignedDocument>;
      try {
        parsed = parseSignedDocument(JSON.stringify(document));
      } catch (error) {
        // The signing module's refusals say what is wrong with the document; anything else (a
        // RangeError from a value nested too deeply to serialise) is not for the client to read.
        if (isSigningError(error)) return { ok: false, reason: error.message };
        app.logger.warn({ err: error }, 'a submitted document could not be read');
        return { ok: false, reason: 'not a signed document: it could not be read' };
      }
      const result = await recordSignature(
        { db: store.db, dialect: store.dialect, audit: app.audit },
        parsed,
        { actor, now: clock.now(), manifest: await app.releaseManifest() },
      );
      return result.ok ? { ok: true, id: result.id } : result;
    },
    async ingestUpload(upload) {
      // In the upload thread: this process's loop answers pause, rollback and /healthz meanwhile.
      const summary = await app.ingestUpload({
        body: upload.body,
        format: upload.format,
        jsonArray: upload.jsonArray ?? false,
        sourceName: `(upload by ${upload.actor})`,
        operator: upload.actor,
      });
      const rejects =
        summary.rejected === 0 ? [] : await rejectedRowsOf(store.db, summary.runId, UPLOAD_REJECTS_SHOWN);
      // The rejects file's path is the server's business; the rows are listed here instead.
      const { rejectsFile: _path, ...rest } = summary;
      return { ...rest, rejects };
    },
  };
}

/** An alert with its deliveries, as the CLI's `alerts list --json` and the API show it. */
export function alertView(a: Alert & { deliveries: AlertDelivery[] }) {
  const iso = (at: number) => new Date(at).toISOString();
  return {
    id: a.id,
    at: iso(a.at),
    severity: a.severity,
    kind: a.kind,
    event: a.event,
    message: a.message,
    details: parseDetails(a.details),
    repeats: a.repeats,
    deliveries: a.deliveries.map((d) => ({
      channel: d.channel,
      state: d.state,
      attempts: d.attempts,
      nextAttemptAt: d.state === 'pending' ? iso(d.next_attempt_at) : null,
      sentAt: d.sent_at === null ? null : iso(d.sent_at),
      lastError: d.last_error,
    })),
  };
}

function parseDetails(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function cycleView(c: Awaited<ReturnType<typeof recentCycles>>[number]) {
  return {
    id: c.id,
    kind: c.kind,
    phase: c.phase,
    startedAt: new Date(c.started_at).toISOString(),
    finishedAt: c.finished_at === null ? null : new Date(c.finished_at).toISOString(),
    rampStage: c.ramp_stage,
    ceiling: c.ceiling,
    limitedBy: c.limited_by,
    claimed: c.claimed,
    actions: c.actions,
    confirmed: c.confirmed_at !== null,
  };
}

function deliveryView(d: Awaited<ReturnType<typeof listDeliveries>>[number]) {
  return {
    id: d.id,
    cycleId: d.cycle_id,
    kind: d.kind,
    state: d.state,
    attempts: d.attempts,
    leadCount: d.lead_count,
    lastStatus: d.last_status,
    lastOutcome: d.last_outcome,
    createdAt: new Date(d.created_at).toISOString(),
    updatedAt: new Date(d.updated_at).toISOString(),
  };
}

function auditView(row: AuditRow): AuditEntryView {
  return {
    seq: Number(row.seq),
    at: new Date(Number(row.at)).toISOString(),
    actor: row.actor,
    action: row.action,
    subject: row.subject,
    details: JSON.parse(row.details) as unknown,
  };
}
