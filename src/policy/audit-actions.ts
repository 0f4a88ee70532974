import type { ModeCommand } from './mode.js';

/**
 * Every action the audit chain holds, by area. The gates find their evidence by these names, so a
 * name is a type: a misspelt one fails to compile instead of silently turning a gate red.
 * `test/unit/audit-actions.test.ts` checks that every action written in `src` is listed here.
 */
export const AUDIT_ACTIONS = [
  // The installation: `init`, its id, its dedup rule, the release's policy.
  'system.initialized',
  'installation.identified',
  'dedup.rule_recorded',
  'policy.changed',
  'limits.changed',
  'limits.refused',
  // Ingest and the lead lifecycle outside the cycle.
  'ingest.started',
  'ingest.rows',
  'ingest.finished',
  'ingest.failed',
  'leads.expired',
  'leads.archived',
  'leads.synthetic_archived',
  'leads.identity_keys_filled',
  'lead.erased',
  'lead.erase_refused',
  // The cycle: the guard's decision on each batch, then what became of it.
  'guard.allowed',
  'guard.dry_run',
  'guard.refused',
  'batch.queued',
  // Leads the partner profile cannot write: quarantined before any batch holds them.
  'leads.set_aside',
  'batch.dry_run',
  'batch.accepted',
  'batch.refused',
  'batch.held',
  'batch.parked',
  'batch.retry_scheduled',
  'batch.quarantined',
  'quarantine.released',
  'quarantine.dropped',
  'recovery.resend',
  'recovery.quarantined',
  'cycle.confirmed',
  'partner.health_failed',
  'partner.token_failed',
  'partner.tls_refused',
  // `valhalla partner preview --reveal`: an admin saw the values a profile would send.
  'partner.preview_revealed',
  'phase4.go_live',
  // The mode: one action per mode command (`modeAction`), and a refused re-arm.
  'mode.pause',
  'mode.resume',
  'mode.rollback',
  'mode.rearm',
  'mode.rearm_refused',
  // The service and its worker.
  'run.refused',
  'runner.lead',
  'worker.started',
  'worker.refused_to_start',
  'worker.heartbeat_missed',
  'worker.memory_restart',
  'worker.daily_restart',
  'worker.crashed',
  'metrics.unavailable',
  'dashboard.unavailable',
  // Signers, sign-offs and the gates.
  'signer.added',
  'signer.revoked',
  'signature.recorded',
  'signature.refused',
  'gates.verified',
  // Evidence for verified gate items (`EVIDENCE_ACTIONS` in src/gates/catalogue.ts), and the
  // dashboard check's probe entry.
  'alerts.test',
  'dashboard.probe',
  'dashboard.checked',
  'drill.rollback',
  'gates.conformance',
  'gates.partner_conformance',
  'stability.verified',
] as const;

/** One action of the audit chain. */
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

const KNOWN: ReadonlySet<string> = new Set(AUDIT_ACTIONS);

/** Whether a name read back (from the database, a file) is one of the chain's actions. */
export function isAuditAction(name: string): name is AuditAction {
  return KNOWN.has(name);
}

/** The action a mode command is audited under: `mode.pause`, `mode.resume`, `mode.rollback`, `mode.rearm`. */
export function modeAction(command: ModeCommand): AuditAction {
  return `mode.${command}`;
}

/** What the guard decided about a batch. */
export type GuardVerdict = 'allowed' | 'dry_run' | 'refused';

/** The action a guard decision is audited under: `guard.allowed`, `guard.dry_run`, `guard.refused`. */
export function guardAction(verdict: GuardVerdict): AuditAction {
  return `guard.${verdict}`;
}
