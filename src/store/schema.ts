import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { AttributeValue } from '../partner/index.js';
import type { LeadState } from '../policy/index.js';

/** A lead's extra columns kept at ingest, by the name the partner profile declares (0016). */
export type LeadAttributes = Readonly<Record<string, AttributeValue>>;

/** Times are milliseconds since the Unix epoch, stored as integers on both backends. */
export interface LeadsTable {
  id: Generated<number>;
  /**
   * The first 16 bytes of the key of the identity the dedup rule names (0015): what the lead's
   * pseudonym and lead key derive from. Read and written as 32 hex digits outside the store
   * (`Lead.dedup_key`); bytes in the table.
   */
  dedup_key: Uint8Array;
  external_id: string | null;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  score: number;
  source_ts: number;
  value: number | null;
  state: LeadState;
  state_reason: string | null;
  ingested_at: number;
  updated_at: number;
  exported_at: number | null;
  run_id: number;
  source_line: number;
  /** When a Phase 3 dry run recorded this lead (it stays pending, and is not dry-run again). */
  dry_run_at: ColumnType<number | null, number | null | undefined, number | null>;
  /** When the person's data was erased (`leads erase`, `archive`); null while the row holds it. */
  erased_at: ColumnType<number | null, number | null | undefined, number | null>;
  /** 1: a synthetic lead (its external id has the reserved prefix); never sent live (0011). */
  synthetic: ColumnType<number, number | undefined, number>;
  /**
   * The lead's attributes as a JSON object (0016), null when it has none; read as `Lead.attributes`.
   * Set to null by an erasure, with the rest of the person's data.
   */
  attributes: ColumnType<string | null, string | null | undefined, string | null>;
}

/**
 * One identity a lead holds (0015): the key of its normalised e-mail, or of its external id. The key is
 * the primary key: a second lead under either identity is refused by the database. Kept when the lead
 * is erased, so the person stays out.
 */
export interface LeadIdentitiesTable {
  key: Uint8Array;
  lead_id: number;
}

export interface IngestRunsTable {
  id: Generated<number>;
  started_at: number;
  source: string;
  format: string;
  operator: string;
  status: 'running' | 'completed' | 'failed';
  rows_read: ColumnType<number, number | undefined, number>;
  accepted: ColumnType<number, number | undefined, number>;
  duplicate: ColumnType<number, number | undefined, number>;
  rejected: ColumnType<number, number | undefined, number>;
  finished_at: number | null;
  file_sha256: string | null;
  error: string | null;
}

/** A row that did not become a lead, with its reason: nothing ingested is lost. */
export interface IngestOutcomesTable {
  id: Generated<number>;
  run_id: number;
  line: number;
  outcome: 'duplicate' | 'rejected';
  field: string | null;
  reason: string;
  lead_id: number | null;
}

/**
 * Leads by state, kept by triggers on `leads` in the transaction that changes them (0014). A state's
 * count is the sum of its rows (PostgreSQL appends a row per statement and folds them now and then).
 */
export interface LeadStateCountsTable {
  state: LeadState;
  n: ColumnType<number, number, number>;
}

export interface AuditLogTable {
  seq: number;
  at: number;
  actor: string;
  action: string;
  subject: string | null;
  details: string;
  prev_hash: string;
  hash: string;
}

export interface RuntimeStateTable {
  key: string;
  value: string;
  updated_at: number;
}

export type CycleKind = 'live' | 'dry_run' | 'idle';

export interface CyclesTable {
  id: Generated<number>;
  started_at: number;
  finished_at: number | null;
  phase: 3 | 4;
  kind: CycleKind;
  ramp_stage: number | null;
  ceiling: number;
  limited_by: string;
  claimed: ColumnType<number, number | undefined, number>;
  actions: ColumnType<number, number | undefined, number>;
  summary: string | null;
  confirmed_at: number | null;
  confirmed_by: string | null;
}

export type DeliveryState =
  | 'queued'
  | 'sending'
  | 'retry_wait'
  | 'accepted'
  | 'quarantined'
  | 'refused'
  | 'dry_run';

/** The outbox: one row per batch, committed with its idempotency key before the first attempt. */
export interface DeliveriesTable {
  id: Generated<number>;
  batch_key: string;
  cycle_id: number;
  kind: 'live' | 'dry_run';
  state: DeliveryState;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: number | null;
  lead_count: number;
  payload_sha256: string;
  /** Masked summary of the leads (JSON); never raw PII. */
  summary: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: number;
  updated_at: number;
  last_status: number | null;
  last_outcome: string | null;
  /** Requests the partner answered with a failure for this key (5xx, 408, 401): they spend retries (0012). */
  failed_answers: ColumnType<number, number | undefined, number>;
  /** Requests of this key that got no answer (killed, timed out, reset): replayed, bounded apart (0012). */
  unanswered: ColumnType<number, number | undefined, number>;
  /** 1: quarantined after a request nobody answered; a release replays this key first (0012). */
  partner_may_have: ColumnType<number, number | undefined, number>;
}

export interface DeliveryLeadsTable {
  delivery_id: number;
  lead_id: number;
  lead_key: string;
  live: 0 | 1;
  released: ColumnType<0 | 1, 0 | 1 | undefined, 0 | 1>;
}

export interface AlertsTable {
  id: Generated<number>;
  at: number;
  severity: 'info' | 'warning' | 'critical';
  event: string;
  message: string;
  details: string;
  /** Unused since 0005 (delivery is per channel, in alert_deliveries); kept for old rows. */
  sent_at: ColumnType<number | null, number | null | undefined, number | null>;
  attempts: ColumnType<number, number | undefined, number>;
  /** Repeats with the same key within the de-duplication window are counted here, not sent. */
  dedup_key: ColumnType<string, string | undefined, string>;
  kind: ColumnType<AlertKind, AlertKind | undefined, AlertKind>;
  repeats: ColumnType<number, number | undefined, number>;
}

export type AlertSeverity = 'info' | 'warning' | 'critical';
/** `event`: something happened; `raised` / `recovered`: a condition turned on / off; `test`: `alerts test`. */
export type AlertKind = 'event' | 'raised' | 'recovered' | 'test';

/** One channel's delivery of one alert (the alert outbox). */
export interface AlertDeliveriesTable {
  alert_id: number;
  channel: string;
  state: 'pending' | 'sent' | 'failed';
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: number;
  lease_until: ColumnType<number | null, number | null | undefined, number | null>;
  sent_at: ColumnType<number | null, number | null | undefined, number | null>;
  last_error: ColumnType<string | null, string | null | undefined, string | null>;
}

export type RequestOutcome = 'accepted' | 'retryable' | 'auth' | 'permanent';
/** How a request counts for the error rate: 429 (the partner's own throttle) is excluded. */
export type RequestClass = 'success' | 'failure' | 'excluded';

/** One outbound request to the partner's leads endpoint and how it ended. */
export interface RequestsTable {
  id: Generated<number>;
  at: number;
  endpoint: 'leads' | 'health' | 'token';
  delivery_id: number | null;
  attempt: number | null;
  outcome: RequestOutcome;
  status: number | null;
  class: RequestClass;
  ms: number;
}

/** The worker's heartbeat, every heartbeat interval: the watchdog's, the metrics' and stability's source. */
export interface HeartbeatsTable {
  id: Generated<number>;
  at: number;
  /** host:pid of the worker. */
  runner: string;
  pid: number;
  worker_started_at: number;
  phase: 3 | 4;
  rss_bytes: number;
  heap_used_bytes: number;
  /** What the worker was doing: `idle` between cycles, `cycle` inside one. */
  state: string;
  cycle_id: number | null;
  /** V8's heap limit in the worker (its --max-old-space-size): gate 4's evidence. Null before 0006. */
  heap_limit_bytes: ColumnType<number | null, number | null | undefined, number | null>;
  /** The mode the worker last saw (its mode watch). Null before 0011. */
  mode: ColumnType<string | null, string | null | undefined, string | null>;
  /** The policy hash the worker runs with. Null before 0011. */
  policy_hash: ColumnType<string | null, string | null | undefined, string | null>;
  /** The limits in force in the worker, JSON `{leadsPerCycle, actionsPerCycle, rateLimitPerSecond}`. Null before 0011. */
  limits: ColumnType<string | null, string | null | undefined, string | null>;
}

/** A running worker's acknowledgement of a mode change (0011). */
export interface ModeAcksTable {
  /** The change's audit entry. */
  change_seq: number;
  mode: string;
  /** host:pid of the worker, as in heartbeats. */
  runner: string;
  pid: number;
  worker_started_at: number;
  /** When the change was committed (its maker's clock). */
  changed_at: number;
  /** When the worker had applied it (the worker's clock). */
  acked_at: number;
}

export type SignerRole = 'ceo' | 'cfo' | 'general_counsel' | 'risk_officer' | 'head_of_operations';

/** A registered signer: revocable, never deleted (old signatures stay checkable). */
export interface SignersTable {
  id: Generated<number>;
  role: SignerRole;
  name: string;
  public_key: string;
  key_id: string;
  added_at: number;
  added_by: string;
  revoked_at: number | null;
  revoked_by: string | null;
  revoke_reason: string | null;
}

export type SignatureKind = 'signoff' | 'attestation' | 'activation' | 'amendment';

/** A signed document as submitted: the exact bytes signed, and the signature over them. */
export interface SignaturesTable {
  id: Generated<number>;
  kind: SignatureKind;
  role: string;
  name: string;
  gate: number | null;
  item: string | null;
  policy_hash: string;
  key_id: string;
  document: string;
  signature: string;
  recorded_at: number;
  recorded_by: string;
}

export interface DailyUsageTable {
  /** The UTC day, YYYY-MM-DD. */
  day: string;
  leads: number;
  exposure: number;
}

/** A lease: the runner named in it leads until `expires_at` (migration 0009). */
export interface RunnerLeaseTable {
  name: string;
  holder: string;
  host: string;
  pid: number;
  pid_space: string;
  epoch: number;
  acquired_at: number;
  renewed_at: number;
  expires_at: number;
  quiet_until: ColumnType<number, number | undefined, number>;
}

/** The shared sliding log of request starts to the partner (migration 0009). */
export interface RateStartsTable {
  id: Generated<number>;
  holder: string;
  epoch: number;
  granted_at: number;
  settled_at: number | null;
  expires_at: number;
}

export interface Database {
  runner_lease: RunnerLeaseTable;
  rate_starts: RateStartsTable;
  daily_usage: DailyUsageTable;
  cycles: CyclesTable;
  deliveries: DeliveriesTable;
  delivery_leads: DeliveryLeadsTable;
  alerts: AlertsTable;
  alert_deliveries: AlertDeliveriesTable;
  requests: RequestsTable;
  heartbeats: HeartbeatsTable;
  mode_acks: ModeAcksTable;
  signers: SignersTable;
  signatures: SignaturesTable;
  leads: LeadsTable;
  lead_state_counts: LeadStateCountsTable;
  lead_identities: LeadIdentitiesTable;
  ingest_runs: IngestRunsTable;
  ingest_outcomes: IngestOutcomesTable;
  audit_log: AuditLogTable;
  runtime_state: RuntimeStateTable;
}

/** A lead as stored: its dedup key as bytes. */
export type LeadRow = Selectable<LeadsTable>;
/**
 * A lead as the rest of the product reads it: its dedup key as 32 hex digits, its attributes parsed
 * (null when it has none, or when what is stored is not a JSON object of plain values).
 */
export type Lead = Omit<LeadRow, 'dedup_key' | 'attributes'> & {
  dedup_key: string;
  attributes: LeadAttributes | null;
};
/**
 * A lead to insert, with the keys of its identities (32 hex digits each): its e-mail's, and its
 * external id's when it has one. The dedup key is one of the two. No attributes: stored as null.
 */
export type NewLead = Omit<Insertable<LeadsTable>, 'dedup_key' | 'attributes'> & {
  dedup_key: string;
  email_key: string;
  external_id_key: string | null;
  attributes?: LeadAttributes | null;
};
export type IngestRun = Selectable<IngestRunsTable>;
export type AuditRow = Selectable<AuditLogTable>;
export type Cycle = Selectable<CyclesTable>;
export type Delivery = Selectable<DeliveriesTable>;
export type Alert = Selectable<AlertsTable>;
export type AlertDelivery = Selectable<AlertDeliveriesTable>;
export type Heartbeat = Selectable<HeartbeatsTable>;
export type ModeAck = Selectable<ModeAcksTable>;
export type RequestRow = Selectable<RequestsTable>;
export type Signer = Selectable<SignersTable>;
export type SignatureRow = Selectable<SignaturesTable>;
