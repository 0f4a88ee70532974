import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { LeadState } from '../policy/index.js';

/** Times are milliseconds since the Unix epoch, stored as integers on both backends. */
export interface LeadsTable {
  id: Generated<number>;
  dedup_key: string;
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

export interface Database {
  leads: LeadsTable;
  ingest_runs: IngestRunsTable;
  ingest_outcomes: IngestOutcomesTable;
  audit_log: AuditLogTable;
  runtime_state: RuntimeStateTable;
}

export type Lead = Selectable<LeadsTable>;
export type NewLead = Insertable<LeadsTable>;
export type IngestRun = Selectable<IngestRunsTable>;
export type AuditRow = Selectable<AuditLogTable>;
