import type { AlertChannel, AlertRecorder, sendTestAlert } from '../alerts/index.js';
import type { AuditLog } from '../audit/index.js';
import type { Clock, Sleep } from '../clock/index.js';
import type { Config } from '../config/index.js';
import type { LimitsReload, OperatorModeChange, PolicyCheck } from '../control/index.js';
import type { Engine, Leadership, OperatorActions, PartnerPort } from '../engine/index.js';
import type {
  buildGatesBundle,
  GatesReport,
  ReleaseManifest,
  SignedDocument,
  SigningOutcome,
} from '../gates/index.js';
import type { GateClearance } from '../guard/index.js';
import type { IngestOptions, IngestSummary } from '../ingest/index.js';
import type { Logger } from '../log/index.js';
import type { Metrics, RequestMonitor, WorkerProbe } from '../monitor/index.js';
import type { Pseudonymizer } from '../pii/index.js';
import type { LeadState, ModeCommand } from '../policy/index.js';
import type { Alert, AlertDelivery, Signer, SignerRole, Store } from '../store/index.js';
import type { MaskedLead, RunState, StatusReport } from '../views/index.js';
import type { ModeAcknowledgement } from './mode-ack.js';
import type { UploadIngest } from './upload-ingest.js';

/** What `openApp` builds: every command, the server and the runner act through it. */
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
  /** `gates verify`: the report, and the verification recorded in the audit chain (the policy's verify_phase4_gates). */
  verifyGates(): Promise<GatesReport>;
  /** The same with the signed documents, keys and evidence entries, for `valhalla gates report`. */
  gatesBundle(): ReturnType<typeof buildGatesBundle>;
  /** The release manifest Phase 4 would run with here; null when the store has no installation id. */
  releaseManifest(): Promise<ReleaseManifest | null>;
  /** Every registered signer, revoked ones included. */
  listSigners(): Promise<Signer[]>;
  /** Register a public key for a role, audited under the configured operator. */
  addSigner(signer: {
    role: SignerRole;
    name: string;
    publicKeyPem: string;
  }): Promise<SigningOutcome<{ signer: Signer }>>;
  /** Revoke a signer's key, audited: every signature made with it becomes void. */
  revokeSigner(revocation: {
    keyId: string;
    reason: string;
  }): Promise<SigningOutcome<{ signer: Signer; voided: number }>>;
  /**
   * Validate and record a signed document (sign-off, attestation, activation, amendment) against
   * this installation's release manifest; a refusal is audited too.
   */
  recordSignature(doc: SignedDocument): Promise<SigningOutcome<{ id: number }>>;
  /**
   * The main job's start in Phase 3: with real data off and nothing ever ingested, generate and
   * ingest `count` synthetic leads (seed 1) from `<data dir>/synthetic-leads.csv`; null otherwise.
   */
  loadSyntheticLeadsIfEmpty(count: number): Promise<IngestSummary | null>;
  /** Archive the synthetic leads still waiting (a Phase 4 start), audited; returns how many. */
  archiveSyntheticLeads(): Promise<number>;
  /** The mode, the ramp stage and the latest cycles, for `status`. */
  runState(): Promise<RunState>;
  /** Alerts are recorded with their event and sent by the dispatcher (only `alerts` talks to Slack and SMTP). */
  readonly alerts: AlertRecorder;
  /** The configured alert channels (created on first use). */
  alertChannels(): readonly AlertChannel[];
  /** Send the alerts that are due, once (the supervisor runs this on an interval). */
  dispatchAlerts(): Promise<{ sent: number; retrying: number; failed: number }>;
  /** A test alert to every channel, recorded and audited (gate 5's evidence). */
  sendTestAlert(): ReturnType<typeof sendTestAlert>;
  recentAlerts(limit: number): Promise<(Alert & { deliveries: AlertDelivery[] })[]>;
  readonly requestMonitor: RequestMonitor;
  /** The installation's Prometheus metrics (a new registry each call); `worker` is the supervisor's view of its worker. */
  metrics(worker?: WorkerProbe): Metrics;
  /**
   * pause / resume / rollback / rearm, audited and alerted. `rearm` also needs Phase 4, the gates
   * cleared, and no worker left running from before the rollback (it must have been restarted).
   */
  changeMode(
    command: ModeCommand,
    request: { actor?: string; reason: string; gates?: GateClearance },
  ): Promise<OperatorModeChange>;
  /**
   * Whether the running workers took a mode change (the latest by default), waiting at most `waitMs`
   * for their acknowledgement: what every mode command reports.
   */
  awaitModeAck(request?: { changeSeq?: number; waitMs?: number }): Promise<ModeAcknowledgement>;
  /**
   * Has the policy changed since it was last recorded (this process's, or the file on disk now)? A
   * change voids every sign-off made against the old hash: audited, alerted (gate voided), and in
   * Phase 4 outbound stops (rolled back). An unreadable or invalid file on disk counts as a change.
   */
  checkPolicy(source: 'config' | 'disk'): Promise<PolicyCheck>;
  /** The limits in force in this process now: the configuration's, or lower ones taken while running. */
  limitsInForce(): Config['limits'];
  /**
   * Read the limits again from `load` (the environment, `.env` and the policy file as they are now):
   * a lowering (or a return up to the approved limits) is taken from the next cycle, audited
   * (`limits.changed`) and alerted; a raise above the approved limits is refused (`limits.refused`,
   * alerted once per wanted value) and the limits in force are kept.
   */
  reloadLimits(load: () => Config): Promise<LimitsReload>;
  /** Release everything in reverse order of creation; the first error is thrown after all ran. Safe twice. */
  close(): Promise<void>;
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
