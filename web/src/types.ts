/** Shapes of the admin API (see the server's contract). Every string in them may be hostile. */

export type Role = 'viewer' | 'operator' | 'admin';
export type Mode = 'live' | 'paused' | 'rolled_back';
export type ItemState = 'ok' | 'missing' | 'invalid';

export interface Session {
  name: string;
  role: Role;
  csrfToken: string;
}

/** Lead counts by state; `total` included. The server may add states, so keys are open. */
export type LeadCounts = Record<string, number>;

export interface RampInfo {
  stage: number;
  ceiling: number;
  confirmEachCycle: boolean;
  nextStageAt: string | null;
}

export interface Caps {
  cycle: { ceiling: number; leadsPerCycle: number; hardMax: number; lastCycleLeads: number };
  actionsPerCycle: { limit: number; hardMax: number };
  ratePerSecond: number;
  daily: { used: number; limit: number };
  budget: { used: number; limit: number };
}

export interface ErrorRate {
  requests: number;
  failures: number;
  rate: number;
  lowerBound: number;
  threshold: number;
  rollback: boolean;
  reason: string;
}

export interface Heartbeat {
  at: string;
  ageSeconds: number;
  limitSeconds: number;
  pid: number;
  rssMb: number;
  state: string;
}

export interface Leader {
  holder: string;
  host: string;
  pid: number;
  epoch: number;
  lease: 'held' | 'lapsed' | 'released';
  seconds: number;
}

export interface Status {
  at: string;
  phase: 3 | 4;
  mode: Mode;
  policyHash: string;
  database: string;
  leads: LeadCounts;
  ramp: RampInfo | null;
  goLiveAt: string | null;
  caps: Caps;
  errorRate: ErrorRate;
  heartbeat: Heartbeat | null;
  /** Which runner leads (several may share the database); absent from an older server. */
  leader?: Leader | null;
  /** The contract says `missing` (a count); a server may send only a `reason`. */
  gates: { cleared: boolean; missing?: number; reason?: string };
  lastCycles: {
    id: number;
    kind: string;
    startedAt: string;
    leads: number;
    actions: number;
    confirmed: boolean;
  }[];
  /** The running service's truth (its worker's heartbeat); absent from an older server. */
  service?: { running: boolean; differences: string[] };
}

/** The SSE `status` event: the parts of the status that change often. */
export interface StatusEvent {
  mode: Mode;
  leads: LeadCounts;
  heartbeatAgeSeconds: number | null;
}

export const FLOW_OUTCOMES = ['ingested', 'dry_run', 'exported', 'quarantined'] as const;
export type FlowOutcome = (typeof FLOW_OUTCOMES)[number];

export interface Flow {
  from: string;
  fromMs: number;
  bucketMs: number;
  buckets: number;
  series: Partial<Record<FlowOutcome, number[]>>;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string | null;
  details: Record<string, unknown> | null;
}

export interface GateItem {
  gate: number;
  id: string;
  text: string;
  kind: 'verified' | 'attested';
  role: string | null;
  state: ItemState;
  detail: string | null;
  signer: string | null;
  date: string | null;
}

export interface Gate {
  gate: number;
  title: string;
  ok: boolean;
  items: GateItem[];
}

export interface Gates {
  at: string;
  policyHash: string;
  cleared: boolean;
  missing: string[];
  activation: { state: ItemState; detail: string | null; signer: string | null; date: string | null };
  gates: Gate[];
}

export interface QuarantinedLead {
  id: number;
  name: string | null;
  email: string | null;
  score: number;
  reason: string | null;
}

export interface Alert {
  id: number;
  at: string;
  severity: 'info' | 'warning' | 'critical';
  event: string;
  message: string;
  kind: string;
  repeats: number;
  deliveries: {
    channel: string;
    state: string;
    attempts: number;
    sentAt: string | null;
    lastError: string | null;
  }[];
}

/** What a mode command answers. */
/** Whether the running service took a mode change (the server's words in `acknowledgementText`). */
export interface ModeAcknowledgement {
  kind: 'acknowledged' | 'no_worker' | 'not_acknowledged';
  workers?: { pid: number; runner: string; latencyMs: number }[];
}

export type ModeResult =
  | {
      kind: 'change';
      from: Mode;
      to: Mode;
      acknowledgement: ModeAcknowledgement;
      acknowledgementText: string;
    }
  | {
      kind: 'unchanged';
      mode: Mode;
      reason: string;
      acknowledgement: ModeAcknowledgement;
      acknowledgementText: string;
    }
  | { kind: 'refused'; mode: Mode; reason: string };

export interface ReleaseResult {
  changed: number[];
  skipped: number[];
}
